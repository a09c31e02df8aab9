//! `cluster.<name>.*` and `cluster_manager.*`: read from the cluster manager's live
//! state (cluster counters, breakers, hosts, outlier detection) whenever stats print, so
//! the data plane keeps bumping its own atomics and nothing is copied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::store::{Collector, StatsSource};
use crate::config::endpoint::Health;
use crate::upstream::{ClusterManager, ClusterState};

/// Reports every cluster of a [`ClusterManager`].
#[derive(Debug)]
pub struct ClusterStatsSource {
    manager: Arc<ClusterManager>,
}

impl ClusterStatsSource {
    pub fn new(manager: Arc<ClusterManager>) -> ClusterStatsSource {
        ClusterStatsSource { manager }
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Every stat of one cluster, under `cluster.<stat name>`.
pub fn collect_cluster(state: &ClusterState, out: &mut Collector<'_>) {
    let scope = format!("cluster.{}", state.stat_name());
    let s = state.stats();
    let b = state.breakers().stats();
    out.counter(
        format!("{scope}.upstream_rq_total"),
        s.upstream_rq_total(b.pending_resource_overflow),
    );
    out.counter(
        format!("{scope}.upstream_rq_retry"),
        load(&s.upstream_rq_retry) + b.upstream_rq_retry,
    );
    out.counter(
        format!("{scope}.upstream_rq_pending_total"),
        load(&s.upstream_rq_pending_total) + b.upstream_rq_pending_total,
    );
    let counters: [(&str, &AtomicU64); 17] = [
        ("upstream_cx_none_healthy", &s.upstream_cx_none_healthy),
        ("lb_healthy_panic", &s.lb_healthy_panic),
        ("membership_change", &s.membership_change),
        ("update_empty", &s.update_empty),
        ("upstream_cx_total", &s.upstream_cx_total),
        ("upstream_cx_connect_fail", &s.upstream_cx_connect_fail),
        (
            "upstream_cx_connect_timeout",
            &s.upstream_cx_connect_timeout,
        ),
        ("upstream_cx_destroy", &s.upstream_cx_destroy),
        ("upstream_cx_rx_bytes_total", &s.upstream_cx_rx_bytes_total),
        ("upstream_cx_tx_bytes_total", &s.upstream_cx_tx_bytes_total),
        ("upstream_rq_timeout", &s.upstream_rq_timeout),
        (
            "upstream_rq_per_try_timeout",
            &s.upstream_rq_per_try_timeout,
        ),
        ("upstream_rq_retry_success", &s.upstream_rq_retry_success),
        (
            "upstream_rq_retry_limit_exceeded",
            &s.upstream_rq_retry_limit_exceeded,
        ),
        ("upstream_rq_rx_reset", &s.upstream_rq_rx_reset),
        ("upstream_rq_tx_reset", &s.upstream_rq_tx_reset),
        ("upstream_rq_cancelled", &s.upstream_rq_cancelled),
    ];
    for (name, c) in counters {
        out.counter(format!("{scope}.{name}"), load(c));
    }
    s.upstream_rq.collect(out, &scope, "upstream_rq");
    out.histogram(format!("{scope}.upstream_rq_time"), &s.upstream_rq_time);
    out.histogram(
        format!("{scope}.upstream_cx_connect_ms"),
        &s.upstream_cx_connect_ms,
    );
    out.histogram(
        format!("{scope}.upstream_cx_length_ms"),
        &s.upstream_cx_length_ms,
    );
    out.gauge(
        format!("{scope}.upstream_rq_pending_active"),
        load(&s.upstream_rq_pending_active) + b.pending_requests,
    );
    out.counter(
        format!("{scope}.upstream_cx_overflow"),
        b.upstream_cx_overflow,
    );
    out.counter(
        format!("{scope}.upstream_rq_pending_overflow"),
        b.upstream_rq_pending_overflow,
    );
    out.counter(
        format!("{scope}.upstream_rq_retry_overflow"),
        b.upstream_rq_retry_overflow,
    );
    let cb = format!("{scope}.circuit_breakers.default");
    out.gauge(
        format!("{cb}.cx_open"),
        u64::from(b.remaining_connections == 0),
    );
    out.gauge(
        format!("{cb}.cx_pool_open"),
        u64::from(b.remaining_connections == 0),
    );
    out.gauge(
        format!("{cb}.rq_pending_open"),
        u64::from(b.remaining_pending_requests == 0),
    );
    out.gauge(
        format!("{cb}.rq_open"),
        u64::from(b.remaining_requests == 0),
    );
    out.gauge(
        format!("{cb}.rq_retry_open"),
        u64::from(b.remaining_retries == 0),
    );
    out.gauge(format!("{cb}.remaining_cx"), b.remaining_connections);
    out.gauge(
        format!("{cb}.remaining_pending"),
        b.remaining_pending_requests,
    );
    out.gauge(format!("{cb}.remaining_rq"), b.remaining_requests);
    out.gauge(format!("{cb}.remaining_retries"), b.remaining_retries);

    let hosts = state.hosts();
    let extra = state.original_dst_hosts();
    let all = hosts.hosts().iter().chain(extra.iter());
    let (mut total, mut healthy, mut degraded) = (0, 0, 0);
    for h in all {
        total += 1;
        if h.is_healthy() {
            healthy += 1;
        }
        if h.health() == Health::Degraded {
            degraded += 1;
        }
    }
    // Kept by the connection and request guards, so hosts that left the set (or
    // ORIGINAL_DST hosts already cleaned up) still count while they are in use.
    out.gauge(
        format!("{scope}.upstream_cx_active"),
        load(&s.upstream_cx_active),
    );
    out.gauge(
        format!("{scope}.upstream_rq_active"),
        load(&s.upstream_rq_active),
    );
    out.gauge(format!("{scope}.membership_total"), total);
    out.gauge(format!("{scope}.membership_healthy"), healthy);
    out.gauge(format!("{scope}.membership_degraded"), degraded);
    out.gauge(format!("{scope}.membership_excluded"), 0);

    if let Some(outlier) = state.outlier() {
        let o = outlier.stats();
        let od = format!("{scope}.outlier_detection");
        out.gauge(
            format!("{od}.ejections_active"),
            count(state.ejections_active()),
        );
        for (name, c) in [
            ("ejections_enforced_total", &o.ejections_enforced_total),
            ("ejections_overflow", &o.ejections_overflow),
            (
                "ejections_enforced_consecutive_5xx",
                &o.ejections_enforced_consecutive_5xx,
            ),
            (
                "ejections_detected_consecutive_5xx",
                &o.ejections_detected_consecutive_5xx,
            ),
            (
                "ejections_enforced_consecutive_gateway_failure",
                &o.ejections_enforced_consecutive_gateway_failure,
            ),
            (
                "ejections_detected_consecutive_gateway_failure",
                &o.ejections_detected_consecutive_gateway_failure,
            ),
        ] {
            out.counter(format!("{od}.{name}"), load(c));
        }
    }
}

impl StatsSource for ClusterStatsSource {
    fn collect(&self, out: &mut Collector<'_>) {
        let clusters = self.manager.snapshot();
        out.gauge("cluster_manager.active_clusters", count(clusters.len()));
        out.gauge("cluster_manager.warming_clusters", 0);
        for state in clusters.values() {
            collect_cluster(state, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::{Cluster, Discovery, HttpProtocolOptions, LbPolicy, Thresholds};
    use crate::config::endpoint::{ClusterLoadAssignment, LbEndpoint, Locality};
    use crate::stats::Store;
    use crate::upstream::{LbContext, Outcome, SeededRandom};
    use std::time::Duration;

    pub(crate) fn eds_cluster(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            discovery: Discovery::Eds {
                service_name: String::new(),
            },
            lb_policy: LbPolicy::RoundRobin,
            connect_timeout: Duration::from_secs(5),
            thresholds: Thresholds {
                max_requests: 1,
                ..Thresholds::default()
            },
            http: HttpProtocolOptions::default(),
            upstream_bind: None,
            outlier_detection: None,
            healthy_panic_threshold: 50.0,
            stat_name: None,
            has_transport_socket: false,
            cleanup_interval: None,
            source_ip: None,
        }
    }

    #[test]
    fn cluster_stats_are_read_live() {
        let name = "outbound|9080||reviews.default.svc.cluster.local";
        let manager = Arc::new(ClusterManager::new(SeededRandom::shared(1)));
        manager.update_clusters([Arc::new(eds_cluster(name))]);
        manager.update_assignment(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LbEndpoint {
                address: "10.0.0.1:9080".parse().unwrap(),
                weight: 1,
                health: Health::Healthy,
                locality: Locality::default(),
                priority: 0,
                locality_weight: None,
                metadata: Default::default(),
            }],
        });
        let store = Store::default();
        store.add_source(Arc::new(ClusterStatsSource::new(manager.clone())));
        let state = manager.get(name).unwrap();
        state.stats().upstream_rq.record(200);
        let _held = state.breakers().try_acquire_request().unwrap();
        assert!(state.breakers().try_acquire_request().is_none());
        // Requests and connections count once the cluster has picked the host.
        let host = state.choose_host(&LbContext::default()).unwrap();
        let _rq = host.start_request();
        let _sent = host.start_request();
        drop(host.start_connection());
        let _open = host.start_connection();
        // A request whose connection failed was never sent.
        let _failed = host.start_request();
        state.report_outcome(&host, Outcome::ConnectFailed, std::time::Instant::now());

        let snap = store.snapshot();
        let v = |stat: &str| snap.value(&format!("cluster.{name}.{stat}"));
        assert_eq!(v("upstream_rq_total"), Some(2));
        assert_eq!(v("upstream_cx_total"), Some(3));
        assert_eq!(v("upstream_cx_connect_fail"), Some(1));
        assert_eq!(v("upstream_cx_active"), Some(1));
        assert_eq!(v("upstream_cx_destroy"), Some(1));
        assert_eq!(v("upstream_rq_200"), Some(1));
        assert_eq!(v("upstream_rq_2xx"), Some(1));
        assert_eq!(v("upstream_rq_completed"), Some(1));
        assert_eq!(v("upstream_rq_pending_overflow"), Some(1));
        assert_eq!(v("upstream_rq_active"), Some(3));
        assert_eq!(v("membership_total"), Some(1));
        assert_eq!(v("membership_healthy"), Some(1));
        assert_eq!(v("circuit_breakers.default.rq_open"), Some(1));
        assert_eq!(snap.value("cluster_manager.active_clusters"), Some(1));

        // A config change keeps the counters.
        let mut changed = eds_cluster(name);
        changed.connect_timeout = Duration::from_secs(1);
        manager.update_clusters([Arc::new(changed)]);
        let snap = store.snapshot();
        assert_eq!(
            snap.value(&format!("cluster.{name}.upstream_rq_total")),
            Some(2)
        );
    }
}
