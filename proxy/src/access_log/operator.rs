//! Envoy's command operators (`%REQ(X?Y):N%`, `%DURATION%`, ...) and what each one
//! prints for a [`LogContext`].

use std::net::SocketAddr;
use std::time::Duration;

use super::context::LogContext;
use super::time::TimeFormat;

/// What an operator produced, before it is printed as text (`-` for missing) or typed
/// JSON (`null` for missing, numbers as numbers).
#[derive(Clone, Debug, PartialEq)]
pub enum Rendered {
    Missing,
    Str(String),
    Num(u64),
}

impl Rendered {
    fn opt_str(v: Option<&str>) -> Rendered {
        match v {
            Some(s) if !s.is_empty() => Rendered::Str(s.to_string()),
            _ => Rendered::Missing,
        }
    }

    fn millis(d: Option<Duration>) -> Rendered {
        d.map_or(Rendered::Missing, |d| {
            Rendered::Num(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        })
    }
}

/// Which part of a socket address to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrPart {
    Full,
    WithoutPort,
    Port,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    UpstreamHost,
    UpstreamLocal,
    DownstreamLocal,
    DownstreamRemote,
    DownstreamDirectRemote,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderSource {
    Request,
    Response,
    Trailer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcStatusFormat {
    CamelString,
    SnakeString,
    Number,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Operator {
    StartTime(TimeFormat),
    Header {
        source: HeaderSource,
        main: String,
        alt: Option<String>,
        /// `REQ_WITHOUT_QUERY`: drop everything from `?`.
        without_query: bool,
    },
    Protocol,
    ResponseCode,
    ResponseCodeDetails,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    RequestDuration,
    ResponseDuration,
    UpstreamCluster,
    UpstreamClusterRaw,
    UpstreamTransportFailureReason,
    UpstreamRequestAttemptCount,
    Address(Address, AddrPart),
    RequestedServerName,
    RouteName,
    VirtualClusterName,
    ConnectionTerminationDetails,
    ConnectionId,
    GrpcStatus(GrpcStatusFormat),
    Hostname,
    /// An operator Envoy knows but strait-proxy has no data for (metadata, filter
    /// state, ...): always missing.
    Unsupported,
}

/// Operators Envoy accepts whose data strait-proxy does not have; they print `-`
/// rather than failing the whole config.
const KNOWN_WITHOUT_DATA: &[&str] = &[
    "DYNAMIC_METADATA",
    "CLUSTER_METADATA",
    "UPSTREAM_METADATA",
    "METADATA",
    "FILTER_STATE",
    "UPSTREAM_FILTER_STATE",
    "CEL",
    "DOWNSTREAM_PEER_SUBJECT",
    "DOWNSTREAM_PEER_ISSUER",
    "DOWNSTREAM_PEER_URI_SAN",
    "DOWNSTREAM_LOCAL_URI_SAN",
    "DOWNSTREAM_LOCAL_SUBJECT",
    "DOWNSTREAM_TLS_VERSION",
    "DOWNSTREAM_TLS_CIPHER",
    "DOWNSTREAM_TLS_SESSION_ID",
    "DOWNSTREAM_PEER_FINGERPRINT_256",
    "DOWNSTREAM_PEER_CERT",
    "UPSTREAM_PEER_SUBJECT",
    "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_TLS_VERSION",
    "UPSTREAM_PROTOCOL",
    "TRACE_ID",
    "ENVIRONMENT",
    "STREAM_ID",
    "UPSTREAM_CONNECTION_ID",
    "RESPONSE_FLAGS_LONG",
    "REQUEST_TX_DURATION",
    "RESPONSE_TX_DURATION",
    "REQUEST_HEADERS_BYTES",
    "RESPONSE_HEADERS_BYTES",
    "RESPONSE_TRAILERS_BYTES",
    "UPSTREAM_WIRE_BYTES_SENT",
    "UPSTREAM_WIRE_BYTES_RECEIVED",
    "DOWNSTREAM_WIRE_BYTES_SENT",
    "DOWNSTREAM_WIRE_BYTES_RECEIVED",
    "ACCESS_LOG_TYPE",
    "UNIQUE_ID",
];

fn header_args(args: &str) -> Result<(String, Option<String>), String> {
    let mut parts = args.splitn(2, '?');
    let main = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if main.is_empty() {
        return Err("header name must not be empty".into());
    }
    let alt = parts
        .next()
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty());
    if alt.as_deref().is_some_and(|a| a.contains('?')) {
        return Err("more than one alternative header".into());
    }
    Ok((main, alt))
}

impl Operator {
    /// The operator for `%NAME(args)%`; `Err` names what is wrong.
    pub fn parse(name: &str, args: Option<&str>) -> Result<Operator, String> {
        use AddrPart as P;
        use Address as A;
        let header = |source, without_query| {
            let args = args.ok_or_else(|| format!("{name} requires a header name"))?;
            let (main, alt) = header_args(args)?;
            Ok(Operator::Header {
                source,
                main,
                alt,
                without_query,
            })
        };
        let op = match name {
            "START_TIME" => Operator::StartTime(
                args.map(TimeFormat::parse)
                    .filter(|_| args.is_some_and(|a| !a.is_empty()))
                    .unwrap_or_default(),
            ),
            "REQ" => return header(HeaderSource::Request, false),
            "REQ_WITHOUT_QUERY" => return header(HeaderSource::Request, true),
            "RESP" => return header(HeaderSource::Response, false),
            "TRAILER" => return header(HeaderSource::Trailer, false),
            "UPSTREAM_SERVICE_TIME" => Operator::Header {
                source: HeaderSource::Response,
                main: "x-envoy-upstream-service-time".into(),
                alt: None,
                without_query: false,
            },
            "PROTOCOL" => Operator::Protocol,
            "RESPONSE_CODE" => Operator::ResponseCode,
            "RESPONSE_CODE_DETAILS" => Operator::ResponseCodeDetails,
            "RESPONSE_FLAGS" => Operator::ResponseFlags,
            "BYTES_RECEIVED" => Operator::BytesReceived,
            "BYTES_SENT" => Operator::BytesSent,
            "DURATION" => Operator::Duration,
            "REQUEST_DURATION" => Operator::RequestDuration,
            "RESPONSE_DURATION" => Operator::ResponseDuration,
            "UPSTREAM_HOST" => Operator::Address(A::UpstreamHost, P::Full),
            "UPSTREAM_REMOTE_ADDRESS" => Operator::Address(A::UpstreamHost, P::Full),
            "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                Operator::Address(A::UpstreamHost, P::WithoutPort)
            }
            "UPSTREAM_REMOTE_PORT" => Operator::Address(A::UpstreamHost, P::Port),
            "UPSTREAM_CLUSTER" => Operator::UpstreamCluster,
            "UPSTREAM_CLUSTER_RAW" => Operator::UpstreamClusterRaw,
            "UPSTREAM_LOCAL_ADDRESS" => Operator::Address(A::UpstreamLocal, P::Full),
            "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
                Operator::Address(A::UpstreamLocal, P::WithoutPort)
            }
            "UPSTREAM_LOCAL_PORT" => Operator::Address(A::UpstreamLocal, P::Port),
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => Operator::UpstreamTransportFailureReason,
            "UPSTREAM_REQUEST_ATTEMPT_COUNT" => Operator::UpstreamRequestAttemptCount,
            "DOWNSTREAM_LOCAL_ADDRESS" => Operator::Address(A::DownstreamLocal, P::Full),
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
                Operator::Address(A::DownstreamLocal, P::WithoutPort)
            }
            "DOWNSTREAM_LOCAL_PORT" => Operator::Address(A::DownstreamLocal, P::Port),
            "DOWNSTREAM_REMOTE_ADDRESS" => Operator::Address(A::DownstreamRemote, P::Full),
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                Operator::Address(A::DownstreamRemote, P::WithoutPort)
            }
            "DOWNSTREAM_REMOTE_PORT" => Operator::Address(A::DownstreamRemote, P::Port),
            "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => {
                Operator::Address(A::DownstreamDirectRemote, P::Full)
            }
            "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
                Operator::Address(A::DownstreamDirectRemote, P::WithoutPort)
            }
            "DOWNSTREAM_DIRECT_REMOTE_PORT" => {
                Operator::Address(A::DownstreamDirectRemote, P::Port)
            }
            "REQUESTED_SERVER_NAME" => Operator::RequestedServerName,
            "ROUTE_NAME" => Operator::RouteName,
            "VIRTUAL_CLUSTER_NAME" => Operator::VirtualClusterName,
            "CONNECTION_TERMINATION_DETAILS" => Operator::ConnectionTerminationDetails,
            "CONNECTION_ID" => Operator::ConnectionId,
            "GRPC_STATUS" => Operator::GrpcStatus(match args.unwrap_or("CAMEL_STRING") {
                "" | "CAMEL_STRING" => GrpcStatusFormat::CamelString,
                "SNAKE_STRING" => GrpcStatusFormat::SnakeString,
                "NUMBER" => GrpcStatusFormat::Number,
                other => return Err(format!("GRPC_STATUS: unknown format {other}")),
            }),
            "GRPC_STATUS_NUMBER" => Operator::GrpcStatus(GrpcStatusFormat::Number),
            "HOSTNAME" => Operator::Hostname,
            other if KNOWN_WITHOUT_DATA.contains(&other) => Operator::Unsupported,
            other => return Err(format!("Not supported field in StreamInfo: {other}")),
        };
        Ok(op)
    }

    /// Whether a lone operator renders as a JSON number in typed JSON logs.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Operator::ResponseCode
                | Operator::BytesReceived
                | Operator::BytesSent
                | Operator::Duration
                | Operator::RequestDuration
                | Operator::ResponseDuration
                | Operator::UpstreamRequestAttemptCount
                | Operator::ConnectionId
                | Operator::Address(_, AddrPart::Port)
                | Operator::GrpcStatus(GrpcStatusFormat::Number)
        )
    }

    pub fn render(&self, ctx: &dyn LogContext) -> Rendered {
        match self {
            Operator::StartTime(f) => Rendered::Str(f.format(ctx.start_time())),
            Operator::Header {
                source,
                main,
                alt,
                without_query,
            } => {
                let get = |n: &str| match source {
                    HeaderSource::Request => ctx.request_header(n),
                    HeaderSource::Response => ctx.response_header(n),
                    HeaderSource::Trailer => ctx.response_trailer(n),
                };
                let value = get(main)
                    .filter(|v| !v.is_empty())
                    .or_else(|| alt.as_deref().and_then(get));
                let value = if *without_query {
                    value.map(|v| v.split('?').next().unwrap_or_default())
                } else {
                    value
                };
                Rendered::opt_str(value)
            }
            Operator::Protocol => Rendered::opt_str(ctx.protocol()),
            Operator::ResponseCode => Rendered::Num(u64::from(ctx.response_code().unwrap_or(0))),
            Operator::ResponseCodeDetails => Rendered::opt_str(ctx.response_code_details()),
            Operator::ResponseFlags => {
                let flags = ctx.response_flags();
                Rendered::opt_str(Some(flags.as_ref()).filter(|f| *f != "-"))
            }
            Operator::BytesReceived => Rendered::Num(ctx.bytes_received()),
            Operator::BytesSent => Rendered::Num(ctx.bytes_sent()),
            Operator::Duration => Rendered::millis(ctx.duration()),
            Operator::RequestDuration => Rendered::millis(ctx.request_duration()),
            Operator::ResponseDuration => Rendered::millis(ctx.response_duration()),
            Operator::UpstreamCluster => Rendered::opt_str(ctx.upstream_cluster()),
            Operator::UpstreamClusterRaw => Rendered::opt_str(ctx.upstream_cluster_raw()),
            // Envoy prints it with spaces turned into underscores.
            Operator::UpstreamTransportFailureReason => Rendered::opt_str(
                ctx.upstream_transport_failure_reason()
                    .map(|r| r.replace(' ', "_"))
                    .as_deref(),
            ),
            Operator::UpstreamRequestAttemptCount => {
                Rendered::Num(u64::from(ctx.upstream_request_attempt_count().unwrap_or(0)))
            }
            Operator::Address(which, part) => {
                let addr = match which {
                    Address::UpstreamHost => ctx.upstream_host(),
                    Address::UpstreamLocal => ctx.upstream_local_address(),
                    Address::DownstreamLocal => ctx.downstream_local_address(),
                    Address::DownstreamRemote => ctx.downstream_remote_address(),
                    Address::DownstreamDirectRemote => ctx.downstream_direct_remote_address(),
                };
                render_addr(addr, *part)
            }
            Operator::RequestedServerName => Rendered::opt_str(ctx.requested_server_name()),
            Operator::RouteName => Rendered::opt_str(ctx.route_name()),
            Operator::VirtualClusterName => Rendered::opt_str(ctx.virtual_cluster_name()),
            Operator::ConnectionTerminationDetails => {
                Rendered::opt_str(ctx.connection_termination_details())
            }
            Operator::ConnectionId => ctx.connection_id().map_or(Rendered::Missing, Rendered::Num),
            Operator::GrpcStatus(format) => match ctx.grpc_status() {
                None => Rendered::Missing,
                Some(code) => match format {
                    GrpcStatusFormat::Number => Rendered::Num(u64::from(code)),
                    GrpcStatusFormat::CamelString => Rendered::Str(grpc_name(code, false)),
                    GrpcStatusFormat::SnakeString => Rendered::Str(grpc_name(code, true)),
                },
            },
            Operator::Hostname => Rendered::opt_str(hostname().as_deref()),
            Operator::Unsupported => Rendered::Missing,
        }
    }
}

