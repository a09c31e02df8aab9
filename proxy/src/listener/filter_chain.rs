//! Filter chain selection, as Envoy does it: criteria in a fixed order (destination port,
//! destination IP, server name, transport protocol, application protocols, source IP,
//! source port); at each step the most specific match wins and less specific chains
//! drop out, with no backtracking; no survivor means the default chain.

use std::net::{IpAddr, SocketAddr};

use crate::config::listener::FilterChain;

/// What is known about a connection when its chain is chosen.
#[derive(Clone, Debug)]
pub struct ConnectionFacts {
    pub destination: SocketAddr,
    pub source: SocketAddr,
    /// SNI from the TLS inspector.
    pub server_name: Option<String>,
    /// `tls` (TLS inspector saw a ClientHello) or `raw_buffer`.
    pub transport_protocol: &'static str,
    /// ALPN (TLS) or `http/1.1`, `http/1.0`, `h2c` (HTTP inspector).
    pub application_protocols: Vec<String>,
}

pub fn select<'a>(
    chains: &'a [FilterChain],
    default: Option<&'a FilterChain>,
    facts: &ConnectionFacts,
) -> Option<&'a FilterChain> {
    let mut candidates: Vec<&FilterChain> = chains.iter().collect();
    candidates = narrow(candidates, |c| {
        let port = c.filter_chain_match.destination_port?;
        Some(if port == facts.destination.port() {
            Specificity::Matched(1)
        } else {
            Specificity::Missed
        })
    });
    candidates = narrow(candidates, |c| {
        prefix_specificity(&c.filter_chain_match.prefix_ranges, facts.destination.ip())
    });
    candidates = narrow(candidates, |c| {
        server_name_specificity(
            &c.filter_chain_match.server_names,
            facts.server_name.as_deref(),
        )
    });
    candidates = narrow(candidates, |c| {
        let want = c.filter_chain_match.transport_protocol.as_deref()?;
        Some(if want == facts.transport_protocol {
            Specificity::Matched(1)
        } else {
            Specificity::Missed
        })
    });
    candidates = narrow(candidates, |c| {
        let protocols = &c.filter_chain_match.application_protocols;
        if protocols.is_empty() {
            return None;
        }
        let hit = protocols
            .iter()
            .any(|p| facts.application_protocols.contains(p));
        Some(if hit {
            Specificity::Matched(1)
        } else {
            Specificity::Missed
        })
    });
    candidates = narrow(candidates, |c| {
        prefix_specificity(
            &c.filter_chain_match.source_prefix_ranges,
            facts.source.ip(),
        )
    });
    candidates = narrow(candidates, |c| {
        let ports = &c.filter_chain_match.source_ports;
        if ports.is_empty() {
            return None;
        }
        Some(if ports.contains(&facts.source.port()) {
            Specificity::Matched(1)
        } else {
            Specificity::Missed
        })
    });
    candidates.first().copied().or(default)
}

/// How a chain fares on one criterion. `None` from the scoring function means the chain
/// does not constrain it (a wildcard).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Missed,
    Matched(u32),
}

/// Keeps the chains that match most specifically; if none constrains-and-matches,
/// keeps the unconstrained ones.
fn narrow(
    candidates: Vec<&FilterChain>,
    score: impl Fn(&FilterChain) -> Option<Specificity>,
) -> Vec<&FilterChain> {
    let scored: Vec<(Option<Specificity>, &FilterChain)> =
        candidates.into_iter().map(|c| (score(c), c)).collect();
    let best = scored
        .iter()
        .filter_map(|(s, _)| match s {
            Some(Specificity::Matched(n)) => Some(*n),
            _ => None,
        })
        .max();
    match best {
        Some(n) => scored
            .into_iter()
            .filter(|(s, _)| *s == Some(Specificity::Matched(n)))
            .map(|(_, c)| c)
            .collect(),
        None => scored
            .into_iter()
            .filter(|(s, _)| s.is_none())
            .map(|(_, c)| c)
            .collect(),
    }
}

