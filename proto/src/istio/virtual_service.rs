//! `VirtualService` (`networking.istio.io`): routing rules for HTTP, TLS and TCP traffic.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use super::common::{Destination, Headers, Percent, StringMatch, is_default};
use super::{Duration, base64, oneof};

/// The spec of a `VirtualService`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(
    description = "Configuration affecting label/content routing, sni routing, etc. See more details at: https://istio.io/docs/reference/config/networking/virtual-service.html"
)]
pub struct VirtualService {
    /// The destination hosts to which traffic is being sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The names of gateways and sidecars that should apply these routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// An ordered list of route rules for HTTP traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// An ordered list of route rules for opaque TLS traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    /// An ordered list of route rules for opaque TCP traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// A list of namespaces to which this virtual service is exported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
}

/// Match conditions and actions for HTTP/1.1, HTTP/2 and gRPC traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRoute {
    /// The name assigned to the route for debugging purposes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Match conditions to be satisfied for the rule to be activated.
    #[serde(rename = "match", default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations to forward to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    /// Redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Respond directly instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Delegate to the routes of another VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite HTTP URIs and Authority headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Timeout for HTTP requests, default is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry policy for HTTP requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Fault injection policy to apply on HTTP traffic at the client side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Mirror HTTP traffic to another destination in addition to forwarding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Mirror HTTP traffic to several destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated: integer percentage of traffic mirrored by `mirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub mirror_percent: Option<u32>,
    /// Deprecated spelling of `mirrorPercent` that Istio's CRD also accepts.
    #[serde(
        rename = "mirror_percent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("nullable" = true))]
    pub mirror_percent_legacy: Option<u32>,
    /// Percentage of the traffic to be mirrored by the `mirror` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// Cross-Origin Resource Sharing policy (CORS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

impl HttpRoute {
    /// The deprecated integer mirror percentage, whichever spelling was used.
    pub fn deprecated_mirror_percent(&self) -> Option<u32> {
        self.mirror_percent.or(self.mirror_percent_legacy)
    }
}

/// Conditions on an HTTP request; all conditions of one match must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// The name assigned to a match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// URI to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// URI scheme to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// HTTP method to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// HTTP authority to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Header matches; keys are lowercase header names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Specifies the ports on the host that is being addressed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// Labels of the source workloads this rule applies to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Names of gateways where the rule should be applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Query parameters for matching.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Flag to specify whether the URI matching should be case-insensitive.
    #[serde(default, skip_serializing_if = "is_default")]
    pub ignore_uri_case: bool,
    /// Headers that must not match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Source namespace constraining the applicability of a rule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
    /// The human readable prefix to use when emitting statistics for this route.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stat_prefix: String,
}

/// A weighted HTTP destination.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteDestination {
    /// Destination uniquely identifies the instances of a service.
    pub destination: Destination,
    /// Relative proportion of traffic to be forwarded to the destination.
    #[serde(default, skip_serializing_if = "is_default")]
    pub weight: i32,
    /// Header manipulation rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// A weighted L4 destination.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteDestination {
    /// Destination uniquely identifies the instances of a service.
    pub destination: Destination,
    /// Relative proportion of traffic to be forwarded to the destination.
    #[serde(default, skip_serializing_if = "is_default")]
    pub weight: i32,
}

/// A routing rule for unterminated TLS traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsRoute {
    /// Match conditions to be satisfied for the rule to be activated.
    #[serde(rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    /// The destination to which the connection should be forwarded to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// A routing rule for opaque TCP traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpRoute {
    /// Match conditions to be satisfied for the rule to be activated.
    #[serde(rename = "match", default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4MatchAttributes>,
    /// The destination to which the connection should be forwarded to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// L4 connection match attributes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct L4MatchAttributes {
    /// IPv4 or IPv6 ip addresses of destination with optional subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// Specifies the port on the host that is being addressed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// IPv4 or IPv6 ip address of source with optional subnet.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_subnet: String,
    /// Labels of the source workloads this rule applies to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Names of gateways where the rule should be applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Source namespace constraining the applicability of a rule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
}

