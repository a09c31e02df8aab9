//! Endpoints of services, kept in an index apart from the PushContext so that an
//! endpoint-only change is pushed as EDS without rebuilding everything else.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use super::service::{Hostname, Provider};

/// Topology of an endpoint: `region/zone/subzone`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

impl Locality {
    /// Parses Istio's `region/zone/subzone` label form; missing parts stay empty.
    pub fn parse(s: &str) -> Locality {
        let mut parts = s.splitn(3, '/');
        Locality {
            region: parts.next().unwrap_or_default().to_string(),
            zone: parts.next().unwrap_or_default().to_string(),
            sub_zone: parts.next().unwrap_or_default().to_string(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.sub_zone.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
}

/// One workload instance behind one service port.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub address: IpAddr,
    /// The port on the workload.
    pub endpoint_port: u16,
    /// The name of the service port this endpoint serves (EndpointSlice port name).
    pub service_port_name: String,
    pub labels: BTreeMap<String, String>,
    pub locality: Locality,
    /// Load-balancing weight; 0 means the default of 1.
    pub weight: u32,
    pub health: HealthStatus,
    pub service_account: String,
    pub namespace: String,
    pub workload_name: String,
    /// `istio` when the workload has a sidecar (label `security.istio.io/tlsMode`).
    pub tls_mode: String,
}

impl Endpoint {
    /// Whether the endpoint's labels contain every given label (subset selection).
    pub fn matches_labels(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(k, v)| self.labels.get(k).is_some_and(|have| have == v))
    }
}

/// Endpoints of one service from one registry and cluster (Istio's "shard").
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ShardKey {
    pub provider: Provider,
    pub cluster: String,
}

impl ShardKey {
    pub fn kubernetes() -> ShardKey {
        ShardKey {
            provider: Provider::Kubernetes,
            cluster: "Kubernetes".to_string(),
        }
    }

    pub fn external() -> ShardKey {
        ShardKey {
            provider: Provider::External,
            cluster: "Kubernetes".to_string(),
        }
    }
}

impl std::fmt::Display for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider.as_str(), self.cluster)
    }
}

/// All endpoints of one service: shard → endpoints.
pub type ServiceShards = BTreeMap<ShardKey, Arc<Vec<Endpoint>>>;

/// hostname → namespace → shards. Writers replace a whole shard at a time; readers
/// clone out `Arc`s, so no lock is held while a push is built or sent.
#[derive(Debug, Default)]
pub struct EndpointIndex {
    shards: RwLock<HashMap<Hostname, BTreeMap<String, ServiceShards>>>,
    /// Bumped on every change, per host, so cached EDS output can tell it is stale.
    generations: RwLock<HashMap<Hostname, u64>>,
    next_generation: std::sync::atomic::AtomicU64,
}

impl EndpointIndex {
    pub fn new() -> EndpointIndex {
        EndpointIndex::default()
    }

    /// Replaces the endpoints of (host, namespace, shard). Returns whether anything changed.
    pub fn update(
        &self,
        host: &Hostname,
        namespace: &str,
        shard: ShardKey,
        endpoints: Vec<Endpoint>,
    ) -> bool {
        let changed = self.replace(host, namespace, shard, endpoints);
        if changed {
            let generation = self
                .next_generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            self.generations.write().insert(host.clone(), generation);
        }
        changed
    }

    /// Which change of a host's endpoints is current; 0 before any.
    pub fn generation(&self, host: &str) -> u64 {
        self.generations.read().get(host).copied().unwrap_or(0)
    }

    fn replace(
        &self,
        host: &Hostname,
        namespace: &str,
        shard: ShardKey,
        endpoints: Vec<Endpoint>,
    ) -> bool {
        let mut map = self.shards.write();
        let by_ns = map.entry(host.clone()).or_default();
        let shards = by_ns.entry(namespace.to_string()).or_default();
        if endpoints.is_empty() {
            let changed = shards.remove(&shard).is_some();
            if shards.is_empty() {
                by_ns.remove(namespace);
            }
            if by_ns.is_empty() {
                map.remove(host);
            }
            return changed;
        }
        if shards.get(&shard).is_some_and(|old| **old == endpoints) {
            return false;
        }
        shards.insert(shard, Arc::new(endpoints));
        true
    }

    /// Every endpoint of a service in a namespace, across shards.
    pub fn endpoints(&self, host: &str, namespace: &str) -> Vec<Arc<Vec<Endpoint>>> {
        let map = self.shards.read();
        map.get(host)
            .and_then(|by_ns| by_ns.get(namespace))
            .map(|shards| shards.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A copy of the whole index, for `/debug/endpointShardz`.
    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<String, ServiceShards>> {
        let map = self.shards.read();
        map.iter()
            .map(|(host, by_ns)| (host.to_string(), by_ns.clone()))
            .collect()
    }

    /// Hosts with at least one endpoint whose address is `ip`, with those endpoints.
    pub fn by_address(&self, ip: IpAddr) -> Vec<(Hostname, String, Endpoint)> {
        let map = self.shards.read();
        let mut out = Vec::new();
        for (host, by_ns) in map.iter() {
            for (ns, shards) in by_ns {
                for eps in shards.values() {
                    for ep in eps.iter().filter(|ep| ep.address == ip) {
                        out.push((host.clone(), ns.clone(), ep.clone()));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, version: &str) -> Endpoint {
        Endpoint {
            address: ip.parse().unwrap(),
            endpoint_port: 9080,
            service_port_name: "http".into(),
            labels: [("version".to_string(), version.to_string())].into(),
            locality: Locality::default(),
            weight: 0,
            health: HealthStatus::Healthy,
            service_account: String::new(),
            namespace: "default".into(),
            workload_name: String::new(),
            tls_mode: String::new(),
        }
    }

    #[test]
    fn update_reports_changes_only() {
        let index = EndpointIndex::new();
        let host: Hostname = "reviews.default.svc.cluster.local".into();
        assert!(index.update(
            &host,
            "default",
            ShardKey::kubernetes(),
            vec![ep("10.0.0.1", "v1")]
        ));
        assert!(!index.update(
            &host,
            "default",
            ShardKey::kubernetes(),
            vec![ep("10.0.0.1", "v1")]
        ));
        assert!(index.update(
            &host,
            "default",
            ShardKey::kubernetes(),
            vec![ep("10.0.0.2", "v1")]
        ));
        assert_eq!(index.endpoints(&host, "default")[0].len(), 1);
        assert_eq!(index.by_address("10.0.0.2".parse().unwrap()).len(), 1);
        assert!(index.update(&host, "default", ShardKey::kubernetes(), vec![]));
        assert!(index.endpoints(&host, "default").is_empty());
        assert!(index.snapshot().is_empty());
    }

    #[test]
    fn label_selection() {
        let e = ep("10.0.0.1", "v2");
        assert!(e.matches_labels(&[("version".to_string(), "v2".to_string())].into()));
        assert!(!e.matches_labels(&[("version".to_string(), "v1".to_string())].into()));
        assert!(e.matches_labels(&BTreeMap::new()));
    }

    #[test]
    fn locality_parse() {
        let l = Locality::parse("us-east1/us-east1-b");
        assert_eq!(l.region, "us-east1");
        assert_eq!(l.zone, "us-east1-b");
        assert!(l.sub_zone.is_empty());
    }
}
