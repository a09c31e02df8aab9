//! The timeouts of a forwarded request: the route's, gRPC's `grpc-timeout` (capped by
//! `max_grpc_timeout`), and the `x-envoy-upstream-rq-*timeout-ms` overrides.

use std::time::Duration;

use crate::config::route::{ForwardAction, RetryPolicy};

use super::headers::names;
use super::request::RequestView;

/// Effective timeouts; `None` means no timeout (Envoy's 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole request, retries included.
    pub global: Option<Duration>,
    /// Each attempt.
    pub per_try: Option<Duration>,
    /// Each attempt's idle time.
    pub per_try_idle: Option<Duration>,
}

/// Which request headers the router may read.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutInputs {
    /// Honour `x-envoy-upstream-rq-timeout-ms` / `-per-try-timeout-ms`.
    pub envoy_headers: bool,
    /// The router's `respect_expected_rq_timeout`: take `x-envoy-expected-rq-timeout-ms`
    /// (set by an egress Envoy) as the global timeout.
    pub respect_expected_rq_timeout: bool,
}

fn header_ms(req: &RequestView<'_>, name: &http::HeaderName) -> Option<Option<Duration>> {
    let v = req.headers.get(name)?;
    Some(
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_millis),
    )
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// Envoy's `finalTimeout`.
pub fn final_timeouts(
    action: &ForwardAction,
    retry: Option<&RetryPolicy>,
    req: &RequestView<'_>,
    inputs: TimeoutInputs,
) -> Timeouts {
    let mut global = match action.max_grpc_timeout {
        Some(max) if req.is_grpc() => {
            let requested = req
                .first(names::GRPC_TIMEOUT.as_str())
                .and_then(parse_grpc_timeout)
                .unwrap_or(Duration::ZERO);
            // Zero is "no limit" on both sides.
            if !max.is_zero() && (requested.is_zero() || requested > max) {
                nonzero(max)
            } else {
                nonzero(requested)
            }
        }
        _ => action.timeout,
    };
    let mut per_try = retry.and_then(|r| r.per_try_timeout);
    let per_try_idle = retry.and_then(|r| r.per_try_idle_timeout);

    if inputs.envoy_headers {
        let expected = inputs
            .respect_expected_rq_timeout
            .then(|| header_ms(req, &names::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS))
            .flatten();
        let global_header =
            expected.or_else(|| header_ms(req, &names::X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS));
        if let Some(Some(ms)) = global_header {
            global = nonzero(ms);
        }
        if let Some(Some(ms)) = header_ms(req, &names::X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS) {
            per_try = nonzero(ms);
        }
    }
    // A per-try timeout at least as long as the whole request is no per-try timeout.
    if let (Some(p), Some(g)) = (per_try, global)
        && p >= g
    {
        per_try = None;
    }
    Timeouts {
        global,
        per_try,
        per_try_idle,
    }
}

impl Timeouts {
    /// The value of `x-envoy-expected-rq-timeout-ms` (and of an overridden `grpc-timeout`)
    /// for an attempt starting `elapsed` after the request: the per-try timeout (else the
    /// global one), never past the global deadline; `None` when there is no timeout.
    pub fn expected_ms(&self, elapsed: Duration) -> Option<u64> {
        let expected = self.per_try.or(self.global)?;
        let expected = match self.global {
            Some(g) if elapsed >= g => Duration::from_millis(1),
            Some(g) => expected.min(g - elapsed),
            None => expected,
        };
        Some(
            u64::try_from(expected.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        )
    }
}

/// Parse a `grpc-timeout` value: up to 8 digits and a unit (`H M S m u n`); sub-millisecond
/// units round up.
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_millis(n.div_ceil(1_000)),
        "n" => Duration::from_millis(n.div_ceil(1_000_000)),
        _ => return None,
    };
    Some(d)
}

