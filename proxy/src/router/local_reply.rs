//! Responses the proxy makes up itself (no route, direct responses, redirects, fault
//! aborts), shaped as Envoy's `sendLocalReply`: a gRPC request gets a trailers-only
//! response (HTTP 200, `grpc-status`, `grpc-message`), anything else the status with a
//! `text/plain` body.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::headers::names;

#[derive(Clone, Debug, PartialEq)]
pub struct LocalReply {
    /// HTTP status to send (200 for gRPC).
    pub status: u16,
    pub headers: HeaderMap,
    /// Empty for gRPC (trailers-only) and HEAD requests.
    pub body: Bytes,
    /// Envoy's response code details, for access logs (`route_not_found`, ...).
    pub details: &'static str,
}

impl LocalReply {
    /// A gRPC local reply is complete with its headers (no body, no trailers).
    pub fn headers_only(&self) -> bool {
        self.body.is_empty()
    }
}

/// The request facts a local reply depends on.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplyTo {
    pub grpc: bool,
    pub head: bool,
}

/// Envoy's `httpToGrpcStatus`.
pub fn http_to_grpc_status(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// `grpc-message` encoding: `%`, controls and non-ASCII bytes are percent-encoded.
pub fn grpc_message_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Build a local reply. `extra` adds headers first (e.g. a route's response headers or a
/// `location`); `grpc_status` overrides the status derived from `status` for gRPC.
pub fn local_reply(
    status: u16,
    body: Bytes,
    grpc_status: Option<u32>,
    to: ReplyTo,
    details: &'static str,
    extra: impl FnOnce(&mut HeaderMap),
) -> LocalReply {
    let mut headers = HeaderMap::new();
    extra(&mut headers);
    if to.grpc {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        if !headers.contains_key(&names::GRPC_STATUS) {
            let code = grpc_status.unwrap_or_else(|| http_to_grpc_status(status));
            headers.insert(names::GRPC_STATUS, HeaderValue::from(code));
        }
        if !body.is_empty()
            && !to.head
            && let Ok(msg) =
                HeaderValue::from_str(&grpc_message_encode(&String::from_utf8_lossy(&body)))
        {
            headers.insert(names::GRPC_MESSAGE, msg);
        }
        headers.remove(http::header::CONTENT_LENGTH);
        return LocalReply {
            status: 200,
            headers,
            body: Bytes::new(),
            details,
        };
    }
    if body.is_empty() {
        headers.remove(http::header::CONTENT_LENGTH);
        headers.remove(http::header::CONTENT_TYPE);
    } else {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        if !headers.contains_key(http::header::CONTENT_TYPE) {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
        }
    }
    LocalReply {
        status,
        headers,
        body: if to.head { Bytes::new() } else { body },
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_replies_carry_text_bodies() {
        let r = local_reply(
            503,
            Bytes::from_static(b"fault filter abort"),
            None,
            ReplyTo::default(),
            "fault_filter_abort",
            |_| {},
        );
        assert_eq!(r.status, 503);
        assert_eq!(&r.body[..], b"fault filter abort");
        assert_eq!(r.headers["content-type"], "text/plain");
        assert_eq!(r.headers["content-length"], "18");

        let empty = local_reply(
            404,
            Bytes::new(),
            None,
            ReplyTo::default(),
            "route_not_found",
            |_| {},
        );
        assert!(empty.headers.is_empty());
        assert!(empty.headers_only());

        let head = local_reply(
            503,
            Bytes::from_static(b"x"),
            None,
            ReplyTo {
                grpc: false,
                head: true,
            },
            "d",
            |_| {},
        );
        assert!(head.body.is_empty());
        assert_eq!(head.headers["content-length"], "1");
    }

    #[test]
    fn grpc_requests_get_trailers_only_replies() {
        let to = ReplyTo {
            grpc: true,
            head: false,
        };
        let r = local_reply(
            503,
            Bytes::from_static(b"no healthy upstream"),
            None,
            to,
            "d",
            |_| {},
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["grpc-status"], "14");
        assert_eq!(r.headers["grpc-message"], "no healthy upstream");
        assert_eq!(r.headers["content-type"], "application/grpc");
        assert!(r.body.is_empty());

        let explicit = local_reply(200, Bytes::new(), Some(8), to, "d", |_| {});
        assert_eq!(explicit.headers["grpc-status"], "8");
        assert!(!explicit.headers.contains_key("grpc-message"));
        assert_eq!(
            local_reply(404, Bytes::new(), None, to, "d", |_| {}).headers["grpc-status"],
            "12"
        );
    }

    #[test]
    fn status_mapping_and_message_encoding() {
        assert_eq!(http_to_grpc_status(401), 16);
        assert_eq!(http_to_grpc_status(403), 7);
        assert_eq!(http_to_grpc_status(429), 14);
        assert_eq!(http_to_grpc_status(500), 2);
        assert_eq!(grpc_message_encode("50% off\n"), "50%25 off%0A");
    }
}
