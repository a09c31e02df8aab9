//! `DestinationRule` (`networking.istio.io`): policies applied to traffic for a service after
//! routing (load balancing, connection pools, outlier detection, TLS).

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use super::common::{PortSelector, WorkloadMatchSelector, is_default};
use super::tls::ClientTlsSettings;
use super::{Duration, oneof};

/// The spec of a `DestinationRule`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(
    description = "Configuration affecting load balancing, outlier detection, etc. See more details at: https://istio.io/docs/reference/config/networking/destination-rule.html"
)]
pub struct DestinationRule {
    /// The name of a service from the service registry.
    pub host: String,
    /// Traffic policies to apply (load balancing policy, connection pool sizes, outlier detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// One or more named sets that represent individual versions of a service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// A list of namespaces to which this destination rule is exported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Selects the workloads this rule applies to (in its own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadMatchSelector>,
}

/// Traffic policies for a service, a subset or a port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Settings controlling the load balancer algorithms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Settings controlling the volume of connections to an upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Settings controlling eviction of unhealthy hosts from the load balancing pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS related settings for connections to the upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Traffic policies specific to individual ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnel TCP over other transport or application layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    /// The upstream PROXY protocol settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Limit on concurrent retries in relation to the number of active requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// Traffic policies for one port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    /// The port on the destination service to which this policy applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    /// Settings controlling the load balancer algorithms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Settings controlling the volume of connections to an upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Settings controlling eviction of unhealthy hosts from the load balancing pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS related settings for connections to the upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// A named subset of a service's endpoints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subset {
    /// Name of the subset.
    pub name: String,
    /// Labels apply a filter over the endpoints of a service in the service registry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Traffic policies that apply to this subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Tunnel settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Specifies a host to which the downstream connection is tunneled.
    pub target_host: String,
    /// Specifies a port to which the downstream connection is tunneled.
    pub target_port: u32,
}

/// Upstream PROXY protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocol {
    /// The PROXY protocol version to use.
    #[serde(default)]
    pub version: ProxyProtocolVersion,
}

/// PROXY protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum ProxyProtocolVersion {
    /// Human readable format.
    #[default]
    V1,
    /// Binary format.
    V2,
}

/// Retry budget for the upstream cluster.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryBudget {
    /// Limit on concurrent retries as a percentage of active and pending requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true, "minimum" = 0, "maximum" = 100))]
    pub percent: Option<f64>,
    /// The minimum retry concurrency allowed for the retry budget.
    #[serde(default, skip_serializing_if = "is_default")]
    pub min_retry_concurrency: u32,
    /// Interval over which the budget is measured (listed by istio/api master).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_interval: Option<Duration>,
}

/// Load balancing settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(
    try_from = "LoadBalancerSettingsJson",
    into = "LoadBalancerSettingsJson"
)]
pub struct LoadBalancerSettings {
    /// The `lb_policy` oneof: `simple` or `consistentHash`.
    pub policy: Option<LbPolicy>,
    /// Locality load balancer settings.
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Zone-aware load balancer settings.
    pub zone_aware_lb_setting: Option<ZoneAwareLoadBalancerSetting>,
    /// Deprecated: slow start window; use `warmup`.
    pub warmup_duration_secs: Option<Duration>,
    /// Slow start for newly added endpoints.
    pub warmup: Option<WarmupConfiguration>,
}

/// The `lb_policy` oneof.
#[derive(Debug, Clone, PartialEq)]
pub enum LbPolicy {
    /// `simple`
    Simple(SimpleLb),
    /// `consistentHash`
    ConsistentHash(ConsistentHashLb),
}

/// Standard load balancing algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// No algorithm chosen; the proxy's default (least request) applies.
    #[default]
    Unspecified,
    /// Deprecated alias of `LEAST_REQUEST`.
    LeastConn,
    /// Random host.
    Random,
    /// Forward to the original destination address.
    Passthrough,
    /// Round robin.
    RoundRobin,
    /// Least request (power of two choices).
    LeastRequest,
}

