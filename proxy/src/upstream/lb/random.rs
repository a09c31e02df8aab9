//! Random: a uniformly random candidate (weights are ignored, as in Envoy). Avoids the
//! bias round robin has towards the host after a failed one when nothing checks health.

use std::sync::Arc;

use super::{LbContext, LoadBalancer, choose_level};
use crate::upstream::host::Host;
use crate::upstream::host_set::HostSet;
use crate::upstream::random::{RandomSource, index};

#[derive(Debug)]
pub struct RandomLb {
    hosts: Arc<HostSet>,
    rng: Arc<dyn RandomSource>,
}

impl RandomLb {
    pub fn new(hosts: Arc<HostSet>, rng: Arc<dyn RandomSource>) -> Self {
        RandomLb { hosts, rng }
    }
}

impl LoadBalancer for RandomLb {
    fn choose(&self, _ctx: &LbContext<'_>, _attempt: u32) -> Option<Arc<Host>> {
        let level = choose_level(&self.hosts, || self.rng.next_u64())?;
        let candidates = self.hosts.levels()[level].candidates();
        if candidates.is_empty() {
            return None;
        }
        candidates
            .get(index(self.rng.as_ref(), candidates.len()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::SeededRandom;
    use crate::upstream::test_util::endpoints_at;
    use std::collections::HashMap;

    #[test]
    fn spreads_roughly_evenly_and_is_reproducible() {
        let set = Arc::new(HostSet::build(&endpoints_at(0, 4), None, 50.0));
        let run = |seed| {
            let lb = RandomLb::new(set.clone(), SeededRandom::shared(seed));
            (0..8000)
                .map(|_| lb.pick(&LbContext::default()).unwrap().address())
                .collect::<Vec<_>>()
        };
        let picks = run(11);
        assert_eq!(picks, run(11));
        let mut counts = HashMap::new();
        for p in &picks {
            *counts.entry(*p).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        assert!(
            counts.values().all(|c| (1800..2200).contains(c)),
            "{counts:?}"
        );
    }
}
