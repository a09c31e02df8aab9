//! Per-port outbound listeners (`0.0.0.0_9080`, `10.96.0.12_3306`): not bound to a port but
//! handed connections by `virtualOutbound` according to their original destination. HTTP
//! services on one port share a listener routed by RDS; TCP services get one per VIP.
//! Services whose ports collide are merged or dropped the way Istio does it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use strait_proto::envoy::config::core::v3::TrafficDirection;
use strait_proto::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};

use super::chain::{ChainAction, ChainOpts};
use super::filters::{hcm_filter, http_inspector, tls_inspector};
use super::hcm::{HcmOptions, RouteSource, build_hcm};
use super::names::{self, delimited_stat_prefix, listener_name};
use super::tcp::{TcpTarget, tcp_chain_opts};
use super::virtual_outbound::catch_all_filters;
use super::{ListenerContext, socket_address};
use crate::model::{Protocol, Provider, Resolution, Service, ServicePort, VirtualServiceView};
use crate::xds::route::wkt;

/// Istio's metric for a TCP chain dropped because an identical one already exists.
pub const CONFLICT_OUTBOUND_LISTENER_TCP_OVER_TCP: &str =
    "pilot_conflict_outbound_listener_tcp_over_current_tcp";

/// How a listener treats a port's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenerProtocol {
    Http,
    Tcp,
    /// Sniffed: an HTTP chain for detected HTTP, a TCP chain for the rest.
    Auto,
}

fn listener_protocol(p: Protocol) -> Option<ListenerProtocol> {
    match p {
        Protocol::Udp => None,
        Protocol::Unsupported => Some(ListenerProtocol::Auto),
        p if p.is_http() => Some(ListenerProtocol::Http),
        _ => Some(ListenerProtocol::Tcp),
    }
}

/// One listener being assembled.
struct Entry {
    service_port: ServicePort,
    bind: String,
    chains: Vec<ChainOpts>,
    /// What the listener serves so far; `Unsupported` once it mixes HTTP and TCP.
    protocol: Protocol,
}

type Entries = BTreeMap<(u16, String), Entry>;

pub fn build_outbound_listeners(
    ctx: &ListenerContext<'_>,
    virtual_services: &[VirtualServiceView],
) -> Vec<Listener> {
    let mut services = ctx.push.services_for_proxy(ctx.proxy);
    // Older services win port conflicts.
    services.sort_by(|a, b| {
        (a.creation_time.as_deref(), a.hostname.as_ref())
            .cmp(&(b.creation_time.as_deref(), b.hostname.as_ref()))
    });
    let mut entries = Entries::new();
    for svc in services
        .iter()
        .filter(|s| s.resolution != Resolution::Alias)
    {
        for port in &svc.ports {
            for bind in binds_for(ctx, svc, port) {
                add_service_port(ctx, &mut entries, virtual_services, svc, port, bind);
            }
        }
    }
    entries
        .into_values()
        .map(|e| build_listener(ctx, e))
        .collect()
}

/// Where listeners for this service port go: `None` means "decide by protocol" (the VIP or
/// the wildcard). Headless Kubernetes TCP ports get one listener per endpoint address, as
/// their clients connect to pod IPs.
fn binds_for(ctx: &ListenerContext<'_>, svc: &Service, port: &ServicePort) -> Vec<Option<String>> {
    if !ctx.proxy.captures_traffic() {
        return vec![Some(ctx.localhost.to_string())];
    }
    let per_endpoint = svc.resolution == Resolution::Passthrough
        && svc.addresses.is_empty()
        && (port.protocol.is_tcp() || port.protocol == Protocol::Unsupported);
    if !per_endpoint {
        return vec![None];
    }
    let addresses = endpoint_addresses(ctx, svc, port);
    if addresses.is_empty() && svc.provider != Provider::Kubernetes {
        return vec![None];
    }
    let own = ctx.proxy.primary_ip();
    addresses
        .into_iter()
        .filter(|a| Some(*a) != own)
        .map(|a| Some(a.to_string()))
        .collect()
}