#[derive(Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "LoadBalancerSettings", transform = lb_oneof)]
struct LoadBalancerSettingsJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    simple: Option<SimpleLb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consistent_hash: Option<ConsistentHashLb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zone_aware_lb_setting: Option<ZoneAwareLoadBalancerSetting>,
    /// Deprecated: use `warmup` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warmup_duration_secs: Option<Duration>,
    /// Represents the warmup configuration of Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warmup: Option<WarmupConfiguration>,
}

fn lb_oneof(s: &mut Schema) {
    oneof::constrain(s, &[&["simple", "consistentHash"]]);
}

impl TryFrom<LoadBalancerSettingsJson> for LoadBalancerSettings {
    type Error = String;
    fn try_from(j: LoadBalancerSettingsJson) -> Result<Self, String> {
        oneof::at_most_one(
            &["simple", "consistentHash"],
            &[j.simple.is_some(), j.consistent_hash.is_some()],
        )?;
        let policy = match (j.simple, j.consistent_hash) {
            (Some(s), _) => Some(LbPolicy::Simple(s)),
            (_, Some(c)) => Some(LbPolicy::ConsistentHash(c)),
            _ => None,
        };
        Ok(LoadBalancerSettings {
            policy,
            locality_lb_setting: j.locality_lb_setting,
            zone_aware_lb_setting: j.zone_aware_lb_setting,
            warmup_duration_secs: j.warmup_duration_secs,
            warmup: j.warmup,
        })
    }
}

impl From<LoadBalancerSettings> for LoadBalancerSettingsJson {
    fn from(l: LoadBalancerSettings) -> Self {
        let (simple, consistent_hash) = match l.policy {
            Some(LbPolicy::Simple(s)) => (Some(s), None),
            Some(LbPolicy::ConsistentHash(c)) => (None, Some(c)),
            None => (None, None),
        };
        LoadBalancerSettingsJson {
            simple,
            consistent_hash,
            locality_lb_setting: l.locality_lb_setting,
            zone_aware_lb_setting: l.zone_aware_lb_setting,
            warmup_duration_secs: l.warmup_duration_secs,
            warmup: l.warmup,
        }
    }
}

/// Consistent-hash (ring hash or Maglev) load balancing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "ConsistentHashLbJson", into = "ConsistentHashLbJson")]
pub struct ConsistentHashLb {
    /// The `hash_key` oneof.
    pub hash_key: Option<HashKey>,
    /// The `hash_algorithm` oneof: `ringHash` or `maglev`.
    pub hash_algorithm: Option<HashAlgorithm>,
    /// Deprecated: use `ringHash.minimumRingSize`.
    pub minimum_ring_size: u64,
}

/// What the consistent hash is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `httpHeaderName`
    HttpHeaderName(String),
    /// `httpCookie`
    HttpCookie(HttpCookie),
    /// `useSourceIp`
    UseSourceIp(bool),
    /// `httpQueryParameterName`
    HttpQueryParameterName(String),
}

/// Consistent hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// `ringHash`
    RingHash(RingHash),
    /// `maglev`
    Maglev(MagLev),
}

/// A cookie to hash on (generated when absent).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpCookie {
    /// Name of the cookie.
    pub name: String,
    /// Path to set for the cookie.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Lifetime of the cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Additional attributes of a generated cookie.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<HttpCookieAttribute>,
}

/// A cookie attribute.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCookieAttribute {
    /// Name of the attribute.
    pub name: String,
    /// Value of the attribute.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Ring hash settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RingHash {
    /// The minimum number of virtual nodes to use for the hash ring (default 1024).
    #[serde(default, skip_serializing_if = "is_default")]
    pub minimum_ring_size: u64,
}

/// Maglev settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MagLev {
    /// The table size for Maglev hashing (a prime).
    #[serde(default, skip_serializing_if = "is_default")]
    pub table_size: u64,
}

