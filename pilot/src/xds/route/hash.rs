//! Consistent-hash load balancing: the DestinationRule picks the hash key, the route carries
//! it as a `hash_policy`.

use strait_proto::envoy::config::route::v3::route_action::{
    HashPolicy,
    hash_policy::{
        ConnectionProperties, Cookie, CookieAttribute, Header, PolicySpecifier, QueryParameter,
    },
};
use strait_proto::istio::{
    ConsistentHashLb, DestinationRule, HashKey, LbPolicy, PortTrafficPolicy, TrafficPolicy,
};

use super::wkt;

fn policy_hash(policy: Option<&TrafficPolicy>) -> Option<&ConsistentHashLb> {
    match policy?.load_balancer.as_ref()?.policy.as_ref()? {
        LbPolicy::ConsistentHash(c) => Some(c),
        LbPolicy::Simple(_) => None,
    }
}

fn port_level_hash(levels: &[PortTrafficPolicy], port: u32) -> Option<&ConsistentHashLb> {
    let level = levels
        .iter()
        .find(|l| l.port.map(|p| p.number) == Some(port))?;
    match level.load_balancer.as_ref()?.policy.as_ref()? {
        LbPolicy::ConsistentHash(c) => Some(c),
        LbPolicy::Simple(_) => None,
    }
}

/// The hash for a route destination: subset port-level, then subset, then port-level, then
/// top-level settings (port-level ones only when the destination names a port).
pub fn for_destination<'a>(
    dr: &'a DestinationRule,
    subset: &str,
    port: Option<u32>,
) -> Option<&'a ConsistentHashLb> {
    let top = dr.traffic_policy.as_ref();
    let top_port =
        port.and_then(|p| port_level_hash(top.map_or(&[][..], |t| &t.port_level_settings), p));
    let subset_policy = dr
        .subsets
        .iter()
        .find(|s| s.name == subset)
        .and_then(|s| s.traffic_policy.as_ref());
    let subset_port = port.and_then(|p| {
        port_level_hash(subset_policy.map_or(&[][..], |t| &t.port_level_settings), p)
    });
    subset_port
        .or_else(|| policy_hash(subset_policy))
        .or(top_port)
        .or_else(|| policy_hash(top))
}

/// The hash for a service's default route on `port`.
pub fn for_service(dr: &DestinationRule, port: u16) -> Option<&ConsistentHashLb> {
    let top = dr.traffic_policy.as_ref();
    top.and_then(|t| port_level_hash(&t.port_level_settings, u32::from(port)))
        .or_else(|| policy_hash(top))
}

pub fn hash_policy(hash: &ConsistentHashLb) -> Option<HashPolicy> {
    let specifier = match hash.hash_key.as_ref()? {
        HashKey::HttpHeaderName(name) => PolicySpecifier::Header(Header {
            header_name: name.clone(),
            regex_rewrite: None,
        }),
        HashKey::HttpCookie(cookie) => PolicySpecifier::Cookie(Cookie {
            name: cookie.name.clone(),
            ttl: cookie.ttl.as_ref().map(wkt::istio_duration),
            path: cookie.path.clone(),
            attributes: cookie
                .attributes
                .iter()
                .map(|a| CookieAttribute {
                    name: a.name.clone(),
                    value: a.value.clone(),
                })
                .collect(),
        }),
        HashKey::UseSourceIp(source_ip) => {
            PolicySpecifier::ConnectionProperties(ConnectionProperties {
                source_ip: *source_ip,
            })
        }
        HashKey::HttpQueryParameterName(name) => {
            PolicySpecifier::QueryParameter(QueryParameter { name: name.clone() })
        }
    };
    Some(HashPolicy {
        terminal: false,
        policy_specifier: Some(specifier),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::istio::{LoadBalancerSettings, PortSelector, Subset};

    fn ch(header: &str) -> LoadBalancerSettings {
        LoadBalancerSettings {
            policy: Some(LbPolicy::ConsistentHash(ConsistentHashLb {
                hash_key: Some(HashKey::HttpHeaderName(header.into())),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn precedence_subset_over_top() {
        let dr = DestinationRule {
            host: "reviews".into(),
            traffic_policy: Some(TrafficPolicy {
                load_balancer: Some(ch("x-top")),
                port_level_settings: vec![PortTrafficPolicy {
                    port: Some(PortSelector { number: 9080 }),
                    load_balancer: Some(ch("x-port")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            subsets: vec![Subset {
                name: "v1".into(),
                traffic_policy: Some(TrafficPolicy {
                    load_balancer: Some(ch("x-subset")),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let key = |h: Option<&ConsistentHashLb>| match h.and_then(|h| h.hash_key.clone()) {
            Some(HashKey::HttpHeaderName(n)) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(key(for_destination(&dr, "v1", Some(9080))), "x-subset");
        assert_eq!(key(for_destination(&dr, "v2", Some(9080))), "x-port");
        assert_eq!(key(for_destination(&dr, "v2", None)), "x-top");
        assert_eq!(key(for_service(&dr, 9080)), "x-port");
        let policy = hash_policy(for_service(&dr, 1).unwrap()).unwrap();
        assert!(
            matches!(policy.policy_specifier, Some(PolicySpecifier::Header(h)) if h.header_name == "x-top")
        );
    }
}
