//! The router's upstream half for one request: pick the host, send the attempt through
//! the pool, enforce the route, per-try, stream-idle and request timeouts, retry what the
//! [`RetryState`](crate::router::RetryState) allows (with back-off and the cluster's
//! retry breaker), feed outlier detection, and shape the response or the local reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Body;
use tokio::time::Instant;

use crate::router::local_reply::ReplyTo;
use crate::router::retry::{LazyRng, NoRetry};
use crate::router::{ForwardDecision, LocalReply, ResetKind, RetryDecision, RetryState};
use crate::upstream::breaker::OVERFLOW_BODY;
use crate::upstream::{ClusterManager, ClusterState, Host, LbContext, Outcome as Observed};

use super::body::{self, ProxyBody};
use super::local;
use super::observer::ResponseFlag;
use super::pool::{self, AttemptHold, Protocol, Target};
use super::progress::Progress;
use super::replay::{DEFAULT_BUFFER_LIMIT, ReplayLog};
use super::reset::{AttemptError, UPSTREAM_RESET_DETAILS, reset_body, reset_details};
use super::response::{BodyTimers, Completion};

/// What the stream knows that forwarding needs.
pub struct StreamFacts {
    pub clusters: Arc<ClusterManager>,
    /// The downstream protocol.
    pub version: Version,
    /// Where the client connected (the ORIGINAL_DST target).
    pub destination: SocketAddr,
    pub reply_to: ReplyTo,
    /// The request's consistent-hash key.
    pub hash: Option<u64>,
    /// The HCM's stream idle timeout.
    pub stream_idle: Option<Duration>,
    /// The HCM's `request_timeout`.
    pub request_timeout: Option<Duration>,
    pub progress: Arc<Progress>,
}

pub struct Forwarded {
    pub response: Response<ProxyBody>,
    pub timers: BodyTimers,
}

impl Forwarded {
    fn local(reply: LocalReply, completion: &mut Completion) -> Forwarded {
        completion.info_mut().response_code_details = reply.details.into();
        Forwarded {
            response: local::into_response(reply),
            timers: BodyTimers::default(),
        }
    }
}

/// The request body, as attempts and mirrors need it.
pub enum Source {
    Empty,
    /// Sent once: nothing to retry or mirror.
    Once(Option<ProxyBody>),
    Replay(ReplayLog),
}

impl Source {
    pub fn new(body: ProxyBody, keep_copy: bool) -> Source {
        if body.is_end_stream() {
            Source::Empty
        } else if keep_copy {
            Source::Replay(ReplayLog::new(body, DEFAULT_BUFFER_LIMIT))
        } else {
            Source::Once(Some(body))
        }
    }

    fn attempt_body(&mut self) -> ProxyBody {
        match self {
            Source::Empty => body::empty(),
            Source::Once(b) => b.take().unwrap_or_else(body::empty),
            Source::Replay(log) => body::boxed(log.primary()),
        }
    }

    fn replayable(&self) -> bool {
        match self {
            Source::Empty => true,
            Source::Once(_) => false,
            Source::Replay(log) => log.replayable(),
        }
    }

    pub fn shadow_body(&self) -> Option<ProxyBody> {
        match self {
            Source::Empty => Some(body::empty()),
            Source::Once(_) => None,
            Source::Replay(log) => Some(body::boxed(log.shadow())),
        }
    }
}

/// Hop-by-hop request headers that never go upstream as they came.
const HOP_BY_HOP: [HeaderName; 4] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
];

