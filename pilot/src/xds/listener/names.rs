//! Names Istio gives listeners, filter chains, clusters and extensions; istioctl, dashboards
//! and users' EnvoyFilters depend on them, so they are kept exactly.

pub const VIRTUAL_OUTBOUND_LISTENER: &str = "virtualOutbound";
pub const VIRTUAL_INBOUND_LISTENER: &str = "virtualInbound";

pub const VIRTUAL_OUTBOUND_BLACKHOLE_CHAIN: &str = "virtualOutbound-blackhole";
pub const VIRTUAL_OUTBOUND_CATCHALL_TCP_CHAIN: &str = "virtualOutbound-catchall-tcp";
pub const VIRTUAL_INBOUND_BLACKHOLE_CHAIN: &str = "virtualInbound-blackhole";
pub const VIRTUAL_INBOUND_CATCHALL_HTTP_CHAIN: &str = "virtualInbound-catchall-http";
/// The passthrough TCP chain of the inbound listener carries the listener's own name.
pub const VIRTUAL_INBOUND_PASSTHROUGH_TCP_CHAIN: &str = VIRTUAL_INBOUND_LISTENER;
pub const PASSTHROUGH_FILTER_CHAIN: &str = "PassthroughFilterChain";

pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";

pub const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
pub const HTTP_CONNECTION_MANAGER_FILTER: &str = "envoy.filters.network.http_connection_manager";
pub const ORIGINAL_DST_LISTENER_FILTER: &str = "envoy.filters.listener.original_dst";
pub const HTTP_INSPECTOR_LISTENER_FILTER: &str = "envoy.filters.listener.http_inspector";
pub const TLS_INSPECTOR_LISTENER_FILTER: &str = "envoy.filters.listener.tls_inspector";
pub const FAULT_HTTP_FILTER: &str = "envoy.filters.http.fault";
pub const CORS_HTTP_FILTER: &str = "envoy.filters.http.cors";
pub const GRPC_STATS_HTTP_FILTER: &str = "envoy.filters.http.grpc_stats";
pub const ROUTER_HTTP_FILTER: &str = "envoy.filters.http.router";

/// Transport protocols a filter chain can match on.
pub const RAW_BUFFER: &str = "raw_buffer";
pub const TLS: &str = "tls";

/// ALPN values the HTTP inspector reports for plaintext HTTP (HTTP/1.0 is left out as in
/// Istio's default, so such traffic passes through as TCP).
pub const PLAINTEXT_HTTP_ALPNS: [&str; 2] = ["http/1.1", "h2c"];

/// `<bind>_<port>`, e.g. `0.0.0.0_9080` or `10.96.0.12_3306`.
pub fn listener_name(bind: &str, port: u16) -> String {
    format!("{bind}_{port}")
}

/// Istio ends HCM stat prefixes with `;` so its stats config can split them into tags.
pub fn delimited_stat_prefix(prefix: &str) -> String {
    format!("{prefix};")
}
