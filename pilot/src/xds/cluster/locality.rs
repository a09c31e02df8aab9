//! Locality load balancing on a ClusterLoadAssignment, relative to the proxy asking:
//! `distribute` rewrites locality weights; failover (only with outlier detection, else
//! Envoy never leaves priority 0) assigns priorities by how close each locality is, or by
//! `failoverPriority` labels.

use std::collections::{BTreeMap, BTreeSet};

use strait_proto::envoy::config::core::v3::Locality as EnvoyLocality;
use strait_proto::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use strait_proto::istio::{LocalityDistribute, LocalityFailover, LocalityLoadBalancerSetting};

use super::uint32;
use crate::model::Locality;

/// Labels of each endpoint of the assignment, group by group, for `failoverPriority`.
pub type EndpointLabels<'a> = Vec<Vec<&'a BTreeMap<String, String>>>;

/// Applies the settings; `labels` (parallel to `cla.endpoints`) is needed only for
/// `failoverPriority` and may be empty (DNS clusters), which skips that part.
pub fn apply(
    cla: &mut ClusterLoadAssignment,
    proxy: &Locality,
    setting: &LocalityLoadBalancerSetting,
    failover: bool,
) {
    apply_with_labels(cla, proxy, &BTreeMap::new(), setting, failover, &Vec::new());
}

pub fn apply_with_labels(
    cla: &mut ClusterLoadAssignment,
    proxy: &Locality,
    proxy_labels: &BTreeMap<String, String>,
    setting: &LocalityLoadBalancerSetting,
    failover: bool,
    labels: &EndpointLabels<'_>,
) {
    if !setting.distribute.is_empty() {
        apply_weights(cla, proxy, &setting.distribute);
    } else if failover {
        if setting.failover_priority.is_empty() {
            apply_failover(cla, proxy, &setting.failover);
        } else {
            apply_failover_priority(cla, proxy_labels, &setting.failover_priority, labels);
            if !setting.failover.is_empty() {
                apply_failover(cla, proxy, &setting.failover);
            }
        }
    }
}

/// 0 when region, zone and sub-zone match the proxy's, 1 for region and zone, 2 for
/// region only, 3 otherwise.
pub fn priority(proxy: &Locality, ep: Option<&EnvoyLocality>) -> u32 {
    let (region, zone, sub_zone) = ep
        .map(|l| (l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()))
        .unwrap_or_default();
    if proxy.region != region {
        3
    } else if proxy.zone != zone {
        2
    } else if proxy.sub_zone != sub_zone {
        1
    } else {
        0
    }
}

/// Whether `rule` (`region/zone/subzone`, `*` for any part, missing parts match all)
/// covers the locality.
pub fn matches(region: &str, zone: &str, sub_zone: &str, rule: &str) -> bool {
    let mut parts = rule.splitn(3, '/');
    let rule_region = parts.next().unwrap_or_default();
    let rule_zone = parts.next().unwrap_or_default();
    let rule_sub_zone = parts.next().unwrap_or_default();
    let part = |rule: &str, have: &str, empty_matches: bool| {
        rule == "*" || (empty_matches && rule.is_empty()) || rule == have
    };
    part(rule_region, region, false)
        && part(rule_zone, zone, true)
        && part(rule_sub_zone, sub_zone, true)
}

fn ep_matches(ep: &LocalityLbEndpoints, rule: &str) -> bool {
    let l = ep.locality.clone().unwrap_or_default();
    matches(&l.region, &l.zone, &l.sub_zone, rule)
}

