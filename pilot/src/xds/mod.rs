//! xDS: the generators that turn (Proxy, PushContext) into Envoy resources, and the
//! ADS server that delivers them.

pub mod ads;
pub mod cds;
pub mod cluster;
pub mod eds;
pub mod lds;
pub mod listener;
pub mod rds;
pub mod route;
pub mod status;

use prost::Message;
use strait_proto::xds::{any, type_url};

use crate::model::{Proxy, PushContext};

/// One generated resource, encoded once and sent as-is to every stream that wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub name: String,
    pub body: strait_proto::xds::any::Any,
}

impl Resource {
    pub fn new<M: prost::Name>(name: impl Into<String>, msg: &M) -> Resource {
        Resource {
            name: name.into(),
            body: any::pack(msg),
        }
    }

    pub fn encoded_len(&self) -> usize {
        self.body.encoded_len()
    }
}

/// Generates the resources of `type_url` for a proxy. `names` are the resources the
/// proxy subscribed to for named types (EDS, RDS); wildcard types ignore them.
/// Unknown types yield nothing.
pub fn generate(
    type_url: &str,
    proxy: &Proxy,
    push: &PushContext,
    names: &[String],
) -> Vec<Resource> {
    match type_url {
        type_url::CLUSTER => cds::build_clusters(proxy, push)
            .iter()
            .map(|c| Resource::new(c.name.clone(), c))
            .collect(),
        type_url::ENDPOINT => eds::build_endpoints(proxy, push, names)
            .iter()
            .map(|c| Resource::new(c.cluster_name.clone(), c))
            .collect(),
        type_url::LISTENER => lds::build_listeners(proxy, push)
            .iter()
            .map(|l| Resource::new(l.name.clone(), l))
            .collect(),
        type_url::ROUTE => rds::build_routes(proxy, push, names)
            .iter()
            .map(|r| Resource::new(r.name.clone(), r))
            .collect(),
        _ => Vec::new(),
    }
}
