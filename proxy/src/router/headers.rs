//! Header operations: configured additions/removals at each level, in Envoy's order, and
//! the `x-envoy-*` headers the router itself reads and writes.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::common::{AppendAction, HeaderMutations};
use crate::config::route::{Route, RouteConfig, VirtualHost};

pub mod names {
    use http::HeaderName;

    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    pub const X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");
    pub const X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
        HeaderName::from_static("x-envoy-external-address");
    pub const X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
    pub const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
        HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
    pub const X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS: HeaderName =
        HeaderName::from_static("x-envoy-upstream-rq-timeout-ms");
    pub const X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS: HeaderName =
        HeaderName::from_static("x-envoy-upstream-rq-per-try-timeout-ms");
    pub const X_ENVOY_MAX_RETRIES: HeaderName = HeaderName::from_static("x-envoy-max-retries");
    pub const X_ENVOY_RETRY_ON: HeaderName = HeaderName::from_static("x-envoy-retry-on");
    pub const X_ENVOY_RETRY_GRPC_ON: HeaderName = HeaderName::from_static("x-envoy-retry-grpc-on");
    pub const X_ENVOY_RETRIABLE_STATUS_CODES: HeaderName =
        HeaderName::from_static("x-envoy-retriable-status-codes");
    pub const X_ENVOY_RETRIABLE_HEADER_NAMES: HeaderName =
        HeaderName::from_static("x-envoy-retriable-header-names");
    pub const X_ENVOY_HEDGE_ON_PER_TRY_TIMEOUT: HeaderName =
        HeaderName::from_static("x-envoy-hedge-on-per-try-timeout");
    pub const X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
    pub const X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
        HeaderName::from_static("x-envoy-upstream-service-time");
    pub const X_ENVOY_OVERLOADED: HeaderName = HeaderName::from_static("x-envoy-overloaded");
    pub const X_ENVOY_RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");
    pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
    pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
    pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
}

/// One level's operations, as Envoy's `HeaderParser` evaluates them: removals first; then
/// every addition is decided against the headers as they are after the removals
/// (`add_if_absent`, `overwrite_if_exists`); then overwrites are set, then appends added.
/// Empty values are skipped unless `keep_empty`.
pub fn apply_mutations(headers: &mut HeaderMap, m: &HeaderMutations) {
    for name in &m.remove {
        headers.remove(name);
    }
    let mut overwrite: Vec<(&HeaderName, &HeaderValue)> = Vec::new();
    let mut append: Vec<(&HeaderName, &HeaderValue)> = Vec::new();
    for opt in &m.add {
        if opt.value.is_empty() && !opt.keep_empty {
            continue;
        }
        let present = headers.contains_key(&opt.name);
        match opt.action {
            AppendAction::AppendIfExistsOrAdd => append.push((&opt.name, &opt.value)),
            AppendAction::AddIfAbsent if !present => append.push((&opt.name, &opt.value)),
            AppendAction::AddIfAbsent => {}
            AppendAction::OverwriteIfExists if !present => {}
            AppendAction::OverwriteIfExists | AppendAction::OverwriteIfExistsOrAdd => {
                overwrite.push((&opt.name, &opt.value))
            }
        }
    }
    for (name, value) in overwrite {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in append {
        headers.append(name.clone(), value.clone());
    }
}

/// Several levels, in the order given (the last level wins conflicts).
pub fn apply_all(headers: &mut HeaderMap, levels: &[&HeaderMutations]) {
    for m in levels {
        apply_mutations(headers, m);
    }
}

/// The levels of header operations for a request (or a response) in the order Envoy
/// applies them: the weighted-cluster entry's first, then route, virtual host and route
/// configuration — reversed to configuration, virtual host, route when
/// `most_specific_header_mutations_wins`. Empty levels are left out.
pub fn levels<'c>(
    most_specific_wins: bool,
    cluster: Option<&'c HeaderMutations>,
    route: &'c HeaderMutations,
    vhost: &'c HeaderMutations,
    config: &'c HeaderMutations,
) -> Vec<&'c HeaderMutations> {
    let ordered = if most_specific_wins {
        [config, vhost, route]
    } else {
        [route, vhost, config]
    };
    cluster
        .into_iter()
        .chain(ordered)
        .filter(|m| !m.is_empty())
        .collect()
}

