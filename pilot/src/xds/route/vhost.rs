//! Virtual hosts of an outbound route configuration and the domains they answer to
//! (inventory §3.4). Ports are never part of a domain: route configurations set
//! `ignore_port_in_host_matching`, so `Host: reviews:9080` matches `reviews`.

use std::collections::HashSet;
use std::net::IpAddr;

use strait_proto::envoy::config::route::v3::{Route, VirtualHost};

use crate::model::{Provider, Proxy, PushContext, Resolution, Service, metric};

/// `host:port`, the name of a virtual host.
pub fn vhost_name(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// IPv6 literals need brackets to be valid authorities.
fn ipv6_compliant(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]"),
        _ => host.to_string(),
    }
}

/// The domains for a service and, separately, the short forms derived from the proxy's DNS
/// domain (those may not shadow a real service with that exact name).
pub fn service_domains(service: &Service, proxy_domain: &str) -> (Vec<String>, Vec<String>) {
    let host = service.hostname.as_ref();
    let alt = alt_virtual_hosts(host, proxy_domain);
    let mut domains = vec![ipv6_compliant(host)];
    domains.extend(alt.iter().cloned());
    if service.resolution == Resolution::Passthrough && service.provider == Provider::Kubernetes {
        // Headless services are also reached through their pods' DNS names.
        let wildcards: Vec<String> = domains.iter().map(|d| format!("*.{d}")).collect();
        domains.extend(wildcards);
    }
    for addr in &service.addresses {
        if !addr.is_unspecified() {
            domains.push(ipv6_compliant(&addr.to_string()));
        }
    }
    (domains, alt)
}

/// The other names a client may use for `hostname`: the absolute FQDN (`name.`), and the
/// short forms a Kubernetes resolver expands relative to the proxy's domain.
pub fn alt_virtual_hosts(hostname: &str, proxy_domain: &str) -> Vec<String> {
    let mut out = Vec::new();
    if hostname.parse::<IpAddr>().is_err() {
        out.push(format!("{hostname}."));
    }
    if let Some(id) = proxy_domain.find(".svc.") {
        if hostname.ends_with(&proxy_domain[id..]) {
            out.extend(kube_alt_hosts(hostname, &proxy_domain[..id]));
        }
        return out;
    }
    let (unique, shared) = unique_and_shared_parts(hostname, proxy_domain);
    if shared.is_empty() {
        return out;
    }
    let unique_host = unique.join(".");
    out.push(unique_host.clone());
    if unique.len() == 2 {
        out.push(format!("{unique_host}.{}", shared[0]));
    }
    out
}

/// `name.ns.svc.<suffix>` seen from namespace `proxy_ns`: `name`, `name.ns.svc`, `name.ns`
/// in the same namespace, `name.ns` and `name.ns.svc` from elsewhere.
fn kube_alt_hosts(hostname: &str, proxy_ns: &str) -> Vec<String> {
    let Some(ih) = hostname.find(".svc.") else {
        return Vec::new();
    };
    let Some(ns) = hostname.find('.') else {
        return Vec::new();
    };
    if ns + 1 > ih {
        return Vec::new();
    }
    let name_ns = &hostname[..ih];
    if &hostname[ns + 1..ih] == proxy_ns {
        vec![
            hostname[..ns].to_string(),
            format!("{name_ns}.svc"),
            name_ns.to_string(),
        ]
    } else {
        vec![name_ns.to_string(), format!("{name_ns}.svc")]
    }
}

/// Splits `foo.ns1.svc.cluster.local` against `ns2.svc.cluster.local` into the labels only
/// the host has (`foo`, `ns1`) and the shared suffix (`svc`, `cluster`, `local`).
fn unique_and_shared_parts<'a>(
    fqdn: &'a str,
    proxy_domain: &'a str,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let host: Vec<&str> = fqdn.split('.').collect();
    let domain: Vec<&str> = proxy_domain.split('.').collect();
    let shared = host
        .iter()
        .rev()
        .zip(domain.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let split = host.len() - shared;
    (host[..split].to_vec(), host[split..].to_vec())
}