/// TLS connection match attributes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsMatchAttributes {
    /// SNI (server name indicator) to match on.
    pub sni_hosts: Vec<String>,
    /// IPv4 or IPv6 ip addresses of destination with optional subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// Specifies the port on the host that is being addressed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// Labels of the source workloads this rule applies to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Names of gateways where the rule should be applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Source namespace constraining the applicability of a rule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
}

/// Sends a redirect response instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "HttpRedirectJson", into = "HttpRedirectJson")]
pub struct HttpRedirect {
    /// Replaces the path of the URL.
    pub uri: String,
    /// Replaces the authority/host of the URL.
    pub authority: String,
    /// How the port of the redirect URL is chosen (`port` or `derivePort`).
    pub redirect_port: Option<RedirectPort>,
    /// Replaces the scheme of the URL.
    pub scheme: String,
    /// Status code of the redirect response (default 301).
    pub redirect_code: u32,
    /// Replaces the matched prefix of the path (listed by istio/api master).
    pub prefix_rewrite: String,
}

/// The `redirect_port` oneof of `HTTPRedirect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectPort {
    /// `port`: overwrite the port of the URL with this value.
    Port(u32),
    /// `derivePort`: derive the port from the protocol or the request.
    Derive(RedirectPortSelection),
}

/// How to derive the redirect port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectPortSelection {
    /// 80 for HTTP and 443 for HTTPS.
    #[default]
    FromProtocolDefault,
    /// The port of the request.
    FromRequestPort,
}

#[derive(Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "HTTPRedirect", transform = redirect_oneof)]
struct HttpRedirectJson {
    /// On a redirect, overwrite the Path portion of the URL with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    uri: String,
    /// On a redirect, overwrite the Authority/Host portion of the URL with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    authority: String,
    /// On a redirect, overwrite the port portion of the URL with this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u32>,
    /// On a redirect, dynamically set the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    derive_port: Option<RedirectPortSelection>,
    /// On a redirect, overwrite the scheme portion of the URL with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    scheme: String,
    /// On a redirect, specifies the HTTP status code to use in the redirect response.
    #[serde(default, skip_serializing_if = "is_default")]
    redirect_code: u32,
    /// On a redirect, replace the matched prefix of the path with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    prefix_rewrite: String,
}

fn redirect_oneof(s: &mut Schema) {
    oneof::constrain(s, &[&["port", "derivePort"]]);
}

impl TryFrom<HttpRedirectJson> for HttpRedirect {
    type Error = String;
    fn try_from(j: HttpRedirectJson) -> Result<Self, String> {
        oneof::at_most_one(
            &["port", "derivePort"],
            &[j.port.is_some(), j.derive_port.is_some()],
        )?;
        let redirect_port = match (j.port, j.derive_port) {
            (Some(p), _) => Some(RedirectPort::Port(p)),
            (_, Some(d)) => Some(RedirectPort::Derive(d)),
            _ => None,
        };
        Ok(HttpRedirect {
            uri: j.uri,
            authority: j.authority,
            redirect_port,
            scheme: j.scheme,
            redirect_code: j.redirect_code,
            prefix_rewrite: j.prefix_rewrite,
        })
    }
}

impl From<HttpRedirect> for HttpRedirectJson {
    fn from(r: HttpRedirect) -> Self {
        let (port, derive_port) = match r.redirect_port {
            Some(RedirectPort::Port(p)) => (Some(p), None),
            Some(RedirectPort::Derive(d)) => (None, Some(d)),
            None => (None, None),
        };
        HttpRedirectJson {
            uri: r.uri,
            authority: r.authority,
            port,
            derive_port,
            scheme: r.scheme,
            redirect_code: r.redirect_code,
            prefix_rewrite: r.prefix_rewrite,
        }
    }
}

/// Responds directly with a fixed status and body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// Specifies the HTTP response status to be returned.
    pub status: u32,
    /// Specifies the content of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

/// A direct response body: `string` or base64 `bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "HttpBodyJson", into = "HttpBodyJson")]
pub enum HttpBody {
    /// `string`: response body as a string.
    String(String),
    /// `bytes`: response body as bytes (base64 in JSON).
    Bytes(Vec<u8>),
}