pub fn request_levels<'c>(
    config: &'c RouteConfig,
    vhost: &'c VirtualHost,
    route: &'c Route,
    cluster: Option<&'c HeaderMutations>,
) -> Vec<&'c HeaderMutations> {
    levels(
        config.most_specific_header_mutations_wins,
        cluster,
        &route.headers,
        &vhost.headers,
        &config.headers,
    )
}

pub fn response_levels<'c>(
    config: &'c RouteConfig,
    vhost: &'c VirtualHost,
    route: &'c Route,
    cluster: Option<&'c HeaderMutations>,
) -> Vec<&'c HeaderMutations> {
    levels(
        config.most_specific_header_mutations_wins,
        cluster,
        &route.response_headers,
        &vhost.response_headers,
        &config.response_headers,
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Numbers below this have a ready header value; most service times and every attempt
/// count do.
const SMALL_NUMBERS: usize = 1024;

/// `n` as a header value. `HeaderValue::from(u64)` allocates (and a later clone of it
/// allocates again), which on every response is measurable; small numbers come from a
/// table made once, whose values clone for free.
pub fn number(n: u64) -> HeaderValue {
    static TABLE: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    let Some(index) = usize::try_from(n).ok().filter(|i| *i < SMALL_NUMBERS) else {
        return HeaderValue::from(n);
    };
    let table = TABLE.get_or_init(|| {
        let mut digits = String::new();
        let mut ends = Vec::with_capacity(SMALL_NUMBERS);
        for i in 0..SMALL_NUMBERS {
            digits.push_str(&i.to_string());
            ends.push(digits.len());
        }
        // Made once per process and kept for its life, so the values can be static.
        let digits: &'static str = Box::leak(digits.into_boxed_str());
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let value = HeaderValue::from_static(&digits[start..end]);
                start = end;
                value
            })
            .collect()
    });
    table[index].clone()
}

/// `x-envoy-expected-rq-timeout-ms`: the time the upstream has for this attempt.
pub fn set_expected_timeout(headers: &mut HeaderMap, ms: u64) {
    headers.insert(names::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, number(ms));
}

/// `x-envoy-attempt-count` on an upstream request: 1 for the first try.
pub fn set_attempt_count(headers: &mut HeaderMap, attempt: u32) {
    headers.insert(names::X_ENVOY_ATTEMPT_COUNT, number(u64::from(attempt)));
}

/// `x-envoy-upstream-service-time` on a response: milliseconds from sending the upstream
/// request to receiving its response headers.
pub fn set_upstream_service_time(headers: &mut HeaderMap, elapsed: Duration) {
    headers.insert(
        names::X_ENVOY_UPSTREAM_SERVICE_TIME,
        number(millis(elapsed)),
    );
}