/// Builds the virtual hosts of one route configuration, dropping names and domains already
/// taken (Envoy rejects duplicate domains) and reporting them as Istio does.
pub struct VhostBuilder<'a> {
    proxy: &'a Proxy,
    push: &'a PushContext,
    names: HashSet<String>,
    domains: HashSet<String>,
    /// Every service host (and `host:port`) of the configuration: a short form derived from
    /// the proxy's domain must not take over such a name.
    known_fqdns: HashSet<String>,
}

impl<'a> VhostBuilder<'a> {
    pub fn new(proxy: &'a Proxy, push: &'a PushContext, known_fqdns: HashSet<String>) -> Self {
        VhostBuilder {
            proxy,
            push,
            names: HashSet::new(),
            domains: HashSet::new(),
            known_fqdns,
        }
    }

    /// A virtual host for `hostname` on `port`: with the service's domains when it is a
    /// registry service, else just the name (a VirtualService host outside the registry).
    pub fn build(
        &mut self,
        hostname: &str,
        port: u16,
        routes: &[Route],
        service: Option<&Service>,
    ) -> Option<VirtualHost> {
        let name = vhost_name(hostname, port);
        let origin = if service.is_some() {
            "service"
        } else {
            "virtual service"
        };
        if !self.names.insert(name.clone()) {
            self.report(&name, origin);
            return None;
        }
        let (candidates, alt) = match service {
            Some(s) => service_domains(s, &self.proxy.dns_domain),
            None => (vec![ipv6_compliant(hostname)], Vec::new()),
        };
        let wanted = candidates.len();
        let domains = self.dedupe(candidates, &alt);
        if domains.len() != wanted {
            self.report(&name, origin);
        }
        if domains.is_empty() {
            return None;
        }
        Some(VirtualHost {
            name,
            domains,
            routes: routes.to_vec(),
            include_request_attempt_count: true,
            ..Default::default()
        })
    }

    fn dedupe(&mut self, candidates: Vec<String>, alt: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for d in candidates {
            let lower = d.to_ascii_lowercase();
            if self.domains.contains(&lower) || d == "*" {
                continue;
            }
            if alt.contains(&d) && self.known_fqdns.contains(&d) {
                continue;
            }
            self.domains.insert(lower);
            out.push(d);
        }
        out
    }

    fn report(&self, name: &str, origin: &str) {
        self.push.status.add_for_proxy(
            metric::VSERVICE_DUP_DOMAIN,
            name,
            Some(self.proxy.id.clone()),
            format!("duplicate domain from {origin}: {name}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_namespace_domains() {
        let alt = alt_virtual_hosts(
            "echo.default.svc.cluster.local",
            "default.svc.cluster.local",
        );
        assert_eq!(
            alt,
            [
                "echo.default.svc.cluster.local.",
                "echo",
                "echo.default.svc",
                "echo.default"
            ]
        );
    }

    #[test]
    fn other_namespace_domains() {
        let alt = alt_virtual_hosts("echo.default.svc.cluster.local", "shop.svc.cluster.local");
        assert_eq!(
            alt,
            [
                "echo.default.svc.cluster.local.",
                "echo.default",
                "echo.default.svc"
            ]
        );
    }

    #[test]
    fn non_cluster_hosts_get_only_absolute_form() {
        assert_eq!(
            alt_virtual_hosts("api.example.com", "default.svc.cluster.local"),
            ["api.example.com."]
        );
        assert!(alt_virtual_hosts("10.0.0.1", "default.svc.cluster.local").is_empty());
    }

    #[test]
    fn non_kube_proxy_domain_uses_shared_suffix() {
        assert_eq!(
            alt_virtual_hosts("foo.local.campus.net", "remote.campus.net"),
            ["foo.local.campus.net.", "foo.local", "foo.local.campus"]
        );
        assert_eq!(
            alt_virtual_hosts("foobar.com", "local.net"),
            ["foobar.com."]
        );
    }
}
