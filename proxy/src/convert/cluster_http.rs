//! A cluster's upstream HTTP settings: `typed_extension_protocol_options` with
//! `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`, or the legacy cluster fields.

use std::time::Duration;

use strait_proto::envoy::config::cluster::v3::{
    Cluster as PbCluster, cluster::ClusterProtocolSelection,
};
use strait_proto::envoy::config::core::v3::{
    Http2ProtocolOptions, HttpProtocolOptions as PbCommon,
};
use strait_proto::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions as PbHttpOptions,
    http_protocol_options::{UpstreamProtocolOptions, explicit_http_config::ProtocolConfig},
};
use strait_proto::xds::any;

use super::wkt;
use crate::config::cluster::{HttpProtocolOptions, UpstreamProtocol};
use crate::config::error::{Ctx, Result};

const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

#[allow(deprecated)]
pub fn http_options(c: &PbCluster, ctx: &Ctx) -> Result<HttpProtocolOptions> {
    let typed = typed_options(c, ctx)?;
    let legacy_set = c.http2_protocol_options.is_some()
        || c.http_protocol_options.is_some()
        || c.common_http_protocol_options.is_some()
        || c.max_requests_per_connection.is_some()
        || c.protocol_selection != ClusterProtocolSelection::UseConfiguredProtocol as i32;
    match typed {
        Some((opts, octx)) => {
            if legacy_set {
                return Err(ctx.field("typed_extension_protocol_options").error(
                    "cannot set both the legacy HTTP protocol fields and envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                ));
            }
            from_typed(&opts, &octx)
        }
        None => {
            let protocol =
                if c.protocol_selection == ClusterProtocolSelection::UseDownstreamProtocol as i32 {
                    UpstreamProtocol::UseDownstream
                } else if c.http2_protocol_options.is_some() {
                    UpstreamProtocol::Http2
                } else {
                    UpstreamProtocol::Http1
                };
            let mut out = common(
                c.common_http_protocol_options.as_ref(),
                protocol,
                &ctx.field("common_http_protocol_options"),
            )?;
            out.max_concurrent_streams = max_streams(c.http2_protocol_options.as_ref());
            if out.max_requests_per_connection.is_none() {
                out.max_requests_per_connection = c
                    .max_requests_per_connection
                    .as_ref()
                    .map(|v| v.value)
                    .filter(|v| *v > 0);
            }
            Ok(out)
        }
    }
}

/// The HTTP protocol options entry, if any. Other Envoy protocol options (TCP pools,
/// filters strait-proxy does not run) are ignored; unknown types are rejected.
fn typed_options(c: &PbCluster, ctx: &Ctx) -> Result<Option<(PbHttpOptions, Ctx)>> {
    let mut entries: Vec<_> = c.typed_extension_protocol_options.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut found = None;
    for (key, value) in entries {
        let ectx = ctx.field(&format!("typed_extension_protocol_options[{key:?}]"));
        if any::is::<PbHttpOptions>(value) {
            let opts: PbHttpOptions = any::unpack(value).map_err(|e| ectx.error(e.to_string()))?;
            found = Some((opts, ectx));
        } else if !any::type_name(&value.type_url).starts_with("envoy.") {
            return Err(ectx.error(format!(
                "no protocol options implementation for '{key}' (type URL '{}')",
                value.type_url
            )));
        }
    }
    Ok(found)
}

fn from_typed(o: &PbHttpOptions, ctx: &Ctx) -> Result<HttpProtocolOptions> {
    if !o.http_filters.is_empty() {
        return Err(ctx
            .field("http_filters")
            .error("upstream HTTP filters are not supported"));
    }
    let uctx = ctx.field("upstream_protocol_options");
    let (protocol, h2) = match &o.upstream_protocol_options {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => match &e.protocol_config {
            Some(ProtocolConfig::HttpProtocolOptions(_)) => (UpstreamProtocol::Http1, None),
            Some(ProtocolConfig::Http2ProtocolOptions(h2)) => (UpstreamProtocol::Http2, Some(h2)),
            Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                return Err(ctx
                    .field("explicit_http_config")
                    .field("http3_protocol_options")
                    .error("HTTP/3 upstreams are not supported"));
            }
            None => {
                return Err(ctx
                    .field("explicit_http_config")
                    .error("protocol_config is required"));
            }
        },
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(u)) => (
            UpstreamProtocol::UseDownstream,
            u.http2_protocol_options.as_ref(),
        ),
        Some(UpstreamProtocolOptions::AutoConfig(_)) => {
            return Err(ctx
                .field("auto_config")
                .error("ALPN-negotiated upstream protocols are not supported"));
        }
        None => return Err(uctx.error("upstream_protocol_options is required")),
    };
    let mut out = common(
        o.common_http_protocol_options.as_ref(),
        protocol,
        &ctx.field("common_http_protocol_options"),
    )?;
    out.max_concurrent_streams = max_streams(h2);
    Ok(out)
}

fn common(
    c: Option<&PbCommon>,
    protocol: UpstreamProtocol,
    ctx: &Ctx,
) -> Result<HttpProtocolOptions> {
    Ok(HttpProtocolOptions {
        protocol,
        idle_timeout: wkt::timeout(
            c.and_then(|c| c.idle_timeout.as_ref()),
            Some(DEFAULT_IDLE_TIMEOUT),
            &ctx.field("idle_timeout"),
        )?,
        max_requests_per_connection: c
            .and_then(|c| c.max_requests_per_connection.as_ref())
            .map(|v| v.value)
            .filter(|v| *v > 0),
        max_concurrent_streams: None,
        max_connection_duration: wkt::timeout(
            c.and_then(|c| c.max_connection_duration.as_ref()),
            None,
            &ctx.field("max_connection_duration"),
        )?,
    })
}

fn max_streams(h2: Option<&Http2ProtocolOptions>) -> Option<u32> {
    h2.and_then(|h| h.max_concurrent_streams.as_ref())
        .map(|v| v.value)
}
