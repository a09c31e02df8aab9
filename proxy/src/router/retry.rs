//! Retry decisions for one request, as Envoy's router makes them: which failures are
//! retriable under the policy (merged with `x-envoy-retry-*` request headers), how many
//! retries are left, and the fully jittered exponential back-off before the next attempt.
//!
//! The cluster's `max_retries` circuit breaker is the caller's: after a
//! [`RetryDecision::RetryAfter`], take a retry slot from the cluster; when none is free,
//! the retry overflows and the last response (or reset) goes downstream, as in Envoy.

use std::borrow::Cow;
use std::time::Duration;

use http::HeaderMap;
use rand::Rng;

use crate::config::route::{RetryOn, RetryPolicy};

use super::headers::names;

/// Why an attempt failed without a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetKind {
    /// No connection to the upstream host could be made (refused, unreachable, timed out).
    ConnectFailure,
    /// HTTP/2 `REFUSED_STREAM`: the upstream did not process the request.
    RefusedStream,
    /// The stream or connection was reset before response headers arrived;
    /// `request_sent`: bytes of the request had gone upstream.
    Reset { request_sent: bool },
    /// The per-try timeout fired (the attempt is reset locally after the request was sent).
    PerTryTimeout,
    /// The connection pool refused the request (a circuit breaker): never retried.
    Overflow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRetry {
    /// The failure is not one the policy retries.
    NotRetriable,
    /// It is, but the retries allowed are used up.
    LimitExceeded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    NoRetry(NoRetry),
    /// Retry once this back-off has elapsed (after taking a cluster retry slot).
    RetryAfter(Duration),
}

/// The gRPC status names Envoy retries on, and their codes.
pub const GRPC_RETRY_NAMES: [(&str, u32); 5] = [
    ("cancelled", 1),
    ("deadline-exceeded", 4),
    ("resource-exhausted", 8),
    ("internal", 13),
    ("unavailable", 14),
];

pub fn grpc_code(name: &str) -> Option<u32> {
    GRPC_RETRY_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
}

fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Parse HTTP retry conditions (`x-envoy-retry-on` syntax). The flag says whether every
/// token was known.
pub fn parse_retry_on(s: &str) -> (RetryOn, bool) {
    let mut on = RetryOn::default();
    let mut all_known = true;
    for t in tokens(s) {
        match t {
            "5xx" => on.five_xx = true,
            "gateway-error" => on.gateway_error = true,
            "reset" => on.reset = true,
            "reset-before-request" => on.reset_before_request = true,
            "connect-failure" => on.connect_failure = true,
            "refused-stream" => on.refused_stream = true,
            "retriable-4xx" => on.retriable_4xx = true,
            "retriable-status-codes" => on.retriable_status_codes = true,
            _ => all_known = false,
        }
    }
    (on, all_known)
}

/// Parse gRPC retry conditions (`x-envoy-retry-grpc-on` syntax).
pub fn parse_retry_grpc_on(s: &str) -> (Vec<String>, bool) {
    let mut names = Vec::new();
    let mut all_known = true;
    for t in tokens(s) {
        if grpc_code(t).is_some() {
            names.push(t.to_string());
        } else {
            all_known = false;
        }
    }
    (names, all_known)
}

fn merge(into: &mut RetryOn, from: &RetryOn) {
    into.five_xx |= from.five_xx;
    into.gateway_error |= from.gateway_error;
    into.reset |= from.reset;
    into.reset_before_request |= from.reset_before_request;
    into.connect_failure |= from.connect_failure;
    into.refused_stream |= from.refused_stream;
    into.retriable_4xx |= from.retriable_4xx;
    into.retriable_status_codes |= from.retriable_status_codes;
    for g in &from.grpc {
        if !into.grpc.contains(g) {
            into.grpc.push(g.clone());
        }
    }
}

fn is_empty(on: &RetryOn) -> bool {
    *on == RetryOn::default()
}

