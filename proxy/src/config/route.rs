//! Route configurations: virtual hosts, routes, matches and actions.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::common::{HeaderMatcher, HeaderMutations, PartsPerMillion, QueryParameterMatcher};
use super::listener::ClusterSpecifier;

#[derive(Clone, Debug, Default)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<Arc<VirtualHost>>,
    pub ignore_port_in_host_matching: bool,
    pub headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    pub max_direct_response_body_size_bytes: u32,
    /// `most_specific_header_mutations_wins`: route-level header operations are applied
    /// last (and so win) instead of the route configuration's.
    pub most_specific_header_mutations_wins: bool,
}

#[derive(Clone, Debug, Default)]
pub struct VirtualHost {
    pub name: String,
    /// `*`, exact names, `*.suffix`, `prefix.*`; lowercased.
    pub domains: Vec<String>,
    pub routes: Vec<Arc<Route>>,
    pub headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    pub retry_policy: Option<RetryPolicy>,
    pub cors: Option<CorsPolicy>,
    /// `include_request_attempt_count`: send `x-envoy-attempt-count` upstream.
    pub include_request_attempt_count: bool,
}

#[derive(Clone, Debug)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    /// `path_separated_prefix`: the prefix must end at a `/` boundary.
    PathSeparatedPrefix(String),
}

#[derive(Clone, Debug)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Default true.
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatcher>,
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// `runtime_fraction` reduced to its default value (no runtime overrides here).
    pub fraction: Option<PartsPerMillion>,
    /// `grpc: {}`: only requests with content-type application/grpc.
    pub grpc: bool,
}

#[derive(Clone, Debug)]
pub struct Route {
    /// Shared with each request's record (`%ROUTE_NAME%`, Istio's catch-all checks).
    pub name: Arc<str>,
    pub route_match: RouteMatch,
    pub action: RouteAction,
    pub headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    /// `typed_per_filter_config["envoy.filters.http.fault"]`.
    pub fault: Option<FaultConfig>,
    /// `typed_per_filter_config["envoy.filters.http.cors"]`.
    pub cors: Option<CorsPolicy>,
    /// `decorator.operation`, for tracing and access logs.
    pub operation: Option<String>,
}

#[derive(Clone, Debug)]
pub enum RouteAction {
    Forward(Box<ForwardAction>),
    Redirect(RedirectAction),
    DirectResponse(DirectResponseAction),
    /// `non_forwarding_action`.
    NonForwarding,
}

#[derive(Clone, Debug)]
pub struct WeightedClusterHeaders {
    pub cluster: String,
    pub headers: HeaderMutations,
    pub response_headers: HeaderMutations,
}

#[derive(Clone, Debug)]
pub struct ForwardAction {
    pub cluster: ClusterSpecifier,
    /// Per-destination header operations of weighted clusters.
    pub cluster_headers: Vec<WeightedClusterHeaders>,
    /// Upstream timeout; Envoy's default is 15 s; `None` when 0 (disabled).
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub retry_policy: Option<RetryPolicy>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Regex, String)>,
    pub host_rewrite: Option<String>,
    /// `auto_host_rewrite`: Host becomes the upstream host's address.
    pub auto_host_rewrite: bool,
    pub mirrors: Vec<MirrorPolicy>,
    pub hash_policy: Vec<HashPolicy>,
    /// `max_grpc_timeout` / `grpc_timeout_header_max`: honour `grpc-timeout` up to this;
    /// `Some(ZERO)` honours it without a cap (Envoy's 0 = infinity); `None` ignores it.
    pub max_grpc_timeout: Option<Duration>,
    pub upgrade_types: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct MirrorPolicy {
    pub cluster: String,
    pub fraction: PartsPerMillion,
}

#[derive(Clone, Debug)]
pub enum HashPolicy {
    Header(String),
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: String,
    },
    SourceIp,
    QueryParameter(String),
}

/// What to retry on (Envoy's `x-envoy-retry-on` values).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOn {
    pub five_xx: bool,
    pub gateway_error: bool,
    pub reset: bool,
    pub connect_failure: bool,
    pub refused_stream: bool,
    pub retriable_4xx: bool,
    pub retriable_status_codes: bool,
    /// `reset-before-request`: resets only while nothing was sent upstream yet.
    pub reset_before_request: bool,
    /// gRPC status names: cancelled, deadline-exceeded, internal, resource-exhausted, unavailable.
    pub grpc: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub retry_on: RetryOn,
    /// Default 1, as Envoy.
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub per_try_idle_timeout: Option<Duration>,
    pub retriable_status_codes: Vec<u16>,
    /// Exponential back-off: base 25 ms, max 10 × base by default.
    pub base_interval: Duration,
    pub max_interval: Duration,
    /// `retry_host_predicate` previous_hosts.
    pub avoid_previous_hosts: bool,
    pub host_selection_retry_max_attempts: u32,
}

#[derive(Clone, Debug)]
pub enum RedirectScheme {
    Keep,
    Https,
    Http,
    Other(String),
}

#[derive(Clone, Debug)]
pub enum RedirectPath {
    Keep,
    Path(String),
    PrefixRewrite(String),
    RegexRewrite(Regex, String),
}

#[derive(Clone, Debug)]
pub struct RedirectAction {
    pub scheme: RedirectScheme,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: RedirectPath,
    /// 301 (default), 302, 303, 307, 308.
    pub status: u16,
    pub strip_query: bool,
}

#[derive(Clone, Debug)]
pub struct DirectResponseAction {
    pub status: u16,
    pub body: Option<bytes::Bytes>,
}

#[derive(Clone, Debug)]
pub enum FaultAbort {
    Http(u16),
    Grpc(u32),
}

#[derive(Clone, Debug)]
pub struct FaultConfig {
    pub delay: Option<(Duration, PartsPerMillion)>,
    pub abort: Option<(FaultAbort, PartsPerMillion)>,
    /// `max_active_faults`.
    pub max_active_faults: Option<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct CorsPolicy {
    pub allow_origins: Vec<super::common::StringMatcher>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub max_age: String,
    pub allow_credentials: Option<bool>,
    /// `forward_not_matching_preflights` (default true).
    pub forward_not_matching_preflights: bool,
}