#[derive(Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "ConsistentHashLB", transform = consistent_hash_oneofs)]
struct ConsistentHashLbJson {
    /// Hash based on a specific HTTP header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_header_name: Option<String>,
    /// Hash based on HTTP cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_cookie: Option<HttpCookie>,
    /// Hash based on the source IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    use_source_ip: Option<bool>,
    /// Hash based on a specific HTTP query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_query_parameter_name: Option<String>,
    /// The ring/modulo hash load balancer implements consistent hashing to backend hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ring_hash: Option<RingHash>,
    /// The Maglev load balancer implements consistent hashing to backend hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maglev: Option<MagLev>,
    /// Deprecated.
    #[serde(default, skip_serializing_if = "is_default")]
    minimum_ring_size: u64,
}

const HASH_KEYS: &[&str] = &[
    "httpHeaderName",
    "httpCookie",
    "useSourceIp",
    "httpQueryParameterName",
];
const HASH_ALGORITHMS: &[&str] = &["ringHash", "maglev"];

fn consistent_hash_oneofs(s: &mut Schema) {
    oneof::constrain(s, &[HASH_KEYS, HASH_ALGORITHMS]);
}

impl TryFrom<ConsistentHashLbJson> for ConsistentHashLb {
    type Error = String;
    fn try_from(j: ConsistentHashLbJson) -> Result<Self, String> {
        oneof::at_most_one(
            HASH_KEYS,
            &[
                j.http_header_name.is_some(),
                j.http_cookie.is_some(),
                j.use_source_ip.is_some(),
                j.http_query_parameter_name.is_some(),
            ],
        )?;
        oneof::at_most_one(
            HASH_ALGORITHMS,
            &[j.ring_hash.is_some(), j.maglev.is_some()],
        )?;
        let hash_key = if let Some(h) = j.http_header_name {
            Some(HashKey::HttpHeaderName(h))
        } else if let Some(c) = j.http_cookie {
            Some(HashKey::HttpCookie(c))
        } else if let Some(b) = j.use_source_ip {
            Some(HashKey::UseSourceIp(b))
        } else {
            j.http_query_parameter_name
                .map(HashKey::HttpQueryParameterName)
        };
        let hash_algorithm = match (j.ring_hash, j.maglev) {
            (Some(r), _) => Some(HashAlgorithm::RingHash(r)),
            (_, Some(m)) => Some(HashAlgorithm::Maglev(m)),
            _ => None,
        };
        Ok(ConsistentHashLb {
            hash_key,
            hash_algorithm,
            minimum_ring_size: j.minimum_ring_size,
        })
    }
}

impl From<ConsistentHashLb> for ConsistentHashLbJson {
    fn from(c: ConsistentHashLb) -> Self {
        let mut j = ConsistentHashLbJson {
            minimum_ring_size: c.minimum_ring_size,
            ..ConsistentHashLbJson::default()
        };
        match c.hash_key {
            Some(HashKey::HttpHeaderName(h)) => j.http_header_name = Some(h),
            Some(HashKey::HttpCookie(k)) => j.http_cookie = Some(k),
            Some(HashKey::UseSourceIp(b)) => j.use_source_ip = Some(b),
            Some(HashKey::HttpQueryParameterName(q)) => j.http_query_parameter_name = Some(q),
            None => {}
        }
        match c.hash_algorithm {
            Some(HashAlgorithm::RingHash(r)) => j.ring_hash = Some(r),
            Some(HashAlgorithm::Maglev(m)) => j.maglev = Some(m),
            None => {}
        }
        j
    }
}

/// Slow start for new endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WarmupConfiguration {
    /// Duration of the warmup window.
    pub duration: Duration,
    /// Minimum initial traffic percentage (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true, "minimum" = 0, "maximum" = 100))]
    pub minimum_percent: Option<f64>,
    /// Speed of traffic increase over the warmup duration (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true, "minimum" = 0))]
    pub aggression: Option<f64>,
}

/// Locality-weighted load balancing and failover.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalityLoadBalancerSetting {
    /// Explicitly specify loadbalancing weight across different zones and geographical locations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<LocalityDistribute>,
    /// Explicitly specify the region traffic will land on when endpoints in local region becomes unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    /// Ordered list of labels used to sort endpoints for priority-based load balancing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    /// Enable locality load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub enabled: Option<bool>,
}

