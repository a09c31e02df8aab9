//! One cluster at run time: its config, the current host set and balancer (swapped
//! atomically on every membership or health change), circuit breakers, outlier detection
//! and stats. Picks are lock-free; changes are serialized by a writer lock that no pick
//! takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::config::cluster::{Cluster, Discovery};
use crate::config::endpoint::LbEndpoint;

use super::breaker::CircuitBreakers;
use super::host::Host;
use super::host_set::HostSet;
use super::lb::{self, LbContext, LoadBalancer, OriginalDstLb};
use super::outlier::{Outcome, OutlierConfig, OutlierDetector};
use super::random::RandomSource;

/// No host could be chosen: the router answers 503 `no healthy upstream` (flag `UH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no healthy upstream")]
pub struct NoHealthyUpstream;

/// Counters named as Envoy's `cluster.<name>.*` stats. The data plane bumps them; the
/// admin reads them through `stats::ClusterStatsSource`, which derives the active
/// connection and request gauges from the hosts' counters. A changed cluster keeps its
/// stats, as Envoy's stay in the store under the cluster's name.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub upstream_cx_none_healthy: AtomicU64,
    pub lb_healthy_panic: AtomicU64,
    pub membership_change: AtomicU64,
    pub update_empty: AtomicU64,
    pub upstream_cx_total: AtomicU64,
    pub upstream_cx_connect_fail: AtomicU64,
    pub upstream_cx_connect_timeout: AtomicU64,
    pub upstream_cx_destroy: AtomicU64,
    pub upstream_cx_rx_bytes_total: AtomicU64,
    pub upstream_cx_tx_bytes_total: AtomicU64,
    pub upstream_rq_total: AtomicU64,
    pub upstream_rq_pending_total: AtomicU64,
    /// Gauge: requests waiting for a connection now.
    pub upstream_rq_pending_active: AtomicU64,
    pub upstream_rq_timeout: AtomicU64,
    pub upstream_rq_per_try_timeout: AtomicU64,
    pub upstream_rq_retry: AtomicU64,
    pub upstream_rq_retry_success: AtomicU64,
    pub upstream_rq_retry_limit_exceeded: AtomicU64,
    pub upstream_rq_rx_reset: AtomicU64,
    pub upstream_rq_tx_reset: AtomicU64,
    pub upstream_rq_cancelled: AtomicU64,
    /// `upstream_rq_completed`, `upstream_rq_<class>xx`, `upstream_rq_<code>`.
    pub upstream_rq: crate::stats::ResponseCodeStats,
    pub upstream_rq_time: crate::stats::Histogram,
    pub upstream_cx_connect_ms: crate::stats::Histogram,
    pub upstream_cx_length_ms: crate::stats::Histogram,
    /// Gauges kept by the hosts' connection and request guards.
    pub upstream_cx_active: AtomicU64,
    pub upstream_rq_active: AtomicU64,
    /// Requests handed to a host; those whose connection then failed were never sent,
    /// which `upstream_rq_total` leaves out as Envoy does.
    requests_started: AtomicU64,
    requests_connect_failed: AtomicU64,
    /// The largest `upstream_rq_total` reported, so the derived counter never goes back.
    requests_reported: AtomicU64,
}

impl ClusterStats {
    pub(crate) fn request_started(&self) {
        self.requests_started.fetch_add(1, Ordering::Relaxed);
        self.upstream_rq_active.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_ended(&self) {
        saturating_dec(&self.upstream_rq_active);
    }

    pub(crate) fn connection_opened(&self) {
        self.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
        self.upstream_cx_active.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self, open_for: std::time::Duration) {
        saturating_dec(&self.upstream_cx_active);
        self.upstream_cx_destroy.fetch_add(1, Ordering::Relaxed);
        self.upstream_cx_length_ms
            .record(u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX));
    }

    /// A connect attempt that failed counts as a connection, as in Envoy.
    fn connect_failed(&self, for_request: bool) {
        self.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
        self.upstream_cx_connect_fail
            .fetch_add(1, Ordering::Relaxed);
        if for_request {
            self.requests_connect_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `upstream_rq_total`: requests sent on an upstream connection. `refused_pending`
    /// are requests the pending-request breaker turned away after they were started.
    pub fn upstream_rq_total(&self, refused_pending: u64) -> u64 {
        let sent = self
            .requests_started
            .load(Ordering::Relaxed)
            .saturating_sub(self.requests_connect_failed.load(Ordering::Relaxed))
            .saturating_sub(refused_pending);
        let total = sent + self.upstream_rq_total.load(Ordering::Relaxed);
        self.requests_reported
            .fetch_max(total, Ordering::Relaxed)
            .max(total)
    }
}

fn saturating_dec(gauge: &AtomicU64) {
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(1))
    });
}

