//! Weighted round robin. Equal weights rotate through the candidates; unequal weights
//! follow an earliest-deadline-first schedule (as Envoy does), computed once per host set
//! and replayed through an atomic cursor, so picks take no lock. Each level's cursor
//! starts at a random offset so workers and proxies do not move in lockstep.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::edf::Edf;
use super::{LbContext, LoadBalancer, choose_level, weights_equal};
use crate::upstream::host::Host;
use crate::upstream::host_set::HostSet;
use crate::upstream::random::RandomSource;

/// Longest precomputed weighted schedule; longer cycles are cut to their first part,
/// which EDF keeps within one pick per host of the exact proportions.
const MAX_SCHEDULE: u64 = 8192;

#[derive(Debug)]
pub struct RoundRobinLb {
    hosts: Arc<HostSet>,
    levels: Vec<Level>,
    rng: Arc<dyn RandomSource>,
}

#[derive(Debug)]
struct Level {
    /// Candidate indices in serving order; empty means plain rotation.
    schedule: Vec<u32>,
    cursor: AtomicU64,
}

impl RoundRobinLb {
    pub fn new(hosts: Arc<HostSet>, rng: Arc<dyn RandomSource>) -> Self {
        let levels = hosts
            .levels()
            .iter()
            .map(|level| {
                let candidates = level.candidates();
                let schedule = if weights_equal(candidates) {
                    Vec::new()
                } else {
                    weighted_schedule(candidates)
                };
                let cycle = if schedule.is_empty() {
                    candidates.len()
                } else {
                    schedule.len()
                };
                let start = if cycle == 0 {
                    0
                } else {
                    rng.next_u64() % cycle as u64
                };
                Level {
                    schedule,
                    cursor: AtomicU64::new(start),
                }
            })
            .collect();
        RoundRobinLb { hosts, levels, rng }
    }
}

impl LoadBalancer for RoundRobinLb {
    fn choose(&self, _ctx: &LbContext<'_>, _attempt: u32) -> Option<Arc<Host>> {
        let index = choose_level(&self.hosts, || self.rng.next_u64())?;
        let candidates = self.hosts.levels()[index].candidates();
        if candidates.is_empty() {
            return None;
        }
        let level = &self.levels[index];
        let turn = level.cursor.fetch_add(1, Ordering::Relaxed);
        let slot = if level.schedule.is_empty() {
            (turn % candidates.len() as u64) as usize
        } else {
            level.schedule[(turn % level.schedule.len() as u64) as usize] as usize
        };
        candidates.get(slot).cloned()
    }
}

