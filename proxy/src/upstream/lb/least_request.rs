//! Least request, Envoy's two algorithms:
//! - all weights equal: power of `choice_count` choices — draw that many candidates at
//!   random (with replacement) and take the one with the fewest active requests (the
//!   first drawn on ties);
//! - weights differ: earliest-deadline-first where a host's weight is re-evaluated when it
//!   is rescheduled as `weight / (active_requests + 1)^bias`, bias 1.0 (Envoy's default;
//!   the config carries no `active_request_bias`).
//!
//! The weighted schedule mutates on every pick, so it sits behind a mutex held for a few
//! instructions; the equal-weight path takes no lock.

use std::sync::Arc;

use parking_lot::Mutex;

use super::edf::Edf;
use super::{LbContext, LoadBalancer, choose_level, weights_equal};
use crate::upstream::host::Host;
use crate::upstream::host_set::HostSet;
use crate::upstream::random::{RandomSource, index};

const ACTIVE_REQUEST_BIAS: f64 = 1.0;

#[derive(Debug)]
pub struct LeastRequestLb {
    hosts: Arc<HostSet>,
    choice_count: u32,
    /// One EDF schedule per level whose candidates have unequal weights.
    weighted: Vec<Option<Mutex<Edf>>>,
    rng: Arc<dyn RandomSource>,
}

impl LeastRequestLb {
    pub fn new(hosts: Arc<HostSet>, choice_count: u32, rng: Arc<dyn RandomSource>) -> Self {
        let weighted = hosts
            .levels()
            .iter()
            .map(|level| {
                let candidates = level.candidates();
                if weights_equal(candidates) {
                    return None;
                }
                let mut edf = Edf::new();
                for (i, host) in candidates.iter().enumerate() {
                    edf.add(i, effective_weight(host));
                }
                Some(Mutex::new(edf))
            })
            .collect();
        LeastRequestLb {
            hosts,
            choice_count: choice_count.max(1),
            weighted,
            rng,
        }
    }
}

fn effective_weight(host: &Host) -> f64 {
    let load = host.stats().active_requests() as f64 + 1.0;
    let divisor = if ACTIVE_REQUEST_BIAS == 1.0 {
        load
    } else {
        load.powf(ACTIVE_REQUEST_BIAS)
    };
    f64::from(host.weight()) / divisor
}

impl LoadBalancer for LeastRequestLb {
    fn choose(&self, _ctx: &LbContext<'_>, _attempt: u32) -> Option<Arc<Host>> {
        let level = choose_level(&self.hosts, || self.rng.next_u64())?;
        let candidates = self.hosts.levels()[level].candidates();
        if candidates.is_empty() {
            return None;
        }
        if let Some(Some(edf)) = self.weighted.get(level) {
            let i = edf
                .lock()
                .pick_and_add(|i| candidates.get(i).map_or(1.0, |h| effective_weight(h)))?;
            return candidates.get(i).cloned();
        }
        let mut best: Option<&Arc<Host>> = None;
        for _ in 0..self.choice_count {
            let candidate = &candidates[index(self.rng.as_ref(), candidates.len())];
            if best
                .is_none_or(|b| candidate.stats().active_requests() < b.stats().active_requests())
            {
                best = Some(candidate);
            }
        }
        best.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::SeededRandom;
    use crate::upstream::host::RequestGuard;
    use crate::upstream::test_util::{addr, endpoints_at, weighted};
    use std::collections::HashMap;
    use std::net::SocketAddr;

    fn load(host: &Host, n: usize) -> Vec<RequestGuard> {
        (0..n).map(|_| host.start_request()).collect()
    }

    #[test]
    fn p2c_prefers_idle_hosts() {
        let set = Arc::new(HostSet::build(&endpoints_at(0, 2), None, 50.0));
        let _busy = load(&set.hosts()[0], 10);
        let idle = set.hosts()[1].address();
        let lb = LeastRequestLb::new(set.clone(), 2, SeededRandom::shared(1));
        let picks: Vec<SocketAddr> = (0..1000)
            .map(|_| lb.pick(&LbContext::default()).unwrap().address())
            .collect();
        // The busy host only wins when both draws land on it: about a quarter of the time.
        let idle_share = picks.iter().filter(|a| **a == idle).count() as f64 / 1000.0;
        assert!((0.70..0.80).contains(&idle_share), "{idle_share}");
    }

    #[test]
    fn more_choices_find_the_idle_host_more_often() {
        let set = Arc::new(HostSet::build(&endpoints_at(0, 10), None, 50.0));
        let _guards: Vec<_> = set.hosts()[1..].iter().map(|h| load(h, 3)).collect();
        let idle = set.hosts()[0].address();
        let share = |choices| {
            let lb = LeastRequestLb::new(set.clone(), choices, SeededRandom::shared(2));
            (0..2000)
                .filter(|_| lb.pick(&LbContext::default()).unwrap().address() == idle)
                .count()
        };
        let (two, five) = (share(2), share(5));
        assert!(two > 300 && five > two + 300, "two {two} five {five}");
    }

    #[test]
    fn unequal_weights_use_weight_over_active_requests() {
        let set = Arc::new(HostSet::build(
            &[weighted("10.0.0.1:80", 1), weighted("10.0.0.2:80", 3)],
            None,
            50.0,
        ));
        let lb = LeastRequestLb::new(set.clone(), 2, SeededRandom::shared(3));
        let count = |lb: &LeastRequestLb, n| {
            let mut c: HashMap<SocketAddr, usize> = HashMap::new();
            for _ in 0..n {
                *c.entry(lb.pick(&LbContext::default()).unwrap().address())
                    .or_default() += 1;
            }
            c
        };
        // Idle: the schedule follows the weights, 1:3.
        let c = count(&lb, 4000);
        assert!((950..1050).contains(&c[&addr("10.0.0.1:80")]), "{c:?}");

        // The heavy host carries 5 requests: its effective weight 3/6 is half the light
        // host's 1/1, so it now gets about a third of the picks.
        let _busy = load(&set.hosts()[1], 5);
        let lb = LeastRequestLb::new(set.clone(), 2, SeededRandom::shared(3));
        let c = count(&lb, 3000);
        let heavy = c[&addr("10.0.0.2:80")] as f64 / 3000.0;
        assert!((0.30..0.37).contains(&heavy), "{heavy}");
    }
}
