//! What a finished request needs to know about its upstream cluster, looked up once by
//! cluster name: the counters to charge the response to, the Istio service the cluster
//! serves (its `istio.services` metadata) and the Istio identity of each endpoint
//! (`istio.workload`). Rebuilt by the applier after CDS and EDS updates.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde_json::Value;

use crate::stats::{PeerLabels, ServiceLabels};
use crate::upstream::{ClusterManager, ClusterState, ClusterStats};

#[derive(Debug)]
pub struct ClusterTelemetry {
    pub stats: Arc<ClusterStats>,
    /// The first service of `istio.services`: the destination service of its requests.
    pub service: Option<Arc<ServiceLabels>>,
    peers: HashMap<SocketAddr, Arc<PeerLabels>>,
}

impl ClusterTelemetry {
    /// The Istio identity of the endpoint at `address`.
    pub fn peer(&self, address: SocketAddr) -> Option<&Arc<PeerLabels>> {
        self.peers.get(&address)
    }
}

/// The service of a cluster's `filter_metadata["istio"]`, as Istio's stats filter
/// reads it.
pub fn service_of(istio: &Value) -> Option<ServiceLabels> {
    let service = istio.get("services")?.as_array()?.first()?;
    let host = service.get("host").and_then(Value::as_str)?.to_string();
    let name = match service.get("name").and_then(Value::as_str) {
        Some(n) => n.to_string(),
        None => host.split('.').next().unwrap_or_default().to_string(),
    };
    Some(ServiceLabels { host, name })
}

#[derive(Debug, Default)]
pub struct UpstreamTable {
    by_name: ArcSwap<HashMap<String, Arc<ClusterTelemetry>>>,
    /// Cluster services by cluster name, from CDS.
    services: Mutex<HashMap<String, Arc<ServiceLabels>>>,
}

fn build(state: &ClusterState, service: Option<Arc<ServiceLabels>>) -> ClusterTelemetry {
    let peers = state
        .hosts()
        .hosts()
        .iter()
        .filter_map(|h| {
            PeerLabels::from_endpoint_metadata(h.metadata()).map(|p| (h.address(), Arc::new(p)))
        })
        .collect();
    ClusterTelemetry {
        stats: state.shared_stats().clone(),
        service,
        peers,
    }
}

impl UpstreamTable {
    /// One map lookup; the entry stays valid after later updates (it is an `Arc`).
    pub fn get(&self, cluster: &str) -> Option<Arc<ClusterTelemetry>> {
        self.by_name.load().get(cluster).cloned()
    }

    /// Records the services clusters declare (`None` forgets a cluster's).
    pub fn set_services(
        &self,
        services: impl IntoIterator<Item = (String, Option<ServiceLabels>)>,
    ) {
        let mut known = self.services.lock();
        for (cluster, service) in services {
            match service {
                Some(s) => known.insert(cluster, Arc::new(s)),
                None => known.remove(&cluster),
            };
        }
    }

    /// Rebuilds every entry from the cluster manager's current clusters.
    pub fn rebuild(&self, manager: &ClusterManager) {
        let services = self.services.lock();
        let clusters = manager.snapshot();
        let table = clusters
            .iter()
            .map(|(name, state)| {
                let entry = build(state, services.get(name).cloned());
                (name.clone(), Arc::new(entry))
            })
            .collect();
        self.by_name.store(Arc::new(table));
    }

    /// Rebuilds the entries of clusters whose endpoints may have changed.
    pub fn refresh(&self, manager: &ClusterManager, clusters: &[String]) {
        if clusters.is_empty() {
            return;
        }
        let services = self.services.lock();
        let mut table = (**self.by_name.load()).clone();
        for name in clusters {
            match manager.get(name) {
                Some(state) => {
                    let entry = build(&state, services.get(name).cloned());
                    table.insert(name.clone(), Arc::new(entry));
                }
                None => {
                    table.remove(name);
                }
            }
        }
        self.by_name.store(Arc::new(table));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::config::cluster::LbPolicy;
    use crate::config::endpoint::{ClusterLoadAssignment, Health, LbEndpoint};
    use crate::upstream::{SeededRandom, test_util};

    #[test]
    fn services_and_endpoint_identities() {
        let name = "outbound|9080||reviews.default.svc.cluster.local";
        let manager = ClusterManager::new(SeededRandom::shared(1));
        manager.update_clusters([Arc::new(test_util::cluster(
            name,
            LbPolicy::RoundRobin,
            test_util::eds(name),
        ))]);
        let address: SocketAddr = "10.1.0.7:9080".parse().unwrap();
        manager.update_assignment(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LbEndpoint {
                address,
                weight: 1,
                health: Health::Healthy,
                locality: Default::default(),
                priority: 0,
                locality_weight: None,
                metadata: BTreeMap::from([(
                    "istio".to_string(),
                    json!({"workload": "reviews-v1;default;reviews;v1;Kubernetes"}),
                )])
                .into(),
            }],
        });
        let table = UpstreamTable::default();
        let istio = json!({"services": [{"host": "reviews.default.svc.cluster.local", "name": "reviews", "namespace": "default"}]});
        table.set_services([(name.to_string(), service_of(&istio))]);
        table.rebuild(&manager);
        let entry = table.get(name).unwrap();
        assert_eq!(
            entry.service.as_deref().unwrap().host,
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(entry.peer(address).unwrap().workload, "reviews-v1");
        assert!(table.get("missing").is_none());
        assert_eq!(
            service_of(&json!({"services": [{"host": "a.b.svc"}]}))
                .unwrap()
                .name,
            "a"
        );

        manager.update_assignment(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![],
        });
        table.refresh(&manager, &[name.to_string()]);
        assert!(table.get(name).unwrap().peer(address).is_none());
    }
}
