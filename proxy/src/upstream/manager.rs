//! The cluster manager: every cluster's run-time state by name, rebuilt from CDS and EDS.
//!
//! Readers (workers) get a lock-free snapshot of the name → state map. Updates come from
//! the xDS client: a cluster whose config did not change keeps its state (counters,
//! breakers, balancer position, ejections); a changed one gets a new state that keeps its
//! hosts' counters; a removed one is dropped (connections using it keep their `Arc`).
//! EDS assignments are kept by service name, so a cluster that is added or changed
//! later starts with the endpoints already known for it.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::config::cluster::{Cluster, Discovery};
use crate::config::endpoint::{ClusterLoadAssignment, LbEndpoint};

use super::cluster_state::ClusterState;
use super::random::RandomSource;

pub type ClusterMap = HashMap<String, Arc<ClusterState>>;

/// What an update did, by cluster name (sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterChanges {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug)]
pub struct ClusterManager {
    clusters: ArcSwap<ClusterMap>,
    /// EDS endpoints by service name; the lock also serializes all updates.
    assignments: Mutex<HashMap<String, Vec<LbEndpoint>>>,
    rng: Arc<dyn RandomSource>,
}

/// The EDS service name of a cluster, if it uses EDS.
fn eds_service_name(cluster: &Cluster) -> Option<&str> {
    match &cluster.discovery {
        Discovery::Eds { service_name } if service_name.is_empty() => Some(&cluster.name),
        Discovery::Eds { service_name } => Some(service_name),
        _ => None,
    }
}

