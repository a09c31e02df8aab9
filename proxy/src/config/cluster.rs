//! Clusters: how to find and reach upstream hosts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::endpoint::LbEndpoint;

#[derive(Clone, Debug, PartialEq)]
pub enum Discovery {
    /// Endpoints from EDS, under this service name (the cluster name when unset).
    Eds { service_name: String },
    /// Endpoints from the cluster's `load_assignment`.
    Static(Vec<LbEndpoint>),
    /// `STRICT_DNS` / `LOGICAL_DNS`: resolve these host:port pairs.
    Dns {
        hosts: Vec<(String, u16)>,
        logical: bool,
        refresh: Duration,
    },
    /// Forward to the connection's original destination.
    OriginalDst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    /// Power of two choices over active requests (`choice_count`, default 2).
    LeastRequest {
        choice_count: u32,
    },
    Random,
    RingHash {
        minimum_ring_size: u64,
        maximum_ring_size: u64,
    },
    Maglev {
        table_size: u64,
    },
    /// `CLUSTER_PROVIDED` (ORIGINAL_DST clusters).
    ClusterProvided,
}

/// Circuit-breaker thresholds of the DEFAULT priority; Envoy's defaults are 1024
/// connections, 1024 pending requests, 1024 requests and 3 retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// Which HTTP version to speak upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
    /// `use_downstream_protocol_config`: whatever the client spoke.
    UseDownstream,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpProtocolOptions {
    pub protocol: UpstreamProtocol,
    pub idle_timeout: Option<Duration>,
    pub max_requests_per_connection: Option<u32>,
    pub max_concurrent_streams: Option<u32>,
    pub max_connection_duration: Option<Duration>,
}

impl Default for HttpProtocolOptions {
    fn default() -> Self {
        HttpProtocolOptions {
            protocol: UpstreamProtocol::Http1,
            idle_timeout: Some(Duration::from_secs(3600)),
            max_requests_per_connection: None,
            max_concurrent_streams: None,
            max_connection_duration: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutlierDetection {
    /// Consecutive 5xx before ejection; 0 means the detector is off (also when Envoy's
    /// `enforcing_consecutive_5xx` is 0 %).
    pub consecutive_5xx: u32,
    /// Likewise for gateway errors (502/503/504); off unless
    /// `enforcing_consecutive_gateway_failure` is set, as in Envoy.
    pub consecutive_gateway_failure: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub discovery: Discovery,
    pub lb_policy: LbPolicy,
    /// Default 5 s, as Envoy.
    pub connect_timeout: Duration,
    pub thresholds: Thresholds,
    pub http: HttpProtocolOptions,
    /// Source address for upstream connections (`upstream_bind_config`).
    pub upstream_bind: Option<SocketAddr>,
    pub outlier_detection: Option<OutlierDetection>,
    /// `common_lb_config.healthy_panic_threshold` in percent (default 50).
    pub healthy_panic_threshold: f64,
    /// `alt_stat_name`, used instead of the name in stats.
    pub stat_name: Option<String>,
    /// An upstream TLS context is configured (not originated yet by strait-proxy).
    pub has_transport_socket: bool,
    /// ORIGINAL_DST `cleanup_interval`.
    pub cleanup_interval: Option<Duration>,
    /// Keep the source IP of these addresses (`InboundPassthroughCluster` binds 127.0.0.6).
    pub source_ip: Option<IpAddr>,
}
