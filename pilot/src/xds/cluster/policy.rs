//! DestinationRule `trafficPolicy` → Cluster: connection pool (circuit breakers, connect
//! timeout, TCP keepalive, HTTP connection limits), outlier detection, and the order
//! Istio applies the parts in (`applyTrafficPolicy`).

use strait_proto::envoy::config::cluster::v3::circuit_breakers::Thresholds;
use strait_proto::envoy::config::cluster::v3::circuit_breakers::thresholds::RetryBudget as EnvoyRetryBudget;
use strait_proto::envoy::config::cluster::v3::cluster::{CommonLbConfig, DiscoveryType, LbPolicy};
use strait_proto::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlierDetection, UpstreamConnectionOptions,
};
use strait_proto::envoy::config::core::v3::TcpKeepalive as EnvoyTcpKeepalive;
use strait_proto::envoy::r#type::v3::Percent;
use strait_proto::istio::{
    ConnectionPoolSettings, MeshConfig, OutlierDetection, RetryBudget, TcpKeepalive, TrafficPolicy,
};

use super::protocol::{self, ConnectionLimits};
use super::{ClusterDraft, istio_duration, lb, mesh_connect_timeout, positive, tls, uint32};
use crate::model::{Locality, Protocol};

/// Which side of the proxy a cluster serves: inbound clusters only take connection pool
/// settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Everything `apply` needs besides the cluster.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInput<'a> {
    pub mesh: &'a MeshConfig,
    pub policy: Option<&'a TrafficPolicy>,
    pub protocol: Protocol,
    pub direction: Direction,
    pub proxy_locality: &'a Locality,
    pub tls: tls::TlsInput<'a>,
}

/// Applies a traffic policy (or the defaults when there is none) in Istio's order.
pub fn apply(draft: &mut ClusterDraft, input: &PolicyInput<'_>) {
    let default_pool = ConnectionPoolSettings::default();
    let policy = input.policy;
    let pool = policy
        .and_then(|p| p.connection_pool.as_ref())
        .unwrap_or(&default_pool);
    let outbound = input.direction == Direction::Outbound;
    // Upgrade first so that the HTTP/2 limits of the pool land on the upgraded cluster.
    if outbound && protocol::should_upgrade_h2(input.protocol, input.mesh, Some(pool)) {
        protocol::set_h2(draft);
    }
    let retry_budget = policy.and_then(|p| p.retry_budget.as_ref());
    apply_connection_pool(draft, input.mesh, pool, retry_budget);
    if outbound {
        apply_outlier_detection(
            &mut draft.cluster,
            policy.and_then(|p| p.outlier_detection.as_ref()),
        );
        lb::apply(
            &mut draft.cluster,
            policy.and_then(|p| p.load_balancer.as_ref()),
            input.mesh,
            input.proxy_locality,
        );
        tls::apply(draft, policy.and_then(|p| p.tls.as_ref()), &input.tls);
        tls::apply_proxy_protocol(
            &mut draft.cluster,
            policy.and_then(|p| p.proxy_protocol.as_ref()),
        );
    }
    if draft.discovery_type() == Some(DiscoveryType::OriginalDst) {
        draft.cluster.lb_policy = LbPolicy::ClusterProvided as i32;
    }
}

/// Istio lifts Envoy's circuit-breaker defaults (1024 connections, 3 retries, ...) to
/// "unlimited" so that they never trip unless a DestinationRule asks for it. The
/// `remaining` gauges stay off (`DISABLE_TRACK_REMAINING_CB_METRICS` defaults to true).
pub fn default_thresholds() -> Thresholds {
    Thresholds {
        max_connections: uint32(u32::MAX),
        max_pending_requests: uint32(u32::MAX),
        max_requests: uint32(u32::MAX),
        max_retries: uint32(u32::MAX),
        ..Default::default()
    }
}

/// `connectionPool` (always applied, defaults when unset): circuit breakers, connect
/// timeout, keepalive and connection limits.
pub fn apply_connection_pool(
    draft: &mut ClusterDraft,
    mesh: &MeshConfig,
    pool: &ConnectionPoolSettings,
    retry_budget: Option<&RetryBudget>,
) {
    let mut threshold = default_thresholds();
    threshold.retry_budget = retry_budget.map(envoy_retry_budget);
    let mut limits = ConnectionLimits::default();
    if let Some(http) = &pool.http {
        if let Some(v) = positive(http.http2_max_requests) {
            threshold.max_requests = uint32(v);
        }
        if let Some(v) = positive(http.http1_max_pending_requests) {
            threshold.max_pending_requests = uint32(v);
        }
        if let Some(v) = positive(http.max_retries) {
            threshold.max_retries = uint32(v);
        }
        limits.idle_timeout = http.idle_timeout.map(|d| d.as_std());
        limits.max_requests_per_connection = positive(http.max_requests_per_connection);
        limits.max_concurrent_streams = positive(http.max_concurrent_streams);
    }
    draft.cluster.connect_timeout = Some(mesh_connect_timeout(mesh));
    if let Some(tcp) = &pool.tcp {
        if let Some(timeout) = &tcp.connect_timeout {
            draft.cluster.connect_timeout = Some(istio_duration(timeout));
        }
        if let Some(v) = positive(tcp.max_connections) {
            threshold.max_connections = uint32(v);
        }
        limits.max_connection_duration = tcp.max_connection_duration.map(|d| d.as_std());
        if limits.idle_timeout.is_none() {
            limits.idle_timeout = tcp.idle_timeout.map(|d| d.as_std());
        }
    }
    apply_tcp_keepalive(
        &mut draft.cluster,
        mesh.tcp_keepalive.as_ref(),
        pool.tcp.as_ref().and_then(|t| t.tcp_keepalive.as_ref()),
    );
    draft.cluster.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![threshold],
        ..Default::default()
    });
    protocol::apply_limits(draft, &limits);
    if pool.http.as_ref().is_some_and(|h| h.use_client_protocol) {
        protocol::set_use_downstream(draft);
    }
}