/// The first `distribute` entry whose `from` covers the proxy decides: each `to` entry's
/// weight is split over the localities it covers in proportion to their own weight, and
/// localities no entry covers lose their endpoints.
fn apply_weights(
    cla: &mut ClusterLoadAssignment,
    proxy: &Locality,
    distribute: &[LocalityDistribute],
) {
    let Some(rule) = distribute
        .iter()
        .find(|d| matches(&proxy.region, &proxy.zone, &proxy.sub_zone, &d.from))
    else {
        return;
    };
    let mut unmatched: BTreeSet<usize> = (0..cla.endpoints.len()).collect();
    for (target, weight) in &rule.to {
        let mut original: Vec<(usize, u64)> = Vec::new();
        for (i, ep) in cla.endpoints.iter().enumerate() {
            if unmatched.contains(&i) && ep_matches(ep, target) {
                unmatched.remove(&i);
                let w = ep.load_balancing_weight.as_ref().map_or(1, |w| w.value);
                original.push((i, u64::from(w)));
            }
        }
        let total: u64 = original.iter().map(|(_, w)| w).sum();
        for (i, w) in original {
            let share = (w * u64::from(*weight)).div_ceil(total.max(1));
            if share > 0 {
                cla.endpoints[i].load_balancing_weight =
                    uint32(u32::try_from(share).unwrap_or(u32::MAX));
            }
        }
    }
    for i in unmatched {
        cla.endpoints[i].lb_endpoints.clear();
    }
}

/// Priorities by closeness to the proxy; `failover` sends a region's traffic to one
/// other region before the rest (priority 4 for regions that are not the target).
fn apply_failover(
    cla: &mut ClusterLoadAssignment,
    proxy: &Locality,
    failover: &[LocalityFailover],
) {
    for ep in &mut cla.endpoints {
        let mut p = priority(proxy, ep.locality.as_ref());
        if p == 3
            && let Some(rule) = failover.iter().find(|f| f.from == proxy.region)
        {
            let region = ep.locality.as_ref().map(|l| l.region.as_str());
            if region != Some(rule.to.as_str()) {
                p = 4;
            }
        }
        ep.priority = ep.priority * 5 + p;
    }
    compact_priorities(&mut cla.endpoints);
}

/// Envoy wants priorities 0..N without gaps.
fn compact_priorities(endpoints: &mut [LocalityLbEndpoints]) {
    let used: BTreeSet<u32> = endpoints.iter().map(|e| e.priority).collect();
    let rank: BTreeMap<u32, u32> = used.into_iter().zip(0..).collect();
    for ep in endpoints {
        ep.priority = rank.get(&ep.priority).copied().unwrap_or(ep.priority);
    }
}

/// Splits each locality by how many of the `failoverPriority` labels (in order) an
/// endpoint shares with the proxy: all of them → priority 0, none of them → the lowest.
/// `label=value` entries compare with the given value instead of the proxy's.
fn apply_failover_priority(
    cla: &mut ClusterLoadAssignment,
    proxy_labels: &BTreeMap<String, String>,
    priority_labels: &[String],
    labels: &EndpointLabels<'_>,
) {
    if proxy_labels.is_empty() || labels.is_empty() {
        return;
    }
    let wanted: Vec<(&str, Option<&str>)> = priority_labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (l.as_str(), None),
        })
        .collect();
    let mut split: Vec<LocalityLbEndpoints> = Vec::new();
    for (group, group_labels) in cla.endpoints.iter().zip(labels) {
        let mut by_priority: BTreeMap<u32, LocalityLbEndpoints> = BTreeMap::new();
        for (ep, ep_labels) in group.lb_endpoints.iter().zip(group_labels) {
            let p = label_priority(&wanted, proxy_labels, ep_labels);
            let entry = by_priority.entry(p).or_insert_with(|| LocalityLbEndpoints {
                locality: group.locality.clone(),
                priority: p,
                ..Default::default()
            });
            entry.lb_endpoints.push(ep.clone());
        }
        for mut part in by_priority.into_values() {
            let weight: u32 = part
                .lb_endpoints
                .iter()
                .map(|e| e.load_balancing_weight.as_ref().map_or(0, |w| w.value))
                .fold(0, u32::saturating_add);
            part.load_balancing_weight = uint32(weight);
            split.push(part);
        }
    }
    compact_priorities(&mut split);
    cla.endpoints = split;
}

