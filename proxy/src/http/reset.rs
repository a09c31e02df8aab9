//! Why an upstream attempt failed without a response, in Envoy's terms: the reset reason
//! (its text goes into the local reply body), the response flag, the status of the
//! local reply, and what the retry policy makes of it.

use crate::router::ResetKind;

use super::connect::ConnectError;
use super::observer::ResponseFlag;

/// Envoy's `StreamResetReason`s that strait-proxy produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    RemoteConnectionFailure,
    ConnectionTimeout,
    ConnectionTermination,
    LocalReset,
    RemoteReset,
    RemoteRefusedStreamReset,
    Overflow,
    ProtocolError,
}

impl ResetReason {
    /// Envoy's `resetReasonToString`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::RemoteConnectionFailure => "remote connection failure",
            ResetReason::ConnectionTimeout => "connection timeout",
            ResetReason::ConnectionTermination => "connection termination",
            ResetReason::LocalReset => "local reset",
            ResetReason::RemoteReset => "remote reset",
            ResetReason::RemoteRefusedStreamReset => "remote refused stream reset",
            ResetReason::Overflow => "overflow",
            ResetReason::ProtocolError => "protocol error",
        }
    }

    pub fn response_flag(self) -> ResponseFlag {
        match self {
            ResetReason::RemoteConnectionFailure | ResetReason::ConnectionTimeout => {
                ResponseFlag::UpstreamConnectionFailure
            }
            ResetReason::ConnectionTermination => ResponseFlag::UpstreamConnectionTermination,
            ResetReason::LocalReset => ResponseFlag::LocalReset,
            ResetReason::RemoteReset | ResetReason::RemoteRefusedStreamReset => {
                ResponseFlag::UpstreamRemoteReset
            }
            ResetReason::Overflow => ResponseFlag::UpstreamOverflow,
            ResetReason::ProtocolError => ResponseFlag::UpstreamProtocolError,
        }
    }

    /// A protocol error is a bad gateway; every other reset is unavailable.
    pub fn status(self) -> u16 {
        if self == ResetReason::ProtocolError {
            502
        } else {
            503
        }
    }
}

/// One failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptError {
    pub reason: ResetReason,
    pub kind: ResetKind,
    pub transport_failure: Option<String>,
}

impl AttemptError {
    pub fn overflow() -> AttemptError {
        AttemptError {
            reason: ResetReason::Overflow,
            kind: ResetKind::Overflow,
            transport_failure: None,
        }
    }

    pub fn connect(e: &ConnectError) -> AttemptError {
        AttemptError {
            reason: match e {
                ConnectError::Timeout => ResetReason::ConnectionTimeout,
                ConnectError::Failed(_) => ResetReason::RemoteConnectionFailure,
            },
            kind: ResetKind::ConnectFailure,
            transport_failure: e.transport_failure_reason(),
        }
    }

    /// The pooled connection closed before the request could go out.
    pub fn send_closed() -> AttemptError {
        AttemptError {
            reason: ResetReason::ConnectionTermination,
            kind: ResetKind::Reset {
                request_sent: false,
            },
            transport_failure: None,
        }
    }

    /// A failed HTTP/1.1 handshake on a fresh connection: nothing was sent.
    pub fn handshake(e: &hyper::Error) -> AttemptError {
        AttemptError::send(e, false).closed_while_connecting()
    }

    /// A failed HTTP/2 handshake on a fresh connection: nothing was sent.
    pub fn handshake_h2(e: &h2::Error) -> AttemptError {
        AttemptError::from_h2(e, false).closed_while_connecting()
    }

    /// A connection the peer closed during the handshake counts as a connect failure.
    fn closed_while_connecting(mut self) -> AttemptError {
        if self.reason == ResetReason::ConnectionTermination {
            self.reason = ResetReason::RemoteConnectionFailure;
            self.kind = ResetKind::ConnectFailure;
        }
        self
    }

    /// An HTTP/1.1 error from sending the request or awaiting its response headers.
    pub fn send(e: &hyper::Error, request_sent: bool) -> AttemptError {
        let reset = |reason| AttemptError {
            reason,
            kind: ResetKind::Reset { request_sent },
            transport_failure: None,
        };
        if e.is_parse() || e.is_parse_status() {
            return reset(ResetReason::ProtocolError);
        }
        if e.is_user() {
            // Our own request body failed (downstream went away, replay unavailable).
            return reset(ResetReason::LocalReset);
        }
        reset(ResetReason::ConnectionTermination)
    }