/// The `x-envoy-*` request headers the router consumes (reads, then strips so they do not
/// travel upstream): timeouts and retry overrides.
pub const CONSUMED_REQUEST_HEADERS: [HeaderName; 8] = [
    names::X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS,
    names::X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS,
    names::X_ENVOY_RETRY_ON,
    names::X_ENVOY_RETRY_GRPC_ON,
    names::X_ENVOY_MAX_RETRIES,
    names::X_ENVOY_RETRIABLE_STATUS_CODES,
    names::X_ENVOY_RETRIABLE_HEADER_NAMES,
    names::X_ENVOY_HEDGE_ON_PER_TRY_TIMEOUT,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::HeaderValueOption;

    #[test]
    fn numbers_read_the_same_from_the_table_and_beyond_it() {
        for n in [0u64, 1, 9, 10, 99, 100, 512, 1023, 1024, 15000, u64::MAX] {
            assert_eq!(number(n), n.to_string().as_str(), "{n}");
        }
    }

    fn opt(name: &'static str, value: &'static str, action: AppendAction) -> HeaderValueOption {
        HeaderValueOption {
            name: HeaderName::from_static(name),
            value: HeaderValue::from_static(value),
            action,
            keep_empty: false,
        }
    }

    fn muts(add: Vec<HeaderValueOption>, remove: &[&'static str]) -> HeaderMutations {
        HeaderMutations {
            add,
            remove: remove.iter().map(|r| HeaderName::from_static(r)).collect(),
        }
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn append_actions() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("old"));
        h.insert("x-b", HeaderValue::from_static("old"));
        h.insert("x-c", HeaderValue::from_static("old"));
        let m = muts(
            vec![
                opt("x-a", "new", AppendAction::AppendIfExistsOrAdd),
                opt("x-b", "new", AppendAction::AddIfAbsent),
                opt("x-c", "new", AppendAction::OverwriteIfExistsOrAdd),
                opt("x-d", "new", AppendAction::OverwriteIfExists),
                opt("x-e", "new", AppendAction::AddIfAbsent),
                opt("x-f", "new", AppendAction::OverwriteIfExistsOrAdd),
            ],
            &[],
        );
        apply_mutations(&mut h, &m);
        assert_eq!(values(&h, "x-a"), ["old", "new"]);
        assert_eq!(values(&h, "x-b"), ["old"]);
        assert_eq!(values(&h, "x-c"), ["new"]);
        assert!(values(&h, "x-d").is_empty());
        assert_eq!(values(&h, "x-e"), ["new"]);
        assert_eq!(values(&h, "x-f"), ["new"]);
    }

    #[test]
    fn removals_happen_before_additions_and_empty_values_need_keep_empty() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("old"));
        let mut empty_kept = opt("x-kept", "", AppendAction::AppendIfExistsOrAdd);
        empty_kept.keep_empty = true;
        let m = muts(
            vec![
                opt("x-a", "new", AppendAction::AddIfAbsent),
                opt("x-dropped", "", AppendAction::AppendIfExistsOrAdd),
                empty_kept,
            ],
            &["x-a"],
        );
        apply_mutations(&mut h, &m);
        assert_eq!(values(&h, "x-a"), ["new"]);
        assert!(!h.contains_key("x-dropped"));
        assert_eq!(values(&h, "x-kept"), [""]);
    }

    #[test]
    fn additions_of_one_level_see_the_headers_before_that_level() {
        let mut h = HeaderMap::new();
        let m = muts(
            vec![
                opt("x-a", "1", AppendAction::AddIfAbsent),
                opt("x-a", "2", AppendAction::AddIfAbsent),
            ],
            &[],
        );
        apply_mutations(&mut h, &m);
        assert_eq!(values(&h, "x-a"), ["1", "2"]);
    }

    #[test]
    fn least_specific_level_wins_by_default() {
        let set = |v: &'static str| {
            muts(
                vec![opt("x-env", v, AppendAction::OverwriteIfExistsOrAdd)],
                &[],
            )
        };
        let (cluster, route, vhost, config) =
            (set("cluster"), set("route"), set("vhost"), set("config"));

        let mut h = HeaderMap::new();
        apply_all(
            &mut h,
            &levels(false, Some(&cluster), &route, &vhost, &config),
        );
        assert_eq!(values(&h, "x-env"), ["config"]);

        let mut h = HeaderMap::new();
        apply_all(
            &mut h,
            &levels(true, Some(&cluster), &route, &vhost, &config),
        );
        assert_eq!(values(&h, "x-env"), ["route"]);

        let empty = HeaderMutations::default();
        assert_eq!(levels(false, None, &route, &empty, &empty).len(), 1);
    }

    #[test]
    fn router_headers() {
        let mut h = HeaderMap::new();
        set_expected_timeout(&mut h, 15000);
        set_attempt_count(&mut h, 2);
        set_upstream_service_time(&mut h, Duration::from_micros(12_900));
        assert_eq!(values(&h, "x-envoy-expected-rq-timeout-ms"), ["15000"]);
        assert_eq!(values(&h, "x-envoy-attempt-count"), ["2"]);
        assert_eq!(values(&h, "x-envoy-upstream-service-time"), ["12"]);
    }
}
