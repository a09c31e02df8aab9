//! An HCM's `http_filters`: fault, CORS, gRPC stats and the router, recognised by their
//! typed_config type. Any other filter is rejected unless marked `is_optional`, in which
//! case it is skipped, as Envoy skips optional filters it does not know.

use strait_proto::envoy::extensions::filters::http::cors::v3::Cors;
use strait_proto::envoy::extensions::filters::http::fault::v3::HttpFault;
use strait_proto::envoy::extensions::filters::http::grpc_stats::v3::FilterConfig as GrpcStats;
use strait_proto::envoy::extensions::filters::http::router::v3::Router;
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter as PbHttpFilter, http_filter,
};
use strait_proto::xds::any;

use super::fault;
use crate::config::error::{Ctx, Result};
use crate::config::listener::HttpFilter;

/// Well-known names, used only for filters without a typed_config.
const BY_NAME: [(&str, Kind); 4] = [
    ("envoy.filters.http.fault", Kind::Fault),
    ("envoy.filters.http.cors", Kind::Cors),
    ("envoy.filters.http.grpc_stats", Kind::GrpcStats),
    ("envoy.filters.http.router", Kind::Router),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fault,
    Cors,
    GrpcStats,
    Router,
}

pub fn http_filters(list: &[PbHttpFilter], ctx: &Ctx) -> Result<Vec<HttpFilter>> {
    let mut out = Vec::with_capacity(list.len());
    let mut last_index = None;
    for (i, f) in list.iter().enumerate() {
        let fctx = ctx.index(i);
        let Some(filter) = http_filter(f, &fctx)? else {
            continue;
        };
        if matches!(out.last(), Some(HttpFilter::Router)) {
            return Err(ctx.index(last_index.unwrap_or(0)).error(
                "terminal filter envoy.filters.http.router must be the last filter in a http filter chain",
            ));
        }
        out.push(filter);
        last_index = Some(i);
    }
    match out.last() {
        Some(HttpFilter::Router) => Ok(out),
        Some(_) => Err(ctx.index(last_index.unwrap_or(0)).error(
            "non-terminal filter is the last filter in a http filter chain; the router must come last",
        )),
        // Envoy accepts a chain without filters (requests then go nowhere); so does this.
        None => Ok(out),
    }
}

fn http_filter(f: &PbHttpFilter, ctx: &Ctx) -> Result<Option<HttpFilter>> {
    let kind = match &f.config_type {
        Some(http_filter::ConfigType::TypedConfig(a)) => {
            if any::is::<HttpFault>(a) {
                let cfg: HttpFault =
                    any::unpack(a).map_err(|e| ctx.field("typed_config").error(e.to_string()))?;
                fault::check_filter_level(&cfg, &ctx.field("typed_config"))?;
                Some(Kind::Fault)
            } else if any::is::<Cors>(a) {
                Some(Kind::Cors)
            } else if any::is::<GrpcStats>(a) {
                Some(Kind::GrpcStats)
            } else if any::is::<Router>(a) {
                Some(Kind::Router)
            } else {
                None
            }
        }
        Some(http_filter::ConfigType::ConfigDiscovery(_)) => {
            if f.is_optional {
                return Ok(None);
            }
            return Err(ctx.field("config_discovery").error(format!(
                "HTTP filter '{}': extension config discovery is not supported",
                f.name
            )));
        }
        None => BY_NAME.iter().find(|(n, _)| *n == f.name).map(|(_, k)| *k),
    };
    let Some(kind) = kind else {
        if f.is_optional {
            return Ok(None);
        }
        let type_url = match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(a)) => a.type_url.as_str(),
            _ => "",
        };
        return Err(ctx.error(format!(
            "unsupported HTTP filter '{}' (type URL '{type_url}'): strait-proxy implements fault, cors, grpc_stats and router; mark the filter is_optional to skip it",
            f.name
        )));
    };
    Ok(Some(match kind {
        Kind::Fault => HttpFilter::Fault,
        Kind::Cors => HttpFilter::Cors,
        Kind::GrpcStats => HttpFilter::GrpcStats,
        Kind::Router => HttpFilter::Router,
    }))
}