/// Istio's retry budget defaults: 20 % of active requests, at least 3 concurrent retries.
fn envoy_retry_budget(budget: &RetryBudget) -> EnvoyRetryBudget {
    let concurrency = if budget.min_retry_concurrency > 0 {
        budget.min_retry_concurrency
    } else {
        3
    };
    EnvoyRetryBudget {
        budget_percent: Some(Percent {
            value: budget.percent.unwrap_or(0.2),
        }),
        min_retry_concurrency: uint32(concurrency),
        ..Default::default()
    }
}

/// The mesh-wide keepalive first, then the DestinationRule's fields over it.
fn apply_tcp_keepalive(
    cluster: &mut Cluster,
    mesh: Option<&TcpKeepalive>,
    rule: Option<&TcpKeepalive>,
) {
    for keepalive in [mesh, rule].into_iter().flatten() {
        let options =
            cluster
                .upstream_connection_options
                .get_or_insert_with(|| UpstreamConnectionOptions {
                    tcp_keepalive: Some(EnvoyTcpKeepalive::default()),
                    ..Default::default()
                });
        let envoy = options
            .tcp_keepalive
            .get_or_insert_with(EnvoyTcpKeepalive::default);
        if keepalive.probes > 0 {
            envoy.keepalive_probes = uint32(keepalive.probes);
        }
        if let Some(time) = keepalive.time {
            envoy.keepalive_time = uint32(seconds(time));
        }
        if let Some(interval) = keepalive.interval {
            envoy.keepalive_interval = uint32(seconds(interval));
        }
    }
}

fn seconds(d: strait_proto::istio::Duration) -> u32 {
    u32::try_from(d.as_std().as_secs()).unwrap_or(u32::MAX)
}

/// `outlierDetection`: consecutive errors eject with 100 % enforcement (0 % when the
/// threshold is 0), success-rate ejection stays off, and `minHealthPercent` becomes the
/// panic threshold, which Istio always sets so that it is 0 rather than Envoy's 50.
pub fn apply_outlier_detection(cluster: &mut Cluster, outlier: Option<&OutlierDetection>) {
    let Some(outlier) = outlier else {
        return;
    };
    let mut out = EnvoyOutlierDetection {
        enforcing_success_rate: uint32(0),
        ..Default::default()
    };
    if let Some(v) = outlier.consecutive_5xx_errors {
        out.consecutive_5xx = uint32(v);
        out.enforcing_consecutive_5xx = uint32(enforcement(v));
    }
    if let Some(v) = outlier.consecutive_gateway_errors {
        out.consecutive_gateway_failure = uint32(v);
        out.enforcing_consecutive_gateway_failure = uint32(enforcement(v));
    }
    out.interval = outlier.interval.as_ref().map(istio_duration);
    out.base_ejection_time = outlier.base_ejection_time.as_ref().map(istio_duration);
    if let Some(v) = positive(outlier.max_ejection_percent) {
        out.max_ejection_percent = uint32(v);
    }
    if outlier.split_external_local_origin_errors {
        out.split_external_local_origin_errors = true;
        if let Some(v) = outlier.consecutive_local_origin_failures.filter(|v| *v > 0) {
            out.consecutive_local_origin_failure = uint32(v);
            out.enforcing_consecutive_local_origin_failure = uint32(100);
        }
        out.enforcing_local_origin_success_rate = uint32(0);
    }
    cluster.outlier_detection = Some(out);
    if outlier.min_health_percent >= 0 {
        cluster
            .common_lb_config
            .get_or_insert_with(CommonLbConfig::default)
            .healthy_panic_threshold = Some(Percent {
            value: f64::from(outlier.min_health_percent),
        });
    }
}

fn enforcement(threshold: u32) -> u32 {
    if threshold > 0 { 100 } else { 0 }
}

#[cfg(test)]
mod tests {
    use strait_proto::istio::{HttpSettings, TcpSettings};

    use super::*;

