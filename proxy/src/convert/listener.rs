//! `Listener` → [`Listener`]: address, listener filters, filter chains and their matches.

use std::collections::BTreeSet;

use strait_proto::envoy::config::listener::v3::{
    FilterChain as PbFilterChain, FilterChainMatch as PbMatch, Listener as PbListener,
    ListenerFilter, filter_chain_match::ConnectionSourceType, listener_filter,
};
use strait_proto::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use strait_proto::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use strait_proto::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use strait_proto::xds::any;

use super::{address, network_filter, transport_socket, wkt};
use crate::config::error::{ConfigError, Ctx, Result};
use crate::config::listener::{FilterChain, FilterChainMatch, Listener, ListenerFilters};

impl TryFrom<&PbListener> for Listener {
    type Error = ConfigError;

    fn try_from(l: &PbListener) -> Result<Listener> {
        listener(l)
    }
}

pub fn listener(l: &PbListener) -> Result<Listener> {
    let ctx = Ctx::new("Listener", &l.name);
    if l.api_listener.is_some() {
        return Err(ctx
            .field("api_listener")
            .error("API listeners are not supported"));
    }
    if l.listener_specifier.is_some() {
        return Err(ctx
            .field("internal_listener")
            .error("internal listeners are not supported"));
    }
    if l.udp_listener_config.is_some() {
        return Err(ctx
            .field("udp_listener_config")
            .error("UDP listeners are not supported"));
    }
    if l.filter_chain_matcher.is_some() {
        return Err(ctx
            .field("filter_chain_matcher")
            .error("the matcher API for filter chains is not supported; use filter_chain_match"));
    }
    if l.fcds_config.is_some() {
        return Err(ctx
            .field("fcds_config")
            .error("filter chain discovery is not supported"));
    }
    if !l.additional_addresses.is_empty() {
        return Err(ctx
            .field("additional_addresses")
            .error("listeners on more than one address are not supported"));
    }
    let address = l
        .address
        .as_ref()
        .ok_or_else(|| ctx.field("address").error("address is required"))?;
    let address = address::socket_addr(address, true, &ctx.field("address"))?;
    let use_original_dst = wkt::bool_or(l.use_original_dst.as_ref(), false);
    let mut listener_filters =
        listener_filters(&l.listener_filters, &ctx.field("listener_filters"))?;
    // Envoy prepends the original_dst listener filter itself when use_original_dst is set.
    listener_filters.original_dst |= use_original_dst;
    let chains_ctx = ctx.field("filter_chains");
    let filter_chains = l
        .filter_chains
        .iter()
        .enumerate()
        .map(|(i, c)| filter_chain(c, &chains_ctx.index(i)))
        .collect::<Result<Vec<_>>>()?;
    check_unique_matches(&filter_chains, &chains_ctx)?;
    let default_filter_chain = l
        .default_filter_chain
        .as_ref()
        .map(|c| filter_chain(c, &ctx.field("default_filter_chain")))
        .transpose()?;
    if filter_chains.is_empty() && default_filter_chain.is_none() {
        return Err(ctx
            .field("filter_chains")
            .error("no filter chains specified"));
    }
    // `deprecated_v1.bind_to_port` is still honoured by Envoy when the field itself is unset.
    let bind_to_port = l.bind_to_port.as_ref().or_else(|| {
        l.deprecated_v1
            .as_ref()
            .and_then(|d| d.bind_to_port.as_ref())
    });
    Ok(Listener {
        name: l.name.clone(),
        address,
        bind_to_port: wkt::bool_or(bind_to_port, true),
        use_original_dst,
        listener_filters,
        filter_chains,
        default_filter_chain,
        transparent: wkt::bool_or(l.transparent.as_ref(), false),
        stat_prefix: (!l.stat_prefix.is_empty()).then(|| l.stat_prefix.clone()),
    })
}

const ORIGINAL_DST_NAMES: [&str; 2] = [
    "envoy.filters.listener.original_dst",
    "envoy.listener.original_dst",
];
const TLS_INSPECTOR_NAMES: [&str; 2] = [
    "envoy.filters.listener.tls_inspector",
    "envoy.listener.tls_inspector",
];
const HTTP_INSPECTOR_NAMES: [&str; 2] = [
    "envoy.filters.listener.http_inspector",
    "envoy.listener.http_inspector",
];

/// Listener filters are recognised by their typed_config type, or by name when they have
/// none. Their `filter_disabled` predicates are not evaluated: the inspectors only add
/// facts, so running them on every connection is harmless.
fn listener_filters(list: &[ListenerFilter], ctx: &Ctx) -> Result<ListenerFilters> {
    let mut out = ListenerFilters::default();
    for (i, f) in list.iter().enumerate() {
        let ctx = ctx.index(i);
        let (original_dst, tls, http) = match &f.config_type {
            Some(listener_filter::ConfigType::TypedConfig(a)) => (
                any::is::<OriginalDst>(a),
                any::is::<TlsInspector>(a),
                any::is::<HttpInspector>(a),
            ),
            Some(listener_filter::ConfigType::ConfigDiscovery(_)) => {
                return Err(ctx
                    .field("config_discovery")
                    .error("extension config discovery is not supported"));
            }
            None => (
                ORIGINAL_DST_NAMES.contains(&f.name.as_str()),
                TLS_INSPECTOR_NAMES.contains(&f.name.as_str()),
                HTTP_INSPECTOR_NAMES.contains(&f.name.as_str()),
            ),
        };
        if original_dst {
            out.original_dst = true;
        } else if tls {
            out.tls_inspector = true;
        } else if http {
            out.http_inspector = true;
        } else {
            let type_url = match &f.config_type {
                Some(listener_filter::ConfigType::TypedConfig(a)) => a.type_url.as_str(),
                _ => "",
            };
            return Err(ctx.error(format!(
                "unsupported listener filter '{}' (type URL '{type_url}'): strait-proxy implements original_dst, tls_inspector and http_inspector",
                f.name
            )));
        }
    }
    Ok(out)
}