fn render_addr(addr: Option<SocketAddr>, part: AddrPart) -> Rendered {
    let Some(addr) = addr else {
        return Rendered::Missing;
    };
    match part {
        AddrPart::Full => Rendered::Str(addr.to_string()),
        AddrPart::WithoutPort => Rendered::Str(addr.ip().to_string()),
        AddrPart::Port => Rendered::Num(u64::from(addr.port())),
    }
}

const GRPC_CODES: [(&str, &str); 17] = [
    ("Ok", "OK"),
    ("Canceled", "CANCELLED"),
    ("Unknown", "UNKNOWN"),
    ("InvalidArgument", "INVALID_ARGUMENT"),
    ("DeadlineExceeded", "DEADLINE_EXCEEDED"),
    ("NotFound", "NOT_FOUND"),
    ("AlreadyExists", "ALREADY_EXISTS"),
    ("PermissionDenied", "PERMISSION_DENIED"),
    ("ResourceExhausted", "RESOURCE_EXHAUSTED"),
    ("FailedPrecondition", "FAILED_PRECONDITION"),
    ("Aborted", "ABORTED"),
    ("OutOfRange", "OUT_OF_RANGE"),
    ("Unimplemented", "UNIMPLEMENTED"),
    ("Internal", "INTERNAL"),
    ("Unavailable", "UNAVAILABLE"),
    ("DataLoss", "DATA_LOSS"),
    ("Unauthenticated", "UNAUTHENTICATED"),
];

fn grpc_name(code: u32, snake: bool) -> String {
    match GRPC_CODES.get(code as usize) {
        Some((camel, s)) => (if snake { *s } else { *camel }).to_string(),
        None => code.to_string(),
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_and_known_operators() {
        assert!(Operator::parse("NOPE", None).is_err());
        assert!(Operator::parse("REQ", None).is_err());
        assert!(Operator::parse("REQ", Some("")).is_err());
        assert_eq!(
            Operator::parse("DYNAMIC_METADATA", Some("istio.mixer:status")),
            Ok(Operator::Unsupported)
        );
        assert_eq!(
            Operator::parse("REQ", Some("X-ENVOY-ORIGINAL-PATH?:PATH")),
            Ok(Operator::Header {
                source: HeaderSource::Request,
                main: "x-envoy-original-path".into(),
                alt: Some(":path".into()),
                without_query: false,
            })
        );
        assert_eq!(grpc_name(14, false), "Unavailable");
        assert_eq!(grpc_name(14, true), "UNAVAILABLE");
        assert_eq!(grpc_name(99, true), "99");
    }
}