    fn draft() -> ClusterDraft {
        ClusterDraft::new(Cluster::default())
    }

    #[test]
    fn defaults_are_unlimited_with_mesh_timeout() {
        let mut d = draft();
        apply_connection_pool(
            &mut d,
            &MeshConfig::default(),
            &ConnectionPoolSettings::default(),
            None,
        );
        let t = &d.cluster.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(t.max_connections.as_ref().unwrap().value, u32::MAX);
        assert_eq!(t.max_pending_requests.as_ref().unwrap().value, u32::MAX);
        assert_eq!(t.max_requests.as_ref().unwrap().value, u32::MAX);
        assert_eq!(t.max_retries.as_ref().unwrap().value, u32::MAX);
        assert!(!t.track_remaining);
        assert_eq!(d.cluster.connect_timeout.as_ref().unwrap().seconds, 10);
        assert!(d.http.is_none(), "no HTTP options without limits");
        assert!(d.cluster.upstream_connection_options.is_none());
    }

    #[test]
    fn pool_settings_override_defaults() {
        let pool = ConnectionPoolSettings {
            tcp: Some(TcpSettings {
                max_connections: 100,
                connect_timeout: Some(strait_proto::istio::Duration::from_millis(1500)),
                tcp_keepalive: Some(TcpKeepalive {
                    probes: 3,
                    time: Some(strait_proto::istio::Duration::from_secs(7200)),
                    interval: None,
                }),
                ..Default::default()
            }),
            http: Some(HttpSettings {
                http1_max_pending_requests: 10,
                http2_max_requests: 20,
                max_retries: 0,
                max_requests_per_connection: 1,
                ..Default::default()
            }),
        };
        let mut d = draft();
        let budget = RetryBudget {
            percent: None,
            min_retry_concurrency: 0,
            budget_interval: None,
        };
        apply_connection_pool(&mut d, &MeshConfig::default(), &pool, Some(&budget));
        let t = &d.cluster.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(t.max_connections.as_ref().unwrap().value, 100);
        assert_eq!(t.max_pending_requests.as_ref().unwrap().value, 10);
        assert_eq!(t.max_requests.as_ref().unwrap().value, 20);
        assert_eq!(
            t.max_retries.as_ref().unwrap().value,
            u32::MAX,
            "0 means unset"
        );
        let rb = t.retry_budget.as_ref().unwrap();
        assert_eq!(rb.budget_percent.as_ref().unwrap().value, 0.2);
        assert_eq!(rb.min_retry_concurrency.as_ref().unwrap().value, 3);
        let timeout = d.cluster.connect_timeout.as_ref().unwrap();
        assert_eq!((timeout.seconds, timeout.nanos), (1, 500_000_000));
        let ka = d
            .cluster
            .upstream_connection_options
            .as_ref()
            .unwrap()
            .tcp_keepalive
            .as_ref()
            .unwrap();
        assert_eq!(ka.keepalive_probes.as_ref().unwrap().value, 3);
        assert_eq!(ka.keepalive_time.as_ref().unwrap().value, 7200);
        assert!(ka.keepalive_interval.is_none());
        let common = d
            .http
            .as_ref()
            .unwrap()
            .common_http_protocol_options
            .as_ref()
            .unwrap();
        assert_eq!(
            common.max_requests_per_connection.as_ref().unwrap().value,
            1
        );
    }

    #[test]
    fn outlier_detection_fields() {
        let mut c = Cluster::default();
        apply_outlier_detection(
            &mut c,
            Some(&OutlierDetection {
                consecutive_5xx_errors: Some(0),
                consecutive_gateway_errors: Some(5),
                interval: Some(strait_proto::istio::Duration::from_secs(10)),
                base_ejection_time: Some(strait_proto::istio::Duration::from_secs(30)),
                max_ejection_percent: 50,
                min_health_percent: 0,
                ..Default::default()
            }),
        );
        let o = c.outlier_detection.as_ref().unwrap();
        assert_eq!(o.consecutive_5xx.as_ref().unwrap().value, 0);
        assert_eq!(o.enforcing_consecutive_5xx.as_ref().unwrap().value, 0);
        assert_eq!(o.consecutive_gateway_failure.as_ref().unwrap().value, 5);
        assert_eq!(
            o.enforcing_consecutive_gateway_failure
                .as_ref()
                .unwrap()
                .value,
            100
        );
        assert_eq!(o.enforcing_success_rate.as_ref().unwrap().value, 0);
        assert_eq!(o.interval.as_ref().unwrap().seconds, 10);
        assert_eq!(o.base_ejection_time.as_ref().unwrap().seconds, 30);
        assert_eq!(o.max_ejection_percent.as_ref().unwrap().value, 50);
        assert!(o.enforcing_local_origin_success_rate.is_none());
        let panic = c
            .common_lb_config
            .as_ref()
            .unwrap()
            .healthy_panic_threshold
            .as_ref();
        assert_eq!(panic.unwrap().value, 0.0);
    }
}
