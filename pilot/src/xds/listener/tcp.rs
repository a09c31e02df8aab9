//! Outbound TCP and TLS filter chains of one service port: the VirtualService `tcp:` and
//! `tls:` rules that apply, else a `tcp_proxy` to the service's cluster.

use std::collections::{BTreeMap, HashSet};

use strait_proto::envoy::config::listener::v3::Filter;
use strait_proto::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use strait_proto::envoy::r#type::v3::{HashPolicy, hash_policy};
use strait_proto::istio::{
    DestinationRule, HashKey, LbPolicy, RouteDestination, TrafficPolicy, VirtualService,
};

use super::chain::ChainOpts;
use super::filters::{tcp_proxy, tcp_proxy_filter, weighted_tcp_proxy};
use super::hcm::idle_timeout;
use crate::model::{
    Config, Protocol, Proxy, PushContext, Service, ServicePort, VirtualServiceView,
};
use crate::xds::route::action::destination_cluster;
use crate::xds::route::{Problems, hosts_match, wkt};

/// The service port a set of chains is built for.
pub struct TcpTarget<'a> {
    pub proxy: &'a Proxy,
    pub push: &'a PushContext,
    pub service: &'a Service,
    pub port: &'a ServicePort,
    /// The listener's address.
    pub bind: &'a str,
    /// The wildcard address of the proxy's IP family.
    pub wildcard: &'a str,
    /// Destination CIDRs when the service has no VIP of its own (else empty).
    pub destination_cidrs: Vec<String>,
}

/// TLS chains (for TLS/HTTPS ports) then TCP chains (for other ports).
pub fn tcp_chain_opts(
    t: &TcpTarget<'_>,
    virtual_services: &[VirtualServiceView],
) -> Vec<ChainOpts> {
    let configs: Vec<&Config<VirtualService>> = virtual_services
        .iter()
        .filter(|vs| vs.hosts.iter().any(|h| hosts_match(h, &t.service.hostname)))
        .map(|vs| &vs.config)
        .collect();
    if is_tls(t.port.protocol) {
        tls_chains(t, &configs)
    } else {
        tcp_chains(t, &configs)
    }
}

fn is_tls(p: Protocol) -> bool {
    matches!(p, Protocol::Tls | Protocol::Https)
}

fn source_matches(
    t: &TcpTarget<'_>,
    gateways: &[String],
    labels: &BTreeMap<String, String>,
    port: u32,
    namespace: &str,
) -> bool {
    let gateway_ok = gateways.is_empty() || gateways.iter().any(|g| g == "mesh");
    let labels_ok = labels.iter().all(|(k, v)| t.proxy.labels.get(k) == Some(v));
    let port_ok = port == 0 || port == u32::from(t.port.port);
    let ns_ok = namespace.is_empty() || namespace == t.proxy.namespace;
    gateway_ok && labels_ok && port_ok && ns_ok
}

fn tls_chains(t: &TcpTarget<'_>, configs: &[&Config<VirtualService>]) -> Vec<ChainOpts> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for vs in configs {
        let mut problems = Problems::default();
        for tls in &vs.spec.tls {
            for m in &tls.matches {
                if !source_matches(
                    t,
                    &m.gateways,
                    &m.source_labels,
                    m.port,
                    &m.source_namespace,
                ) {
                    continue;
                }
                let cidrs = if m.destination_subnets.is_empty() {
                    t.destination_cidrs.clone()
                } else {
                    m.destination_subnets.clone()
                };
                // Matches equal at runtime (same SNI, same subnets) can never both be reached.
                let key = format!(
                    "{}|{}",
                    m.sni_hosts.join(","),
                    m.destination_subnets.join(",")
                );
                if !seen.insert(key) {
                    continue;
                }
                let Some(filters) = route_filters(t, vs, &tls.route, &mut problems) else {
                    continue;
                };
                let mut chain = ChainOpts::network(filters);
                chain.metadata = Some(wkt::virtual_service_metadata(&vs.meta));
                chain.sni_hosts = m.sni_hosts.clone();
                chain.destination_cidrs = cidrs;
                out.push(chain);
            }
        }
        problems.report(t.push, "VirtualService", &vs.meta);
    }
    if out.is_empty() {
        let mut chain = ChainOpts::network(default_filters(t));
        // Without a VIP of its own, only the SNI tells this service's traffic apart.
        let own_vip = t.bind != t.wildcard;
        if !t.destination_cidrs.is_empty() || !own_vip {
            chain.sni_hosts = vec![t.service.hostname.to_string()];
        }
        chain.destination_cidrs = t.destination_cidrs.clone();
        out.push(chain);
    }
    out
}

