//! `virtualInbound` (0.0.0.0:15006): connections captured on their way into the workload.
//! One chain set per served port (by destination port), passthrough chains for other ports,
//! and a blackhole for the capture port itself. Chains are plaintext: mTLS needs
//! certificates over SDS, which this control plane does not serve yet.

use std::collections::{BTreeMap, BTreeSet};

use strait_proto::envoy::config::core::v3::TrafficDirection;
use strait_proto::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};

use super::filters::{
    hcm_filter, http_inspector, original_dst, tcp_proxy, tcp_proxy_filter, tls_inspector,
};
use super::hcm::{HcmOptions, RouteSource, build_hcm, idle_timeout};
use super::names::{self, delimited_stat_prefix, listener_name};
use super::{ListenerContext, socket_address};
use crate::model::{Protocol, ServiceTarget, inbound_cluster_name, metric};
use crate::xds::route::inbound::inbound_route_config;
use crate::xds::route::wkt;

/// One served port (or the passthrough catch-all, with port 0).
struct InboundChain<'a> {
    /// Destination port to match; 0 for passthrough chains.
    target_port: u16,
    service_port: u16,
    hostname: &'a str,
    cluster: String,
    protocol: Protocol,
    passthrough: bool,
}

impl InboundChain<'_> {
    fn name(&self, http: bool, wildcard: &str) -> String {
        match (self.passthrough, http) {
            (true, true) => names::VIRTUAL_INBOUND_CATCHALL_HTTP_CHAIN.to_string(),
            (true, false) => names::VIRTUAL_INBOUND_PASSTHROUGH_TCP_CHAIN.to_string(),
            (false, _) => listener_name(wildcard, self.target_port),
        }
    }

    fn stat_prefix(&self, wildcard: &str) -> String {
        if self.passthrough {
            delimited_stat_prefix(&self.cluster)
        } else {
            delimited_stat_prefix(&format!(
                "inbound_{}",
                listener_name(wildcard, self.target_port)
            ))
        }
    }
}

pub fn build_virtual_inbound(ctx: &ListenerContext<'_>, port: u16) -> Listener {
    let passthrough = InboundChain {
        target_port: 0,
        service_port: 0,
        hostname: "",
        cluster: names::INBOUND_PASSTHROUGH_CLUSTER.to_string(),
        protocol: Protocol::Unsupported,
        passthrough: true,
    };
    let mut chains = vec![blackhole_chain(port)];
    chains.extend(filter_chains(ctx, &passthrough));
    for target in served_ports(ctx) {
        chains.extend(filter_chains(ctx, &target));
    }
    let mut listener = Listener {
        name: names::VIRTUAL_INBOUND_LISTENER.to_string(),
        address: Some(socket_address(ctx.wildcard, port)),
        traffic_direction: TrafficDirection::Inbound as i32,
        continue_on_listener_filters_timeout: true,
        max_connections_to_accept_per_socket_event: Some(wkt::u32_value(1)),
        transparent: ctx.tproxy().then(|| wkt::bool_value(true)),
        listener_filters_timeout: Some(wkt::istio_duration(
            &ctx.push.mesh.protocol_detection_timeout,
        )),
        ..Default::default()
    };
    listener.listener_filters = listener_filters(&chains);
    listener.filter_chains = chains;
    listener
}

fn blackhole_chain(port: u16) -> FilterChain {
    FilterChain {
        name: names::VIRTUAL_INBOUND_BLACKHOLE_CHAIN.to_string(),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(wkt::u32_value(u32::from(port))),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter(&tcp_proxy(
            names::BLACKHOLE_CLUSTER,
            names::BLACKHOLE_CLUSTER,
        ))],
        ..Default::default()
    }
}

/// The proxy's service targets, one per target port (the first, i.e. lowest hostname, wins;
/// a clash of protocols is reported), minus ports the proxy uses itself.
fn served_ports<'a>(ctx: &'a ListenerContext<'a>) -> Vec<InboundChain<'a>> {
    let mut by_port: BTreeMap<u16, &'a ServiceTarget> = BTreeMap::new();
    for target in &ctx.proxy.service_targets {
        if target.target_port == 0 {
            // Without a port the chain would shadow the passthrough chain.
            continue;
        }
        if ctx.reserved_ports.contains(&target.target_port) {
            tracing::warn!(
                port = target.target_port,
                "skipping inbound port: it conflicts with a proxy listener"
            );
            continue;
        }
        match by_port.get(&target.target_port) {
            Some(old) => report_conflict(ctx, old, target),
            None => {
                by_port.insert(target.target_port, target);
            }
        }
    }
    by_port
        .into_values()
        .map(|t| InboundChain {
            target_port: t.target_port,
            service_port: t.port.port,
            hostname: &t.service.hostname,
            cluster: inbound_cluster_name(t.target_port),
            protocol: t.port.protocol,
            passthrough: false,
        })
        .collect()
}

