//! `loadBalancer` → `lb_policy` and `lb_config`: LEAST_REQUEST by default, the simple
//! policies, warm-up (slow start), consistent hashing (RING_HASH / MAGLEV) and the
//! locality settings that touch the cluster itself.

use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::cluster::v3::cluster::common_lb_config::{
    LocalityConfigSpecifier, LocalityWeightedLbConfig,
};
use strait_proto::envoy::config::cluster::v3::cluster::{
    CommonLbConfig, DiscoveryType, LbConfig, LbPolicy, LeastRequestLbConfig, MaglevLbConfig,
    RingHashLbConfig, RoundRobinLbConfig, SlowStartConfig,
};
use strait_proto::envoy::config::core::v3::RuntimeDouble;
use strait_proto::envoy::r#type::v3::Percent;
use strait_proto::google::protobuf::UInt64Value;
use strait_proto::istio::{
    ConsistentHashLb, HashAlgorithm, LbPolicy as IstioLbPolicy, LoadBalancerSettings,
    LocalityLoadBalancerSetting, MeshConfig, SimpleLb, WarmupConfiguration,
};

use super::{discovery_type, istio_duration, locality, set_discovery_type};
use crate::model::Locality;

/// Envoy's default ring size, which Istio writes out when nothing else is given.
const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;

pub fn apply(
    cluster: &mut Cluster,
    lb: Option<&LoadBalancerSettings>,
    mesh: &MeshConfig,
    proxy_locality: &Locality,
) {
    let setting = effective_locality_setting(mesh, lb);
    apply_locality(cluster, setting, proxy_locality);
    if discovery_type(cluster) == Some(DiscoveryType::OriginalDst) {
        cluster.lb_policy = LbPolicy::ClusterProvided as i32;
        return;
    }
    match simple(lb) {
        SimpleLb::LeastConn | SimpleLb::LeastRequest => least_request(cluster, lb),
        SimpleLb::Random => cluster.lb_policy = LbPolicy::Random as i32,
        SimpleLb::RoundRobin => round_robin(cluster, lb),
        SimpleLb::Passthrough => passthrough(cluster),
        SimpleLb::Unspecified => least_request(cluster, lb),
    }
    if let Some(hash) = consistent_hash(lb) {
        apply_consistent_hash(cluster, hash);
    }
}

/// The DestinationRule's locality settings, else the mesh's; `enabled: false` on the
/// chosen one turns locality load balancing off. The mesh default is "enabled", so a
/// mesh config without the field counts as enabled with no rules.
pub fn effective_locality_setting<'a>(
    mesh: &'a MeshConfig,
    lb: Option<&'a LoadBalancerSettings>,
) -> Option<&'a LocalityLoadBalancerSetting> {
    static ENABLED: LocalityLoadBalancerSetting = LocalityLoadBalancerSetting {
        distribute: Vec::new(),
        failover: Vec::new(),
        failover_priority: Vec::new(),
        enabled: Some(true),
    };
    if let Some(rule) = lb.and_then(|l| l.locality_lb_setting.as_ref()) {
        return (rule.enabled != Some(false)).then_some(rule);
    }
    match mesh.locality_lb_setting.as_ref() {
        Some(m) if m.enabled == Some(false) => None,
        Some(m) => Some(m),
        None => Some(&ENABLED),
    }
}

/// Locality weights only count in Envoy with `locality_weighted_lb_config`, which Istio
/// sets when the settings distribute traffic or fail over explicitly. DNS clusters carry
/// their endpoints inline, so priorities are assigned here too.
fn apply_locality(
    cluster: &mut Cluster,
    setting: Option<&LocalityLoadBalancerSetting>,
    proxy_locality: &Locality,
) {
    let failover = cluster.outlier_detection.is_some();
    let Some(setting) = setting else {
        return;
    };
    let explicit_failover = !setting.failover.is_empty() || !setting.failover_priority.is_empty();
    if (failover && explicit_failover) || !setting.distribute.is_empty() {
        cluster
            .common_lb_config
            .get_or_insert_with(CommonLbConfig::default)
            .locality_config_specifier = Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
            LocalityWeightedLbConfig {},
        ));
    }
    if let Some(cla) = cluster.load_assignment.as_mut() {
        locality::apply(cla, proxy_locality, setting, failover);
    }
}

