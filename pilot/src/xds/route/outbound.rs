//! Outbound route configurations (RDS): one per HTTP listener port, named by the port, with a
//! virtual host per service on that port (VirtualService routes or the default route) and a
//! catch-all; or, for a sniffed service on its own VIP listener (`<host>:<port>`), just that
//! service's virtual host.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use strait_proto::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};

use super::defaults::{catch_all_virtual_host, outbound_default_route, trace_operation};
use super::translate::virtual_service_routes;
use super::vhost::{VhostBuilder, vhost_name};
use super::{Registry, RouteContext, action, hash, hosts_match, wkt};
use crate::model::{Protocol, Proxy, PushContext, Resolution, Service, VirtualServiceView};

/// Istio raises Envoy's 4 KiB limit to the 1 MiB its validation allows.
const MAX_DIRECT_RESPONSE_BODY: u32 = 1024 * 1024;

/// What an RDS resource name asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteName {
    /// `"9080"`: every HTTP service on the port.
    Port(u16),
    /// `"reviews.default.svc.cluster.local:9080"`: one sniffed service.
    Sniffed { host: String, port: u16 },
}

impl RouteName {
    pub fn parse(name: &str) -> Option<RouteName> {
        if let Ok(port) = name.parse::<u16>() {
            return Some(RouteName::Port(port));
        }
        let (host, port) = name.rsplit_once(':')?;
        let port = port.parse().ok()?;
        (!host.is_empty()).then(|| RouteName::Sniffed {
            host: host.to_string(),
            port,
        })
    }
}

/// The route configuration for an RDS name; unknown names get an empty one, so that Envoy
/// stops waiting for it.
pub fn build_route_config(proxy: &Proxy, push: &PushContext, name: &str) -> RouteConfiguration {
    let mut out = RouteConfiguration {
        name: name.to_string(),
        validate_clusters: Some(wkt::bool_value(false)),
        ..Default::default()
    };
    let Some(parsed) = RouteName::parse(name) else {
        return out;
    };
    let port = match &parsed {
        RouteName::Port(p) | RouteName::Sniffed { port: p, .. } => *p,
    };
    let mut vhosts = port_virtual_hosts(proxy, push, port);
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    match parsed {
        RouteName::Port(_) => {
            vhosts.push(catch_all_virtual_host(
                push.mesh.outbound_traffic_policy.mode,
            ));
        }
        RouteName::Sniffed { host, .. } => vhosts = sniffed_virtual_hosts(vhosts, name, &host),
    }
    out.virtual_hosts = vhosts;
    out.max_direct_response_body_size_bytes = Some(wkt::u32_value(MAX_DIRECT_RESPONSE_BODY));
    out.ignore_port_in_host_matching = true;
    out
}

/// A sniffed listener serves one service: its virtual host, answering any authority.
fn sniffed_virtual_hosts(vhosts: Vec<VirtualHost>, name: &str, host: &str) -> Vec<VirtualHost> {
    let mut matching: Vec<VirtualHost> = vhosts
        .into_iter()
        .filter(|v| v.domains.iter().any(|d| d == name || d == host))
        .collect();
    if let [only] = matching.as_mut_slice() {
        only.domains = vec!["*".to_string()];
    }
    matching
}

/// Services and VirtualServices on one port, grouped into virtual hosts.
struct HostGroup {
    services: Vec<Arc<Service>>,
    /// VirtualService hosts that are not registry services.
    extra_hosts: Vec<String>,
    routes: Vec<Route>,
}

fn is_http_or_sniffed(p: Protocol) -> bool {
    p.is_http() || p == Protocol::Unsupported
}

fn port_virtual_hosts(proxy: &Proxy, push: &PushContext, port: u16) -> Vec<VirtualHost> {
    let registry: Registry = push
        .services_for_proxy(proxy)
        .into_iter()
        .filter(|s| s.port_by_number(port).is_some())
        .map(|s| (s.hostname.to_string(), s))
        .collect();
    let groups = host_groups(proxy, push, port, &registry);
    let known: HashSet<String> = groups
        .iter()
        .flat_map(|g| &g.services)
        .flat_map(|s| [s.hostname.to_string(), vhost_name(&s.hostname, port)])
        .collect();
    let mut builder = VhostBuilder::new(proxy, push, known);
    let mut out = Vec::new();
    for group in groups.iter().filter(|g| !g.routes.is_empty()) {
        for host in &group.extra_hosts {
            out.extend(builder.build(host, port, &group.routes, None));
        }
        for svc in &group.services {
            out.extend(builder.build(&svc.hostname, port, &group.routes, Some(svc)));
        }
    }
    out
}