/// Traffic distribution from one locality.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalityDistribute {
    /// Originating locality, '/' separated, e.g. 'region/zone/sub_zone'.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Map of upstream localities to traffic distribution weights.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub to: BTreeMap<String, u32>,
}

/// Region failover.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalityFailover {
    /// Originating region.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Destination region the traffic will fail over to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
}

/// Envoy zone-aware routing (field types as listed by istio/api master).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZoneAwareLoadBalancerSetting {
    /// Enable zone-aware load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub enabled: Option<bool>,
    /// Ordering of cross-region failover tiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    /// Ordered list of labels used to sort endpoints for priority-based load balancing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    /// Minimum number of hosts in the local region for zone-aware routing (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub min_cluster_size: Option<u32>,
}

/// Connection pool settings for an upstream host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// Settings common to both HTTP and TCP upstream connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// HTTP connection pool settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// TCP connection pool settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpSettings {
    /// Maximum number of HTTP1 /TCP connections to a destination host.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_connections: i32,
    /// TCP connection timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// SO_KEEPALIVE settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// The maximum duration of a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    /// The idle timeout for TCP connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// TCP keepalive settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Maximum number of keepalive probes to send without response.
    #[serde(default, skip_serializing_if = "is_default")]
    pub probes: u32,
    /// Idle time before keep-alive probes start being sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    /// The time duration between keep-alive probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// HTTP connection pool settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpSettings {
    /// Maximum number of requests queued while waiting for a ready connection.
    #[serde(default, skip_serializing_if = "is_default")]
    pub http1_max_pending_requests: i32,
    /// Maximum number of active requests to a destination.
    #[serde(default, skip_serializing_if = "is_default")]
    pub http2_max_requests: i32,
    /// Maximum number of requests per connection to a backend.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_requests_per_connection: i32,
    /// Maximum number of retries outstanding to all hosts in a cluster at a given time.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_retries: i32,
    /// The idle timeout for upstream connection pool connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Whether HTTP/1.1 connections should be upgraded to HTTP/2.
    #[serde(default, skip_serializing_if = "is_default")]
    pub h2_upgrade_policy: H2UpgradePolicy,
    /// Preserve the client protocol when connecting to the backend.
    #[serde(default, skip_serializing_if = "is_default")]
    pub use_client_protocol: bool,
    /// The maximum number of concurrent streams allowed for a peer on one HTTP/2 connection.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_concurrent_streams: i32,
    /// HTTP/2 keepalive pings on upstream connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_keep_alive: Option<ConnectionKeepalive>,
}

/// HTTP/2 PING keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionKeepalive {
    /// Interval between PINGs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long to wait for a PING response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// HTTP/2 upgrade policy for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    /// Use the mesh-wide default.
    #[default]
    Default,
    /// Do not upgrade to HTTP/2.
    DoNotUpgrade,
    /// Upgrade to HTTP/2.
    Upgrade,
}

/// Outlier detection (passive health checking).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Deprecated: use `consecutiveGatewayErrors` or `consecutive5xxErrors`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub consecutive_errors: i32,
    /// Distinguish local origin failures from external errors.
    #[serde(default, skip_serializing_if = "is_default")]
    pub split_external_local_origin_errors: bool,
    /// The number of consecutive locally originated failures before ejection occurs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Number of gateway errors before a host is ejected from the connection pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub consecutive_gateway_errors: Option<u32>,
    /// Number of 5xx errors before a host is ejected from the connection pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub consecutive_5xx_errors: Option<u32>,
    /// Time interval between ejection sweep analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Minimum ejection duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    /// Maximum % of hosts in the load balancing pool that can be ejected.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_ejection_percent: i32,
    /// Outlier detection is on only while at least this % of hosts are healthy.
    #[serde(default, skip_serializing_if = "is_default")]
    pub min_health_percent: i32,
    /// HTTP status codes counted as errors (listed by istio/api master).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlier_detection_http_error_codes: Vec<u32>,
}