fn tcp_chains(t: &TcpTarget<'_>, configs: &[&Config<VirtualService>]) -> Vec<ChainOpts> {
    let mut out = Vec::new();
    let mut default_added = false;
    'configs: for vs in configs {
        let mut problems = Problems::default();
        for tcp in &vs.spec.tcp {
            let terminal = tcp.matches.is_empty()
                || tcp.matches.iter().any(|m| {
                    m.destination_subnets.is_empty()
                        && source_matches(
                            t,
                            &m.gateways,
                            &m.source_labels,
                            m.port,
                            &m.source_namespace,
                        )
                });
            let subnets: Vec<String> = tcp
                .matches
                .iter()
                .filter(|m| {
                    source_matches(
                        t,
                        &m.gateways,
                        &m.source_labels,
                        m.port,
                        &m.source_namespace,
                    )
                })
                .flat_map(|m| m.destination_subnets.iter().cloned())
                .collect();
            if terminal {
                if let Some(filters) = route_filters(t, vs, &tcp.route, &mut problems) {
                    let mut chain = ChainOpts::network(filters);
                    chain.metadata = Some(wkt::virtual_service_metadata(&vs.meta));
                    chain.destination_cidrs = t.destination_cidrs.clone();
                    out.push(chain);
                    default_added = true;
                    problems.report(t.push, "VirtualService", &vs.meta);
                    break 'configs;
                }
                continue;
            }
            if subnets.is_empty() {
                continue;
            }
            if let Some(filters) = route_filters(t, vs, &tcp.route, &mut problems) {
                let mut sorted = subnets.clone();
                sorted.sort();
                let mut own = t.destination_cidrs.clone();
                own.sort();
                // The service's own chain would match the same addresses: Envoy rejects twins.
                default_added |= sorted == own;
                let mut chain = ChainOpts::network(filters);
                chain.destination_cidrs = subnets;
                out.push(chain);
            }
        }
        problems.report(t.push, "VirtualService", &vs.meta);
    }
    if !default_added {
        let mut chain = ChainOpts::network(default_filters(t));
        chain.destination_cidrs = t.destination_cidrs.clone();
        out.push(chain);
    }
    out
}

/// A `tcp_proxy` to the service's own cluster: the listener port, or the service's only port.
fn default_filters(t: &TcpTarget<'_>) -> Vec<Filter> {
    let port = match t.service.ports.as_slice() {
        [only] => only.port,
        _ => t.port.port,
    };
    let cluster = crate::model::outbound_cluster_name(port, "", &t.service.hostname);
    let dr = t.push.destination_rule(t.proxy, t.service);
    vec![tcp_proxy_filter(&single_destination(
        t,
        &cluster,
        &cluster,
        "",
        dr.map(|d| &*d.spec),
    ))]
}

