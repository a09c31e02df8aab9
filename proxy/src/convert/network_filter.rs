//! A filter chain's network filters. strait-proxy runs exactly one, the terminal
//! `tcp_proxy` or `http_connection_manager`; any other network filter would change what
//! the chain does, so it is rejected.

use std::sync::Arc;

use strait_proto::envoy::config::listener::v3::{Filter, filter};
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager as PbHcm;
use strait_proto::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy as PbTcpProxy;
use strait_proto::xds::any;

use super::{hcm, tcp_proxy};
use crate::config::error::{Ctx, Result};
use crate::config::listener::NetworkFilter;

pub fn terminal_filter(filters: &[Filter], ctx: &Ctx) -> Result<NetworkFilter> {
    let [only] = filters else {
        if filters.is_empty() {
            return Err(ctx.error(
                "a filter chain needs a network filter (tcp_proxy or http_connection_manager)",
            ));
        }
        // Name the first filter that is not the terminal one, which is what would be dropped.
        for (i, f) in filters.iter().enumerate() {
            if !is_terminal(f) {
                return Err(unsupported(f, &ctx.index(i)));
            }
        }
        return Err(ctx.error("only one terminal network filter per chain is supported"));
    };
    network_filter(only, &ctx.index(0))
}

fn is_terminal(f: &Filter) -> bool {
    matches!(&f.config_type, Some(filter::ConfigType::TypedConfig(a)) if any::is::<PbTcpProxy>(a) || any::is::<PbHcm>(a))
}

fn network_filter(f: &Filter, ctx: &Ctx) -> Result<NetworkFilter> {
    let a = match &f.config_type {
        Some(filter::ConfigType::TypedConfig(a)) => a,
        Some(filter::ConfigType::ConfigDiscovery(_)) => {
            return Err(ctx
                .field("config_discovery")
                .error("extension config discovery is not supported"));
        }
        None => {
            return Err(ctx
                .field("typed_config")
                .error(format!("network filter '{}' has no typed_config", f.name)));
        }
    };
    let tctx = ctx.field("typed_config");
    if any::is::<PbTcpProxy>(a) {
        let t: PbTcpProxy = any::unpack(a).map_err(|e| tctx.error(e.to_string()))?;
        return Ok(NetworkFilter::TcpProxy(Arc::new(tcp_proxy::tcp_proxy(
            &t, &tctx,
        )?)));
    }
    if any::is::<PbHcm>(a) {
        let h: PbHcm = any::unpack(a).map_err(|e| tctx.error(e.to_string()))?;
        return Ok(NetworkFilter::HttpConnectionManager(Arc::new(hcm::hcm(
            &h, &tctx,
        )?)));
    }
    Err(unsupported(f, ctx))
}

fn unsupported(f: &Filter, ctx: &Ctx) -> crate::config::ConfigError {
    let type_url = match &f.config_type {
        Some(filter::ConfigType::TypedConfig(a)) => a.type_url.as_str(),
        _ => "",
    };
    ctx.error(format!(
        "unsupported network filter '{}' (type URL '{type_url}'): strait-proxy implements envoy.filters.network.tcp_proxy and envoy.filters.network.http_connection_manager",
        f.name
    ))
}