impl ClusterManager {
    pub fn new(rng: Arc<dyn RandomSource>) -> Self {
        ClusterManager {
            clusters: ArcSwap::from_pointee(HashMap::new()),
            assignments: Mutex::new(HashMap::new()),
            rng,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<ClusterState>> {
        self.clusters.load().get(name).cloned()
    }

    /// All clusters at this moment (admin `/clusters`, stats).
    pub fn snapshot(&self) -> Arc<ClusterMap> {
        self.clusters.load_full()
    }

    /// Applies a complete set of clusters (state-of-the-world CDS): clusters not in it
    /// are removed.
    pub fn update_clusters(
        &self,
        clusters: impl IntoIterator<Item = Arc<Cluster>>,
    ) -> ClusterChanges {
        let clusters: Vec<Arc<Cluster>> = clusters.into_iter().collect();
        let mut assignments = self.assignments.lock();
        let removed: Vec<String> = self
            .clusters
            .load()
            .keys()
            .filter(|name| !clusters.iter().any(|c| &c.name == *name))
            .cloned()
            .collect();
        self.apply_locked(&mut assignments, clusters, &removed)
    }

    /// Applies added or changed clusters and removals by name (delta CDS).
    pub fn apply(&self, upserts: Vec<Arc<Cluster>>, removals: &[String]) -> ClusterChanges {
        let mut assignments = self.assignments.lock();
        self.apply_locked(&mut assignments, upserts, removals)
    }

    fn apply_locked(
        &self,
        assignments: &mut HashMap<String, Vec<LbEndpoint>>,
        upserts: Vec<Arc<Cluster>>,
        removals: &[String],
    ) -> ClusterChanges {
        let mut next: ClusterMap = (**self.clusters.load()).clone();
        let mut changes = ClusterChanges::default();
        for name in removals {
            if next.remove(name).is_some() {
                changes.removed.push(name.clone());
            }
        }
        for config in upserts {
            let previous = next.get(&config.name);
            if previous.is_some_and(|p| **p.config() == *config) {
                continue;
            }
            let previous = previous.map(Arc::as_ref);
            let endpoints = initial_endpoints(&config, previous, assignments);
            let mut state =
                ClusterState::replacing(config.clone(), &endpoints, previous, self.rng.clone());
            if previous.is_none()
                && let Some(twin) = next
                    .values()
                    .find(|other| other.stat_name() == state.stat_name())
            {
                state = state.sharing_stats(twin.shared_stats().clone());
            }
            if previous.is_some() {
                changes.updated.push(config.name.clone());
            } else {
                changes.added.push(config.name.clone());
            }
            next.insert(config.name.clone(), Arc::new(state));
        }
        // Forget endpoints no cluster asks for any more; EDS resends them with the cluster.
        assignments.retain(|service, _| {
            next.values()
                .any(|s| eds_service_name(s.config()) == Some(service))
        });
        self.clusters.store(Arc::new(next));
        changes.added.sort();
        changes.updated.sort();
        changes.removed.sort();
        changes
    }

    /// An EDS `ClusterLoadAssignment`: updates every cluster using that service name.
    pub fn update_assignment(&self, assignment: ClusterLoadAssignment) {
        let mut assignments = self.assignments.lock();
        if assignments.get(&assignment.cluster_name) == Some(&assignment.endpoints) {
            return;
        }
        for state in self.clusters.load().values() {
            if eds_service_name(state.config()) == Some(assignment.cluster_name.as_str()) {
                state.update_endpoints(&assignment.endpoints);
            }
        }
        assignments.insert(assignment.cluster_name, assignment.endpoints);
    }

    /// An EDS resource was removed: its clusters have no endpoints any more.
    pub fn remove_assignment(&self, service_name: &str) {
        let mut assignments = self.assignments.lock();
        if assignments.remove(service_name).is_none() {
            return;
        }
        for state in self.clusters.load().values() {
            if eds_service_name(state.config()) == Some(service_name) {
                state.update_endpoints(&[]);
            }
        }
    }
}

/// Endpoints a new state starts with: the static ones, the known EDS assignment, or —
/// for DNS clusters whose discovery did not change — the previous answer until the next
/// resolution.
fn initial_endpoints(
    config: &Cluster,
    previous: Option<&ClusterState>,
    assignments: &HashMap<String, Vec<LbEndpoint>>,
) -> Vec<LbEndpoint> {
    match &config.discovery {
        Discovery::Static(endpoints) => endpoints.clone(),
        Discovery::Eds { .. } => eds_service_name(config)
            .and_then(|name| assignments.get(name))
            .cloned()
            .unwrap_or_default(),
        Discovery::Dns { .. } => previous
            .filter(|p| p.config().discovery == config.discovery)
            .map(|p| p.hosts().hosts().iter().map(|h| h.to_endpoint()).collect())
            .unwrap_or_default(),
        Discovery::OriginalDst => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::{LbPolicy, Thresholds};
    use crate::upstream::SeededRandom;
    use crate::upstream::lb::LbContext;
    use crate::upstream::test_util::{addr, cluster, eds, endpoint, endpoints_at};
    use std::time::Duration;

    fn manager() -> ClusterManager {
        ClusterManager::new(SeededRandom::shared(1))
    }

    fn rr(name: &str) -> Arc<Cluster> {
        Arc::new(cluster(name, LbPolicy::RoundRobin, eds(name)))
    }

    fn cla(service: &str, endpoints: Vec<LbEndpoint>) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: service.into(),
            endpoints,
        }
    }

    #[test]
    fn unchanged_clusters_keep_their_state() {
        let m = manager();
        let changes = m.update_clusters([rr("a"), rr("b")]);
        assert_eq!(changes.added, ["a", "b"]);
        m.update_assignment(cla("a", endpoints_at(0, 2)));
        let a = m.get("a").unwrap();
        let held = a.breakers().try_acquire_request().unwrap();

        let mut changed_b = cluster("b", LbPolicy::Random, eds("b"));
        changed_b.connect_timeout = Duration::from_secs(1);
        let changes = m.update_clusters([rr("a"), Arc::new(changed_b), rr("c")]);
        assert_eq!(
            changes,
            ClusterChanges {
                added: vec!["c".into()],
                updated: vec!["b".into()],
                removed: vec![]
            }
        );
        let a_again = m.get("a").unwrap();
        assert!(Arc::ptr_eq(&a, &a_again));
        assert_eq!(a_again.breakers().stats().requests, 1);
        assert_eq!(a_again.hosts().hosts().len(), 2);
        drop(held);

        let changes = m.update_clusters([rr("a")]);
        assert_eq!(changes.removed, ["b", "c"]);
        assert!(m.get("b").is_none());
        assert_eq!(m.snapshot().len(), 1);
    }

    #[test]
    fn clusters_with_one_stat_name_share_their_counters() {
        let m = manager();
        let mut inbound = cluster(
            "InboundPassthroughCluster",
            LbPolicy::ClusterProvided,
            Discovery::OriginalDst,
        );
        inbound.stat_name = Some("PassthroughCluster;".into());
        let mut outbound = cluster(
            "PassthroughCluster",
            LbPolicy::ClusterProvided,
            Discovery::OriginalDst,
        );
        outbound.stat_name = Some("PassthroughCluster;".into());
        m.update_clusters([Arc::new(inbound), Arc::new(outbound), rr("other")]);
        let ctx = LbContext {
            original_dst: Some(addr("10.0.0.9:80")),
            ..LbContext::default()
        };
        let out = m.get("PassthroughCluster").unwrap();
        let _open = out.choose_host(&ctx).unwrap().start_connection();
        let inb = m.get("InboundPassthroughCluster").unwrap();
        let _open_too = inb.choose_host(&ctx).unwrap().start_connection();
        for name in ["PassthroughCluster", "InboundPassthroughCluster"] {
            let total = m
                .get(name)
                .unwrap()
                .stats()
                .upstream_cx_total
                .load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(total, 2, "{name}");
        }
        let other = m.get("other").unwrap();
        assert_eq!(
            other
                .stats()
                .upstream_cx_total
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn eds_assignments_reach_clusters_by_service_name() {
        let m = manager();
        // Arrives before the cluster: kept and used when the cluster appears.
        m.update_assignment(cla("outbound|80||svc", vec![endpoint("10.0.0.1:80")]));
        let c1 = Arc::new(cluster(
            "one",
            LbPolicy::RoundRobin,
            eds("outbound|80||svc"),
        ));
        let c2 = Arc::new(cluster(
            "two",
            LbPolicy::RoundRobin,
            eds("outbound|80||svc"),
        ));
        m.update_clusters([c1, c2]);
        assert_eq!(m.get("one").unwrap().hosts().hosts().len(), 1);
        assert_eq!(m.get("two").unwrap().hosts().hosts().len(), 1);

        m.update_assignment(cla(
            "outbound|80||svc",
            vec![endpoint("10.0.0.1:80"), endpoint("10.0.0.2:80")],
        ));
        assert_eq!(m.get("one").unwrap().hosts().hosts().len(), 2);
        assert_eq!(m.get("two").unwrap().hosts().hosts().len(), 2);

        m.remove_assignment("outbound|80||svc");
        assert!(
            m.get("one")
                .unwrap()
                .choose_host(&LbContext::default())
                .is_err()
        );
    }

    #[test]
    fn changed_cluster_keeps_endpoints_and_host_counters() {
        let m = manager();
        m.update_clusters([rr("a")]);
        m.update_assignment(cla("a", vec![endpoint("10.0.0.1:80")]));
        let host = m
            .get("a")
            .unwrap()
            .choose_host(&LbContext::default())
            .unwrap();
        let guard = host.start_request();

        let mut changed = cluster("a", LbPolicy::LeastRequest { choice_count: 2 }, eds("a"));
        changed.thresholds = Thresholds {
            max_requests: 5,
            ..Thresholds::default()
        };
        m.update_clusters([Arc::new(changed)]);
        let state = m.get("a").unwrap();
        let same = state.hosts().find(addr("10.0.0.1:80")).unwrap().clone();
        assert_eq!(same.stats().active_requests(), 1);
        assert_eq!(state.breakers().thresholds().max_requests, 5);
        drop(guard);
        assert_eq!(same.stats().active_requests(), 0);
    }

    #[test]
    fn static_clusters_and_pruned_assignments() {
        let m = manager();
        let s = Arc::new(cluster(
            "static",
            LbPolicy::RoundRobin,
            Discovery::Static(vec![endpoint("127.0.0.1:9000")]),
        ));
        m.update_clusters([s, rr("gone")]);
        m.update_assignment(cla("gone", vec![endpoint("10.0.0.1:80")]));
        let host = m
            .get("static")
            .unwrap()
            .choose_host(&LbContext::default())
            .unwrap();
        assert_eq!(host.address(), addr("127.0.0.1:9000"));

        m.update_clusters([m.get("static").unwrap().config().clone()]);
        // The assignment for the removed cluster is gone: re-adding starts empty.
        m.update_clusters([m.get("static").unwrap().config().clone(), rr("gone")]);
        assert!(m.get("gone").unwrap().hosts().is_empty());
    }
}