/// VirtualService groups first (in precedence order), then a default group per remaining
/// HTTP service.
fn host_groups(
    proxy: &Proxy,
    push: &PushContext,
    port: u16,
    registry: &Registry,
) -> Vec<HostGroup> {
    let virtual_services =
        select_virtual_services(push.virtual_services_for_proxy(proxy), port, registry);
    let wildcard_owner = wildcard_owners(&virtual_services, registry);
    let mut claimed = BTreeSet::new();
    let mut groups = Vec::new();
    for (index, vs) in virtual_services.iter().enumerate() {
        let ctx = RouteContext {
            proxy,
            push,
            listener_port: port,
            registry,
            config_namespace: &vs.config.meta.namespace,
        };
        let routes = virtual_service_routes(&ctx, &vs.config);
        if routes.is_empty() {
            continue;
        }
        let (extra_hosts, services) = split_hosts(vs, index, registry, &wildcard_owner);
        let services: Vec<_> = services
            .into_iter()
            .filter(|s| {
                s.port_by_number(port)
                    .is_some_and(|p| is_http_or_sniffed(p.protocol))
            })
            .collect();
        // Istio keeps VirtualService hosts outside the registry only on port 80.
        if services.is_empty() && port != 80 {
            continue;
        }
        claimed.extend(services.iter().map(|s| s.hostname.to_string()));
        groups.push(HostGroup {
            services,
            extra_hosts,
            routes,
        });
    }
    for svc in registry.values() {
        if claimed.contains(svc.hostname.as_ref()) || svc.resolution == Resolution::Alias {
            continue;
        }
        if let Some(sp) = svc
            .port_by_number(port)
            .filter(|p| is_http_or_sniffed(p.protocol))
        {
            groups.push(default_group(proxy, push, svc, sp.port));
        }
    }
    groups
}

fn default_group(proxy: &Proxy, push: &PushContext, svc: &Arc<Service>, port: u16) -> HostGroup {
    let hash_policy = push
        .destination_rule(proxy, svc)
        .and_then(|dr| hash::for_service(&dr.spec, port))
        .and_then(hash::hash_policy);
    let route = outbound_default_route(
        &action::default_cluster(svc, port),
        trace_operation(&svc.hostname, port),
        push.mesh.default_http_retry_policy.as_ref(),
        hash_policy,
    );
    HostGroup {
        services: vec![svc.clone()],
        extra_hosts: Vec::new(),
        routes: vec![route],
    }
}

/// Off port 80, only VirtualServices naming a service on this port apply.
fn select_virtual_services(
    all: Vec<VirtualServiceView>,
    port: u16,
    registry: &Registry,
) -> Vec<VirtualServiceView> {
    if port == 80 {
        return all;
    }
    all.into_iter()
        .filter(|vs| {
            vs.hosts
                .iter()
                .any(|h| registry.contains_key(h) || registry.keys().any(|s| hosts_match(h, s)))
        })
        .collect()
}

/// For each registry service not named exactly by a VirtualService, the VirtualService whose
/// wildcard host matches it most specifically (the first on a tie).
fn wildcard_owners(
    virtual_services: &[VirtualServiceView],
    registry: &Registry,
) -> Vec<(String, usize)> {
    let exact: HashSet<&str> = virtual_services
        .iter()
        .flat_map(|vs| vs.hosts.iter().map(String::as_str))
        .filter(|h| !h.starts_with('*'))
        .collect();
    let mut out = Vec::new();
    for svc_host in registry.keys().filter(|h| !exact.contains(h.as_str())) {
        let mut best: Option<(usize, usize)> = None;
        for (index, vs) in virtual_services.iter().enumerate() {
            for h in vs.hosts.iter().filter(|h| h.starts_with('*')) {
                if hosts_match(h, svc_host) && best.is_none_or(|(len, _)| h.len() > len) {
                    best = Some((h.len(), index));
                }
            }
        }
        if let Some((_, index)) = best {
            out.push((svc_host.clone(), index));
        }
    }
    out
}

/// The VirtualService's hosts split into registry services it owns and other names.
fn split_hosts(
    vs: &VirtualServiceView,
    index: usize,
    registry: &Registry,
    wildcard_owner: &[(String, usize)],
) -> (Vec<String>, Vec<Arc<Service>>) {
    let mut extra = Vec::new();
    let mut services: Vec<Arc<Service>> = Vec::new();
    for host in &vs.hosts {
        if !host.starts_with('*') {
            match registry.get(host) {
                Some(s) => services.push(s.clone()),
                None => extra.push(host.clone()),
            }
            continue;
        }
        let mut matched_any = false;
        for (svc_host, svc) in registry {
            if !hosts_match(host, svc_host) {
                continue;
            }
            matched_any = true;
            let owned = wildcard_owner
                .iter()
                .any(|(h, i)| h == svc_host && *i == index);
            if owned && !services.iter().any(|s| Arc::ptr_eq(s, svc)) {
                services.push(svc.clone());
            }
        }
        if !matched_any {
            extra.push(host.clone());
        }
    }
    (extra, services)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_parse() {
        assert_eq!(RouteName::parse("9080"), Some(RouteName::Port(9080)));
        assert_eq!(
            RouteName::parse("reviews.default.svc.cluster.local:9080"),
            Some(RouteName::Sniffed {
                host: "reviews.default.svc.cluster.local".into(),
                port: 9080
            })
        );
        assert_eq!(RouteName::parse("http_proxy"), None);
        assert_eq!(RouteName::parse(":80"), None);
    }
}