/// Retry settings a request brings in `x-envoy-*` headers (honoured for internal
/// requests; the HCM strips them from external ones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOverrides {
    /// `x-envoy-retry-on` and `x-envoy-retry-grpc-on`, added to the policy's conditions.
    pub retry_on: RetryOn,
    /// `x-envoy-max-retries`, replacing the policy's count.
    pub max_retries: Option<u32>,
    /// `x-envoy-retriable-status-codes`, added to the policy's codes.
    pub retriable_status_codes: Vec<u16>,
}

impl RetryOverrides {
    pub fn from_headers(headers: &HeaderMap) -> RetryOverrides {
        let get = |n: &http::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
        let mut retry_on = get(&names::X_ENVOY_RETRY_ON)
            .map(|s| parse_retry_on(s).0)
            .unwrap_or_default();
        if let Some(g) = get(&names::X_ENVOY_RETRY_GRPC_ON) {
            retry_on.grpc = parse_retry_grpc_on(g).0;
        }
        RetryOverrides {
            retry_on,
            max_retries: get(&names::X_ENVOY_MAX_RETRIES).and_then(|s| s.trim().parse().ok()),
            retriable_status_codes: get(&names::X_ENVOY_RETRIABLE_STATUS_CODES)
                .map(|s| tokens(s).filter_map(|t| t.parse().ok()).collect())
                .unwrap_or_default(),
        }
    }
}

/// Fully jittered exponential back-off: the n-th retry (from 0) waits a uniformly random
/// time in `[0, min(base × 2^n, max))`.
#[derive(Clone, Debug)]
pub struct Backoff {
    max_ms: u64,
    next_ms: u64,
}

pub const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);

impl Backoff {
    /// A zero base is Envoy's default 25 ms; a zero max is 10 × base.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        let base = if base.is_zero() {
            DEFAULT_BASE_INTERVAL
        } else {
            base
        };
        let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
        let max_ms = if max.is_zero() {
            base_ms.saturating_mul(10)
        } else {
            u64::try_from(max.as_millis()).unwrap_or(u64::MAX)
        };
        Backoff {
            max_ms: max_ms.max(base_ms),
            next_ms: base_ms,
        }
    }

    pub fn next(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.next_ms;
        self.next_ms = ceiling.saturating_mul(2).min(self.max_ms);
        Duration::from_millis(rng.random_range(0..ceiling))
    }
}

/// The back-off jitter's generator, seeded when first used: Istio's default retry
/// policy gives nearly every request a retry state, and few requests ever retry.
#[derive(Clone, Debug, Default)]
pub struct LazyRng(Option<rand::rngs::StdRng>);

impl LazyRng {
    fn seeded(&mut self) -> &mut rand::rngs::StdRng {
        self.0
            .get_or_insert_with(|| rand::SeedableRng::from_rng(&mut rand::rng()))
    }
}

impl rand::RngCore for LazyRng {
    fn next_u32(&mut self) -> u32 {
        self.seeded().next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.seeded().next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.seeded().fill_bytes(dest);
    }
}

/// The retry state of one downstream request.
#[derive(Clone, Debug)]
/// Borrows the route's policy unless request headers add to it, so the common case
/// copies nothing per request.
pub struct RetryState<'p, R> {
    retry_on: Cow<'p, RetryOn>,
    retriable_status_codes: Cow<'p, [u16]>,
    remaining: u32,
    attempts: u32,
    backoff: Backoff,
    rng: R,
}