#[derive(Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HTTPBody", transform = body_oneof)]
struct HttpBodyJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    string: Option<String>,
    /// Response body as base64 encoded bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "byte"))]
    bytes: Option<String>,
}

fn body_oneof(s: &mut Schema) {
    oneof::constrain(s, &[&["string", "bytes"]]);
}

impl TryFrom<HttpBodyJson> for HttpBody {
    type Error = String;
    fn try_from(j: HttpBodyJson) -> Result<Self, String> {
        oneof::at_most_one(
            &["string", "bytes"],
            &[j.string.is_some(), j.bytes.is_some()],
        )?;
        match (j.string, j.bytes) {
            (Some(s), _) => Ok(HttpBody::String(s)),
            (_, Some(b)) => base64::decode(&b)
                .map(HttpBody::Bytes)
                .map_err(|e| format!("bytes: {e}")),
            // An empty body message carries nothing; treat it as an empty string body.
            (None, None) => Ok(HttpBody::String(String::new())),
        }
    }
}

impl From<HttpBody> for HttpBodyJson {
    fn from(b: HttpBody) -> Self {
        match b {
            HttpBody::String(s) => HttpBodyJson {
                string: Some(s),
                bytes: None,
            },
            HttpBody::Bytes(b) => HttpBodyJson {
                string: None,
                bytes: Some(base64::encode(&b)),
            },
        }
    }
}

impl HttpBody {
    /// The body as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            HttpBody::String(s) => s.as_bytes(),
            HttpBody::Bytes(b) => b,
        }
    }
}

/// The VirtualService whose routes are merged into this HTTP route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delegate {
    /// Name specifies the name of the delegate VirtualService.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespace specifies the namespace where the delegate VirtualService resides.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Rewrites applied before forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRewrite {
    /// Rewrite the path (or the prefix) portion of the URI with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Rewrite the Authority/Host header with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    /// Rewrite the path portion of the URI with the specified regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// A regex match and its replacement.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 style regex-based match.
    #[serde(rename = "match", default, skip_serializing_if = "String::is_empty")]
    pub pattern: String,
    /// The string that should replace into matching portions of original URI.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rewrite: String,
}

/// Retry policy for HTTP requests.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRetry {
    /// Number of retries to be allowed for a given request.
    #[serde(default, skip_serializing_if = "is_default")]
    pub attempts: i32,
    /// Timeout per attempt for a given request, including the initial call and any retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Specifies the conditions under which retry takes place (comma separated).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retry_on: String,
    /// Flag to specify whether the retries should retry to other localities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub retry_remote_localities: Option<bool>,
    /// Flag to specify whether the retries should ignore previously tried hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Specifies the minimum duration between retry attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

/// Cross-Origin Resource Sharing policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Deprecated: exact origins; use `allowOrigins`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origin: Vec<String>,
    /// String patterns that match allowed origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    /// List of HTTP methods allowed to access the resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// List of HTTP headers that can be used when requesting the resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// A list of HTTP headers that the browsers are allowed to access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Specifies how long the results of a preflight request can be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Whether the caller may send the actual request with credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub allow_credentials: Option<bool>,
    /// What to do with preflight requests whose origin is not allowed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub unmatched_preflights: UnmatchedPreflights,
}

/// Handling of preflight requests that match no allowed origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    /// Default: same as `FORWARD`.
    #[default]
    Unspecified,
    /// Forward the preflight request upstream.
    Forward,
    /// Answer the preflight request without CORS headers.
    Ignore,
}

/// Faults injected on the client side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay requests before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    /// Abort requests and return error codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
}

/// Injected latency.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "DelayJson", into = "DelayJson")]
pub struct Delay {
    /// Deprecated integer percentage; use `percentage`.
    pub percent: i32,
    /// The `http_delay_type` oneof: `fixedDelay` or `exponentialDelay`.
    pub delay: Option<DelayKind>,
    /// Percentage of requests on which the delay will be injected.
    pub percentage: Option<Percent>,
}

/// The `http_delay_type` oneof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayKind {
    /// `fixedDelay`
    Fixed(Duration),
    /// `exponentialDelay` (accepted, rejected by validation as Istio does)
    Exponential(Duration),
}

