//! Responses the proxy makes itself, as HTTP responses: the router's [`LocalReply`]s and
//! the router filter's own failures (no cluster, no healthy upstream, overflow, resets,
//! timeouts), which Envoy also sends through `sendLocalReply` (trailers-only for gRPC).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::router::LocalReply;
use crate::router::local_reply::{ReplyTo, local_reply};

use super::body::{self, ProxyBody};

pub fn into_response(reply: LocalReply) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *response.headers_mut() = reply.headers;
    response
}

/// A router failure answered locally.
pub fn failure(
    status: u16,
    text: &str,
    to: ReplyTo,
    details: &'static str,
    extra: impl FnOnce(&mut HeaderMap),
) -> LocalReply {
    local_reply(
        status,
        Bytes::copy_from_slice(text.as_bytes()),
        None,
        to,
        details,
        extra,
    )
}

/// 503 for a circuit-breaker overflow, with `x-envoy-overloaded` unless suppressed.
pub fn overloaded(text: &str, to: ReplyTo, suppress_envoy_headers: bool) -> LocalReply {
    failure(503, text, to, "overflow", |h| {
        if !suppress_envoy_headers {
            h.insert(
                crate::upstream::breaker::OVERLOADED_HEADER,
                HeaderValue::from_static("true"),
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_failures_are_trailers_only() {
        let to = ReplyTo {
            grpc: true,
            head: false,
        };
        let r = into_response(overloaded("overflow", to, false));
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["x-envoy-overloaded"], "true");
        let plain = into_response(failure(
            504,
            "upstream request timeout",
            ReplyTo::default(),
            "t",
            |_| {},
        ));
        assert_eq!(plain.status(), 504);
        assert_eq!(plain.headers()["content-length"], "24");
    }
}
