//! An upstream host: its endpoint attributes plus counters that outlive any one host set.
//!
//! A new EDS update builds new [`Host`] values (weights or health may have changed) but a
//! host whose address persists keeps its [`HostStats`], so in-flight guards, least-request
//! balancing and outlier state stay correct across updates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::config::endpoint::{EndpointMetadata, Health, LbEndpoint, Locality};

use super::cluster_state::ClusterStats;
use super::outlier::OutlierHostState;

/// Counters shared by every snapshot that contains the host's address.
#[derive(Debug, Default)]
pub struct HostStats {
    active_requests: AtomicU64,
    active_connections: AtomicU64,
    total_requests: AtomicU64,
    total_connections: AtomicU64,
    /// Set while outlier detection has ejected the host.
    ejected: AtomicBool,
    pub(crate) outlier: OutlierHostState,
    /// The `cluster.<name>.*` counters the host's connections and requests also count
    /// in; set when the cluster first picks the host.
    cluster: OnceLock<Arc<ClusterStats>>,
}

impl HostStats {
    pub fn active_requests(&self) -> u64 {
        self.active_requests.load(Ordering::Relaxed)
    }

    pub fn active_connections(&self) -> u64 {
        self.active_connections.load(Ordering::Relaxed)
    }

    pub fn total_requests(&self) -> u64 {
        self.total_requests.load(Ordering::Relaxed)
    }

    pub fn total_connections(&self) -> u64 {
        self.total_connections.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    pub(crate) fn set_ejected(&self, ejected: bool) {
        self.ejected.store(ejected, Ordering::Release);
    }

    /// Ties the host to its cluster's counters (once; a host belongs to one cluster).
    pub(crate) fn bind_cluster(&self, stats: &Arc<ClusterStats>) {
        if self.cluster.get().is_none() {
            let _ = self.cluster.set(stats.clone());
        }
    }

    fn cluster(&self) -> Option<Arc<ClusterStats>> {
        self.cluster.get().cloned()
    }
}

#[derive(Debug)]
pub struct Host {
    address: SocketAddr,
    weight: u32,
    health: Health,
    priority: u32,
    locality: Locality,
    locality_weight: Option<u32>,
    metadata: EndpointMetadata,
    hash_key: String,
    stats: Arc<HostStats>,
}

impl Host {
    /// A host for `endpoint`, sharing `stats` with earlier incarnations when given.
    pub fn new(endpoint: &LbEndpoint, stats: Option<Arc<HostStats>>) -> Self {
        Host {
            address: endpoint.address,
            // Envoy rejects weight 0; treat it as the default rather than starving the host.
            weight: endpoint.weight.max(1),
            health: endpoint.health,
            priority: endpoint.priority,
            locality: endpoint.locality.clone(),
            locality_weight: endpoint.locality_weight,
            hash_key: hash_key(endpoint),
            metadata: endpoint.metadata.clone(),
            stats: stats.unwrap_or_default(),
        }
    }