fn endpoint_addresses(ctx: &ListenerContext<'_>, svc: &Service, port: &ServicePort) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = ctx
        .push
        .endpoints
        .endpoints(&svc.hostname, &svc.namespace)
        .iter()
        .flat_map(|shard| shard.iter())
        .filter(|e| e.service_port_name == port.name || svc.ports.len() == 1)
        .map(|e| e.address)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A bind on the wildcard address for a port the proxy itself listens on would shadow its
/// own listener; Istio skips such service ports.
fn conflicts_with_reserved(ctx: &ListenerContext<'_>, bind: &str, port: u16) -> bool {
    bind == ctx.wildcard && ctx.reserved_ports.contains(&port)
}

fn add_service_port(
    ctx: &ListenerContext<'_>,
    entries: &mut Entries,
    virtual_services: &[VirtualServiceView],
    svc: &Service,
    port: &ServicePort,
    bind: Option<String>,
) {
    let Some(protocol) = listener_protocol(port.protocol).filter(|_| port.port > 0) else {
        return;
    };
    let bind = bind.unwrap_or_else(|| match (protocol, svc.primary_address()) {
        (ListenerProtocol::Http, _) | (_, None) => ctx.wildcard.to_string(),
        (_, Some(vip)) => vip.to_string(),
    });
    if conflicts_with_reserved(ctx, &bind, port.port) {
        tracing::warn!(port = port.port, service = %svc.hostname, "skipping service port: it conflicts with a proxy listener");
        return;
    }
    let key = (port.port, bind.clone());
    let existing = entries.get(&key).map(|e| e.protocol);
    let Some(conflict) = conflict(protocol, existing) else {
        return;
    };
    if let Some(current) = existing
        && !well_known_ports_compatible(port.protocol, current)
    {
        tracing::warn!(port = port.port, incoming = %port.protocol, existing = %current, "conflict on a well-known port");
        return;
    }
    let (chains, entry_protocol) = plan_chains(ctx, virtual_services, svc, port, protocol, &bind);
    match conflict {
        Conflict::None => {
            let entry = Entry {
                service_port: port.clone(),
                bind,
                chains,
                protocol: entry_protocol,
            };
            entries.insert(key, entry);
        }
        Conflict::Merge | Conflict::MergeKeep => {
            if let Some(entry) = entries.get_mut(&key) {
                merge_chains(ctx, entry, chains, svc, port);
                if conflict == Conflict::Merge {
                    entry.protocol = Protocol::Unsupported;
                }
            }
        }
    }
}

/// What to do when a listener already exists at the address; `None` means the new service
/// port adds nothing (the listener already serves its protocol).
fn conflict(incoming: ListenerProtocol, existing: Option<Protocol>) -> Option<Conflict> {
    let Some(current) = existing else {
        return Some(Conflict::None);
    };
    match incoming {
        ListenerProtocol::Http if current.is_tcp() => Some(Conflict::Merge),
        ListenerProtocol::Http => None,
        ListenerProtocol::Tcp if current.is_http() => Some(Conflict::Merge),
        ListenerProtocol::Tcp => Some(Conflict::MergeKeep),
        // Sniffing replaces a plain HTTP listener outright.
        ListenerProtocol::Auto if current.is_http() => Some(Conflict::None),
        ListenerProtocol::Auto if current.is_tcp() => Some(Conflict::Merge),
        ListenerProtocol::Auto => None,
    }
}

/// The chains a service port contributes, and the protocol its listener then has.
fn plan_chains(
    ctx: &ListenerContext<'_>,
    virtual_services: &[VirtualServiceView],
    svc: &Service,
    port: &ServicePort,
    protocol: ListenerProtocol,
    bind: &str,
) -> (Vec<ChainOpts>, Protocol) {
    let on_wildcard = bind == ctx.wildcard;
    match protocol {
        // On the wildcard address unknown TCP must still pass through, so HTTP is sniffed.
        ListenerProtocol::Http if on_wildcard => (
            vec![ChainOpts::http(port.port.to_string()).sniffed_http()],
            Protocol::Unsupported,
        ),
        ListenerProtocol::Http => (vec![ChainOpts::http(port.port.to_string())], port.protocol),
        ListenerProtocol::Tcp => (
            tcp_chains(ctx, virtual_services, svc, port, bind),
            port.protocol,
        ),
        ListenerProtocol::Auto => {
            // A sniffed service on its own VIP gets routes of its own.
            let rds = if on_wildcard {
                port.port.to_string()
            } else {
                format!("{}:{}", svc.hostname, port.port)
            };
            let mut chains = tcp_chains(ctx, virtual_services, svc, port, bind);
            chains.push(ChainOpts::http(rds).sniffed_http());
            (chains, port.protocol)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conflict {
    /// A new listener (or one replacing the current, for sniffed over HTTP).
    None,
    /// HTTP and TCP on one listener: merge and sniff.
    Merge,
    /// TCP next to TCP (or sniffed): merge chains, keep the protocol.
    MergeKeep,
}

fn tcp_chains(
    ctx: &ListenerContext<'_>,
    virtual_services: &[VirtualServiceView],
    svc: &Service,
    port: &ServicePort,
    bind: &str,
) -> Vec<ChainOpts> {
    let target = TcpTarget {
        proxy: ctx.proxy,
        push: ctx.push,
        service: svc,
        port,
        bind,
        wildcard: ctx.wildcard,
        destination_cidrs: Vec::new(),
    };
    tcp_chain_opts(&target, virtual_services)
}

/// MySQL and Mongo are server-first: they cannot share a port with anything sniffed.
fn well_known_ports_compatible(incoming: Protocol, existing: Protocol) -> bool {
    let server_first = |p| matches!(p, Protocol::Mongo | Protocol::Mysql);
    !(server_first(incoming) || server_first(existing)) || incoming == existing
}

/// Adds the incoming chains that match different connections than the current ones; the
/// rest are dropped and reported.
fn merge_chains(
    ctx: &ListenerContext<'_>,
    entry: &mut Entry,
    incoming: Vec<ChainOpts>,
    svc: &Service,
    port: &ServicePort,
) {
    for chain in incoming {
        if entry.chains.iter().any(|c| c.conflicts_with(&chain)) {
            let name = listener_name(&entry.bind, entry.service_port.port);
            ctx.push.status.add_for_proxy(
                CONFLICT_OUTBOUND_LISTENER_TCP_OVER_TCP,
                name.clone(),
                Some(ctx.proxy.id.clone()),
                format!(
                    "Listener={name} Accepted={} Rejected={} ({})",
                    protocol_name(entry.service_port.protocol),
                    protocol_name(port.protocol),
                    svc.hostname
                ),
            );
            continue;
        }
        entry.chains.push(chain);
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match listener_protocol(p) {
        Some(ListenerProtocol::Http) => "HTTP",
        Some(ListenerProtocol::Tcp) => "TCP",
        _ => "UNKNOWN",
    }
}

fn build_listener(ctx: &ListenerContext<'_>, entry: Entry) -> Listener {
    let name = listener_name(&entry.bind, entry.service_port.port);
    let needs_http_inspector = entry
        .chains
        .iter()
        .any(|c| !c.application_protocols.is_empty());
    let needs_tls_inspector = entry.chains.iter().any(|c| !c.sni_hosts.is_empty());
    let mut listener = Listener {
        name: name.clone(),
        address: Some(socket_address(&entry.bind, entry.service_port.port)),
        traffic_direction: TrafficDirection::Outbound as i32,
        continue_on_listener_filters_timeout: true,
        bind_to_port: (ctx.proxy.captures_traffic()).then(|| wkt::bool_value(false)),
        ..Default::default()
    };
    // Envoy would add a TLS inspector by itself for ALPN matches; Istio adds it explicitly.
    if needs_tls_inspector || needs_http_inspector {
        listener.listener_filters.push(tls_inspector());
    }
    listener.listener_filters_timeout = Some(if needs_http_inspector {
        listener.listener_filters.push(http_inspector(&[]));
        wkt::istio_duration(&ctx.push.mesh.protocol_detection_timeout)
    } else {
        wkt::zero_duration()
    });
    let stat_prefix = delimited_stat_prefix(&format!("outbound_{name}"));
    let mut default_chain = None;
    for opts in &entry.chains {
        let mut chain = FilterChain {
            metadata: opts.metadata.clone(),
            filters: chain_filters(ctx, opts, &stat_prefix),
            ..Default::default()
        };
        if opts.is_match_all() {
            default_chain = Some(chain);
        } else {
            chain.filter_chain_match = opts.to_filter_chain_match();
            listener.filter_chains.push(chain);
        }
    }
    match default_chain {
        Some(chain) if listener.filter_chains.is_empty() => listener.filter_chains.push(chain),
        Some(chain) => listener.default_filter_chain = Some(chain),
        None => {
            listener.default_filter_chain = Some(FilterChain {
                filter_chain_match: Some(FilterChainMatch::default()),
                name: names::PASSTHROUGH_FILTER_CHAIN.to_string(),
                filters: catch_all_filters(ctx),
                ..Default::default()
            });
        }
    }
    listener
}

fn chain_filters(
    ctx: &ListenerContext<'_>,
    opts: &ChainOpts,
    stat_prefix: &str,
) -> Vec<strait_proto::envoy::config::listener::v3::Filter> {
    match &opts.action {
        ChainAction::Network(filters) => filters.clone(),
        ChainAction::Http { rds } => {
            let hcm = build_hcm(
                HcmOptions {
                    stat_prefix: stat_prefix.to_string(),
                    route: RouteSource::Rds(rds.clone()),
                    inbound: false,
                    http2: false,
                },
                ctx.proxy,
            );
            vec![hcm_filter(&hcm)]
        }
    }
}