fn report_conflict(ctx: &ListenerContext<'_>, old: &ServiceTarget, new: &ServiceTarget) {
    if old.port.protocol != new.port.protocol && old.service.hostname != new.service.hostname {
        ctx.push.status.add_for_proxy(
            metric::CONFLICT_INBOUND_LISTENER,
            ctx.proxy.id.clone(),
            Some(ctx.proxy.id.clone()),
            format!(
                "Conflicting inbound listener:{}. existing: {}, incoming: {}",
                new.target_port, old.service.hostname, new.service.hostname
            ),
        );
    }
}

/// Plaintext chains: HTTP (detected by ALPN when the port is sniffed) and/or TCP.
fn filter_chains(ctx: &ListenerContext<'_>, c: &InboundChain<'_>) -> Vec<FilterChain> {
    let sniffed = c.protocol == Protocol::Unsupported;
    let mut out = Vec::new();
    if c.protocol.is_http() || sniffed {
        let alpn = if sniffed {
            names::PLAINTEXT_HTTP_ALPNS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            Vec::new()
        };
        out.push(FilterChain {
            name: c.name(true, ctx.wildcard),
            filter_chain_match: Some(chain_match(c.target_port, alpn)),
            filters: vec![hcm_filter(&build_hcm(
                HcmOptions {
                    stat_prefix: c.stat_prefix(ctx.wildcard),
                    route: RouteSource::Inline(Box::new(inbound_route_config(
                        &c.cluster,
                        c.service_port,
                        c.hostname,
                    ))),
                    inbound: true,
                    http2: c.protocol.is_http2(),
                },
                ctx.proxy,
            ))],
            ..Default::default()
        });
    }
    if c.protocol.is_tcp() || sniffed {
        let mut tcp = tcp_proxy(&c.cluster, &c.cluster);
        tcp.idle_timeout = idle_timeout(ctx.proxy);
        out.push(FilterChain {
            name: c.name(false, ctx.wildcard),
            filter_chain_match: Some(chain_match(c.target_port, Vec::new())),
            filters: vec![tcp_proxy_filter(&tcp)],
            ..Default::default()
        });
    }
    out
}

fn chain_match(port: u16, application_protocols: Vec<String>) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: (port > 0).then(|| wkt::u32_value(u32::from(port))),
        transport_protocol: names::RAW_BUFFER.to_string(),
        application_protocols,
        ..Default::default()
    }
}

/// `original_dst` restores the pre-redirect destination; the inspectors run only where a
/// chain needs what they detect (HTTP sniffing is skipped on ports declared HTTP or TCP).
fn listener_filters(
    chains: &[FilterChain],
) -> Vec<strait_proto::envoy::config::listener::v3::ListenerFilter> {
    let mut needs_http: BTreeMap<u16, bool> = BTreeMap::new();
    let mut needs_tls = false;
    for chain in chains {
        let m = chain.filter_chain_match.clone().unwrap_or_default();
        let port = m
            .destination_port
            .map_or(0, |p| u16::try_from(p.value).unwrap_or(0));
        let http = m
            .application_protocols
            .iter()
            .any(|p| names::PLAINTEXT_HTTP_ALPNS.contains(&p.as_str()));
        *needs_http.entry(port).or_default() |= http;
        needs_tls |= m.transport_protocol == names::TLS;
    }
    let mut out = vec![original_dst()];
    if needs_tls {
        out.push(tls_inspector());
    }
    if needs_http.values().any(|h| *h) {
        let excluded: BTreeSet<u16> = needs_http
            .iter()
            .filter(|(_, h)| !**h)
            .map(|(p, _)| *p)
            .collect();
        out.push(http_inspector(&excluded.into_iter().collect::<Vec<_>>()));
    }
    out
}