/// Puts a request head into the shape `protocol` wants upstream: origin-form URI and
/// `Host` for HTTP/1.1, absolute URI (`:scheme`, `:authority`) for HTTP/2; hop-by-hop
/// headers go (the upgrade pair stays for upgrades), `te` only as `trailers`, and
/// `expect` is answered here rather than forwarded, as Envoy does.
pub fn to_upstream_form(parts: &mut http::request::Parts, protocol: Protocol, upgrade: bool) {
    // URI parts share the head's buffer, so the clones below copy no text.
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match protocol {
        Protocol::Http1 => {
            if let Some(authority) = parts.uri.authority() {
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    parts.headers.insert(header::HOST, host);
                }
                parts.uri = Uri::from(path);
            }
        }
        Protocol::Http2 => {
            let authority = match parts.uri.authority() {
                Some(a) => Some(a.clone()),
                None => parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| Authority::try_from(h.as_bytes()).ok()),
            };
            if let Some(authority) = authority {
                let mut uri = http::uri::Parts::default();
                uri.scheme = Some(Scheme::HTTP);
                uri.authority = Some(authority);
                uri.path_and_query = Some(path);
                if let Ok(uri) = Uri::from_parts(uri) {
                    parts.uri = uri;
                }
            }
            parts.headers.remove(header::HOST);
        }
    }
    parts.version = protocol.version();
    if !upgrade || protocol == Protocol::Http2 {
        for h in &HOP_BY_HOP {
            parts.headers.remove(h);
        }
        parts.headers.remove(header::UPGRADE);
    } else {
        for h in &HOP_BY_HOP[1..] {
            parts.headers.remove(h);
        }
    }
    let te_trailers = parts
        .headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    parts.headers.remove(header::TE);
    if te_trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    parts.headers.remove(header::EXPECT);
}

/// Response headers that describe the upstream connection, not the response.
pub fn strip_response_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    for h in &HOP_BY_HOP {
        if upgrade && *h == header::CONNECTION {
            continue;
        }
        headers.remove(h);
    }
    if !upgrade {
        headers.remove(header::UPGRADE);
    }
}

/// Envoy's `grpcToHttpStatus`, for outlier detection of gRPC responses.
pub fn grpc_to_http(code: u32) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

