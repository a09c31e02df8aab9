//! The fault filter's `HTTPFault`, as a per-route config.

use strait_proto::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use strait_proto::envoy::extensions::filters::http::fault::v3::{
    HttpFault, fault_abort::ErrorType,
};

use super::wkt;
use crate::config::common::PartsPerMillion;
use crate::config::error::{Ctx, Result};
use crate::config::route::{FaultAbort, FaultConfig};

pub fn fault_config(f: &HttpFault, ctx: &Ctx) -> Result<FaultConfig> {
    check_unsupported(f, ctx)?;
    let delay = match &f.delay {
        None => None,
        Some(d) => {
            let dctx = ctx.field("delay");
            let fixed = match &d.fault_delay_secifier {
                Some(FaultDelaySecifier::FixedDelay(dur)) => {
                    wkt::duration(dur, &dctx.field("fixed_delay"))?
                }
                Some(FaultDelaySecifier::HeaderDelay(_)) => {
                    return Err(dctx
                        .field("header_delay")
                        .error("header-controlled delays are not supported"));
                }
                None => return Err(dctx.error("fixed_delay is required")),
            };
            // An unset percentage is Envoy's zero-valued FractionalPercent: never.
            let pct = wkt::fraction_or(
                d.percentage.as_ref(),
                PartsPerMillion::NONE,
                &dctx.field("percentage"),
            )?;
            Some((fixed, pct))
        }
    };
    let abort = match &f.abort {
        None => None,
        Some(a) => {
            let actx = ctx.field("abort");
            let kind = match &a.error_type {
                Some(ErrorType::HttpStatus(s)) => {
                    let status = u16::try_from(*s)
                        .ok()
                        .filter(|s| (200..600).contains(s))
                        .ok_or_else(|| {
                            actx.field("http_status")
                                .error(format!("HTTP status {s} must be in [200, 600)"))
                        })?;
                    FaultAbort::Http(status)
                }
                Some(ErrorType::GrpcStatus(s)) => FaultAbort::Grpc(*s),
                Some(ErrorType::HeaderAbort(_)) => {
                    return Err(actx
                        .field("header_abort")
                        .error("header-controlled aborts are not supported"));
                }
                None => return Err(actx.error("http_status or grpc_status is required")),
            };
            let pct = wkt::fraction_or(
                a.percentage.as_ref(),
                PartsPerMillion::NONE,
                &actx.field("percentage"),
            )?;
            Some((kind, pct))
        }
    };
    Ok(FaultConfig {
        delay,
        abort,
        max_active_faults: f.max_active_faults.as_ref().map(|m| m.value),
    })
}

/// The fault filter in an HCM's chain may carry a config that applies to every route;
/// strait-proxy only takes faults from the routes, so such a config is rejected rather
/// than silently dropped.
pub fn check_filter_level(f: &HttpFault, ctx: &Ctx) -> Result<()> {
    check_unsupported(f, ctx)?;
    if f.delay.is_some() || f.abort.is_some() {
        return Err(ctx.error(
            "fault injection configured on the filter itself is not supported; configure it per route (typed_per_filter_config)",
        ));
    }
    Ok(())
}

fn check_unsupported(f: &HttpFault, ctx: &Ctx) -> Result<()> {
    if !f.headers.is_empty() {
        return Err(ctx
            .field("headers")
            .error("header conditions on faults are not supported"));
    }
    if !f.upstream_cluster.is_empty() {
        return Err(ctx
            .field("upstream_cluster")
            .error("upstream_cluster conditions on faults are not supported"));
    }
    if !f.downstream_nodes.is_empty() {
        return Err(ctx
            .field("downstream_nodes")
            .error("downstream_nodes conditions on faults are not supported"));
    }
    if f.response_rate_limit.is_some() {
        return Err(ctx
            .field("response_rate_limit")
            .error("response rate limiting is not supported"));
    }
    Ok(())
}