fn filter_chain(c: &PbFilterChain, ctx: &Ctx) -> Result<FilterChain> {
    if wkt::bool_or(c.use_proxy_proto.as_ref(), false) {
        return Err(ctx
            .field("use_proxy_proto")
            .error("the PROXY protocol is not supported"));
    }
    let filter_chain_match = match &c.filter_chain_match {
        Some(m) => filter_chain_match(m, &ctx.field("filter_chain_match"))?,
        None => FilterChainMatch::default(),
    };
    let filter = network_filter::terminal_filter(&c.filters, &ctx.field("filters"))?;
    Ok(FilterChain {
        name: c.name.clone(),
        filter_chain_match,
        filter,
        has_transport_socket: transport_socket::is_secure(c.transport_socket.as_ref()),
    })
}

fn filter_chain_match(m: &PbMatch, ctx: &Ctx) -> Result<FilterChainMatch> {
    if !m.direct_source_prefix_ranges.is_empty() {
        return Err(ctx
            .field("direct_source_prefix_ranges")
            .error("direct source ranges are not supported"));
    }
    if m.source_type != ConnectionSourceType::Any as i32 {
        return Err(ctx
            .field("source_type")
            .error("only source_type ANY is supported"));
    }
    let destination_port = m
        .destination_port
        .as_ref()
        .map(|p| wkt::port(p.value, false, &ctx.field("destination_port")))
        .transpose()?;
    let source_ports = m
        .source_ports
        .iter()
        .enumerate()
        .map(|(i, p)| wkt::port(*p, false, &ctx.field("source_ports").index(i)))
        .collect::<Result<Vec<_>>>()?;
    let server_names = m
        .server_names
        .iter()
        .enumerate()
        .map(|(i, n)| server_name(n, &ctx.field("server_names").index(i)))
        .collect::<Result<Vec<_>>>()?;
    Ok(FilterChainMatch {
        destination_port,
        prefix_ranges: address::cidrs(&m.prefix_ranges, &ctx.field("prefix_ranges"))?,
        source_prefix_ranges: address::cidrs(
            &m.source_prefix_ranges,
            &ctx.field("source_prefix_ranges"),
        )?,
        source_ports,
        transport_protocol: (!m.transport_protocol.is_empty())
            .then(|| m.transport_protocol.clone()),
        application_protocols: m.application_protocols.clone(),
        server_names,
    })
}

/// SNI names are matched case-insensitively; Envoy allows only a leading `*.` wildcard.
fn server_name(name: &str, ctx: &Ctx) -> Result<String> {
    let wildcard_rest = name.strip_prefix("*.");
    let body = wildcard_rest.unwrap_or(name);
    if name.is_empty() || body.contains('*') {
        return Err(ctx.error(format!(
            "'{name}': partial wildcards are not supported in server_names"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

/// Two chains with identical criteria would make selection ambiguous; Envoy rejects the
/// listener ("multiple filter chains with the same matching rules are defined").
fn check_unique_matches(chains: &[FilterChain], ctx: &Ctx) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (i, c) in chains.iter().enumerate() {
        if !seen.insert(match_key(&c.filter_chain_match)) {
            return Err(ctx
                .index(i)
                .field("filter_chain_match")
                .error("multiple filter chains with the same matching rules are defined"));
        }
    }
    Ok(())
}

type MatchKey = (
    Option<u16>,
    Vec<String>,
    Vec<String>,
    Option<String>,
    Vec<String>,
    Vec<String>,
    Vec<u16>,
);

fn match_key(m: &FilterChainMatch) -> MatchKey {
    fn sorted<T: ToString>(v: &[T]) -> Vec<String> {
        let mut out: Vec<String> = v.iter().map(ToString::to_string).collect();
        out.sort();
        out.dedup();
        out
    }
    let mut ports = m.source_ports.clone();
    ports.sort_unstable();
    ports.dedup();
    (
        m.destination_port,
        sorted(&m.prefix_ranges),
        sorted(&m.server_names),
        m.transport_protocol.clone(),
        sorted(&m.application_protocols),
        sorted(&m.source_prefix_ranges),
        ports,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_wildcards() {
        let ctx = Ctx::new("Listener", "l");
        assert_eq!(server_name("*.Example.com", &ctx).unwrap(), "*.example.com");
        assert_eq!(server_name("a.example.com", &ctx).unwrap(), "a.example.com");
        assert!(server_name("*foo.example.com", &ctx).is_err());
        assert!(server_name("a.*.com", &ctx).is_err());
        assert!(server_name("", &ctx).is_err());
    }
}
