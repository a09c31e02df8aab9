//! What a finished request looks like to access logs and stats: one [`RequestInfo`] per
//! downstream request, handed to the [`RequestObserver`] set on the
//! [`HttpService`](super::HttpService) when the response has been sent (or the stream
//! ended early).

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderValue, Method, Version};

use crate::config::listener::HttpConnectionManager;

/// Called once per downstream request, on the worker that served it; keep it cheap.
pub trait RequestObserver: Send + Sync + 'static {
    /// A request's headers arrived (before routing). Every request that starts is
    /// also reported done.
    fn on_request_start(&self, _version: Version) {}

    /// Whether [`RequestInfo::request_headers`] and [`RequestInfo::response_headers`]
    /// must be filled (access logs read `%REQ(...)%` and `%RESP(...)%`); copying them
    /// costs allocations per request otherwise spared.
    fn wants_headers(&self) -> bool {
        true
    }

    fn on_request_done(&self, info: &RequestInfo);
}

/// Envoy's response flags (`%RESPONSE_FLAGS%`), in Envoy's printing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ResponseFlag {
    /// `UH`: no healthy upstream host.
    NoHealthyUpstream,
    /// `UT`: upstream request timeout.
    UpstreamRequestTimeout,
    /// `LR`: connection local reset.
    LocalReset,
    /// `UR`: upstream remote reset.
    UpstreamRemoteReset,
    /// `UF`: upstream connection failure.
    UpstreamConnectionFailure,
    /// `UC`: upstream connection termination.
    UpstreamConnectionTermination,
    /// `UO`: upstream overflow (circuit breaking).
    UpstreamOverflow,
    /// `NR`: no route.
    NoRouteFound,
    /// `DI`: the request was delayed by fault injection.
    DelayInjected,
    /// `FI`: the request was aborted by fault injection.
    FaultInjected,
    /// `DC`: downstream connection termination.
    DownstreamConnectionTermination,
    /// `URX`: upstream retry limit (or max connect attempts) reached.
    UpstreamRetryLimitExceeded,
    /// `SI`: stream idle timeout.
    StreamIdleTimeout,
    /// `DPE`: downstream protocol error.
    DownstreamProtocolError,
    /// `UPE`: upstream protocol error.
    UpstreamProtocolError,
    /// `NC`: no cluster found.
    NoClusterFound,
}

impl ResponseFlag {
    const ALL: [ResponseFlag; 16] = [
        ResponseFlag::NoHealthyUpstream,
        ResponseFlag::UpstreamRequestTimeout,
        ResponseFlag::LocalReset,
        ResponseFlag::UpstreamRemoteReset,
        ResponseFlag::UpstreamConnectionFailure,
        ResponseFlag::UpstreamConnectionTermination,
        ResponseFlag::UpstreamOverflow,
        ResponseFlag::NoRouteFound,
        ResponseFlag::DelayInjected,
        ResponseFlag::FaultInjected,
        ResponseFlag::DownstreamConnectionTermination,
        ResponseFlag::UpstreamRetryLimitExceeded,
        ResponseFlag::StreamIdleTimeout,
        ResponseFlag::DownstreamProtocolError,
        ResponseFlag::UpstreamProtocolError,
        ResponseFlag::NoClusterFound,
    ];

    /// Envoy's short code.
    pub fn code(self) -> &'static str {
        match self {
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::LocalReset => "LR",
            ResponseFlag::UpstreamRemoteReset => "UR",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::NoRouteFound => "NR",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::StreamIdleTimeout => "SI",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::UpstreamProtocolError => "UPE",
            ResponseFlag::NoClusterFound => "NC",
        }
    }

    /// The flag of one of Envoy's short codes.
    pub fn from_code(code: &str) -> Option<ResponseFlag> {
        ResponseFlag::ALL.into_iter().find(|f| f.code() == code)
    }
}

/// A set of response flags that remembers the order they were raised in: Envoy prints
/// them in that order (`URX,UF` when the last retry failed to connect).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags {
    bits: u32,
    /// Flag numbers in insertion order, four bits each, first in the lowest nibble.
    order: u64,
    len: u8,
}

impl ResponseFlags {
    pub fn insert(&mut self, flag: ResponseFlag) {
        if self.contains(flag) {
            return;
        }
        self.bits |= 1 << flag as u8;
        self.order |= u64::from(flag as u8) << (4 * self.len);
        self.len += 1;
    }

    pub fn contains(&self, flag: ResponseFlag) -> bool {
        self.bits & (1 << flag as u8) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The flags in the order they were raised.
    pub fn iter(&self) -> impl Iterator<Item = ResponseFlag> + '_ {
        (0..self.len).filter_map(|i| {
            let n = (self.order >> (4 * i)) & 0xf;
            ResponseFlag::ALL
                .into_iter()
                .find(|f| u64::from(*f as u8) == n)
        })
    }
}

/// `%RESPONSE_FLAGS%`: comma-separated codes, `-` when there are none.
impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for flag in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(flag.code())?;
            first = false;
        }
        Ok(())
    }
}

/// Text kept from a request head without copying it: header values and URI parts
/// share the buffer the head was parsed from.
#[derive(Clone, Debug)]
pub enum HeadText {
    /// A header value known to be visible ASCII.
    Header(HeaderValue),
    Authority(Authority),
}

impl HeadText {
    pub fn as_str(&self) -> &str {
        match self {
            HeadText::Header(v) => v.to_str().unwrap_or(""),
            HeadText::Authority(a) => a.as_str(),
        }
    }
}

impl From<&'static str> for HeadText {
    fn from(text: &'static str) -> HeadText {
        HeadText::Header(HeaderValue::from_static(text))
    }
}

