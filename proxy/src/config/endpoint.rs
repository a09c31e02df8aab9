//! Endpoints of a cluster, from EDS or a static load assignment.

use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Healthy,
    Unhealthy,
    Draining,
    Degraded,
}

impl Health {
    /// Envoy sends traffic to UNKNOWN and HEALTHY (and DEGRADED as a fallback) hosts.
    pub fn is_routable(self) -> bool {
        matches!(self, Health::Unknown | Health::Healthy)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LbEndpoint {
    pub address: SocketAddr,
    /// `load_balancing_weight`, default 1.
    pub weight: u32,
    pub health: Health,
    pub locality: Locality,
    /// Locality priority (0 is highest).
    pub priority: u32,
    /// `load_balancing_weight` of the endpoint's locality (locality-weighted LB); `None`
    /// when the locality sets none.
    pub locality_weight: Option<u32>,
    /// `filter_metadata` as JSON, e.g. `istio` workload info; shared with the hosts
    /// made from it rather than copied (it is most of an endpoint's memory).
    pub metadata: EndpointMetadata,
}

/// An endpoint's `filter_metadata` by filter name.
pub type EndpointMetadata = std::sync::Arc<BTreeMap<String, serde_json::Value>>;

/// A ClusterLoadAssignment, flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterLoadAssignment {
    pub cluster_name: String,
    pub endpoints: Vec<LbEndpoint>,
}
