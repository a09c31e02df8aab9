//! Retry policies: Istio's default and the translation of `HTTPRoute.retries`.

use strait_proto::envoy::config::route::v3::{
    RetryPolicy,
    retry_policy::{
        RetryBackOff, RetryHostPredicate, RetryPriority, retry_host_predicate, retry_priority,
    },
};
use strait_proto::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use strait_proto::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use strait_proto::istio::HttpRetry;
use strait_proto::xds::any;

use super::wkt;

const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
const PREVIOUS_PRIORITIES: &str = "envoy.retry_priorities.previous_priorities";

/// Istio's default: 2 retries on connection-level failures and 503, preferring other hosts
/// unless the route hashes to a host (then retries stay on it).
pub fn default_policy(consistent_hash: bool) -> RetryPolicy {
    RetryPolicy {
        num_retries: Some(wkt::u32_value(2)),
        retry_on: DEFAULT_RETRY_ON.to_string(),
        host_selection_retry_max_attempts: 5,
        retriable_status_codes: vec![503],
        retry_host_predicate: if consistent_hash {
            Vec::new()
        } else {
            vec![previous_hosts()]
        },
        ..Default::default()
    }
}

/// The route's retry policy: `None` when the config disables retries (`attempts: 0`), the
/// default when nothing is configured, otherwise the default overridden field by field.
pub fn convert_policy(retries: Option<&HttpRetry>, consistent_hash: bool) -> Option<RetryPolicy> {
    let mut out = default_policy(consistent_hash);
    let Some(retries) = retries else {
        return Some(out);
    };
    let attempts = u32::try_from(retries.attempts).ok().filter(|a| *a > 0)?;
    out.num_retries = Some(wkt::u32_value(attempts));
    if !retries.retry_on.is_empty() {
        let (retry_on, codes) = parse_retry_on(&retries.retry_on);
        out.retry_on = retry_on;
        out.retriable_status_codes = codes;
        if !out.retriable_status_codes.is_empty()
            && !out.retry_on.contains("retriable-status-codes")
        {
            if !out.retry_on.is_empty() {
                out.retry_on.push(',');
            }
            out.retry_on.push_str("retriable-status-codes");
        }
    }
    if let Some(t) = &retries.per_try_timeout {
        out.per_try_timeout = Some(wkt::istio_duration(t));
    }
    if let Some(ignore) = retries.retry_ignore_previous_hosts {
        out.retry_host_predicate = if ignore {
            vec![previous_hosts()]
        } else {
            Vec::new()
        };
    }
    if retries.retry_remote_localities == Some(true) {
        out.retry_priority = Some(previous_priorities());
    }
    if let Some(b) = &retries.backoff {
        out.retry_back_off = Some(RetryBackOff {
            base_interval: Some(wkt::istio_duration(b)),
            max_interval: None,
        });
    }
    Some(out)
}

/// Splits `retryOn` into Envoy's retry conditions and the numeric HTTP status codes.
pub fn parse_retry_on(retry_on: &str) -> (String, Vec<u32>) {
    let mut conditions = Vec::new();
    let mut codes = Vec::new();
    for part in retry_on.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u32>() {
            Ok(code) if is_http_status(code) => codes.push(code),
            _ => conditions.push(part),
        }
    }
    (conditions.join(","), codes)
}

/// Go's `http.StatusText(code) != ""`: the status codes with a registered name.
fn is_http_status(code: u32) -> bool {
    matches!(
        code,
        100..=103
            | 200..=208
            | 226
            | 300..=305
            | 307
            | 308
            | 400..=418
            | 421..=426
            | 428
            | 429
            | 431
            | 451
            | 500..=508
            | 510
            | 511
    )
}

fn previous_hosts() -> RetryHostPredicate {
    RetryHostPredicate {
        name: PREVIOUS_HOSTS.to_string(),
        config_type: Some(retry_host_predicate::ConfigType::TypedConfig(any::pack(
            &PreviousHostsPredicate {},
        ))),
    }
}

fn previous_priorities() -> RetryPriority {
    RetryPriority {
        name: PREVIOUS_PRIORITIES.to_string(),
        config_type: Some(retry_priority::ConfigType::TypedConfig(any::pack(
            &PreviousPrioritiesConfig {
                update_frequency: 2,
            },
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::istio::Duration;

    #[test]
    fn default_policy_matches_istio() {
        let p = convert_policy(None, false).unwrap();
        assert_eq!(p.num_retries, Some(wkt::u32_value(2)));
        assert_eq!(p.retry_on, DEFAULT_RETRY_ON);
        assert_eq!(p.retriable_status_codes, [503]);
        assert_eq!(p.host_selection_retry_max_attempts, 5);
        assert_eq!(p.retry_host_predicate[0].name, PREVIOUS_HOSTS);
        assert!(default_policy(true).retry_host_predicate.is_empty());
    }

    #[test]
    fn attempts_zero_disables_retries() {
        let r = HttpRetry {
            attempts: 0,
            ..Default::default()
        };
        assert!(convert_policy(Some(&r), false).is_none());
    }

    #[test]
    fn retry_on_codes_are_split_out() {
        let r = HttpRetry {
            attempts: 3,
            per_try_timeout: Some(Duration::from_secs(2)),
            retry_on: "5xx,gateway-error,503".into(),
            retry_ignore_previous_hosts: Some(false),
            retry_remote_localities: Some(true),
            ..Default::default()
        };
        let p = convert_policy(Some(&r), false).unwrap();
        assert_eq!(p.num_retries, Some(wkt::u32_value(3)));
        assert_eq!(p.retry_on, "5xx,gateway-error,retriable-status-codes");
        assert_eq!(p.retriable_status_codes, [503]);
        assert_eq!(p.per_try_timeout.unwrap().seconds, 2);
        assert!(p.retry_host_predicate.is_empty());
        assert_eq!(p.retry_priority.unwrap().name, PREVIOUS_PRIORITIES);
    }

    #[test]
    fn unknown_numbers_stay_conditions() {
        assert_eq!(
            parse_retry_on("999, reset"),
            ("999,reset".to_string(), vec![])
        );
    }
}
