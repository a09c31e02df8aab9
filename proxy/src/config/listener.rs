//! Listeners, filter chains and network filters, as the data plane uses them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::access_log::AccessLog;
use super::route::RouteConfig;

#[derive(Clone, Debug)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// False for listeners only reached through the original-destination handoff
    /// (Istio's per-port outbound listeners).
    pub bind_to_port: bool,
    /// Hand accepted connections to the listener matching their original destination
    /// (`virtualOutbound`).
    pub use_original_dst: bool,
    pub listener_filters: ListenerFilters,
    pub filter_chains: Vec<FilterChain>,
    pub default_filter_chain: Option<FilterChain>,
    /// `transparent`: the socket may accept traffic for non-local addresses (TPROXY).
    pub transparent: bool,
    pub stat_prefix: Option<String>,
}

/// Listener filters that run before a filter chain is chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerFilters {
    /// `envoy.filters.listener.original_dst`: read SO_ORIGINAL_DST into the local address.
    pub original_dst: bool,
    /// `envoy.filters.listener.tls_inspector`: sniff TLS, SNI and ALPN.
    pub tls_inspector: bool,
    /// `envoy.filters.listener.http_inspector`: sniff plaintext HTTP/1.x or h2c.
    pub http_inspector: bool,
}

/// Envoy's `FilterChainMatch`. Empty lists and `None` match anything.
#[derive(Clone, Debug, Default)]
pub struct FilterChainMatch {
    pub destination_port: Option<u16>,
    pub prefix_ranges: Vec<IpNet>,
    pub source_prefix_ranges: Vec<IpNet>,
    pub source_ports: Vec<u16>,
    /// `raw_buffer` or `tls` (from the TLS inspector).
    pub transport_protocol: Option<String>,
    /// e.g. `http/1.1`, `h2c` (HTTP inspector) or ALPN values (TLS inspector).
    pub application_protocols: Vec<String>,
    /// SNI names; `*.example.com` wildcards allowed.
    pub server_names: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct FilterChain {
    pub name: String,
    pub filter_chain_match: FilterChainMatch,
    pub filter: NetworkFilter,
    /// A downstream TLS context; not terminated yet by strait-proxy (later issue), kept
    /// so chains that require TLS are still matched correctly.
    pub has_transport_socket: bool,
}

/// The terminal network filter of a chain.
#[derive(Clone, Debug)]
pub enum NetworkFilter {
    TcpProxy(Arc<TcpProxy>),
    HttpConnectionManager(Arc<HttpConnectionManager>),
}

/// Which cluster(s) a request or connection goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterSpecifier {
    Cluster(String),
    Weighted(Vec<WeightedCluster>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
}

#[derive(Clone, Debug)]
pub struct TcpProxy {
    pub stat_prefix: String,
    pub cluster: ClusterSpecifier,
    /// Default 1 hour, as Envoy; `None` when explicitly 0.
    pub idle_timeout: Option<Duration>,
    pub access_log: Vec<AccessLog>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecType {
    Auto,
    Http1,
    Http2,
}

/// Where an HCM's routes come from.
#[derive(Clone, Debug)]
pub enum RouteSource {
    /// RDS: the route configuration of this name, delivered separately.
    Rds(String),
    Inline(Arc<RouteConfig>),
}

/// HTTP filters strait-proxy implements. Others are rejected at conversion (a stock
/// Envoy would reject unknown ones too), except those marked optional in the config.
#[derive(Clone, Debug)]
pub enum HttpFilter {
    /// `envoy.filters.http.fault`, configured per route via `typed_per_filter_config`.
    Fault,
    /// `envoy.filters.http.cors`, configured per route.
    Cors,
    /// `envoy.filters.http.grpc_stats`: accepted, stats only.
    GrpcStats,
    /// `envoy.filters.http.router`: always last.
    Router,
}

#[derive(Clone, Debug)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub codec_type: CodecType,
    pub route_source: RouteSource,
    pub http_filters: Vec<HttpFilter>,
    /// Default 5 minutes, as Envoy; `None` when 0.
    pub stream_idle_timeout: Option<Duration>,
    /// Whole-request timeout; disabled by default.
    pub request_timeout: Option<Duration>,
    /// Time to receive the request headers; disabled by default.
    pub request_headers_timeout: Option<Duration>,
    /// Idle connection timeout (`common_http_protocol_options.idle_timeout`), default 1h.
    pub idle_timeout: Option<Duration>,
    /// Default 60 KiB, as Envoy.
    pub max_request_headers_kb: u32,
    pub use_remote_address: bool,
    /// `xff_num_trusted_hops`.
    pub xff_num_trusted_hops: u32,
    /// `generate_request_id` (default true).
    pub generate_request_id: bool,
    /// `preserve_external_request_id`.
    pub preserve_external_request_id: bool,
    /// `normalize_path`, `merge_slashes`.
    pub normalize_path: bool,
    pub merge_slashes: bool,
    /// Strip `:port` from Host before matching (`strip_any_host_port`).
    pub strip_any_host_port: bool,
    pub server_name: Option<String>,
    pub access_log: Vec<AccessLog>,
    /// `upgrade_configs`: upgrade types allowed (e.g. `websocket`).
    pub upgrade_types: Vec<String>,
}