fn observed_status(response: &Response<ProxyBody>, grpc: bool) -> u16 {
    let grpc_status = grpc
        .then(|| response.headers().get("grpc-status"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u32>().ok());
    grpc_status.map_or(response.status().as_u16(), grpc_to_http)
}

/// The host for an attempt, avoiding earlier ones when the retry policy asks.
pub fn choose_host(
    cluster: &ClusterState,
    decision: &ForwardDecision<'_>,
    hash: Option<u64>,
    destination: SocketAddr,
    tried: &[SocketAddr],
) -> Option<Arc<Host>> {
    let policy = decision.retry_policy;
    let avoid = if policy.is_some_and(|p| p.avoid_previous_hosts) {
        tried
    } else {
        &[]
    };
    let ctx = LbContext {
        hash,
        avoid,
        max_attempts: policy.map_or(1, |p| p.host_selection_retry_max_attempts.max(1)),
        original_dst: Some(destination),
    };
    cluster.choose_host(&ctx).ok()
}

enum Step {
    Done(Result<Response<ProxyBody>, AttemptError>),
    PerTryTimeout,
    GlobalTimeout,
    Idle,
    RequestTimeout,
}

/// What ends a request that is still waiting for its response.
enum Stop {
    GlobalTimeout,
    Idle,
    RequestTimeout,
}

fn timeout_reply(stop: Stop, facts: &StreamFacts, completion: &mut Completion) -> Forwarded {
    let (status, text, flag, details) = match stop {
        Stop::GlobalTimeout => (
            504,
            "upstream request timeout",
            Some(ResponseFlag::UpstreamRequestTimeout),
            "response_timeout",
        ),
        // Envoy answers 408 while the request is incomplete and 504 after.
        Stop::Idle if facts.progress.is_ended() => (
            504,
            "stream timeout",
            Some(ResponseFlag::StreamIdleTimeout),
            "stream_idle_timeout",
        ),
        Stop::Idle => (
            408,
            "stream timeout",
            Some(ResponseFlag::StreamIdleTimeout),
            "stream_idle_timeout",
        ),
        Stop::RequestTimeout => (408, "request timeout", None, "request_overall_timeout"),
    };
    if let Some(flag) = flag {
        completion.flag(flag);
    }
    Forwarded::local(
        local::failure(status, text, facts.reply_to, details, |_| {}),
        completion,
    )
}

/// Waits out a retry back-off; `Err` when a timeout ends the request first.
async fn back_off(
    wait: Duration,
    facts: &StreamFacts,
    decision: &ForwardDecision<'_>,
    idle: Option<Duration>,
) -> Result<(), Stop> {
    let progress = &facts.progress;
    tokio::select! {
        _ = tokio::time::sleep(wait) => Ok(()),
        _ = progress.after_end(decision.timeouts.global) => Err(Stop::GlobalTimeout),
        _ = progress.idle(idle) => Err(Stop::Idle),
        _ = progress.request_timeout(facts.request_timeout) => Err(Stop::RequestTimeout),
    }
}

/// Takes a retry: a slot of the cluster's retry breaker. `None` (flagged `UO`) when the
/// breaker is full.
fn retry_slot(
    cluster: &ClusterState,
    completion: &mut Completion,
) -> Option<crate::upstream::BreakerGuard> {
    let slot = cluster.breakers().try_acquire_retry();
    if slot.is_none() {
        completion.flag(ResponseFlag::UpstreamOverflow);
    }
    slot
}

/// Forwards a routed request and returns what goes downstream.
pub async fn forward(
    decision: &ForwardDecision<'_>,
    facts: &StreamFacts,
    mut parts: http::request::Parts,
    body: ProxyBody,
    completion: &mut Completion,
) -> Forwarded {
    let to = facts.reply_to;
    let suppress = decision.suppress_envoy_headers;
    let idle = decision.action.idle_timeout.or(facts.stream_idle);
    let found = facts.clusters.get(decision.cluster);
    completion.info_mut().upstream_cluster = Some(match &found {
        Some(c) => c.shared_name().clone(),
        None => Arc::from(decision.cluster),
    });
    let Some(cluster) = found else {
        completion.flag(ResponseFlag::NoClusterFound);
        return Forwarded::local(
            local::failure(503, "", to, "cluster_not_found", |_| {}),
            completion,
        );
    };
    if let Err(e) = decision.apply_to_parts(&mut parts) {
        return Forwarded::local(
            local::failure(500, &e.to_string(), to, "invalid_rewrite", |_| {}),
            completion,
        );
    }
    let protocol = Protocol::for_cluster(&cluster.config().http, facts.version);
    let mut retry: Option<RetryState<'_, LazyRng>> = decision.retry_state(LazyRng::default());
    let mut source = Source::new(body, retry.is_some() || !decision.mirrors.is_empty());
    for mirror in &decision.mirrors {
        if let Some(shadow) = source.shadow_body() {
            super::mirror::spawn(
                facts.clusters.clone(),
                mirror,
                &parts,
                shadow,
                facts.version,
                decision.timeouts.global,
                facts.destination,
            );
        }
    }

    let progress = facts.progress.clone();
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut attempt: u32 = 1;
    let mut retry_guard: Option<crate::upstream::BreakerGuard> = None;
    let avoid_previous_hosts = decision
        .retry_policy
        .is_some_and(|p| p.avoid_previous_hosts);
    let mut previous_host: Option<SocketAddr> = None;
    loop {
        if let Some(previous) = previous_host.take()
            && avoid_previous_hosts
        {
            tried.push(previous);
        }
        let Some(host) = choose_host(&cluster, decision, facts.hash, facts.destination, &tried)
        else {
            completion.flag(ResponseFlag::NoHealthyUpstream);
            return Forwarded::local(
                local::failure(
                    503,
                    "no healthy upstream",
                    to,
                    "no_healthy_upstream",
                    |_| {},
                ),
                completion,
            );
        };
        // Only the previous-hosts predicate reads the list, and only on a retry: a
        // host is written down when the next attempt is about to choose.
        previous_host = Some(host.address());
        {
            let info = completion.info_mut();
            info.upstream_host = Some(host.address());
            info.attempt_count = attempt;
        }
        let Some(request_slot) = cluster.breakers().try_acquire_request() else {
            completion.flag(ResponseFlag::UpstreamOverflow);
            return Forwarded::local(local::overloaded(OVERFLOW_BODY, to, suppress), completion);
        };

        let elapsed = progress
            .ended_at()
            .map_or(Duration::ZERO, |end| end.elapsed());
        let mut head = Request::new(()).into_parts().0;
        head.method = parts.method.clone();
        head.uri = parts.uri.clone();
        head.headers = parts.headers.clone();
        if attempt > 1 {
            decision.apply_attempt_headers(&mut head.headers, attempt, elapsed);
        }
        to_upstream_form(&mut head, protocol, false);
        let request = Request::from_parts(head, source.attempt_body());

        let attempt_start = Instant::now();
        let hold = AttemptHold::new(request_slot, host.start_request(), retry_guard.take());
        let target = Target {
            cluster: &cluster,
            host: &host,
            protocol,
        };
        let step = tokio::select! {
            r = pool::send(target, request, hold) => Step::Done(r),
            _ = progress.after_end_or(attempt_start, decision.timeouts.per_try) => Step::PerTryTimeout,
            _ = progress.after_end(decision.timeouts.global) => Step::GlobalTimeout,
            _ = progress.idle(idle) => Step::Idle,
            _ = progress.request_timeout(facts.request_timeout) => Step::RequestTimeout,
        };
        let now = std::time::Instant::now();
        let failure = match step {
            Step::Done(Ok(response)) => {
                cluster.report_outcome(
                    &host,
                    Observed::Status(observed_status(&response, to.grpc)),
                    now,
                );
                if let Some(state) = retry.as_mut() {
                    match state.on_response(response.status().as_u16(), None, response.headers()) {
                        RetryDecision::RetryAfter(wait) if source.replayable() => {
                            if let Some(slot) = retry_slot(&cluster, completion) {
                                drop(response);
                                if let Err(stop) = back_off(wait, facts, decision, idle).await {
                                    return timeout_reply(stop, facts, completion);
                                }
                                retry_guard = Some(slot);
                                attempt += 1;
                                continue;
                            }
                        }
                        RetryDecision::NoRetry(NoRetry::LimitExceeded) => {
                            completion.flag(ResponseFlag::UpstreamRetryLimitExceeded);
                        }
                        _ => {}
                    }
                }
                return upstream_response(response, decision, facts, idle, completion);
            }
            Step::Done(Err(e)) => {
                match e.kind {
                    ResetKind::ConnectFailure => {
                        // The pool reported the failed connect already.
                    }
                    ResetKind::Overflow => {}
                    _ => cluster.report_outcome(&host, Observed::Reset, now),
                }
                e
            }
            Step::PerTryTimeout => {
                cluster.report_outcome(&host, Observed::Timeout, now);
                AttemptError {
                    reason: super::reset::ResetReason::LocalReset,
                    kind: ResetKind::PerTryTimeout,
                    transport_failure: None,
                }
            }
            Step::GlobalTimeout => {
                cluster.report_outcome(&host, Observed::Timeout, now);
                return timeout_reply(Stop::GlobalTimeout, facts, completion);
            }
            Step::Idle => return timeout_reply(Stop::Idle, facts, completion),
            Step::RequestTimeout => return timeout_reply(Stop::RequestTimeout, facts, completion),
        };

        if failure.kind == ResetKind::Overflow {
            completion.flag(ResponseFlag::UpstreamOverflow);
            return Forwarded::local(local::overloaded(OVERFLOW_BODY, to, suppress), completion);
        }
        if let Some(state) = retry.as_mut() {
            match state.on_reset(failure.kind) {
                RetryDecision::RetryAfter(wait) if source.replayable() => {
                    if let Some(slot) = retry_slot(&cluster, completion) {
                        if let Err(stop) = back_off(wait, facts, decision, idle).await {
                            return timeout_reply(stop, facts, completion);
                        }
                        retry_guard = Some(slot);
                        attempt += 1;
                        continue;
                    }
                }
                RetryDecision::NoRetry(NoRetry::LimitExceeded) => {
                    completion.flag(ResponseFlag::UpstreamRetryLimitExceeded);
                }
                _ => {}
            }
        }
        if failure.kind == ResetKind::PerTryTimeout {
            completion.flag(ResponseFlag::UpstreamRequestTimeout);
            return Forwarded::local(
                local::failure(
                    504,
                    "upstream request timeout",
                    to,
                    "upstream_per_try_timeout",
                    |_| {},
                ),
                completion,
            );
        }
        if failure.reason == super::reset::ResetReason::LocalReset && progress.failed() {
            return downstream_body_failed(completion, to);
        }
        completion.flag(failure.reason.response_flag());
        completion.info_mut().upstream_transport_failure_reason = failure.transport_failure.clone();
        let text = reset_body(&failure, attempt > 1);
        let forwarded = Forwarded::local(
            local::failure(
                failure.reason.status(),
                &text,
                to,
                UPSTREAM_RESET_DETAILS,
                |_| {},
            ),
            completion,
        );
        completion.info_mut().response_code_details = reset_details(&failure).into();
        return forwarded;
    }
}

/// The downstream request body broke off (a malformed chunk, say) while it was being
/// sent: Envoy's HTTP/1 codec answers such a protocol error itself, `400 Bad Request`,
/// and closes the connection. (A client that went away gets nothing either way.)
fn downstream_body_failed(completion: &mut Completion, to: ReplyTo) -> Forwarded {
    completion.flag(ResponseFlag::DownstreamProtocolError);
    let mut forwarded = Forwarded::local(
        local::failure(400, "Bad Request", to, "codec_error", |_| {}),
        completion,
    );
    forwarded
        .response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    forwarded
}

/// The upstream response as it goes downstream.
fn upstream_response(
    response: Response<ProxyBody>,
    decision: &ForwardDecision<'_>,
    facts: &StreamFacts,
    idle: Option<Duration>,
    completion: &mut Completion,
) -> Forwarded {
    let (mut parts, body) = response.into_parts();
    strip_response_hop_by_hop(&mut parts.headers, false);
    let ended = facts.progress.ended_at();
    decision.apply_to_response(&mut parts.headers, ended.map(|end| end.elapsed()));
    completion.info_mut().response_code_details = "via_upstream".into();
    let deadline = decision
        .timeouts
        .global
        .and_then(|g| ended.map(|end| end + g));
    Forwarded {
        response: Response::from_parts(parts, body),
        timers: BodyTimers { idle, deadline },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn http1_upstreams_get_origin_form_and_host() {
        let mut p = head(
            "http://reviews:9080/a?b=1",
            &[
                ("connection", "keep-alive"),
                ("te", "gzip, trailers"),
                ("expect", "100-continue"),
                ("transfer-encoding", "chunked"),
            ],
        );
        to_upstream_form(&mut p, Protocol::Http1, false);
        assert_eq!(p.uri, "/a?b=1");
        assert_eq!(p.headers["host"], "reviews:9080");
        assert_eq!(p.headers["te"], "trailers");
        assert!(!p.headers.contains_key("connection"));
        assert!(!p.headers.contains_key("expect"));
        assert!(!p.headers.contains_key("transfer-encoding"));
        assert_eq!(p.version, Version::HTTP_11);
    }

    #[test]
    fn http2_upstreams_get_an_absolute_uri() {
        let mut p = head("/svc/Method", &[("host", "grpc:50051"), ("te", "trailers")]);
        to_upstream_form(&mut p, Protocol::Http2, false);
        assert_eq!(p.uri, "http://grpc:50051/svc/Method");
        assert!(!p.headers.contains_key("host"));
        assert_eq!(p.headers["te"], "trailers");
        assert_eq!(p.version, Version::HTTP_2);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut p = head(
            "/ws",
            &[
                ("host", "h"),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
            ],
        );
        to_upstream_form(&mut p, Protocol::Http1, true);
        assert_eq!(p.headers["connection"], "Upgrade");
        assert_eq!(p.headers["upgrade"], "websocket");
        let mut r = HeaderMap::new();
        r.insert("connection", HeaderValue::from_static("upgrade"));
        r.insert("upgrade", HeaderValue::from_static("websocket"));
        r.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_response_hop_by_hop(&mut r, true);
        assert!(r.contains_key("connection") && r.contains_key("upgrade"));
        assert!(!r.contains_key("keep-alive"));
        strip_response_hop_by_hop(&mut r, false);
        assert!(r.is_empty());
    }

    #[test]
    fn grpc_codes_map_to_http() {
        assert_eq!(grpc_to_http(0), 200);
        assert_eq!(grpc_to_http(14), 503);
        assert_eq!(grpc_to_http(4), 504);
        assert_eq!(grpc_to_http(2), 500);
    }
}
