//! xDS: the generators that turn (Proxy, PushContext) into Envoy resources, and the
//! ADS server that delivers them.

pub mod ads;
pub mod cache;
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
/// Unknown types yield nothing. Results are shared through the PushContext's cache
/// between proxies that see the same thing.
pub fn generate(
    type_url: &str,
    proxy: &Proxy,
    push: &PushContext,
    names: &[String],
) -> Vec<Resource> {
    match type_url {
        type_url::ENDPOINT => generate_endpoints(proxy, push, names),
        type_url::CLUSTER | type_url::ROUTE => {
            let key = cache::view_key(type_url, proxy, names);
            if let Some(hit) = push.xds_cache.response(&key) {
                return hit.as_ref().clone();
            }
            let resources = generate_uncached(type_url, proxy, push, names);
            push.xds_cache
                .put_response(key, std::sync::Arc::new(resources.clone()));
            resources
        }
        _ => generate_uncached(type_url, proxy, push, names),
    }
}

/// EDS, per cluster: an entry stays valid while its host's endpoints are unchanged.
fn generate_endpoints(proxy: &Proxy, push: &PushContext, names: &[String]) -> Vec<Resource> {
    let mut out = Vec::with_capacity(names.len());
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for name in names {
        if !seen.insert(name.as_str()) {
            continue;
        }
        let generation = crate::model::service::parse_cluster_name(name)
            .map_or(0, |k| push.endpoints.generation(k.host));
        if let Some(hit) = push.xds_cache.endpoint(name, proxy, generation) {
            out.push(hit);
            continue;
        }
        for cla in eds::build_endpoints(proxy, push, std::slice::from_ref(name)) {
            let resource = Resource::new(cla.cluster_name.clone(), &cla);
            push.xds_cache
                .put_endpoint(name, proxy, generation, resource.clone());
            out.push(resource);
        }
    }
    out
}

fn generate_uncached(
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