/// Longest matching prefix length (+1 so /0 still counts as a match).
fn prefix_specificity(ranges: &[ipnet::IpNet], ip: IpAddr) -> Option<Specificity> {
    if ranges.is_empty() {
        return None;
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    Some(
        ranges
            .iter()
            .filter(|r| r.contains(&ip))
            .map(|r| u32::from(r.prefix_len()) + 1)
            .max()
            .map_or(Specificity::Missed, Specificity::Matched),
    )
}

/// Exact names beat wildcards; longer wildcard suffixes beat shorter ones.
fn server_name_specificity(names: &[String], sni: Option<&str>) -> Option<Specificity> {
    if names.is_empty() {
        return None;
    }
    let Some(sni) = sni.map(str::to_ascii_lowercase) else {
        return Some(Specificity::Missed);
    };
    let best = names
        .iter()
        .filter_map(|n| {
            let n = n.to_ascii_lowercase();
            if n == sni {
                Some(u32::MAX)
            } else if let Some(suffix) = n.strip_prefix('*') {
                (sni.ends_with(suffix) && sni.len() > suffix.len())
                    .then(|| u32::try_from(suffix.len()).unwrap_or(u32::MAX - 1))
            } else {
                None
            }
        })
        .max();
    Some(best.map_or(Specificity::Missed, Specificity::Matched))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::listener::{ClusterSpecifier, FilterChainMatch, NetworkFilter, TcpProxy};

    fn chain(name: &str, m: FilterChainMatch) -> FilterChain {
        FilterChain {
            name: name.into(),
            filter_chain_match: m,
            filter: NetworkFilter::TcpProxy(Arc::new(TcpProxy {
                stat_prefix: name.into(),
                cluster: ClusterSpecifier::Cluster(name.into()),
                idle_timeout: None,
                access_log: vec![],
            })),
            has_transport_socket: false,
        }
    }

    fn facts(dst: &str) -> ConnectionFacts {
        ConnectionFacts {
            destination: dst.parse().unwrap(),
            source: "10.0.0.9:40000".parse().unwrap(),
            server_name: None,
            transport_protocol: "raw_buffer",
            application_protocols: vec![],
        }
    }

    fn picked<'a>(
        chains: &'a [FilterChain],
        default: Option<&'a FilterChain>,
        f: &ConnectionFacts,
    ) -> Option<&'a str> {
        select(chains, default, f).map(|c| c.name.as_str())
    }

    #[test]
    fn virtual_outbound_blackhole_and_catch_all() {
        // Istio's virtualOutbound: destination_port 15001 → blackhole, else catch-all.
        let chains = vec![
            chain(
                "virtualOutbound-blackhole",
                FilterChainMatch {
                    destination_port: Some(15001),
                    ..Default::default()
                },
            ),
            chain("virtualOutbound-catchall-tcp", FilterChainMatch::default()),
        ];
        assert_eq!(
            picked(&chains, None, &facts("10.96.0.1:15001")),
            Some("virtualOutbound-blackhole")
        );
        assert_eq!(
            picked(&chains, None, &facts("10.96.0.1:80")),
            Some("virtualOutbound-catchall-tcp")
        );
    }

    #[test]
    fn longest_prefix_wins_without_backtracking() {
        let chains = vec![
            chain(
                "wide",
                FilterChainMatch {
                    prefix_ranges: vec!["10.0.0.0/8".parse().unwrap()],
                    ..Default::default()
                },
            ),
            chain(
                "narrow-tls",
                FilterChainMatch {
                    prefix_ranges: vec!["10.1.0.0/16".parse().unwrap()],
                    transport_protocol: Some("tls".into()),
                    ..Default::default()
                },
            ),
            chain("any", FilterChainMatch::default()),
        ];
        let default = chain("default", FilterChainMatch::default());
        assert_eq!(
            picked(&chains, Some(&default), &facts("10.2.0.1:80")),
            Some("wide")
        );
        assert_eq!(
            picked(&chains, Some(&default), &facts("192.168.0.1:80")),
            Some("any")
        );
        // 10.1/16 is most specific, but needs TLS: no falling back to "wide".
        assert_eq!(
            picked(&chains, Some(&default), &facts("10.1.0.1:80")),
            Some("default")
        );
        let mut tls = facts("10.1.0.1:80");
        tls.transport_protocol = "tls";
        assert_eq!(picked(&chains, Some(&default), &tls), Some("narrow-tls"));
    }

    #[test]
    fn server_names_and_application_protocols() {
        let chains = vec![
            chain(
                "exact",
                FilterChainMatch {
                    server_names: vec!["www.example.com".into()],
                    ..Default::default()
                },
            ),
            chain(
                "wild",
                FilterChainMatch {
                    server_names: vec!["*.example.com".into()],
                    ..Default::default()
                },
            ),
            chain(
                "http",
                FilterChainMatch {
                    application_protocols: vec!["http/1.1".into(), "h2c".into()],
                    ..Default::default()
                },
            ),
            chain("tcp", FilterChainMatch::default()),
        ];
        let mut f = facts("1.2.3.4:443");
        f.server_name = Some("www.example.com".into());
        assert_eq!(picked(&chains, None, &f), Some("exact"));
        f.server_name = Some("api.example.com".into());
        assert_eq!(picked(&chains, None, &f), Some("wild"));
        f.server_name = None;
        f.application_protocols = vec!["h2c".into()];
        assert_eq!(picked(&chains, None, &f), Some("http"));
        f.application_protocols = vec![];
        assert_eq!(picked(&chains, None, &f), Some("tcp"));
    }

    #[test]
    fn no_chain_and_no_default() {
        let chains = vec![chain(
            "p80",
            FilterChainMatch {
                destination_port: Some(80),
                ..Default::default()
            },
        )];
        assert_eq!(picked(&chains, None, &facts("1.2.3.4:81")), None);
    }
}