fn label_priority(
    wanted: &[(&str, Option<&str>)],
    proxy_labels: &BTreeMap<String, String>,
    ep_labels: &BTreeMap<String, String>,
) -> u32 {
    let lowest = u32::try_from(wanted.len()).unwrap_or(u32::MAX);
    for (j, (name, value)) in wanted.iter().enumerate() {
        let for_proxy = value.or_else(|| proxy_labels.get(*name).map(String::as_str));
        if for_proxy != ep_labels.get(*name).map(String::as_str) {
            return lowest - u32::try_from(j).unwrap_or(0);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(region: &str, zone: &str, weight: u32) -> LocalityLbEndpoints {
        LocalityLbEndpoints {
            locality: Some(EnvoyLocality {
                region: region.into(),
                zone: zone.into(),
                sub_zone: String::new(),
            }),
            load_balancing_weight: uint32(weight),
            lb_endpoints: vec![Default::default()],
            ..Default::default()
        }
    }

    fn proxy() -> Locality {
        Locality::parse("r1/z1")
    }

    #[test]
    fn failover_orders_by_closeness() {
        let mut cla = ClusterLoadAssignment {
            endpoints: vec![
                group("r2", "z9", 1),
                group("r1", "z2", 1),
                group("r1", "z1", 1),
            ],
            ..Default::default()
        };
        apply(
            &mut cla,
            &proxy(),
            &LocalityLoadBalancerSetting::default(),
            true,
        );
        let p: Vec<u32> = cla.endpoints.iter().map(|e| e.priority).collect();
        assert_eq!(p, vec![2, 1, 0]);
    }

    #[test]
    fn failover_needs_outlier_detection() {
        let mut cla = ClusterLoadAssignment {
            endpoints: vec![group("r2", "z9", 1), group("r1", "z1", 1)],
            ..Default::default()
        };
        apply(
            &mut cla,
            &proxy(),
            &LocalityLoadBalancerSetting::default(),
            false,
        );
        assert!(cla.endpoints.iter().all(|e| e.priority == 0));
    }

    #[test]
    fn explicit_failover_region() {
        let mut cla = ClusterLoadAssignment {
            endpoints: vec![
                group("r3", "a", 1),
                group("r2", "a", 1),
                group("r1", "z1", 1),
            ],
            ..Default::default()
        };
        let setting = LocalityLoadBalancerSetting {
            failover: vec![LocalityFailover {
                from: "r1".into(),
                to: "r2".into(),
            }],
            ..Default::default()
        };
        apply(&mut cla, &proxy(), &setting, true);
        let p: Vec<u32> = cla.endpoints.iter().map(|e| e.priority).collect();
        assert_eq!(p, vec![2, 1, 0]);
    }

    #[test]
    fn distribute_rewrites_weights() {
        let mut cla = ClusterLoadAssignment {
            endpoints: vec![
                group("r1", "z1", 2),
                group("r1", "z2", 2),
                group("r2", "z1", 5),
            ],
            ..Default::default()
        };
        let setting = LocalityLoadBalancerSetting {
            distribute: vec![LocalityDistribute {
                from: "r1/z1/*".into(),
                to: [("r1/z1/*".to_string(), 80), ("r1/z2/*".to_string(), 20)].into(),
            }],
            ..Default::default()
        };
        apply(&mut cla, &proxy(), &setting, false);
        let w: Vec<u32> = cla
            .endpoints
            .iter()
            .map(|e| e.load_balancing_weight.as_ref().unwrap().value)
            .collect();
        assert_eq!(&w[..2], &[80, 20]);
        assert!(cla.endpoints[2].lb_endpoints.is_empty());
    }

    #[test]
    fn locality_rules() {
        assert!(matches("r1", "z1", "s1", "r1"));
        assert!(matches("r1", "z1", "s1", "r1/*"));
        assert!(matches("r1", "z1", "s1", "*"));
        assert!(!matches("r1", "z1", "s1", "r1/z2"));
        assert!(!matches("r1", "z1", "s1", "r2/*"));
    }
}