impl<'p, R: Rng> RetryState<'p, R> {
    /// `None` when nothing could be retried (no conditions in the policy or the headers),
    /// as Envoy skips retry state then. A missing policy retries once when headers ask.
    pub fn new(
        policy: Option<&'p RetryPolicy>,
        overrides: &RetryOverrides,
        rng: R,
    ) -> Option<RetryState<'p, R>> {
        let retry_on = match policy {
            Some(p) if is_empty(&overrides.retry_on) => Cow::Borrowed(&p.retry_on),
            _ => {
                let mut on = policy.map(|p| p.retry_on.clone()).unwrap_or_default();
                merge(&mut on, &overrides.retry_on);
                Cow::Owned(on)
            }
        };
        if is_empty(&retry_on) {
            return None;
        }
        let mut remaining = policy.map_or(1, |p| p.num_retries);
        if let Some(n) = overrides.max_retries {
            remaining = n;
        }
        let from_policy = policy.map_or(&[][..], |p| &p.retriable_status_codes[..]);
        let retriable_status_codes = if overrides.retriable_status_codes.is_empty() {
            Cow::Borrowed(from_policy)
        } else {
            let mut codes = from_policy.to_vec();
            codes.extend(&overrides.retriable_status_codes);
            Cow::Owned(codes)
        };
        let backoff = match policy {
            Some(p) => Backoff::new(p.base_interval, p.max_interval),
            None => Backoff::new(DEFAULT_BASE_INTERVAL, Duration::ZERO),
        };
        Some(RetryState {
            retry_on,
            retriable_status_codes,
            remaining,
            attempts: 1,
            backoff,
            rng,
        })
    }

    /// The attempt in flight, from 1 (`x-envoy-attempt-count`).
    pub fn attempt_count(&self) -> u32 {
        self.attempts
    }

    pub fn retries_remaining(&self) -> u32 {
        self.remaining
    }

    /// The conditions in force (policy merged with request headers).
    pub fn retry_on(&self) -> &RetryOn {
        &self.retry_on
    }

    /// A response arrived with `status`. `grpc_status` is that of a trailers-only gRPC
    /// response; when `None` it is read from the `grpc-status` header.
    pub fn on_response(
        &mut self,
        status: u16,
        grpc_status: Option<u32>,
        headers: &HeaderMap,
    ) -> RetryDecision {
        let grpc_status = grpc_status.or_else(|| {
            headers
                .get(&names::GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse().ok())
        });
        let retriable = self.response_retriable(status, grpc_status, headers);
        self.decide(retriable)
    }

    /// An attempt failed without a response.
    pub fn on_reset(&mut self, kind: ResetKind) -> RetryDecision {
        let retriable = self.reset_retriable(kind);
        self.decide(retriable)
    }

    fn response_retriable(&self, status: u16, grpc: Option<u32>, headers: &HeaderMap) -> bool {
        let on = &self.retry_on;
        // An upstream Envoy's rate limit is only retried under `envoy-ratelimited`, which
        // is not supported here; an overloaded upstream asks not to be retried.
        if headers.contains_key(&names::X_ENVOY_RATELIMITED)
            || headers.contains_key(&names::X_ENVOY_OVERLOADED)
        {
            return false;
        }
        (on.five_xx && (500..600).contains(&status))
            || (on.gateway_error && matches!(status, 502..=504))
            || (on.retriable_4xx && status == 409)
            || (on.retriable_status_codes && self.retriable_status_codes.contains(&status))
            || grpc.is_some_and(|g| on.grpc.iter().any(|name| grpc_code(name) == Some(g)))
    }

    fn reset_retriable(&self, kind: ResetKind) -> bool {
        let on = &self.retry_on;
        let request_sent = match kind {
            ResetKind::Overflow => return false,
            ResetKind::ConnectFailure if on.connect_failure => return true,
            ResetKind::ConnectFailure => false,
            ResetKind::Reset { request_sent } => request_sent,
            // The request headers went out on the refused stream.
            ResetKind::RefusedStream | ResetKind::PerTryTimeout => true,
        };
        (on.reset_before_request && !request_sent)
            || on.reset
            // An upstream reset turns into a 5xx, so the 5xx policies cover it.
            || on.five_xx
            || on.gateway_error
            || (on.refused_stream && kind == ResetKind::RefusedStream)
    }

    fn decide(&mut self, retriable: bool) -> RetryDecision {
        if !retriable {
            return RetryDecision::NoRetry(NoRetry::NotRetriable);
        }
        if self.remaining == 0 {
            return RetryDecision::NoRetry(NoRetry::LimitExceeded);
        }
        self.remaining -= 1;
        self.attempts += 1;
        RetryDecision::RetryAfter(self.backoff.next(&mut self.rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::testutil::istio_default_retry;
    use http::HeaderValue;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(42)
    }

    fn policy(retry_on: &str, n: u32) -> RetryPolicy {
        let mut p = istio_default_retry();
        p.retry_on = parse_retry_on(retry_on).0;
        p.retriable_status_codes = vec![];
        p.num_retries = n;
        p
    }

    fn empty() -> HeaderMap {
        HeaderMap::new()
    }

    fn retried(d: RetryDecision) -> bool {
        matches!(d, RetryDecision::RetryAfter(_))
    }

    #[test]
    fn istio_default_policy() {
        let p = istio_default_retry();
        let mut s = RetryState::new(Some(&p), &RetryOverrides::default(), rng()).unwrap();
        // 503 (retriable-status-codes) is retried, 500 is not.
        assert_eq!(
            s.on_response(500, None, &empty()),
            RetryDecision::NoRetry(NoRetry::NotRetriable)
        );
        assert!(retried(s.on_response(503, None, &empty())));
        assert_eq!(s.attempt_count(), 2);
        assert!(retried(s.on_reset(ResetKind::ConnectFailure)));
        assert_eq!(s.attempt_count(), 3);
        // Two retries used up.
        assert_eq!(
            s.on_response(503, None, &empty()),
            RetryDecision::NoRetry(NoRetry::LimitExceeded)
        );
        // A reset after the request went out is not covered by the default.
        let mut s = RetryState::new(Some(&p), &RetryOverrides::default(), rng()).unwrap();
        assert!(!retried(
            s.on_reset(ResetKind::Reset { request_sent: true })
        ));
        assert!(retried(s.on_reset(ResetKind::RefusedStream)));
        assert!(!retried(s.on_reset(ResetKind::Overflow)));
    }

    #[test]
    fn grpc_unavailable_from_headers_is_retried() {
        let p = istio_default_retry();
        let mut s = RetryState::new(Some(&p), &RetryOverrides::default(), rng()).unwrap();
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("14"));
        assert!(retried(s.on_response(200, None, &h)));
        h.insert("grpc-status", HeaderValue::from_static("2"));
        assert!(!retried(s.on_response(200, None, &h)));
        assert!(retried(s.on_response(200, Some(1), &empty())), "cancelled");
    }

    #[test]
    fn five_xx_and_gateway_error() {
        let five_xx = policy("5xx", 10);
        let mut s = RetryState::new(Some(&five_xx), &RetryOverrides::default(), rng()).unwrap();
        assert!(retried(s.on_response(500, None, &empty())));
        assert!(retried(s.on_response(503, None, &empty())));
        assert!(!retried(s.on_response(404, None, &empty())));
        // Resets count as 5xx, including connect failures.
        assert!(retried(s.on_reset(ResetKind::Reset { request_sent: true })));
        assert!(retried(s.on_reset(ResetKind::ConnectFailure)));
        assert!(retried(s.on_reset(ResetKind::PerTryTimeout)));

        let gateway = policy("gateway-error", 10);
        let mut g = RetryState::new(Some(&gateway), &RetryOverrides::default(), rng()).unwrap();
        assert!(!retried(g.on_response(500, None, &empty())));
        for code in [502, 503, 504] {
            assert!(retried(g.on_response(code, None, &empty())), "{code}");
        }
        let mut overloaded = HeaderMap::new();
        overloaded.insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        assert!(!retried(g.on_response(503, None, &overloaded)));
    }

    #[test]
    fn retriable_4xx_status_codes_and_reset_before_request() {
        let four_xx = policy("retriable-4xx", 5);
        let mut s = RetryState::new(Some(&four_xx), &RetryOverrides::default(), rng()).unwrap();
        assert!(retried(s.on_response(409, None, &empty())));
        assert!(!retried(s.on_response(429, None, &empty())));

        let mut p = policy("retriable-status-codes", 5);
        p.retriable_status_codes = vec![429];
        let mut s = RetryState::new(Some(&p), &RetryOverrides::default(), rng()).unwrap();
        assert!(retried(s.on_response(429, None, &empty())));
        assert!(!retried(s.on_response(503, None, &empty())));

        let before_request = policy("reset-before-request", 5);
        let mut s =
            RetryState::new(Some(&before_request), &RetryOverrides::default(), rng()).unwrap();
        assert!(retried(s.on_reset(ResetKind::Reset {
            request_sent: false
        })));
        assert!(retried(s.on_reset(ResetKind::ConnectFailure)));
        assert!(!retried(
            s.on_reset(ResetKind::Reset { request_sent: true })
        ));
        assert!(!retried(s.on_reset(ResetKind::PerTryTimeout)));
    }

    #[test]
    fn request_headers_extend_the_policy() {
        let mut h = HeaderMap::new();
        h.insert("x-envoy-retry-on", HeaderValue::from_static("5xx, bogus"));
        h.insert(
            "x-envoy-retry-grpc-on",
            HeaderValue::from_static("internal"),
        );
        h.insert("x-envoy-max-retries", HeaderValue::from_static("4"));
        h.insert(
            "x-envoy-retriable-status-codes",
            HeaderValue::from_static("418,x"),
        );
        let o = RetryOverrides::from_headers(&h);
        assert!(o.retry_on.five_xx);
        assert_eq!(o.retry_on.grpc, ["internal"]);
        assert_eq!(o.max_retries, Some(4));
        assert_eq!(o.retriable_status_codes, [418]);

        let p = istio_default_retry();
        let mut s = RetryState::new(Some(&p), &o, rng()).unwrap();
        assert_eq!(s.retries_remaining(), 4);
        assert!(retried(s.on_response(500, None, &empty())));
        assert!(retried(s.on_response(418, None, &empty())));
        assert!(retried(s.on_response(200, Some(13), &empty())));

        // No policy: headers alone allow one retry unless they say otherwise.
        let only = RetryOverrides {
            retry_on: parse_retry_on("5xx").0,
            ..Default::default()
        };
        let mut s = RetryState::new(None, &only, rng()).unwrap();
        assert!(retried(s.on_response(500, None, &empty())));
        assert!(!retried(s.on_response(500, None, &empty())));

        // Nothing to retry on: no state at all, even with a max-retries header.
        let count_only = RetryOverrides {
            max_retries: Some(3),
            ..Default::default()
        };
        assert!(RetryState::new(None, &count_only, rng()).is_none());
    }

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        let mut rng = rng();
        // Envoy's defaults: 25 ms base, 250 ms cap.
        let mut worst = [0u64; 6];
        for _ in 0..2_000 {
            let mut b = Backoff::new(Duration::from_millis(25), Duration::ZERO);
            for w in worst.iter_mut() {
                let d = b.next(&mut rng).as_millis() as u64;
                *w = (*w).max(d);
            }
        }
        let ceilings = [25, 50, 100, 200, 250, 250];
        for (w, c) in worst.iter().zip(ceilings) {
            assert!(*w < c, "{w} >= {c}");
            assert!(
                *w >= c * 9 / 10,
                "{w} never approaches {c}: not jittered over the range"
            );
        }
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(b.next(&mut rng) < Duration::from_millis(25));
    }

    #[test]
    fn retries_back_off_within_bounds() {
        let mut p = policy("5xx", 3);
        p.base_interval = Duration::from_millis(100);
        p.max_interval = Duration::from_millis(300);
        let mut s = RetryState::new(Some(&p), &RetryOverrides::default(), rng()).unwrap();
        let bounds = [100, 200, 300];
        for bound in bounds {
            match s.on_response(503, None, &empty()) {
                RetryDecision::RetryAfter(d) => assert!(d < Duration::from_millis(bound), "{d:?}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(s.attempt_count(), 4);
    }

    #[test]
    fn parsing() {
        let (on, ok) = parse_retry_on("connect-failure,refused-stream,retriable-status-codes");
        assert!(ok && on.connect_failure && on.refused_stream && on.retriable_status_codes);
        assert!(
            !parse_retry_on("5xx,unavailable").1,
            "gRPC names belong in retry-grpc-on"
        );
        let (g, ok) = parse_retry_grpc_on("cancelled, unavailable");
        assert!(ok);
        assert_eq!(g, ["cancelled", "unavailable"]);
        assert_eq!(grpc_code("deadline-exceeded"), Some(4));
        assert_eq!(grpc_code("resource-exhausted"), Some(8));
    }
}
