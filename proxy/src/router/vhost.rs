//! Virtual host selection by `:authority`, as Envoy's route matcher does it.
//!
//! Domains are tried in this order: exact names, then `*suffix` wildcards longest first,
//! then `prefix*` wildcards longest first, then `*`. A wildcard must stand for at least
//! one character (`*.foo.com` does not match `.foo.com`). Ports are part of the compared
//! text (a domain `reviews:9080` matches only that authority) unless the route
//! configuration sets `ignore_port_in_host_matching`, which drops the request's port
//! first. Host names compare case-insensitively; domains are stored lowercased.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::route::{RouteConfig, VirtualHost};

/// Envoy's `getPortStart`: the index of the `:` before a port, or `None`; an IPv6 literal
/// only has a port after its closing bracket.
pub fn port_start(host: &str) -> Option<usize> {
    let colon = host.rfind(':')?;
    match host.rfind(']') {
        Some(bracket) if bracket > colon => None,
        _ => Some(colon),
    }
}

/// The lowercased host a virtual host is chosen by.
pub fn host_for_matching(authority: &str, ignore_port: bool) -> Cow<'_, str> {
    let host = if ignore_port {
        port_start(authority).map_or(authority, |i| &authority[..i])
    } else {
        authority
    };
    // Hosts almost always arrive in lower case: copy only when one does not.
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DomainKind<'d> {
    Default,
    Exact(&'d str),
    /// `*.foo.com` kept as `.foo.com`.
    Suffix(&'d str),
    /// `foo.*` kept as `foo.`.
    Prefix(&'d str),
}

fn classify(domain: &str) -> DomainKind<'_> {
    if domain == "*" {
        DomainKind::Default
    } else if let Some(suffix) = domain.strip_prefix('*') {
        DomainKind::Suffix(suffix)
    } else if let Some(prefix) = domain.strip_suffix('*') {
        DomainKind::Prefix(prefix)
    } else {
        DomainKind::Exact(domain)
    }
}

/// The virtual host for a request's authority, by scanning the configuration. Use
/// [`VirtualHostIndex`] for large route tables.
pub fn find_virtual_host<'c>(
    config: &'c RouteConfig,
    authority: Option<&str>,
) -> Option<&'c Arc<VirtualHost>> {
    let mut default = None;
    let mut any_named = false;
    for vh in &config.virtual_hosts {
        for d in &vh.domains {
            match classify(d) {
                DomainKind::Default => {
                    default = default.or(Some(vh));
                }
                _ => any_named = true,
            }
        }
    }
    if !any_named {
        return default;
    }
    let host = host_for_matching(authority?, config.ignore_port_in_host_matching);
    let mut best_suffix: Option<(usize, &'c Arc<VirtualHost>)> = None;
    let mut best_prefix: Option<(usize, &'c Arc<VirtualHost>)> = None;
    for vh in &config.virtual_hosts {
        for d in &vh.domains {
            match classify(d) {
                DomainKind::Default => {}
                DomainKind::Exact(e) if e == host.as_ref() => return Some(vh),
                DomainKind::Exact(_) => {}
                DomainKind::Suffix(s) => {
                    if s.len() < host.len()
                        && host.ends_with(s)
                        && best_suffix.is_none_or(|(len, _)| s.len() > len)
                    {
                        best_suffix = Some((s.len(), vh));
                    }
                }
                DomainKind::Prefix(p) => {
                    if p.len() < host.len()
                        && host.starts_with(p)
                        && best_prefix.is_none_or(|(len, _)| p.len() > len)
                    {
                        best_prefix = Some((p.len(), vh));
                    }
                }
            }
        }
    }
    best_suffix.or(best_prefix).map(|(_, vh)| vh).or(default)
}

/// Lookup tables over a route configuration's domains, built once per configuration:
/// a hash lookup for exact names and one per wildcard length, longest first.
#[derive(Clone, Debug, Default)]
pub struct VirtualHostIndex {
    exact: HashMap<String, usize>,
    /// `(wildcard text length, wildcard text -> vhost index)`, longest first.
    suffixes: Vec<(usize, HashMap<String, usize>)>,
    prefixes: Vec<(usize, HashMap<String, usize>)>,
    default: Option<usize>,
}

impl VirtualHostIndex {
    pub fn new(config: &RouteConfig) -> VirtualHostIndex {
        let mut index = VirtualHostIndex::default();
        let mut suffixes: HashMap<usize, HashMap<String, usize>> = HashMap::new();
        let mut prefixes: HashMap<usize, HashMap<String, usize>> = HashMap::new();
        for (i, vh) in config.virtual_hosts.iter().enumerate() {
            for d in &vh.domains {
                // Envoy rejects duplicate domains; the first one wins here, as in a scan.
                match classify(d) {
                    DomainKind::Default => {
                        index.default.get_or_insert(i);
                    }
                    DomainKind::Exact(e) => {
                        index.exact.entry(e.to_string()).or_insert(i);
                    }
                    DomainKind::Suffix(s) => {
                        suffixes
                            .entry(s.len())
                            .or_default()
                            .entry(s.to_string())
                            .or_insert(i);
                    }
                    DomainKind::Prefix(p) => {
                        prefixes
                            .entry(p.len())
                            .or_default()
                            .entry(p.to_string())
                            .or_insert(i);
                    }
                }
            }
        }
        index.suffixes = suffixes.into_iter().collect();
        index
            .suffixes
            .sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        index.prefixes = prefixes.into_iter().collect();
        index
            .prefixes
            .sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        index
    }

    /// The same answer as [`find_virtual_host`], for the configuration this index was
    /// built from.
    pub fn find<'c>(
        &self,
        config: &'c RouteConfig,
        authority: Option<&str>,
    ) -> Option<&'c Arc<VirtualHost>> {
        self.find_index(config.ignore_port_in_host_matching, authority)
            .and_then(|i| config.virtual_hosts.get(i))
    }

    fn find_index(&self, ignore_port: bool, authority: Option<&str>) -> Option<usize> {
        if self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty() {
            return self.default;
        }
        let host = host_for_matching(authority?, ignore_port);
        if let Some(i) = self.exact.get(host.as_ref()) {
            return Some(*i);
        }
        let wildcard = |tables: &[(usize, HashMap<String, usize>)], suffix: bool| {
            tables.iter().find_map(|(len, table)| {
                if *len >= host.len() {
                    return None;
                }
                let part = if suffix {
                    host.get(host.len() - len..)?
                } else {
                    host.get(..*len)?
                };
                table.get(part).copied()
            })
        };
        wildcard(&self.suffixes, true)
            .or_else(|| wildcard(&self.prefixes, false))
            .or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(name: &str, domains: &[&str]) -> Arc<VirtualHost> {
        Arc::new(VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        })
    }

    fn config(ignore_port: bool, vhosts: Vec<Arc<VirtualHost>>) -> RouteConfig {
        RouteConfig {
            name: "80".into(),
            virtual_hosts: vhosts,
            ignore_port_in_host_matching: ignore_port,
            ..Default::default()
        }
    }

    /// Both lookups, which must agree.
    fn pick(cfg: &RouteConfig, host: Option<&str>) -> Option<String> {
        let scanned = find_virtual_host(cfg, host).map(|v| v.name.clone());
        let indexed = VirtualHostIndex::new(cfg)
            .find(cfg, host)
            .map(|v| v.name.clone());
        assert_eq!(scanned, indexed, "scan and index disagree for {host:?}");
        scanned
    }

    fn istio_outbound(ignore_port: bool) -> RouteConfig {
        config(
            ignore_port,
            vec![
                vh(
                    "reviews.default.svc.cluster.local:9080",
                    &[
                        "reviews.default.svc.cluster.local",
                        "reviews",
                        "reviews.default.svc",
                        "reviews.default",
                        "10.96.0.11",
                    ],
                ),
                vh("wild-suffix", &["*.example.com"]),
                vh("longer-suffix", &["*-api.example.com"]),
                vh("wild-prefix", &["api.*"]),
                vh("allow_any", &["*"]),
            ],
        )
    }

    #[test]
    fn istio_domains_with_and_without_port() {
        let cfg = istio_outbound(true);
        for host in [
            "reviews",
            "reviews:9080",
            "REVIEWS.default",
            "reviews.default.svc.cluster.local:9080",
            "10.96.0.11:9080",
        ] {
            assert_eq!(
                pick(&cfg, Some(host)).as_deref(),
                Some("reviews.default.svc.cluster.local:9080"),
                "{host}"
            );
        }
        assert_eq!(
            pick(&cfg, Some("ratings:9080")).as_deref(),
            Some("allow_any")
        );
    }

    #[test]
    fn ports_count_unless_ignored() {
        let cfg = istio_outbound(false);
        assert_eq!(
            pick(&cfg, Some("reviews")).as_deref(),
            Some("reviews.default.svc.cluster.local:9080")
        );
        assert_eq!(
            pick(&cfg, Some("reviews:9080")).as_deref(),
            Some("allow_any")
        );
        let with_port = config(false, vec![vh("p", &["reviews:9080"]), vh("d", &["*"])]);
        assert_eq!(pick(&with_port, Some("reviews:9080")).as_deref(), Some("p"));
        assert_eq!(pick(&with_port, Some("reviews")).as_deref(), Some("d"));
    }

    #[test]
    fn exact_then_longest_suffix_then_prefix_then_default() {
        let cfg = istio_outbound(true);
        assert_eq!(
            pick(&cfg, Some("foo.example.com")).as_deref(),
            Some("wild-suffix")
        );
        assert_eq!(
            pick(&cfg, Some("foo-api.example.com")).as_deref(),
            Some("longer-suffix")
        );
        // A suffix wildcard beats a prefix wildcard that also matches.
        assert_eq!(
            pick(&cfg, Some("api.example.com")).as_deref(),
            Some("wild-suffix")
        );
        assert_eq!(
            pick(&cfg, Some("api.internal")).as_deref(),
            Some("wild-prefix")
        );
        assert_eq!(pick(&cfg, Some("unknown")).as_deref(), Some("allow_any"));
    }

    #[test]
    fn wildcards_stand_for_at_least_one_character() {
        let cfg = config(true, vec![vh("s", &["*.foo.com"]), vh("p", &["bar.*"])]);
        assert_eq!(pick(&cfg, Some(".foo.com")), None);
        assert_eq!(pick(&cfg, Some("a.foo.com")).as_deref(), Some("s"));
        assert_eq!(pick(&cfg, Some("bar.")), None);
        assert_eq!(pick(&cfg, Some("bar.x")).as_deref(), Some("p"));
    }

    #[test]
    fn missing_authority_only_reaches_a_lone_default() {
        let only_default = config(true, vec![vh("d", &["*"])]);
        assert_eq!(pick(&only_default, None).as_deref(), Some("d"));
        assert_eq!(pick(&istio_outbound(true), None), None);
    }

    #[test]
    fn ipv6_literals_keep_their_colons() {
        assert_eq!(port_start("[::1]:80"), Some(5));
        assert_eq!(port_start("[::1]"), None);
        assert_eq!(port_start("host:80"), Some(4));
        assert_eq!(port_start("host"), None);
        let cfg = config(true, vec![vh("v6", &["[fd00::1]"]), vh("d", &["*"])]);
        assert_eq!(pick(&cfg, Some("[fd00::1]:9080")).as_deref(), Some("v6"));
        assert_eq!(pick(&cfg, Some("[FD00::1]")).as_deref(), Some("v6"));
    }
}