#[derive(Debug)]
struct Snapshot {
    hosts: Arc<HostSet>,
    lb: Box<dyn LoadBalancer>,
}

#[derive(Debug)]
pub struct ClusterState {
    config: Arc<Cluster>,
    /// The name, shared by every request's record and pool key instead of copied.
    shared_name: Arc<str>,
    snapshot: ArcSwap<Snapshot>,
    original_dst: Option<Arc<OriginalDstLb>>,
    breakers: Arc<CircuitBreakers>,
    outlier: Option<OutlierDetector>,
    stats: Arc<ClusterStats>,
    rng: Arc<dyn RandomSource>,
    writer: Mutex<()>,
}

impl ClusterState {
    pub fn new(config: Arc<Cluster>, endpoints: &[LbEndpoint], rng: Arc<dyn RandomSource>) -> Self {
        ClusterState::replacing(config, endpoints, None, rng)
    }

    /// A state for a changed config that keeps the host counters (and ORIGINAL_DST hosts)
    /// of `previous`, so requests in flight and least-request balancing are not reset.
    /// Breakers and outlier statistics start afresh, as in Envoy; the `cluster.<name>.*`
    /// counters carry over, as Envoy's stay in its stats store.
    pub fn replacing(
        config: Arc<Cluster>,
        endpoints: &[LbEndpoint],
        previous: Option<&ClusterState>,
        rng: Arc<dyn RandomSource>,
    ) -> Self {
        let previous_hosts = previous.map(ClusterState::hosts);
        let hosts = HostSet::build(
            endpoints,
            previous_hosts.as_deref(),
            config.healthy_panic_threshold,
        );
        let original_dst = matches!(config.discovery, Discovery::OriginalDst).then(|| {
            previous
                .and_then(|p| p.original_dst.clone())
                .unwrap_or_default()
        });
        let snapshot = ArcSwap::from_pointee(Snapshot::new(&config, hosts, &rng));
        let breaker_counters = previous
            .map(|p| p.breakers.counters().clone())
            .unwrap_or_default();
        let shared_name = match previous {
            Some(p) if *p.shared_name == *config.name => p.shared_name.clone(),
            _ => Arc::from(config.name.as_str()),
        };
        ClusterState {
            shared_name,
            breakers: CircuitBreakers::with_counters(config.thresholds, breaker_counters),
            outlier: config
                .outlier_detection
                .as_ref()
                .map(|o| OutlierDetector::new(OutlierConfig::from(o))),
            config,
            snapshot,
            original_dst,
            stats: previous.map(|p| p.stats.clone()).unwrap_or_default(),
            rng,
            writer: Mutex::new(()),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn shared_name(&self) -> &Arc<str> {
        &self.shared_name
    }

    /// The name in stats: `alt_stat_name` when set.
    pub fn stat_name(&self) -> &str {
        self.config
            .stat_name
            .as_deref()
            .unwrap_or(&self.config.name)
    }

    pub fn config(&self) -> &Arc<Cluster> {
        &self.config
    }

    pub fn hosts(&self) -> Arc<HostSet> {
        self.snapshot.load().hosts.clone()
    }

    pub fn breakers(&self) -> &Arc<CircuitBreakers> {
        &self.breakers
    }

    pub fn outlier(&self) -> Option<&OutlierDetector> {
        self.outlier.as_ref()
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// The counters, shared with every later state of this cluster.
    pub fn shared_stats(&self) -> &Arc<ClusterStats> {
        &self.stats
    }

    /// Counts in `stats` rather than in counters of its own. Envoy's stats are found by
    /// name, so clusters with one stat name (Istio gives InboundPassthroughCluster
    /// PassthroughCluster's `alt_stat_name`) count in the same `cluster.<name>.*`.
    pub fn sharing_stats(mut self, stats: Arc<ClusterStats>) -> Self {
        self.stats = stats;
        self
    }

    /// ORIGINAL_DST hosts made so far (empty for other clusters).
    pub fn original_dst_hosts(&self) -> Vec<Arc<Host>> {
        self.original_dst
            .as_ref()
            .map(|o| o.hosts())
            .unwrap_or_default()
    }

    /// The `outlier_detection.ejections_active` gauge.
    pub fn ejections_active(&self) -> usize {
        self.hosts()
            .hosts()
            .iter()
            .filter(|h| h.stats().is_ejected())
            .count()
    }

    /// Replaces the endpoints (EDS update or DNS answer); hosts whose address persists
    /// keep their counters and outlier state.
    pub fn update_endpoints(&self, endpoints: &[LbEndpoint]) {
        let _writer = self.writer.lock();
        let current = self.snapshot.load_full();
        let hosts = HostSet::build(
            endpoints,
            Some(&current.hosts),
            self.config.healthy_panic_threshold,
        );
        if endpoints.is_empty() {
            self.stats.update_empty.fetch_add(1, Ordering::Relaxed);
        }
        let mut before: Vec<_> = current.hosts.hosts().iter().map(|h| h.address()).collect();
        let mut after: Vec<_> = hosts.hosts().iter().map(|h| h.address()).collect();
        before.sort_unstable();
        after.sort_unstable();
        if before != after {
            self.stats.membership_change.fetch_add(1, Ordering::Relaxed);
        }
        self.install(hosts);
    }

    /// Picks the host for a request or connection.
    pub fn choose_host(&self, ctx: &LbContext<'_>) -> Result<Arc<Host>, NoHealthyUpstream> {
        if let Some(original_dst) = &self.original_dst {
            let host = original_dst.pick(ctx).ok_or_else(|| self.none_healthy())?;
            host.stats().bind_cluster(&self.stats);
            return Ok(host);
        }
        let snapshot = self.snapshot.load();
        let host = snapshot.lb.pick(ctx).ok_or_else(|| self.none_healthy())?;
        if snapshot
            .hosts
            .level_of(host.priority())
            .is_some_and(|l| l.in_panic())
        {
            self.stats.lb_healthy_panic.fetch_add(1, Ordering::Relaxed);
        }
        host.stats().bind_cluster(&self.stats);
        Ok(host)
    }

    fn none_healthy(&self) -> NoHealthyUpstream {
        self.stats
            .upstream_cx_none_healthy
            .fetch_add(1, Ordering::Relaxed);
        NoHealthyUpstream
    }

    /// Feeds an upstream outcome to outlier detection; an ejection rebuilds the host set
    /// so balancers stop choosing the host.
    pub fn report_outcome(&self, host: &Host, outcome: Outcome, now: Instant) {
        if outcome == Outcome::ConnectFailed {
            // Only the HTTP pool reports failed connects this way; each was a request's.
            self.stats.connect_failed(true);
        }
        self.detect(host, outcome, now);
    }

    /// A TCP proxy connection could not be opened: counted, and fed to outlier detection.
    pub fn report_tcp_connect_failure(&self, host: &Host, now: Instant) {
        self.stats.connect_failed(false);
        self.detect(host, Outcome::ConnectFailed, now);
    }

    fn detect(&self, host: &Host, outcome: Outcome, now: Instant) {
        let Some(detector) = &self.outlier else {
            return;
        };
        let Some(detection) = detector.record(host, outcome) else {
            return;
        };
        let _writer = self.writer.lock();
        let current = self.snapshot.load_full();
        let member = current
            .hosts
            .hosts()
            .iter()
            .any(|h| Arc::ptr_eq(h.stats(), host.stats()));
        if member && detector.on_detection(host, detection, &current.hosts, now) {
            self.refresh(&current.hosts);
        }
    }

    /// The outlier detection sweep; the caller runs it every `interval`. Returns whether
    /// any host came back into service.
    pub fn outlier_tick(&self, now: Instant) -> bool {
        let Some(detector) = &self.outlier else {
            return false;
        };
        let _writer = self.writer.lock();
        let current = self.snapshot.load_full();
        let returned = detector.tick(&current.hosts, now);
        if returned {
            self.refresh(&current.hosts);
        }
        returned
    }

    /// Drops ORIGINAL_DST hosts unused since the previous call; the caller runs it every
    /// `cleanup_interval`.
    pub fn original_dst_cleanup(&self) -> usize {
        self.original_dst.as_ref().map_or(0, |o| o.cleanup())
    }

    /// Regroups the same hosts after their health changed. Caller holds the writer lock.
    fn refresh(&self, hosts: &HostSet) {
        self.install(HostSet::from_hosts(
            hosts.hosts().to_vec(),
            self.config.healthy_panic_threshold,
        ));
    }

    fn install(&self, hosts: HostSet) {
        self.snapshot
            .store(Arc::new(Snapshot::new(&self.config, hosts, &self.rng)));
    }
}

impl Snapshot {
    fn new(config: &Cluster, hosts: HostSet, rng: &Arc<dyn RandomSource>) -> Self {
        let hosts = Arc::new(hosts);
        let lb = lb::build(&config.lb_policy, hosts.clone(), rng.clone());
        Snapshot { hosts, lb }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::{LbPolicy, OutlierDetection, Thresholds};
    use crate::config::endpoint::Health;
    use crate::upstream::SeededRandom;
    use crate::upstream::test_util::{addr, cluster, eds, endpoint, endpoints_at};
    use std::time::Duration;

    fn state(policy: LbPolicy, eps: &[LbEndpoint]) -> ClusterState {
        ClusterState::new(
            Arc::new(cluster("c", policy, eds("c"))),
            eps,
            SeededRandom::shared(1),
        )
    }

    #[test]
    fn choose_host_and_no_healthy_upstream() {
        let s = state(LbPolicy::RoundRobin, &endpoints_at(0, 2));
        assert!(s.choose_host(&LbContext::default()).is_ok());
        s.update_endpoints(&[]);
        assert_eq!(
            s.choose_host(&LbContext::default()).unwrap_err(),
            NoHealthyUpstream
        );
        assert_eq!(
            s.stats().upstream_cx_none_healthy.load(Ordering::Relaxed),
            1
        );
        assert_eq!(s.stats().update_empty.load(Ordering::Relaxed), 1);
        assert_eq!(s.stats().membership_change.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn panic_picks_are_counted() {
        let mut eps = endpoints_at(0, 4);
        for e in &mut eps[1..] {
            e.health = Health::Unhealthy;
        }
        let s = state(LbPolicy::Random, &eps);
        for _ in 0..10 {
            s.choose_host(&LbContext::default()).unwrap();
        }
        assert_eq!(s.stats().lb_healthy_panic.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn counters_survive_eds_updates() {
        let s = state(
            LbPolicy::LeastRequest { choice_count: 2 },
            &endpoints_at(0, 2),
        );
        let host = s.choose_host(&LbContext::default()).unwrap();
        let guard = host.start_request();
        let mut eps = endpoints_at(0, 3);
        eps[0].weight = 7;
        s.update_endpoints(&eps);
        let again = s.hosts().find(host.address()).unwrap().clone();
        assert_eq!(again.stats().active_requests(), 1);
        assert_eq!(again.stats().total_requests(), 1);
        drop(guard);
        assert_eq!(again.stats().active_requests(), 0);
    }

    #[test]
    fn outlier_ejection_steers_traffic_until_the_host_returns() {
        let mut c = cluster("c", LbPolicy::RoundRobin, eds("c"));
        c.outlier_detection = Some(OutlierDetection {
            consecutive_5xx: 2,
            consecutive_gateway_failure: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 100,
        });
        c.healthy_panic_threshold = 0.0;
        let s = ClusterState::new(
            Arc::new(c),
            &[endpoint("10.0.0.1:80"), endpoint("10.0.0.2:80")],
            SeededRandom::shared(2),
        );
        let bad = s.hosts().find(addr("10.0.0.1:80")).unwrap().clone();
        let t0 = Instant::now();
        s.report_outcome(&bad, Outcome::Status(503), t0);
        s.report_outcome(&bad, Outcome::Status(503), t0);
        assert_eq!(s.ejections_active(), 1);
        for _ in 0..20 {
            assert_eq!(
                s.choose_host(&LbContext::default()).unwrap().address(),
                addr("10.0.0.2:80")
            );
        }
        // Ejection survives an EDS update that keeps the host.
        s.update_endpoints(&[endpoint("10.0.0.1:80"), endpoint("10.0.0.2:80")]);
        assert_eq!(s.ejections_active(), 1);
        assert!(!s.outlier_tick(t0 + Duration::from_secs(20)));
        assert!(s.outlier_tick(t0 + Duration::from_secs(30)));
        let picked: Vec<_> = (0..4)
            .map(|_| s.choose_host(&LbContext::default()).unwrap().address())
            .collect();
        assert!(picked.contains(&addr("10.0.0.1:80")));
    }

    #[test]
    fn original_dst_cluster_uses_the_connection_destination() {
        let c = cluster("orig", LbPolicy::ClusterProvided, Discovery::OriginalDst);
        let s = ClusterState::new(Arc::new(c), &[], SeededRandom::shared(1));
        let ctx = LbContext {
            original_dst: Some(addr("10.5.5.5:9080")),
            ..LbContext::default()
        };
        assert_eq!(
            s.choose_host(&ctx).unwrap().address(),
            addr("10.5.5.5:9080")
        );
        assert!(s.choose_host(&LbContext::default()).is_err());
        assert_eq!(s.original_dst_hosts().len(), 1);
        assert_eq!(s.original_dst_cleanup(), 0);
        assert_eq!(s.original_dst_cleanup(), 1);
    }

    #[test]
    fn breakers_follow_the_config_thresholds() {
        let mut c = cluster("c", LbPolicy::RoundRobin, eds("c"));
        c.thresholds = Thresholds {
            max_requests: 1,
            ..Thresholds::default()
        };
        let s = ClusterState::new(Arc::new(c), &[], SeededRandom::shared(1));
        let _held = s.breakers().try_acquire_request().unwrap();
        assert!(s.breakers().try_acquire_request().is_none());
        assert_eq!(s.breakers().stats().upstream_rq_pending_overflow, 1);
    }
}
