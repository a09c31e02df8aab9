//! A finished HTTP request ([`RequestInfo`]) as access log operators read it.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::context::LogContext;
use crate::http::observer::RequestInfo;

impl LogContext for RequestInfo {
    fn start_time(&self) -> SystemTime {
        self.start_time
    }

    fn request_header(&self, name: &str) -> Option<&str> {
        RequestInfo::request_header(self, name)
    }

    fn response_header(&self, name: &str) -> Option<&str> {
        RequestInfo::response_header(self, name)
    }

    fn response_trailer(&self, name: &str) -> Option<&str> {
        RequestInfo::response_trailer(self, name)
    }

    fn protocol(&self) -> Option<&str> {
        Some(self.protocol_str())
    }

    fn response_code(&self) -> Option<u16> {
        self.status
    }

    fn response_code_details(&self) -> Option<&str> {
        Some(self.response_code_details.as_ref()).filter(|d| !d.is_empty())
    }

    fn response_flags(&self) -> Cow<'_, str> {
        if self.response_flags.is_empty() {
            Cow::Borrowed("-")
        } else {
            Cow::Owned(self.response_flags.to_string())
        }
    }

    fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    fn duration(&self) -> Option<Duration> {
        Some(self.duration)
    }

    fn request_duration(&self) -> Option<Duration> {
        self.request_duration
    }

    fn response_duration(&self) -> Option<Duration> {
        self.response_duration
    }

    fn upstream_host(&self) -> Option<SocketAddr> {
        self.upstream_host
    }

    fn upstream_cluster(&self) -> Option<&str> {
        self.upstream_cluster.as_deref()
    }

    fn upstream_transport_failure_reason(&self) -> Option<&str> {
        self.upstream_transport_failure_reason.as_deref()
    }

    fn upstream_request_attempt_count(&self) -> Option<u32> {
        Some(self.attempt_count).filter(|n| *n > 0)
    }

    fn downstream_local_address(&self) -> Option<SocketAddr> {
        Some(self.downstream_local_address)
    }

    fn downstream_remote_address(&self) -> Option<SocketAddr> {
        Some(self.downstream_remote_address)
    }

    fn route_name(&self) -> Option<&str> {
        self.route_name.as_deref().filter(|n| !n.is_empty())
    }

    fn grpc_status(&self) -> Option<u32> {
        self.grpc_status
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, Version};

    use super::*;
    use crate::access_log::Formatter;
    use crate::http::ResponseFlag;

    #[test]
    fn envoy_default_format_from_a_request() {
        let mut info = RequestInfo::new(
            Method::GET,
            http::uri::PathAndQuery::from_static("/reviews/1"),
            Version::HTTP_11,
            "10.0.0.1:40000".parse().unwrap(),
            "10.96.0.11:9080".parse().unwrap(),
        );
        info.start_time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        info.authority = Some("reviews:9080".into());
        info.status = Some(503);
        info.response_flags.insert(ResponseFlag::NoHealthyUpstream);
        info.bytes_sent = 19;
        info.duration = Duration::from_millis(3);
        info.request_headers
            .insert("user-agent", "curl/8".parse().unwrap());
        info.request_headers
            .insert("x-request-id", "abc".parse().unwrap());
        let line = Formatter::envoy_default().format(&info);
        assert_eq!(
            line,
            "[2023-11-14T22:13:20.000Z] \"GET /reviews/1 HTTP/1.1\" 503 UH 0 19 3 - \"-\" \"curl/8\" \"abc\" \"reviews:9080\" \"-\"\n"
        );
        info.response_flags = Default::default();
        info.upstream_host = Some("10.1.0.7:9080".parse().unwrap());
        info.status = Some(200);
        let line = Formatter::envoy_default().format(&info);
        assert!(line.contains("\" 200 - 0 19 3 "), "{line}");
        assert!(line.ends_with("\"10.1.0.7:9080\"\n"), "{line}");
    }
}
