//! Retry policies of routes and virtual hosts.

use std::time::Duration;

use strait_proto::envoy::config::route::v3::{RetryPolicy as PbRetry, retry_policy};
use strait_proto::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use strait_proto::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use strait_proto::google::protobuf::Any;
use strait_proto::xds::any;

use super::wkt;
use crate::config::error::{Ctx, Result};
use crate::config::route::{RetryOn, RetryPolicy};

const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
const PREVIOUS_PRIORITIES: &str = "envoy.retry_priorities.previous_priorities";
/// Envoy's own retry plugins (host predicates, priorities) are known to a stock Envoy.
const ENVOY_RETRY_PREFIX: &str = "envoy.extensions.retry.";

pub fn retry_policy(p: &PbRetry, ctx: &Ctx) -> Result<RetryPolicy> {
    if !p.retriable_request_headers.is_empty() {
        return Err(ctx
            .field("retriable_request_headers")
            .error("restricting retries by request headers is not supported"));
    }
    let retriable_status_codes = p
        .retriable_status_codes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            u16::try_from(*c)
                .ok()
                .filter(|c| (100..600).contains(c))
                .ok_or_else(|| {
                    ctx.field("retriable_status_codes")
                        .index(i)
                        .error(format!("{c} is not an HTTP status code"))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let (base_interval, max_interval) = back_off(p, ctx)?;
    let mut avoid_previous_hosts = false;
    for (i, pred) in p.retry_host_predicate.iter().enumerate() {
        let config = pred
            .config_type
            .as_ref()
            .map(|retry_policy::retry_host_predicate::ConfigType::TypedConfig(a)| a);
        let ctx = ctx.field("retry_host_predicate").index(i);
        if is_plugin::<PreviousHostsPredicate>(&pred.name, PREVIOUS_HOSTS, config, &ctx)? {
            avoid_previous_hosts = true;
        }
    }
    if let Some(prio) = &p.retry_priority {
        let config = prio
            .config_type
            .as_ref()
            .map(|retry_policy::retry_priority::ConfigType::TypedConfig(a)| a);
        // previous_priorities only matters with several priorities, which strait-proxy's
        // load balancer does not spread retries over; accepted and ignored.
        is_plugin::<PreviousPrioritiesConfig>(
            &prio.name,
            PREVIOUS_PRIORITIES,
            config,
            &ctx.field("retry_priority"),
        )?;
    }
    Ok(RetryPolicy {
        retry_on: retry_on(&p.retry_on),
        num_retries: wkt::u32_or(p.num_retries.as_ref(), 1),
        per_try_timeout: wkt::timeout(
            p.per_try_timeout.as_ref(),
            None,
            &ctx.field("per_try_timeout"),
        )?,
        per_try_idle_timeout: wkt::timeout(
            p.per_try_idle_timeout.as_ref(),
            None,
            &ctx.field("per_try_idle_timeout"),
        )?,
        retriable_status_codes,
        base_interval,
        max_interval,
        avoid_previous_hosts,
        host_selection_retry_max_attempts: u32::try_from(
            p.host_selection_retry_max_attempts.max(0),
        )
        .unwrap_or(u32::MAX),
    })
}

/// Whether a retry plugin is the one `M` names; other Envoy plugins are accepted and
/// ignored, anything else is rejected as Envoy would.
fn is_plugin<M: prost::Name>(
    name: &str,
    well_known: &str,
    config: Option<&Any>,
    ctx: &Ctx,
) -> Result<bool> {
    match config {
        Some(a) if any::is::<M>(a) => Ok(true),
        Some(a) if any::type_name(&a.type_url).starts_with(ENVOY_RETRY_PREFIX) => Ok(false),
        None if name == well_known => Ok(true),
        None if name.starts_with("envoy.retry_") => Ok(false),
        other => Err(ctx.error(format!(
            "unknown retry plugin '{name}' (type URL '{}')",
            other.map_or("", |a| a.type_url.as_str())
        ))),
    }
}

fn back_off(p: &PbRetry, ctx: &Ctx) -> Result<(Duration, Duration)> {
    let Some(b) = &p.retry_back_off else {
        return Ok((DEFAULT_BASE_INTERVAL, DEFAULT_BASE_INTERVAL * 10));
    };
    let ctx = ctx.field("retry_back_off");
    let base = b.base_interval.as_ref().ok_or_else(|| {
        ctx.field("base_interval")
            .error("base_interval is required")
    })?;
    let base = wkt::duration(base, &ctx.field("base_interval"))?;
    if base < Duration::from_millis(1) {
        return Err(ctx
            .field("base_interval")
            .error("base_interval must be at least 1ms"));
    }
    let max = match &b.max_interval {
        Some(m) => wkt::positive_duration(m, &ctx.field("max_interval"))?,
        None => base.checked_mul(10).unwrap_or(Duration::MAX),
    };
    if max < base {
        return Err(ctx
            .field("max_interval")
            .error("max_interval must be greater than or equal to the base_interval"));
    }
    Ok((base, max))
}

/// Parses `retry_on`. Unknown conditions are ignored, as Envoy ignores them in route
/// config (it only refuses them in the `x-envoy-retry-on` header).
pub fn retry_on(s: &str) -> RetryOn {
    let mut out = RetryOn::default();
    for cond in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        match cond {
            "5xx" => out.five_xx = true,
            "gateway-error" => out.gateway_error = true,
            "reset" => out.reset = true,
            "reset-before-request" => out.reset_before_request = true,
            "connect-failure" => out.connect_failure = true,
            "refused-stream" => out.refused_stream = true,
            "retriable-4xx" => out.retriable_4xx = true,
            "retriable-status-codes" => out.retriable_status_codes = true,
            "cancelled" | "deadline-exceeded" | "internal" | "resource-exhausted"
            | "unavailable"
                if !out.grpc.iter().any(|g| g == cond) =>
            {
                out.grpc.push(cond.to_string());
            }
            // envoy-ratelimited needs the rate limit filter; the others are not implemented.
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::google::protobuf::{Duration as PbDuration, UInt32Value};

    #[test]
    fn retry_on_parses_http_and_grpc_conditions() {
        let r = retry_on(
            "connect-failure,refused-stream, unavailable,cancelled,retriable-status-codes,envoy-ratelimited,bogus",
        );
        assert!(r.connect_failure && r.refused_stream && r.retriable_status_codes);
        assert!(!r.five_xx && !r.reset);
        assert_eq!(r.grpc, ["unavailable", "cancelled"]);
    }

    #[test]
    fn defaults_and_back_off() {
        let ctx = Ctx::new("RouteConfiguration", "r");
        let p = retry_policy(&PbRetry::default(), &ctx).unwrap();
        assert_eq!(p.num_retries, 1);
        assert_eq!(p.base_interval, Duration::from_millis(25));
        assert_eq!(p.max_interval, Duration::from_millis(250));
        let p = PbRetry {
            num_retries: Some(UInt32Value { value: 3 }),
            retry_back_off: Some(retry_policy::RetryBackOff {
                base_interval: Some(PbDuration {
                    seconds: 0,
                    nanos: 100_000_000,
                }),
                max_interval: None,
            }),
            ..Default::default()
        };
        let out = retry_policy(&p, &ctx).unwrap();
        assert_eq!(out.num_retries, 3);
        assert_eq!(out.max_interval, Duration::from_secs(1));
        let bad = PbRetry {
            retry_back_off: Some(retry_policy::RetryBackOff {
                base_interval: Some(PbDuration {
                    seconds: 2,
                    nanos: 0,
                }),
                max_interval: Some(PbDuration {
                    seconds: 1,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        };
        assert_eq!(
            retry_policy(&bad, &ctx).unwrap_err().field,
            "retry_back_off.max_interval"
        );
    }
}
