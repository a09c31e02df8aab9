//! Load balancers: given a host set (or, for ORIGINAL_DST, the connection), pick a host.
//!
//! Every balancer is built for one [`HostSet`] and is rebuilt with it; state that must
//! outlive a host set (active request counts) lives on the hosts. A pick first chooses a
//! priority level (by the request hash for the consistent-hash balancers, at random
//! otherwise), then a host among that level's candidates.

pub mod edf;
pub mod least_request;
pub mod maglev;
pub mod original_dst;
pub mod random;
pub mod ring_hash;
pub mod round_robin;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::cluster::LbPolicy;

use super::host::Host;
use super::host_set::HostSet;
use super::random::RandomSource;

pub use least_request::LeastRequestLb;
pub use maglev::MaglevLb;
pub use original_dst::OriginalDstLb;
pub use random::RandomLb;
pub use ring_hash::RingHashLb;
pub use round_robin::RoundRobinLb;

/// What a pick may depend on besides the host set.
#[derive(Clone, Copy, Debug)]
pub struct LbContext<'a> {
    /// The request's hash-policy result; consistent-hash balancers use a random value
    /// without one, the others ignore it.
    pub hash: Option<u64>,
    /// Hosts to steer away from (the retry `previous_hosts` predicate).
    pub avoid: &'a [SocketAddr],
    /// `host_selection_retry_max_attempts`: how many more picks to try when the picked
    /// host is to be avoided; the last pick is used when all are. Envoy's default is 1.
    pub max_attempts: u32,
    /// The connection's original destination (ORIGINAL_DST clusters).
    pub original_dst: Option<SocketAddr>,
}

impl Default for LbContext<'_> {
    fn default() -> Self {
        LbContext {
            hash: None,
            avoid: &[],
            max_attempts: 1,
            original_dst: None,
        }
    }
}

impl<'a> LbContext<'a> {
    pub fn with_hash(hash: u64) -> Self {
        LbContext {
            hash: Some(hash),
            ..LbContext::default()
        }
    }

    pub fn avoiding(mut self, avoid: &'a [SocketAddr], max_attempts: u32) -> Self {
        self.avoid = avoid;
        self.max_attempts = max_attempts;
        self
    }

    fn should_avoid(&self, host: &Host) -> bool {
        self.avoid.contains(&host.address())
    }
}

pub trait LoadBalancer: Send + Sync + std::fmt::Debug {
    /// One selection; `attempt` counts earlier picks of this selection that were rejected,
    /// so deterministic balancers can move on to another host.
    fn choose(&self, ctx: &LbContext<'_>, attempt: u32) -> Option<Arc<Host>>;

    /// Picks a host, re-picking up to `ctx.max_attempts` times while the choice is one to
    /// avoid.
    fn pick(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let mut last = None;
        for attempt in 0..=ctx.max_attempts {
            let Some(host) = self.choose(ctx, attempt) else {
                return last;
            };
            if !ctx.should_avoid(&host) {
                return Some(host);
            }
            last = Some(host);
        }
        last
    }
}

/// The balancer for `policy` over `hosts`. `ClusterProvided` here (a non-ORIGINAL_DST
/// cluster, which Envoy rejects) falls back to round robin; ORIGINAL_DST clusters use
/// [`OriginalDstLb`], which is not tied to a host set.
pub fn build(
    policy: &LbPolicy,
    hosts: Arc<HostSet>,
    rng: Arc<dyn RandomSource>,
) -> Box<dyn LoadBalancer> {
    match *policy {
        LbPolicy::RoundRobin | LbPolicy::ClusterProvided => Box::new(RoundRobinLb::new(hosts, rng)),
        LbPolicy::LeastRequest { choice_count } => {
            Box::new(LeastRequestLb::new(hosts, choice_count, rng))
        }
        LbPolicy::Random => Box::new(RandomLb::new(hosts, rng)),
        LbPolicy::RingHash {
            minimum_ring_size,
            maximum_ring_size,
        } => Box::new(RingHashLb::new(
            hosts,
            minimum_ring_size,
            maximum_ring_size,
            rng,
        )),
        LbPolicy::Maglev { table_size } => Box::new(MaglevLb::new(hosts, table_size, rng)),
    }
}

/// The level index for a pick. `value` is only asked for when there is more than one
/// level: the request hash for the hash-based balancers (so a key keeps to one level
/// while the set is stable), a random number for the others.
fn choose_level(hosts: &HostSet, value: impl FnOnce() -> u64) -> Option<usize> {
    match hosts.levels().len() {
        0 => None,
        1 => Some(0),
        _ => hosts.choose_level(value()),
    }
}

/// True when every host has the same weight (Envoy then skips weighted scheduling).
fn weights_equal(hosts: &[Arc<Host>]) -> bool {
    hosts.windows(2).all(|w| w[0].weight() == w[1].weight())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::SeededRandom;
    use crate::upstream::test_util::{addr, endpoint};

    #[test]
    fn previous_hosts_are_avoided_for_every_policy() {
        let eps = [endpoint("10.0.0.1:80"), endpoint("10.0.0.2:80")];
        let set = Arc::new(HostSet::build(&eps, None, 50.0));
        let policies = [
            LbPolicy::RoundRobin,
            LbPolicy::LeastRequest { choice_count: 2 },
            LbPolicy::Random,
            LbPolicy::RingHash {
                minimum_ring_size: 1024,
                maximum_ring_size: 8 * 1024 * 1024,
            },
            LbPolicy::Maglev { table_size: 65537 },
        ];
        let avoid = [addr("10.0.0.1:80")];
        // Random draws may hit the avoided host again; with 40 re-picks a miss is
        // practically impossible, while round robin and the hash rings move on at once.
        for policy in policies {
            let lb = build(&policy, set.clone(), SeededRandom::shared(3));
            for key in 0..50u64 {
                let ctx = LbContext {
                    hash: Some(key.wrapping_mul(0x9E37_79B9)),
                    ..LbContext::default()
                }
                .avoiding(&avoid, 40);
                let host = lb.pick(&ctx).unwrap();
                assert_eq!(host.address(), addr("10.0.0.2:80"), "{policy:?} key {key}");
            }
        }
    }

    #[test]
    fn last_pick_is_used_when_every_host_is_avoided() {
        let set = Arc::new(HostSet::build(&[endpoint("10.0.0.1:80")], None, 50.0));
        let lb = build(&LbPolicy::RoundRobin, set, SeededRandom::shared(1));
        let avoid = [addr("10.0.0.1:80")];
        let host = lb.pick(&LbContext::default().avoiding(&avoid, 3)).unwrap();
        assert_eq!(host.address(), addr("10.0.0.1:80"));
    }

    #[test]
    fn no_attempts_left_means_no_reselection() {
        let eps = [endpoint("10.0.0.1:80"), endpoint("10.0.0.2:80")];
        let set = Arc::new(HostSet::build(&eps, None, 50.0));
        let lb = build(
            &LbPolicy::RingHash {
                minimum_ring_size: 64,
                maximum_ring_size: 1024,
            },
            set,
            SeededRandom::shared(1),
        );
        let first = lb.pick(&LbContext::with_hash(42)).unwrap().address();
        let avoid = [first];
        let again = lb
            .pick(&LbContext::with_hash(42).avoiding(&avoid, 0))
            .unwrap();
        assert_eq!(again.address(), first);
    }
}
