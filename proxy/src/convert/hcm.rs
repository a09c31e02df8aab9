//! `envoy.filters.network.http_connection_manager`, with Envoy's defaults.

use std::sync::Arc;
use std::time::Duration;

use strait_proto::envoy::config::core::v3::{ConfigSource, config_source::ConfigSourceSpecifier};
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager as PbHcm, Rds,
    http_connection_manager::{
        CodecType as PbCodec, PathWithEscapedSlashesAction, RouteSpecifier, StripPortMode,
    },
};

use super::{access_log, http_filters, route_config, wkt};
use crate::config::error::{Ctx, Result};
use crate::config::listener::{CodecType, HttpConnectionManager, RouteSource};

const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_REQUEST_HEADERS_KB: u32 = 60;
/// PGV bound of `max_request_headers_kb`.
const MAX_REQUEST_HEADERS_KB: u32 = 8192;

pub fn hcm(h: &PbHcm, ctx: &Ctx) -> Result<HttpConnectionManager> {
    if h.stat_prefix.is_empty() {
        return Err(ctx
            .field("stat_prefix")
            .error("stat_prefix must not be empty"));
    }
    let codec_type = match PbCodec::try_from(h.codec_type) {
        Ok(PbCodec::Auto) => CodecType::Auto,
        Ok(PbCodec::Http1) => CodecType::Http1,
        Ok(PbCodec::Http2) => CodecType::Http2,
        Ok(PbCodec::Http3) => return Err(ctx.field("codec_type").error("HTTP/3 is not supported")),
        Err(_) => {
            return Err(ctx
                .field("codec_type")
                .error(format!("unknown codec_type {}", h.codec_type)));
        }
    };
    check_escaped_slashes(
        h.path_with_escaped_slashes_action,
        &ctx.field("path_with_escaped_slashes_action"),
    )?;
    let route_source = route_source(h.route_specifier.as_ref(), ctx)?;
    let http_filters = http_filters::http_filters(&h.http_filters, &ctx.field("http_filters"))?;
    let max_request_headers_kb = wkt::u32_or(
        h.max_request_headers_kb.as_ref(),
        DEFAULT_MAX_REQUEST_HEADERS_KB,
    );
    if max_request_headers_kb == 0 || max_request_headers_kb > MAX_REQUEST_HEADERS_KB {
        return Err(ctx
            .field("max_request_headers_kb")
            .error(format!("must be between 1 and {MAX_REQUEST_HEADERS_KB}")));
    }
    let common = h.common_http_protocol_options.as_ref();
    let idle_timeout = wkt::timeout(
        common.and_then(|c| c.idle_timeout.as_ref()),
        Some(DEFAULT_IDLE_TIMEOUT),
        &ctx.field("common_http_protocol_options")
            .field("idle_timeout"),
    )?;
    let strip_any_host_port = matches!(
        h.strip_port_mode,
        Some(StripPortMode::StripAnyHostPort(true))
    );
    Ok(HttpConnectionManager {
        stat_prefix: h.stat_prefix.clone(),
        codec_type,
        route_source,
        http_filters,
        stream_idle_timeout: wkt::timeout(
            h.stream_idle_timeout.as_ref(),
            Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            &ctx.field("stream_idle_timeout"),
        )?,
        request_timeout: wkt::timeout(
            h.request_timeout.as_ref(),
            None,
            &ctx.field("request_timeout"),
        )?,
        request_headers_timeout: wkt::timeout(
            h.request_headers_timeout.as_ref(),
            None,
            &ctx.field("request_headers_timeout"),
        )?,
        idle_timeout,
        max_request_headers_kb,
        use_remote_address: wkt::bool_or(h.use_remote_address.as_ref(), false),
        xff_num_trusted_hops: h.xff_num_trusted_hops,
        generate_request_id: wkt::bool_or(h.generate_request_id.as_ref(), true),
        preserve_external_request_id: h.preserve_external_request_id,
        normalize_path: wkt::bool_or(h.normalize_path.as_ref(), false),
        merge_slashes: h.merge_slashes,
        strip_any_host_port,
        server_name: (!h.server_name.is_empty()).then(|| h.server_name.clone()),
        access_log: access_log::access_logs(&h.access_log, &ctx.field("access_log"))?,
        upgrade_types: upgrade_types(h, ctx)?,
    })
}

/// Escaped slashes are either left alone or rejected: the unescaping actions would
/// change the path strait-proxy forwards, which it does not implement.
fn check_escaped_slashes(action: i32, ctx: &Ctx) -> Result<()> {
    match PathWithEscapedSlashesAction::try_from(action) {
        Ok(
            PathWithEscapedSlashesAction::ImplementationSpecificDefault
            | PathWithEscapedSlashesAction::KeepUnchanged,
        ) => Ok(()),
        Ok(other) => Err(ctx.error(format!("{} is not supported", other.as_str_name()))),
        Err(_) => Err(ctx.error(format!("unknown value {action}"))),
    }
}

fn route_source(spec: Option<&RouteSpecifier>, ctx: &Ctx) -> Result<RouteSource> {
    match spec {
        Some(RouteSpecifier::Rds(rds)) => rds_source(rds, &ctx.field("rds")),
        Some(RouteSpecifier::RouteConfig(rc)) => Ok(RouteSource::Inline(Arc::new(
            route_config::route_config_in(rc, &ctx.field("route_config"))?,
        ))),
        Some(RouteSpecifier::ScopedRoutes(_)) => Err(ctx
            .field("scoped_routes")
            .error("scoped routes are not supported")),
        None => Err(ctx.error("rds or route_config is required")),
    }
}

fn rds_source(rds: &Rds, ctx: &Ctx) -> Result<RouteSource> {
    let source = rds.config_source.as_ref().ok_or_else(|| {
        ctx.field("config_source")
            .error("config_source is required")
    })?;
    check_ads(source, &ctx.field("config_source"))?;
    Ok(RouteSource::Rds(rds.route_config_name.clone()))
}

/// strait-proxy receives dynamic resources over its one ADS stream only.
pub fn check_ads(source: &ConfigSource, ctx: &Ctx) -> Result<()> {
    match &source.config_source_specifier {
        Some(ConfigSourceSpecifier::Ads(_)) | Some(ConfigSourceSpecifier::Self_(_)) => Ok(()),
        Some(ConfigSourceSpecifier::ApiConfigSource(_)) => Err(ctx
            .field("api_config_source")
            .error("only ADS config sources are supported")),
        Some(ConfigSourceSpecifier::Path(_)) | Some(ConfigSourceSpecifier::PathConfigSource(_)) => {
            Err(ctx
                .field("path")
                .error("filesystem config sources are not supported; use ADS"))
        }
        None => Err(ctx.error("config source specifier is required")),
    }
}

fn upgrade_types(h: &PbHcm, ctx: &Ctx) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, u) in h.upgrade_configs.iter().enumerate() {
        let ctx = ctx.field("upgrade_configs").index(i);
        if !u.filters.is_empty() {
            return Err(ctx
                .field("filters")
                .error("per-upgrade filter chains are not supported"));
        }
        if u.upgrade_type.is_empty() {
            return Err(ctx
                .field("upgrade_type")
                .error("upgrade_type must not be empty"));
        }
        if wkt::bool_or(u.enabled.as_ref(), true) {
            out.push(u.upgrade_type.to_ascii_lowercase());
        }
    }
    Ok(out)
}