/// Format a timeout for `grpc-timeout`: milliseconds, or coarser units when the value
/// does not fit in 8 digits.
pub fn format_grpc_timeout(d: Duration) -> String {
    const MAX: u64 = 99_999_999;
    let mut value = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut unit = 'm';
    if value > MAX {
        value /= 1000;
        unit = 'S';
    }
    if value > MAX {
        value /= 60;
        unit = 'M';
    }
    if value > MAX {
        value /= 60;
        unit = 'H';
    }
    format!("{}{unit}", value.min(MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::testutil::{forward, istio_default_retry};

    const ALL: TimeoutInputs = TimeoutInputs {
        envoy_headers: true,
        respect_expected_rq_timeout: false,
    };

    fn with_req<T>(headers: &[(&str, &str)], f: impl FnOnce(&RequestView<'_>) -> T) -> T {
        let mut b = http::Request::builder().uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (p, _) = b.body(()).unwrap().into_parts();
        f(&RequestView::from_parts(&p, false, None))
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn route_timeout_and_header_overrides() {
        let mut a = forward("c");
        a.timeout = secs(15);
        let t = with_req(&[], |r| final_timeouts(&a, None, r, ALL));
        assert_eq!(t.global, secs(15));
        assert_eq!(t.expected_ms(Duration::ZERO), Some(15_000));

        let t = with_req(&[("x-envoy-upstream-rq-timeout-ms", "250")], |r| {
            final_timeouts(&a, None, r, ALL)
        });
        assert_eq!(t.global, Some(Duration::from_millis(250)));

        let t = with_req(&[("x-envoy-upstream-rq-timeout-ms", "0")], |r| {
            final_timeouts(&a, None, r, ALL)
        });
        assert_eq!(t.global, None, "0 disables the timeout");
        assert_eq!(t.expected_ms(Duration::ZERO), None);

        let t = with_req(&[("x-envoy-upstream-rq-timeout-ms", "soon")], |r| {
            final_timeouts(&a, None, r, ALL)
        });
        assert_eq!(t.global, secs(15), "unparsable values are ignored");

        let ignored = TimeoutInputs {
            envoy_headers: false,
            ..ALL
        };
        let t = with_req(&[("x-envoy-upstream-rq-timeout-ms", "250")], |r| {
            final_timeouts(&a, None, r, ignored)
        });
        assert_eq!(t.global, secs(15));
    }

    #[test]
    fn per_try_timeouts() {
        let mut a = forward("c");
        a.timeout = secs(10);
        let mut policy = istio_default_retry();
        policy.per_try_timeout = secs(2);
        let t = with_req(&[], |r| final_timeouts(&a, Some(&policy), r, ALL));
        assert_eq!(t.per_try, secs(2));
        assert_eq!(t.expected_ms(Duration::ZERO), Some(2_000));
        // Late attempts only get what is left of the global timeout.
        assert_eq!(t.expected_ms(Duration::from_millis(9_500)), Some(500));
        assert_eq!(t.expected_ms(Duration::from_secs(11)), Some(1));

        let t = with_req(&[("x-envoy-upstream-rq-per-try-timeout-ms", "300")], |r| {
            final_timeouts(&a, Some(&policy), r, ALL)
        });
        assert_eq!(t.per_try, Some(Duration::from_millis(300)));

        policy.per_try_timeout = secs(30);
        let t = with_req(&[], |r| final_timeouts(&a, Some(&policy), r, ALL));
        assert_eq!(t.per_try, None, "longer than the whole request");
    }

    #[test]
    fn grpc_timeout_capped_by_max_grpc_timeout() {
        let mut a = forward("c");
        a.timeout = secs(15);
        a.max_grpc_timeout = secs(5);
        let grpc =
            |t: &'static str| vec![("content-type", "application/grpc"), ("grpc-timeout", t)];
        let t = with_req(&grpc("2S"), |r| final_timeouts(&a, None, r, ALL));
        assert_eq!(t.global, secs(2));
        let t = with_req(&grpc("20S"), |r| final_timeouts(&a, None, r, ALL));
        assert_eq!(t.global, secs(5));
        let t = with_req(&[("content-type", "application/grpc")], |r| {
            final_timeouts(&a, None, r, ALL)
        });
        assert_eq!(t.global, secs(5), "no grpc-timeout: the maximum");
        // Istio's passthrough: max 0 means no cap, and no header means no timeout.
        a.max_grpc_timeout = Some(Duration::ZERO);
        let t = with_req(&[("content-type", "application/grpc")], |r| {
            final_timeouts(&a, None, r, ALL)
        });
        assert_eq!(t.global, None);
        let t = with_req(&grpc("100m"), |r| final_timeouts(&a, None, r, ALL));
        assert_eq!(t.global, Some(Duration::from_millis(100)));
        // Non-gRPC requests and routes without max_grpc_timeout use the route timeout.
        let t = with_req(&[("grpc-timeout", "1S")], |r| {
            final_timeouts(&a, None, r, ALL)
        });
        assert_eq!(t.global, secs(15));
    }

    #[test]
    fn grpc_timeout_wire_format() {
        assert_eq!(parse_grpc_timeout("1H"), secs(3600));
        assert_eq!(parse_grpc_timeout("2M"), secs(120));
        assert_eq!(parse_grpc_timeout("3S"), secs(3));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1500u"), Some(Duration::from_millis(2)));
        assert_eq!(parse_grpc_timeout("1n"), Some(Duration::from_millis(1)));
        assert_eq!(parse_grpc_timeout("123456789S"), None, "more than 8 digits");
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
        assert_eq!(format_grpc_timeout(Duration::from_millis(1500)), "1500m");
        assert_eq!(format_grpc_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(
            parse_grpc_timeout(&format_grpc_timeout(Duration::from_secs(200_000))),
            secs(200_000)
        );
    }
}
