//! One xDS resource, from its type URL and bytes to its converted form.

use prost::Message;
use strait_proto::envoy::config::cluster::v3::Cluster as PbCluster;
use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment as PbCla;
use strait_proto::envoy::config::listener::v3::Listener as PbListener;
use strait_proto::envoy::config::route::v3::RouteConfiguration as PbRouteConfig;
use strait_proto::xds::type_url;

use super::{cluster, endpoint, listener, route_config};
use crate::config::cluster::Cluster;
use crate::config::endpoint::ClusterLoadAssignment;
use crate::config::error::{Ctx, Result};
use crate::config::listener::Listener;
use crate::config::route::RouteConfig;

#[derive(Clone, Debug)]
pub enum Resource {
    Listener(Listener),
    RouteConfig(RouteConfig),
    Cluster(Cluster),
    ClusterLoadAssignment(ClusterLoadAssignment),
}

impl Resource {
    pub fn name(&self) -> &str {
        match self {
            Resource::Listener(l) => &l.name,
            Resource::RouteConfig(r) => &r.name,
            Resource::Cluster(c) => &c.name,
            Resource::ClusterLoadAssignment(c) => &c.cluster_name,
        }
    }
}

/// Decodes and converts a resource of one of the four types strait-proxy consumes.
pub fn decode(url: &str, bytes: &[u8]) -> Result<Resource> {
    match url {
        type_url::LISTENER => {
            let l = decode_as::<PbListener>("Listener", bytes)?;
            listener::listener(&l).map(Resource::Listener)
        }
        type_url::ROUTE => {
            let r = decode_as::<PbRouteConfig>("RouteConfiguration", bytes)?;
            route_config::route_config(&r).map(Resource::RouteConfig)
        }
        type_url::CLUSTER => {
            let c = decode_as::<PbCluster>("Cluster", bytes)?;
            cluster::cluster(&c).map(Resource::Cluster)
        }
        type_url::ENDPOINT => {
            let c = decode_as::<PbCla>("ClusterLoadAssignment", bytes)?;
            endpoint::cluster_load_assignment(&c).map(Resource::ClusterLoadAssignment)
        }
        other => Err(Ctx::new("resource", "-").error(format!("unsupported type URL '{other}'"))),
    }
}

fn decode_as<M: Message + Default>(kind: &str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| Ctx::new(kind, "-").error(format!("cannot decode: {e}")))
}