fn simple(lb: Option<&LoadBalancerSettings>) -> SimpleLb {
    match lb.and_then(|l| l.policy.as_ref()) {
        Some(IstioLbPolicy::Simple(s)) => *s,
        _ => SimpleLb::Unspecified,
    }
}

fn consistent_hash(lb: Option<&LoadBalancerSettings>) -> Option<&ConsistentHashLb> {
    match lb.and_then(|l| l.policy.as_ref()) {
        Some(IstioLbPolicy::ConsistentHash(c)) => Some(c),
        _ => None,
    }
}

fn least_request(cluster: &mut Cluster, lb: Option<&LoadBalancerSettings>) {
    cluster.lb_policy = LbPolicy::LeastRequest as i32;
    if let Some(slow_start) = slow_start(lb) {
        cluster.lb_config = Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
            slow_start_config: Some(slow_start),
            ..Default::default()
        }));
    }
}

fn round_robin(cluster: &mut Cluster, lb: Option<&LoadBalancerSettings>) {
    cluster.lb_policy = LbPolicy::RoundRobin as i32;
    if let Some(slow_start) = slow_start(lb) {
        cluster.lb_config = Some(LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
            slow_start_config: Some(slow_start),
        }));
    }
}

/// PASSTHROUGH turns any cluster into an original-destination one.
fn passthrough(cluster: &mut Cluster) {
    cluster.lb_policy = LbPolicy::ClusterProvided as i32;
    set_discovery_type(cluster, DiscoveryType::OriginalDst);
    cluster.load_assignment = None;
}

/// `warmup` wins over the deprecated `warmupDurationSecs`.
fn slow_start(lb: Option<&LoadBalancerSettings>) -> Option<SlowStartConfig> {
    let lb = lb?;
    if let Some(warmup) = &lb.warmup {
        return Some(warmup_config(warmup));
    }
    lb.warmup_duration_secs.as_ref().map(|d| SlowStartConfig {
        slow_start_window: Some(istio_duration(d)),
        ..Default::default()
    })
}

/// Istio fixes the runtime key to `(`, a key no runtime layer can hold, so the value
/// given here is the one used.
fn warmup_config(warmup: &WarmupConfiguration) -> SlowStartConfig {
    SlowStartConfig {
        slow_start_window: Some(istio_duration(&warmup.duration)),
        aggression: Some(RuntimeDouble {
            default_value: warmup.aggression.unwrap_or(1.0),
            runtime_key: "(".to_string(),
        }),
        min_weight_percent: Some(Percent {
            value: warmup.minimum_percent.unwrap_or(10.0),
        }),
    }
}

fn apply_consistent_hash(cluster: &mut Cluster, hash: &ConsistentHashLb) {
    match hash.hash_algorithm {
        Some(HashAlgorithm::Maglev(m)) => {
            cluster.lb_policy = LbPolicy::Maglev as i32;
            if m.table_size != 0 {
                cluster.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                    table_size: Some(UInt64Value {
                        value: m.table_size,
                    }),
                }));
            }
        }
        Some(HashAlgorithm::RingHash(r)) => {
            cluster.lb_policy = LbPolicy::RingHash as i32;
            if r.minimum_ring_size != 0 {
                cluster.lb_config = Some(ring_hash(r.minimum_ring_size));
            }
        }
        None => {
            let size = if hash.minimum_ring_size != 0 {
                hash.minimum_ring_size
            } else {
                DEFAULT_MINIMUM_RING_SIZE
            };
            cluster.lb_policy = LbPolicy::RingHash as i32;
            cluster.lb_config = Some(ring_hash(size));
        }
    }
}