/// One finished downstream request.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// When the request's headers arrived (`%START_TIME%`).
    pub start_time: SystemTime,
    /// Until the last response byte went downstream, or the stream ended (`%DURATION%`).
    pub duration: Duration,
    /// Until the request body was fully received (`%REQUEST_DURATION%`).
    pub request_duration: Option<Duration>,
    /// Until the first response byte (headers) went downstream (`%RESPONSE_DURATION%`).
    pub response_duration: Option<Duration>,
    pub method: Method,
    /// `:path` as received, before any rewrite (`%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`).
    pub path: PathAndQuery,
    pub authority: Option<HeadText>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The downstream protocol.
    pub protocol: Version,
    /// `None` when no response was sent (the stream was reset first).
    pub status: Option<u16>,
    pub response_flags: ResponseFlags,
    /// Envoy's `%RESPONSE_CODE_DETAILS%` (`via_upstream`, `route_not_found`, ...).
    pub response_code_details: Cow<'static, str>,
    /// Request body bytes (`%BYTES_RECEIVED%`).
    pub bytes_received: u64,
    /// Response body bytes (`%BYTES_SENT%`).
    pub bytes_sent: u64,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<Arc<str>>,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    pub upstream_transport_failure_reason: Option<String>,
    pub route_name: Option<Arc<str>>,
    /// Attempts made upstream (`%UPSTREAM_REQUEST_ATTEMPT_COUNT%`).
    pub attempt_count: u32,
    pub downstream_remote_address: SocketAddr,
    /// The address the client connected to (after any original-destination handoff).
    pub downstream_local_address: SocketAddr,
    /// `grpc-status` of the response (trailers, or headers for trailers-only responses).
    pub grpc_status: Option<u32>,
    /// The HCM that served the request (its access logs, stat prefix, ...).
    pub connection_manager: Option<Arc<HttpConnectionManager>>,
    /// The request is gRPC (Envoy's test: `content-type: application/grpc`, alone or
    /// with `+…`/`;…`, so not gRPC-Web); Istio's metrics label it so.
    pub grpc_request: bool,
    /// The request headers as routed (after the HCM's own changes, before the router's),
    /// when the observer [wants them](RequestObserver::wants_headers).
    pub request_headers: HeaderMap,
    /// The response headers as sent downstream, when the observer wants them.
    pub response_headers: HeaderMap,
    pub response_trailers: HeaderMap,
}

fn first<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl RequestInfo {
    /// `%REQ(name)%`.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        match name {
            ":authority" | "host" => self.authority(),
            ":path" => Some(self.path.as_str()),
            ":method" => Some(self.method.as_str()),
            ":scheme" => Some(self.scheme),
            _ => first(&self.request_headers, name),
        }
    }

    /// `:authority` (or `Host`) as routed.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_ref().map(HeadText::as_str)
    }

    /// `%RESP(name)%`.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        first(&self.response_headers, name)
    }

    /// `%TRAILER(name)%`.
    pub fn response_trailer(&self, name: &str) -> Option<&str> {
        first(&self.response_trailers, name)
    }

    /// `%PROTOCOL%`.
    pub fn protocol_str(&self) -> &'static str {
        match self.protocol {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        }
    }

    /// A blank record for a request that just arrived.
    pub fn new(
        method: Method,
        path: PathAndQuery,
        protocol: Version,
        downstream_remote_address: SocketAddr,
        downstream_local_address: SocketAddr,
    ) -> RequestInfo {
        RequestInfo {
            start_time: SystemTime::now(),
            duration: Duration::ZERO,
            request_duration: None,
            response_duration: None,
            method,
            path,
            authority: None,
            scheme: "http",
            protocol,
            status: None,
            response_flags: ResponseFlags::default(),
            response_code_details: Cow::Borrowed(""),
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: None,
            upstream_cluster: None,
            upstream_transport_failure_reason: None,
            route_name: None,
            attempt_count: 0,
            downstream_remote_address,
            downstream_local_address,
            grpc_status: None,
            connection_manager: None,
            grpc_request: false,
            request_headers: HeaderMap::new(),
            response_headers: HeaderMap::new(),
            response_trailers: HeaderMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_in_the_order_they_were_raised() {
        let mut flags = ResponseFlags::default();
        assert_eq!(flags.to_string(), "-");
        flags.insert(ResponseFlag::UpstreamRetryLimitExceeded);
        flags.insert(ResponseFlag::UpstreamConnectionFailure);
        assert_eq!(flags.to_string(), "URX,UF");
        assert!(flags.contains(ResponseFlag::UpstreamConnectionFailure));
        assert!(!flags.contains(ResponseFlag::NoRouteFound));
        assert_eq!(
            ResponseFlag::from_code("NC"),
            Some(ResponseFlag::NoClusterFound)
        );
        assert_eq!(ResponseFlag::from_code("XX"), None);
    }

    #[test]
    fn header_accessors_read_pseudo_headers_too() {
        let mut info = RequestInfo::new(
            Method::GET,
            PathAndQuery::from_static("/a?b"),
            Version::HTTP_2,
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        info.authority = Some("reviews:9080".into());
        info.request_headers
            .insert("user-agent", "curl".parse().unwrap());
        info.response_headers
            .insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(info.request_header(":authority"), Some("reviews:9080"));
        assert_eq!(info.request_header(":path"), Some("/a?b"));
        assert_eq!(info.request_header("user-agent"), Some("curl"));
        assert_eq!(info.response_header("content-type"), Some("text/plain"));
        assert_eq!(info.protocol_str(), "HTTP/2");
    }
}