#[derive(Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "Delay", transform = delay_oneof)]
struct DelayJson {
    /// Percentage of requests on which the delay will be injected (0-100).
    #[serde(default, skip_serializing_if = "is_default")]
    percent: i32,
    /// Add a fixed delay before forwarding the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fixed_delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exponential_delay: Option<Duration>,
    /// Percentage of requests on which the delay will be injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    percentage: Option<Percent>,
}

fn delay_oneof(s: &mut Schema) {
    oneof::constrain(s, &[&["fixedDelay", "exponentialDelay"]]);
}

impl TryFrom<DelayJson> for Delay {
    type Error = String;
    fn try_from(j: DelayJson) -> Result<Self, String> {
        oneof::at_most_one(
            &["fixedDelay", "exponentialDelay"],
            &[j.fixed_delay.is_some(), j.exponential_delay.is_some()],
        )?;
        let delay = match (j.fixed_delay, j.exponential_delay) {
            (Some(d), _) => Some(DelayKind::Fixed(d)),
            (_, Some(d)) => Some(DelayKind::Exponential(d)),
            _ => None,
        };
        Ok(Delay {
            percent: j.percent,
            delay,
            percentage: j.percentage,
        })
    }
}

impl From<Delay> for DelayJson {
    fn from(d: Delay) -> Self {
        let (fixed_delay, exponential_delay) = match d.delay {
            Some(DelayKind::Fixed(v)) => (Some(v), None),
            Some(DelayKind::Exponential(v)) => (None, Some(v)),
            None => (None, None),
        };
        DelayJson {
            percent: d.percent,
            fixed_delay,
            exponential_delay,
            percentage: d.percentage,
        }
    }
}

/// Injected request aborts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "AbortJson", into = "AbortJson")]
pub struct Abort {
    /// The `error_type` oneof: `httpStatus`, `grpcStatus` or `http2Error`.
    pub error: Option<AbortError>,
    /// Percentage of requests to be aborted.
    pub percentage: Option<Percent>,
}

/// The `error_type` oneof of an abort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortError {
    /// `httpStatus`
    HttpStatus(i32),
    /// `grpcStatus`, e.g. `UNAVAILABLE`
    GrpcStatus(String),
    /// `http2Error` (accepted, rejected by validation as Istio does)
    Http2Error(String),
}

#[derive(Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "Abort", transform = abort_oneof)]
struct AbortJson {
    /// HTTP status code to use to abort the Http request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_status: Option<i32>,
    /// GRPC status code to use to abort the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grpc_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http2_error: Option<String>,
    /// Percentage of requests to be aborted with the error code provided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    percentage: Option<Percent>,
}

fn abort_oneof(s: &mut Schema) {
    oneof::constrain(s, &[&["httpStatus", "grpcStatus", "http2Error"]]);
}

impl TryFrom<AbortJson> for Abort {
    type Error = String;
    fn try_from(j: AbortJson) -> Result<Self, String> {
        oneof::at_most_one(
            &["httpStatus", "grpcStatus", "http2Error"],
            &[
                j.http_status.is_some(),
                j.grpc_status.is_some(),
                j.http2_error.is_some(),
            ],
        )?;
        let error = match (j.http_status, j.grpc_status, j.http2_error) {
            (Some(s), _, _) => Some(AbortError::HttpStatus(s)),
            (_, Some(s), _) => Some(AbortError::GrpcStatus(s)),
            (_, _, Some(s)) => Some(AbortError::Http2Error(s)),
            _ => None,
        };
        Ok(Abort {
            error,
            percentage: j.percentage,
        })
    }
}

impl From<Abort> for AbortJson {
    fn from(a: Abort) -> Self {
        let mut j = AbortJson {
            percentage: a.percentage,
            ..AbortJson::default()
        };
        match a.error {
            Some(AbortError::HttpStatus(s)) => j.http_status = Some(s),
            Some(AbortError::GrpcStatus(s)) => j.grpc_status = Some(s),
            Some(AbortError::Http2Error(s)) => j.http2_error = Some(s),
            None => {}
        }
        j
    }
}

/// One mirror destination.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Destination specifies the target of the mirror operation.
    pub destination: Destination,
    /// Percentage of the traffic to be mirrored by the `destination` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}