fn ring_hash(minimum: u64) -> LbConfig {
    LbConfig::RingHashLbConfig(RingHashLbConfig {
        minimum_ring_size: Some(UInt64Value { value: minimum }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use strait_proto::istio::{LocalityDistribute, MagLev};

    use super::*;

    fn settings(policy: IstioLbPolicy) -> LoadBalancerSettings {
        LoadBalancerSettings {
            policy: Some(policy),
            ..Default::default()
        }
    }

    fn eds_cluster() -> Cluster {
        let mut c = Cluster::default();
        set_discovery_type(&mut c, DiscoveryType::Eds);
        c
    }

    fn run(lb: Option<&LoadBalancerSettings>) -> Cluster {
        let mut c = eds_cluster();
        apply(&mut c, lb, &MeshConfig::default(), &Locality::default());
        c
    }

    #[test]
    fn default_is_least_request() {
        let c = run(None);
        assert_eq!(c.lb_policy, LbPolicy::LeastRequest as i32);
        assert!(c.lb_config.is_none());
        assert!(c.common_lb_config.is_none());
    }

    #[test]
    fn simple_policies() {
        let cases = [
            (SimpleLb::RoundRobin, LbPolicy::RoundRobin),
            (SimpleLb::Random, LbPolicy::Random),
            (SimpleLb::LeastConn, LbPolicy::LeastRequest),
            (SimpleLb::LeastRequest, LbPolicy::LeastRequest),
        ];
        for (simple, want) in cases {
            let c = run(Some(&settings(IstioLbPolicy::Simple(simple))));
            assert_eq!(c.lb_policy, want as i32, "{simple:?}");
        }
        let c = run(Some(&settings(IstioLbPolicy::Simple(
            SimpleLb::Passthrough,
        ))));
        assert_eq!(c.lb_policy, LbPolicy::ClusterProvided as i32);
        assert_eq!(discovery_type(&c), Some(DiscoveryType::OriginalDst));
    }

    #[test]
    fn consistent_hash_defaults_to_ring_of_1024() {
        let c = run(Some(&settings(IstioLbPolicy::ConsistentHash(
            ConsistentHashLb::default(),
        ))));
        assert_eq!(c.lb_policy, LbPolicy::RingHash as i32);
        let Some(LbConfig::RingHashLbConfig(r)) = c.lb_config else {
            panic!("no ring hash config");
        };
        assert_eq!(r.minimum_ring_size.unwrap().value, 1024);
        let maglev = ConsistentHashLb {
            hash_algorithm: Some(HashAlgorithm::Maglev(MagLev { table_size: 0 })),
            ..Default::default()
        };
        let c = run(Some(&settings(IstioLbPolicy::ConsistentHash(maglev))));
        assert_eq!(c.lb_policy, LbPolicy::Maglev as i32);
        assert!(c.lb_config.is_none());
    }

    #[test]
    fn warmup_becomes_slow_start() {
        let lb = LoadBalancerSettings {
            policy: Some(IstioLbPolicy::Simple(SimpleLb::RoundRobin)),
            warmup: Some(WarmupConfiguration {
                duration: strait_proto::istio::Duration::from_secs(60),
                minimum_percent: None,
                aggression: Some(2.0),
            }),
            ..Default::default()
        };
        let c = run(Some(&lb));
        let Some(LbConfig::RoundRobinLbConfig(rr)) = c.lb_config else {
            panic!("no round robin config");
        };
        let ss = rr.slow_start_config.unwrap();
        assert_eq!(ss.slow_start_window.unwrap().seconds, 60);
        assert_eq!(ss.aggression.unwrap().default_value, 2.0);
        assert_eq!(ss.min_weight_percent.unwrap().value, 10.0);
    }

    #[test]
    fn distribute_enables_locality_weights() {
        let lb = LoadBalancerSettings {
            locality_lb_setting: Some(LocalityLoadBalancerSetting {
                distribute: vec![LocalityDistribute {
                    from: "r1/*".into(),
                    to: [("r1/*".to_string(), 100)].into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = run(Some(&lb));
        assert!(matches!(
            c.common_lb_config.unwrap().locality_config_specifier,
            Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
        ));
    }
}