/// The filters for a VirtualService route: one cluster, or weighted clusters (zero weights
/// dropped). `None` when nothing routable is left.
fn route_filters(
    t: &TcpTarget<'_>,
    vs: &Config<VirtualService>,
    routes: &[RouteDestination],
    problems: &mut Problems,
) -> Option<Vec<Filter>> {
    let Some(first) = routes.first() else {
        problems.push("tcp/tls route without destinations; skipped");
        return None;
    };
    let first_host = t
        .push
        .resolve_host(&first.destination.host, &vs.meta.namespace);
    let first_service = t.push.service_for_host(&first_host, &t.proxy.namespace);
    let dr = first_service
        .as_ref()
        .and_then(|s| t.push.destination_rule(t.proxy, s))
        .map(|d| d.spec.clone());
    if let [only] = routes {
        let cluster = destination_cluster(
            &first_host,
            &only.destination,
            first_service.as_deref(),
            t.port.port,
        );
        let tcp = single_destination(
            t,
            &cluster,
            &cluster,
            &only.destination.subset,
            dr.as_deref(),
        );
        return Some(vec![tcp_proxy_filter(&tcp)]);
    }
    let mut clusters = Vec::new();
    for r in routes {
        let Ok(weight) = u32::try_from(r.weight) else {
            continue;
        };
        if weight == 0 {
            continue;
        }
        let host = t.push.resolve_host(&r.destination.host, &vs.meta.namespace);
        let service = t.push.service_for_host(&host, &t.proxy.namespace);
        clusters.push((
            destination_cluster(&host, &r.destination, service.as_deref(), t.port.port),
            weight,
        ));
    }
    if clusters.is_empty() {
        problems.push("all weighted tcp/tls destinations have weight 0; skipped");
        return None;
    }
    let stat_prefix = format!("{}.{}", vs.meta.name, vs.meta.namespace);
    let mut tcp = weighted_tcp_proxy(&stat_prefix, clusters);
    apply_connection_policy(t, &mut tcp, "", dr.as_deref());
    Some(vec![tcp_proxy_filter(&tcp)])
}

fn single_destination(
    t: &TcpTarget<'_>,
    stat_prefix: &str,
    cluster: &str,
    subset: &str,
    dr: Option<&DestinationRule>,
) -> TcpProxy {
    let mut tcp = tcp_proxy(stat_prefix, cluster);
    apply_connection_policy(t, &mut tcp, subset, dr);
    tcp
}

/// Idle timeout and maximum connection duration from the DestinationRule's TCP settings (the
/// proxy's `IDLE_TIMEOUT` otherwise), and source-IP hashing when the rule asks for it.
fn apply_connection_policy(
    t: &TcpTarget<'_>,
    tcp: &mut TcpProxy,
    subset: &str,
    dr: Option<&DestinationRule>,
) {
    let tcp_settings = dr
        .and_then(|d| d.traffic_policy.as_ref())
        .and_then(|p| p.connection_pool.as_ref())
        .and_then(|c| c.tcp.as_ref());
    tcp.idle_timeout = tcp_settings
        .and_then(|s| s.idle_timeout.as_ref())
        .map(wkt::istio_duration)
        .or_else(|| idle_timeout(t.proxy));
    tcp.max_downstream_connection_duration = tcp_settings
        .and_then(|s| s.max_connection_duration.as_ref())
        .map(wkt::istio_duration);
    if dr.is_some_and(|d| uses_source_ip(d, subset)) {
        tcp.hash_policy = vec![HashPolicy {
            policy_specifier: Some(hash_policy::PolicySpecifier::SourceIp(
                hash_policy::SourceIp {},
            )),
        }];
    }
}

/// Whether connections hash on the source IP: the subset's load balancer decides when it
/// has one, else the top-level one.
fn uses_source_ip(dr: &DestinationRule, subset: &str) -> bool {
    let source_ip = |p: Option<&TrafficPolicy>| -> Option<bool> {
        let lb = p?.load_balancer.as_ref()?;
        Some(matches!(
            lb.policy,
            Some(LbPolicy::ConsistentHash(ref c)) if c.hash_key == Some(HashKey::UseSourceIp(true))
        ))
    };
    let subset_policy = dr
        .subsets
        .iter()
        .find(|s| s.name == subset)
        .and_then(|s| s.traffic_policy.as_ref());
    source_ip(subset_policy)
        .or_else(|| source_ip(dr.traffic_policy.as_ref()))
        .unwrap_or(false)
}
