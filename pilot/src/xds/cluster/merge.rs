//! Which traffic policy applies to one cluster: a `portLevelSettings` entry for the port
//! replaces the top-level policy as a whole (its unset parts fall back to defaults, not
//! to the top level), and a subset's policy overrides the result part by part.

use strait_proto::istio::{DestinationRule, PortTrafficPolicy, Subset, TrafficPolicy};

/// The policy for `port`, and whether it came from a port-level entry.
pub fn for_port(policy: Option<&TrafficPolicy>, port: u16) -> (Option<TrafficPolicy>, bool) {
    let Some(policy) = policy else {
        return (None, false);
    };
    match port_entry(policy, port) {
        Some(entry) => (Some(from_port_entry(entry)), true),
        None => (Some(policy.clone()), false),
    }
}

/// The policy of a subset cluster: the DestinationRule's policy for the port, overridden
/// by the subset's own policy for the port.
pub fn for_subset(
    top: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u16,
) -> Option<TrafficPolicy> {
    let (top, _) = for_port(top, port);
    let Some(subset) = subset else {
        return top;
    };
    let (subset_policy, port_level) = for_port(Some(subset), port);
    let Some(top) = top else {
        return subset_policy;
    };
    let subset_policy = subset_policy.unwrap_or_default();
    Some(override_with(shallow(&top), subset_policy, port_level))
}

/// The named subset of a DestinationRule.
pub fn subset<'a>(rule: &'a DestinationRule, name: &str) -> Option<&'a Subset> {
    rule.subsets.iter().find(|s| s.name == name)
}

/// The policy a subset cluster of `rule` gets for `port` (the top-level one when the
/// subset is unknown).
pub fn subset_policy(
    rule: &DestinationRule,
    subset_name: &str,
    port: u16,
) -> Option<TrafficPolicy> {
    let own = subset(rule, subset_name).and_then(|s| s.traffic_policy.as_ref());
    for_subset(rule.traffic_policy.as_ref(), own, port)
}

fn port_entry(policy: &TrafficPolicy, port: u16) -> Option<&PortTrafficPolicy> {
    policy
        .port_level_settings
        .iter()
        .find(|p| p.port.is_some_and(|s| s.number == u32::from(port)))
}

fn from_port_entry(entry: &PortTrafficPolicy) -> TrafficPolicy {
    TrafficPolicy {
        load_balancer: entry.load_balancer.clone(),
        connection_pool: entry.connection_pool.clone(),
        outlier_detection: entry.outlier_detection.clone(),
        tls: entry.tls.clone(),
        ..TrafficPolicy::default()
    }
}

/// A copy without `portLevelSettings`, which have been resolved by then.
fn shallow(policy: &TrafficPolicy) -> TrafficPolicy {
    TrafficPolicy {
        port_level_settings: Vec::new(),
        ..policy.clone()
    }
}

/// A port-level subset entry replaces the four per-port parts even where it leaves them
/// unset, as Istio's `mergeTrafficPolicy` does.
fn override_with(
    mut merged: TrafficPolicy,
    subset: TrafficPolicy,
    port_level: bool,
) -> TrafficPolicy {
    if subset.connection_pool.is_some() || port_level {
        merged.connection_pool = subset.connection_pool;
    }
    if subset.outlier_detection.is_some() || port_level {
        merged.outlier_detection = subset.outlier_detection;
    }
    if subset.load_balancer.is_some() || port_level {
        merged.load_balancer = subset.load_balancer;
    }
    if subset.tls.is_some() || port_level {
        merged.tls = subset.tls;
    }
    if subset.tunnel.is_some() {
        merged.tunnel = subset.tunnel;
    }
    if subset.proxy_protocol.is_some() {
        merged.proxy_protocol = subset.proxy_protocol;
    }
    if subset.retry_budget.is_some() {
        merged.retry_budget = subset.retry_budget;
    }
    merged
}

#[cfg(test)]
mod tests {
    use strait_proto::istio::{
        ConnectionPoolSettings, LbPolicy, LoadBalancerSettings, OutlierDetection, PortSelector,
        SimpleLb, TcpSettings,
    };

    use super::*;

    fn lb(simple: SimpleLb) -> Option<LoadBalancerSettings> {
        Some(LoadBalancerSettings {
            policy: Some(LbPolicy::Simple(simple)),
            ..Default::default()
        })
    }

    fn pool(max: i32) -> Option<ConnectionPoolSettings> {
        Some(ConnectionPoolSettings {
            tcp: Some(TcpSettings {
                max_connections: max,
                ..Default::default()
            }),
            http: None,
        })
    }

    #[test]
    fn port_level_replaces_the_top_level_entirely() {
        let top = TrafficPolicy {
            load_balancer: lb(SimpleLb::Random),
            connection_pool: pool(5),
            port_level_settings: vec![PortTrafficPolicy {
                port: Some(PortSelector { number: 9080 }),
                load_balancer: lb(SimpleLb::RoundRobin),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (p, port_level) = for_port(Some(&top), 9080);
        let p = p.unwrap();
        assert!(port_level);
        assert_eq!(p.load_balancer, lb(SimpleLb::RoundRobin));
        assert_eq!(p.connection_pool, None, "no inheritance from the top level");
        let (other, port_level) = for_port(Some(&top), 80);
        assert!(!port_level);
        assert_eq!(other.unwrap().load_balancer, lb(SimpleLb::Random));
    }

    #[test]
    fn subset_overrides_only_what_it_sets() {
        let top = TrafficPolicy {
            load_balancer: lb(SimpleLb::Random),
            connection_pool: pool(5),
            ..Default::default()
        };
        let sub = TrafficPolicy {
            outlier_detection: Some(OutlierDetection::default()),
            load_balancer: lb(SimpleLb::RoundRobin),
            ..Default::default()
        };
        let merged = for_subset(Some(&top), Some(&sub), 9080).unwrap();
        assert_eq!(merged.load_balancer, lb(SimpleLb::RoundRobin));
        assert_eq!(merged.connection_pool, pool(5));
        assert!(merged.outlier_detection.is_some());
        assert_eq!(for_subset(None, Some(&sub), 1), Some(sub.clone()));
        assert_eq!(for_subset(Some(&top), None, 1), Some(top));
    }

    #[test]
    fn port_level_subset_entry_clears_unset_parts() {
        let top = TrafficPolicy {
            connection_pool: pool(5),
            ..Default::default()
        };
        let sub = TrafficPolicy {
            port_level_settings: vec![PortTrafficPolicy {
                port: Some(PortSelector { number: 9080 }),
                load_balancer: lb(SimpleLb::Random),
                ..Default::default()
            }],
            ..Default::default()
        };
        let merged = for_subset(Some(&top), Some(&sub), 9080).unwrap();
        assert_eq!(merged.connection_pool, None);
        assert_eq!(merged.load_balancer, lb(SimpleLb::Random));
    }
}