    /// A host that exists only because a connection asked for it (ORIGINAL_DST).
    pub fn on_demand(address: SocketAddr) -> Self {
        Host::new(
            &LbEndpoint {
                address,
                weight: 1,
                health: Health::Healthy,
                locality: Locality::default(),
                priority: 0,
                locality_weight: None,
                metadata: EndpointMetadata::default(),
            },
            None,
        )
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The health EDS (or the static config) reported.
    pub fn health(&self) -> Health {
        self.health
    }

    pub fn priority(&self) -> u32 {
        self.priority
    }

    pub fn locality(&self) -> &Locality {
        &self.locality
    }

    /// The locality's `load_balancing_weight` (carried, not yet used: locality-weighted
    /// balancing is not implemented).
    pub fn locality_weight(&self) -> Option<u32> {
        self.locality_weight
    }

    pub fn metadata(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.metadata
    }

    /// What consistent-hash balancers place on their ring/table for this host.
    pub fn hash_key(&self) -> &str {
        &self.hash_key
    }

    pub fn stats(&self) -> &Arc<HostStats> {
        &self.stats
    }

    /// Routable per EDS and not ejected by outlier detection.
    pub fn is_healthy(&self) -> bool {
        self.health.is_routable() && !self.stats.is_ejected()
    }

    /// Counts a request as active on this host (and its cluster) until the guard drops.
    pub fn start_request(&self) -> RequestGuard {
        self.stats.total_requests.fetch_add(1, Ordering::Relaxed);
        self.stats.active_requests.fetch_add(1, Ordering::Relaxed);
        let cluster = self.stats.cluster();
        if let Some(c) = &cluster {
            c.request_started();
        }
        RequestGuard {
            host: self.stats.clone(),
            cluster,
        }
    }

    /// Counts an open connection to this host (and its cluster) until the guard drops.
    pub fn start_connection(&self) -> ConnectionGuard {
        self.stats.total_connections.fetch_add(1, Ordering::Relaxed);
        self.stats
            .active_connections
            .fetch_add(1, Ordering::Relaxed);
        let cluster = self.stats.cluster();
        if let Some(c) = &cluster {
            c.connection_opened();
        }
        ConnectionGuard {
            host: self.stats.clone(),
            cluster,
            opened: Instant::now(),
        }
    }

    /// The endpoint this host was built from (used to carry DNS results over a cluster
    /// config change).
    pub fn to_endpoint(&self) -> LbEndpoint {
        LbEndpoint {
            address: self.address,
            weight: self.weight,
            health: self.health,
            locality: self.locality.clone(),
            priority: self.priority,
            locality_weight: self.locality_weight,
            metadata: self.metadata.clone(),
        }
    }
}

/// Envoy lets `filter_metadata["envoy.lb"].hash_key` replace the address as the host's
/// consistent-hash key (handy for StatefulSets whose pod IPs change).
fn hash_key(endpoint: &LbEndpoint) -> String {
    endpoint
        .metadata
        .get("envoy.lb")
        .and_then(|lb| lb.get("hash_key"))
        .and_then(|key| key.as_str())
        .map_or_else(|| endpoint.address.to_string(), str::to_owned)
}

#[must_use = "the request stops counting as active when the guard drops"]
#[derive(Debug)]
pub struct RequestGuard {
    host: Arc<HostStats>,
    /// The cluster counted at the start, so the end is counted in the same place.
    cluster: Option<Arc<ClusterStats>>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.host.active_requests.fetch_sub(1, Ordering::Relaxed);
        if let Some(c) = &self.cluster {
            c.request_ended();
        }
    }
}

#[must_use = "the connection stops counting as active when the guard drops"]
#[derive(Debug)]
pub struct ConnectionGuard {
    host: Arc<HostStats>,
    cluster: Option<Arc<ClusterStats>>,
    opened: Instant,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.host.active_connections.fetch_sub(1, Ordering::Relaxed);
        if let Some(c) = &self.cluster {
            c.connection_closed(self.opened.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::test_util::endpoint;

    #[test]
    fn guards_count_active_and_total() {
        let host = Host::new(&endpoint("10.0.0.1:80"), None);
        let a = host.start_request();
        let b = host.start_request();
        let c = host.start_connection();
        assert_eq!(host.stats().active_requests(), 2);
        assert_eq!(host.stats().active_connections(), 1);
        drop(a);
        drop(c);
        assert_eq!(host.stats().active_requests(), 1);
        assert_eq!(host.stats().active_connections(), 0);
        drop(b);
        assert_eq!(host.stats().active_requests(), 0);
        assert_eq!(host.stats().total_requests(), 2);
        assert_eq!(host.stats().total_connections(), 1);
    }

    #[test]
    fn hash_key_defaults_to_address_and_honours_envoy_lb_metadata() {
        let mut ep = endpoint("10.0.0.1:80");
        assert_eq!(Host::new(&ep, None).hash_key(), "10.0.0.1:80");
        std::sync::Arc::make_mut(&mut ep.metadata)
            .insert("envoy.lb".into(), serde_json::json!({"hash_key": "pod-0"}));
        assert_eq!(Host::new(&ep, None).hash_key(), "pod-0");
    }

    #[test]
    fn zero_weight_becomes_one_and_ejection_makes_unhealthy() {
        let mut ep = endpoint("10.0.0.1:80");
        ep.weight = 0;
        let host = Host::new(&ep, None);
        assert_eq!(host.weight(), 1);
        assert!(host.is_healthy());
        host.stats().set_ejected(true);
        assert!(!host.is_healthy());
    }
}