    /// An HTTP/2 error from sending the request or awaiting its response headers.
    pub fn from_h2(h2: &h2::Error, request_sent: bool) -> AttemptError {
        let reset = |reason| AttemptError {
            reason,
            kind: ResetKind::Reset { request_sent },
            transport_failure: None,
        };
        if let Some(reason) = h2.reason() {
            if h2.is_remote() {
                return if reason == h2::Reason::REFUSED_STREAM {
                    AttemptError {
                        reason: ResetReason::RemoteRefusedStreamReset,
                        kind: ResetKind::RefusedStream,
                        transport_failure: None,
                    }
                } else if h2.is_reset() {
                    reset(ResetReason::RemoteReset)
                } else {
                    // GOAWAY with an error.
                    reset(ResetReason::ConnectionTermination)
                };
            }
            if h2.is_reset() {
                // We reset the stream: our request body failed (the downstream went
                // away, or a replay was unavailable).
                return reset(ResetReason::LocalReset);
            }
        }
        if h2.is_io() || h2.is_go_away() {
            return reset(ResetReason::ConnectionTermination);
        }
        reset(ResetReason::ProtocolError)
    }
}

/// `%RESPONSE_CODE_DETAILS%` of every request that failed upstream before a response,
/// followed by `{reason|transport failure}` as [`reset_details`] writes it.
pub const UPSTREAM_RESET_DETAILS: &str = "upstream_reset_before_response_started";

/// Envoy's details for a request that failed upstream without a response:
/// `upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}`.
pub fn reset_details(err: &AttemptError) -> String {
    let mut details = format!(
        "{UPSTREAM_RESET_DETAILS}{{{}",
        err.reason.as_str().replace(' ', "_")
    );
    if let Some(t) = &err.transport_failure {
        details.push('|');
        details.push_str(&t.replace(' ', "_"));
    }
    details.push('}');
    details
}

/// Envoy's body for a request that failed upstream without a response.
pub fn reset_body(err: &AttemptError, retried: bool) -> String {
    let mut body = String::from("upstream connect error or disconnect/reset before headers. ");
    if retried {
        body.push_str("retried and the latest ");
    }
    body.push_str("reset reason: ");
    body.push_str(err.reason.as_str());
    if let Some(t) = err
        .transport_failure
        .as_ref()
        .filter(|t| !super::connect::is_socket_failure(t))
    {
        body.push_str(", transport failure reason: ");
        body.push_str(t);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_envoys_wording() {
        let refused =
            AttemptError::connect(&ConnectError::Failed("delayed connect error: 111".into()));
        assert_eq!(
            reset_body(&refused, false),
            "upstream connect error or disconnect/reset before headers. reset reason: \
             remote connection failure"
        );
        assert_eq!(
            reset_body(&refused, true),
            "upstream connect error or disconnect/reset before headers. retried and the latest \
             reset reason: remote connection failure"
        );
        let tls = AttemptError {
            transport_failure: Some("TLS_error".into()),
            ..refused.clone()
        };
        assert_eq!(
            reset_body(&tls, false),
            "upstream connect error or disconnect/reset before headers. reset reason: \
             remote connection failure, transport failure reason: TLS_error"
        );
        assert_eq!(
            reset_body(&AttemptError::overflow(), false),
            crate::upstream::breaker::OVERFLOW_BODY
        );
        assert_eq!(
            reset_details(&AttemptError::connect(&ConnectError::Failed(
                "delayed connect error: Connection refused".into()
            ))),
            "upstream_reset_before_response_started{remote_connection_failure|\
             delayed_connect_error:_Connection_refused}"
        );
        assert_eq!(
            reset_details(&AttemptError::overflow()),
            "upstream_reset_before_response_started{overflow}"
        );
        assert_eq!(refused.reason.response_flag().code(), "UF");
        assert_eq!(refused.kind, ResetKind::ConnectFailure);
        assert_eq!(ResetReason::ProtocolError.status(), 502);
        assert_eq!(ResetReason::ConnectionTermination.status(), 503);
    }
}
