//! What a log line is made from: the HTTP and TCP code implement [`LogContext`] over
//! their per-request (or per-connection) record. Everything has a default so a TCP
//! record only provides what a connection has.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

pub trait LogContext {
    /// `%START_TIME%`: request (HTTP) or connection (TCP) start.
    fn start_time(&self) -> SystemTime;

    /// A request header by lowercase name; pseudo-headers (`:method`, `:path`,
    /// `:authority`, `:scheme`) included.
    fn request_header(&self, _name: &str) -> Option<&str> {
        None
    }

    fn response_header(&self, _name: &str) -> Option<&str> {
        None
    }

    fn response_trailer(&self, _name: &str) -> Option<&str> {
        None
    }

    /// `HTTP/1.1`, `HTTP/2`; `None` for TCP.
    fn protocol(&self) -> Option<&str> {
        None
    }

    /// `None` when no response was sent (printed as 0, as Envoy does).
    fn response_code(&self) -> Option<u16> {
        None
    }

    fn response_code_details(&self) -> Option<&str> {
        None
    }

    /// Short flags, comma separated (`UH,UT`); empty or `-` when none.
    fn response_flags(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn bytes_received(&self) -> u64 {
        0
    }

    fn bytes_sent(&self) -> u64 {
        0
    }

    fn duration(&self) -> Option<Duration> {
        None
    }

    fn request_duration(&self) -> Option<Duration> {
        None
    }

    fn response_duration(&self) -> Option<Duration> {
        None
    }

    fn upstream_host(&self) -> Option<SocketAddr> {
        None
    }

    /// The cluster's stat name (`alt_stat_name` when set).
    fn upstream_cluster(&self) -> Option<&str> {
        None
    }

    /// The cluster's own name.
    fn upstream_cluster_raw(&self) -> Option<&str> {
        self.upstream_cluster()
    }

    fn upstream_local_address(&self) -> Option<SocketAddr> {
        None
    }

    fn upstream_transport_failure_reason(&self) -> Option<&str> {
        None
    }

    fn upstream_request_attempt_count(&self) -> Option<u32> {
        None
    }

    /// The address the client connected to (the original destination when redirected).
    fn downstream_local_address(&self) -> Option<SocketAddr> {
        None
    }

    /// The client, possibly as trusted `x-forwarded-for` says.
    fn downstream_remote_address(&self) -> Option<SocketAddr> {
        None
    }

    /// The peer of the socket.
    fn downstream_direct_remote_address(&self) -> Option<SocketAddr> {
        self.downstream_remote_address()
    }

    /// SNI.
    fn requested_server_name(&self) -> Option<&str> {
        None
    }

    fn route_name(&self) -> Option<&str> {
        None
    }

    fn virtual_cluster_name(&self) -> Option<&str> {
        None
    }

    fn connection_termination_details(&self) -> Option<&str> {
        None
    }

    fn connection_id(&self) -> Option<u64> {
        None
    }

    fn grpc_status(&self) -> Option<u32> {
        None
    }
}

/// A plain record implementing [`LogContext`], for callers that assemble the values
/// themselves (and for tests).
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub start_time: SystemTime,
    /// Lowercase names.
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub response_trailers: Vec<(String, String)>,
    pub protocol: Option<String>,
    pub response_code: Option<u16>,
    pub response_code_details: Option<String>,
    pub response_flags: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Option<Duration>,
    pub request_duration: Option<Duration>,
    pub response_duration: Option<Duration>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<String>,
    pub upstream_local_address: Option<SocketAddr>,
    pub upstream_transport_failure_reason: Option<String>,
    pub downstream_local_address: Option<SocketAddr>,
    pub downstream_remote_address: Option<SocketAddr>,
    pub requested_server_name: Option<String>,
    pub route_name: Option<String>,
    pub connection_termination_details: Option<String>,
    pub grpc_status: Option<u32>,
}

impl LogRecord {
    pub fn new(start_time: SystemTime) -> LogRecord {
        LogRecord {
            start_time,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            response_trailers: Vec::new(),
            protocol: None,
            response_code: None,
            response_code_details: None,
            response_flags: String::new(),
            bytes_received: 0,
            bytes_sent: 0,
            duration: None,
            request_duration: None,
            response_duration: None,
            upstream_host: None,
            upstream_cluster: None,
            upstream_local_address: None,
            upstream_transport_failure_reason: None,
            downstream_local_address: None,
            downstream_remote_address: None,
            requested_server_name: None,
            route_name: None,
            connection_termination_details: None,
            grpc_status: None,
        }
    }
}

fn find<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl LogContext for LogRecord {
    fn start_time(&self) -> SystemTime {
        self.start_time
    }
    fn request_header(&self, name: &str) -> Option<&str> {
        find(&self.request_headers, name)
    }
    fn response_header(&self, name: &str) -> Option<&str> {
        find(&self.response_headers, name)
    }
    fn response_trailer(&self, name: &str) -> Option<&str> {
        find(&self.response_trailers, name)
    }
    fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
    fn response_code(&self) -> Option<u16> {
        self.response_code
    }
    fn response_code_details(&self) -> Option<&str> {
        self.response_code_details.as_deref()
    }
    fn response_flags(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.response_flags)
    }
    fn bytes_received(&self) -> u64 {
        self.bytes_received
    }
    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
    fn duration(&self) -> Option<Duration> {
        self.duration
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
    fn upstream_local_address(&self) -> Option<SocketAddr> {
        self.upstream_local_address
    }
    fn upstream_transport_failure_reason(&self) -> Option<&str> {
        self.upstream_transport_failure_reason.as_deref()
    }
    fn downstream_local_address(&self) -> Option<SocketAddr> {
        self.downstream_local_address
    }
    fn downstream_remote_address(&self) -> Option<SocketAddr> {
        self.downstream_remote_address
    }
    fn requested_server_name(&self) -> Option<&str> {
        self.requested_server_name.as_deref()
    }
    fn route_name(&self) -> Option<&str> {
        self.route_name.as_deref()
    }
    fn connection_termination_details(&self) -> Option<&str> {
        self.connection_termination_details.as_deref()
    }
    fn grpc_status(&self) -> Option<u32> {
        self.grpc_status
    }
}