fn weighted_schedule(candidates: &[Arc<Host>]) -> Vec<u32> {
    let divisor = candidates
        .iter()
        .map(|h| u64::from(h.weight()))
        .fold(0, gcd)
        .max(1);
    let mut weights: Vec<u64> = candidates
        .iter()
        .map(|h| u64::from(h.weight()) / divisor)
        .collect();
    let cycle: u64 = weights.iter().sum();
    let cap = MAX_SCHEDULE.max(candidates.len() as u64);
    if cycle > cap {
        // Scale down rather than truncate the cycle: a truncated EDF cycle would never
        // reach the light hosts at all.
        let scale = cap as f64 / cycle as f64;
        for w in &mut weights {
            *w = ((*w as f64 * scale).round() as u64).max(1);
        }
    }
    let mut edf = Edf::new();
    for (i, w) in weights.iter().enumerate() {
        edf.add(i, *w as f64);
    }
    let len: u64 = weights.iter().sum();
    (0..len)
        .filter_map(|_| edf.pick_and_add(|i| weights[i] as f64))
        .filter_map(|i| u32::try_from(i).ok())
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::endpoint::Health;
    use crate::upstream::SeededRandom;
    use crate::upstream::test_util::{addr, endpoint, endpoints_at, weighted};
    use std::collections::HashMap;
    use std::net::SocketAddr;

    fn counts(lb: &dyn LoadBalancer, picks: usize) -> HashMap<SocketAddr, usize> {
        let mut counts = HashMap::new();
        for _ in 0..picks {
            *counts
                .entry(lb.pick(&LbContext::default()).unwrap().address())
                .or_default() += 1;
        }
        counts
    }

    #[test]
    fn weighted_proportions_one_to_three() {
        let set = Arc::new(HostSet::build(
            &[weighted("10.0.0.1:80", 1), weighted("10.0.0.2:80", 3)],
            None,
            50.0,
        ));
        let lb = RoundRobinLb::new(set, SeededRandom::shared(9));
        let c = counts(&lb, 10_000);
        let share = c[&addr("10.0.0.1:80")] as f64 / 10_000.0;
        assert!((share - 0.25).abs() < 0.01, "share {share}");
    }

    #[test]
    fn weighted_schedule_reduces_scales_and_interleaves() {
        let hosts = |ws: &[u32]| {
            let eps: Vec<_> = ws
                .iter()
                .enumerate()
                .map(|(i, w)| weighted(&format!("10.0.0.{}:80", i + 1), *w))
                .collect();
            HostSet::build(&eps, None, 50.0).hosts().to_vec()
        };
        let schedule = weighted_schedule(&hosts(&[2, 2, 4]));
        assert_eq!(schedule.len(), 4, "weights reduced by their gcd");
        assert!(
            !schedule.windows(2).any(|w| w[0] == w[1] && w[0] != 2),
            "{schedule:?}"
        );

        // 1:3:100000 does not fit a cycle: it is scaled, yet the light hosts still appear.
        let schedule = weighted_schedule(&hosts(&[1, 3, 100_000]));
        let count = |i| schedule.iter().filter(|s| **s == i).count();
        assert!(schedule.len() as u64 <= MAX_SCHEDULE + 3);
        assert_eq!(count(0), 1);
        assert_eq!(count(1), 1);
        assert!(count(2) as f64 / schedule.len() as f64 > 0.99);
    }

    #[test]
    fn equal_weights_rotate_in_order() {
        let set = Arc::new(HostSet::build(&endpoints_at(0, 3), None, 50.0));
        let lb = RoundRobinLb::new(set.clone(), SeededRandom::shared(4));
        let picks: Vec<SocketAddr> = (0..9)
            .map(|_| lb.pick(&LbContext::default()).unwrap().address())
            .collect();
        let order: Vec<SocketAddr> = set.hosts().iter().map(|h| h.address()).collect();
        let start = order.iter().position(|a| *a == picks[0]).unwrap();
        for (i, pick) in picks.iter().enumerate() {
            assert_eq!(*pick, order[(start + i) % 3]);
        }
    }

    #[test]
    fn unhealthy_hosts_are_skipped_and_empty_level_gives_none() {
        let mut eps = vec![
            endpoint("10.0.0.1:80"),
            endpoint("10.0.0.2:80"),
            endpoint("10.0.0.3:80"),
        ];
        eps[1].health = Health::Unhealthy;
        let lb = RoundRobinLb::new(
            Arc::new(HostSet::build(&eps, None, 0.0)),
            SeededRandom::shared(1),
        );
        let c = counts(&lb, 100);
        assert!(!c.contains_key(&addr("10.0.0.2:80")));
        assert_eq!(c.values().sum::<usize>(), 100);

        eps.iter_mut().for_each(|e| e.health = Health::Unhealthy);
        let lb = RoundRobinLb::new(
            Arc::new(HostSet::build(&eps, None, 0.0)),
            SeededRandom::shared(1),
        );
        assert!(lb.pick(&LbContext::default()).is_none());
        let lb = RoundRobinLb::new(Arc::new(HostSet::empty()), SeededRandom::shared(1));
        assert!(lb.pick(&LbContext::default()).is_none());
    }

    #[test]
    fn priority_failover_and_spillover() {
        let mut eps = endpoints_at(0, 2);
        eps.iter_mut().for_each(|e| e.health = Health::Unhealthy);
        eps.extend(endpoints_at(1, 2));
        let lb = RoundRobinLb::new(
            Arc::new(HostSet::build(&eps, None, 50.0)),
            SeededRandom::shared(5),
        );
        for _ in 0..50 {
            assert_eq!(lb.pick(&LbContext::default()).unwrap().priority(), 1);
        }

        // Half of P0 healthy: 70% to P0, 30% to P1.
        let mut eps = endpoints_at(0, 4);
        eps[0].health = Health::Unhealthy;
        eps[1].health = Health::Unhealthy;
        eps.extend(endpoints_at(1, 4));
        let lb = RoundRobinLb::new(
            Arc::new(HostSet::build(&eps, None, 50.0)),
            SeededRandom::shared(6),
        );
        let p1 = (0..10_000)
            .filter(|_| lb.pick(&LbContext::default()).unwrap().priority() == 1)
            .count();
        assert!((2_800..3_200).contains(&p1), "{p1}");
    }
}
