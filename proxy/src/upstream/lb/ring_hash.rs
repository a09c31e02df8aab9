//! Ring hash ("ketama"), built as Envoy builds it so a key maps to the host Envoy would
//! pick for the same host set:
//! - each host gets a share of the ring proportional to its weight; the scale is the
//!   smallest that gives the lightest host `ceil(min_share × minimum_ring_size)` entries,
//!   capped at `maximum_ring_size` entries in total;
//! - a host's entries are xxHash64 (seed 0) of `"{hash_key}_{i}"` for i = 0, 1, …, where
//!   the hash key is the address (`ip:port`) or the `envoy.lb` metadata `hash_key`;
//! - a request goes to the first entry at or after its hash, wrapping around; a retry
//!   that must avoid the host moves `attempt` entries further along.

use std::sync::Arc;

use super::{LbContext, LoadBalancer, choose_level};
use crate::upstream::hash::xxhash64;
use crate::upstream::host::Host;
use crate::upstream::host_set::HostSet;
use crate::upstream::random::RandomSource;

/// Envoy's defaults for `RingHashLbConfig`.
pub const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
pub const DEFAULT_MAXIMUM_RING_SIZE: u64 = 8 * 1024 * 1024;

#[derive(Debug)]
pub struct RingHashLb {
    hosts: Arc<HostSet>,
    rings: Vec<Ring>,
    rng: Arc<dyn RandomSource>,
}

#[derive(Debug, Default)]
struct Ring {
    /// (hash, candidate index), sorted by hash.
    entries: Vec<(u64, u32)>,
}

impl RingHashLb {
    pub fn new(
        hosts: Arc<HostSet>,
        minimum_ring_size: u64,
        maximum_ring_size: u64,
        rng: Arc<dyn RandomSource>,
    ) -> Self {
        let min = if minimum_ring_size == 0 {
            DEFAULT_MINIMUM_RING_SIZE
        } else {
            minimum_ring_size
        };
        let max = if maximum_ring_size == 0 {
            DEFAULT_MAXIMUM_RING_SIZE
        } else {
            maximum_ring_size.max(1)
        };
        let rings = hosts
            .levels()
            .iter()
            .map(|l| Ring::build(l.candidates(), min, max))
            .collect();
        RingHashLb { hosts, rings, rng }
    }

    /// Entries per candidate of the first level (the `min/max_hashes_per_host` gauges).
    pub fn hashes_per_host(&self) -> Vec<usize> {
        let (Some(level), Some(ring)) = (self.hosts.levels().first(), self.rings.first()) else {
            return Vec::new();
        };
        let mut counts = vec![0; level.candidates().len()];
        for (_, i) in &ring.entries {
            if let Some(c) = counts.get_mut(*i as usize) {
                *c += 1;
            }
        }
        counts
    }
}

impl Ring {
    fn build(candidates: &[Arc<Host>], min_size: u64, max_size: u64) -> Ring {
        if candidates.is_empty() {
            return Ring::default();
        }
        let total: f64 = candidates.iter().map(|h| f64::from(h.weight())).sum();
        let shares: Vec<f64> = candidates
            .iter()
            .map(|h| f64::from(h.weight()) / total)
            .collect();
        let min_share = shares.iter().copied().fold(f64::INFINITY, f64::min);
        let scale = ((min_share * min_size as f64).ceil() / min_share).min(max_size as f64);

        let mut entries = Vec::with_capacity(scale.ceil() as usize);
        let mut placed = 0.0;
        let mut target = 0.0;
        for (index, (host, share)) in candidates.iter().zip(&shares).enumerate() {
            target += scale * share;
            let mut i = 0u64;
            while placed < target {
                let key = format!("{}_{i}", host.hash_key());
                if let Ok(index) = u32::try_from(index) {
                    entries.push((xxhash64(key.as_bytes(), 0), index));
                }
                i += 1;
                placed += 1.0;
            }
        }
        entries.sort_by_key(|(hash, _)| *hash);
        Ring { entries }
    }

    fn lookup(&self, hash: u64, attempt: u32) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let first = self.entries.partition_point(|(h, _)| *h < hash);
        let slot = (first + attempt as usize) % self.entries.len();
        Some(self.entries[slot].1 as usize)
    }
}

impl LoadBalancer for RingHashLb {
    fn choose(&self, ctx: &LbContext<'_>, attempt: u32) -> Option<Arc<Host>> {
        let hash = ctx.hash.unwrap_or_else(|| self.rng.next_u64());
        let level = choose_level(&self.hosts, || hash)?;
        let i = self.rings.get(level)?.lookup(hash, attempt)?;
        self.hosts.levels()[level].candidates().get(i).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::SeededRandom;
    use crate::upstream::test_util::{endpoints_at, weighted};
    use std::net::SocketAddr;

    fn lb(eps: &[crate::config::endpoint::LbEndpoint], min: u64) -> RingHashLb {
        RingHashLb::new(
            Arc::new(HostSet::build(eps, None, 50.0)),
            min,
            DEFAULT_MAXIMUM_RING_SIZE,
            SeededRandom::shared(1),
        )
    }

    fn owner(lb: &RingHashLb, key: u64) -> SocketAddr {
        lb.pick(&LbContext::with_hash(key)).unwrap().address()
    }

    fn keys() -> impl Iterator<Item = u64> {
        (0..10_000u64).map(|k| xxhash64(&k.to_le_bytes(), 0))
    }

    #[test]
    fn same_hash_same_host_regardless_of_endpoint_order() {
        let eps = endpoints_at(0, 5);
        let a = lb(&eps, 1024);
        let mut reversed = eps.clone();
        reversed.reverse();
        let b = lb(&reversed, 1024);
        for key in keys().take(1000) {
            assert_eq!(owner(&a, key), owner(&a, key));
            assert_eq!(owner(&a, key), owner(&b, key));
        }
    }

    #[test]
    fn adding_a_host_moves_about_one_in_n_keys() {
        let eps = endpoints_at(0, 4);
        let before = lb(&eps, 1024);
        let mut more = eps.clone();
        more.extend(endpoints_at(1, 1).into_iter().map(|mut e| {
            e.priority = 0;
            e
        }));
        let new_host = more[4].address;
        let after = lb(&more, 1024);
        let (mut moved, mut to_new) = (0, 0);
        for key in keys() {
            let (b, a) = (owner(&before, key), owner(&after, key));
            if a != b {
                moved += 1;
                to_new += usize::from(a == new_host);
            }
        }
        // The new host takes its 1/5 of the keys. As in Envoy, the ring keeps its size, so
        // each old host also gives up its last entries (`_205` … `_255`), which moves a
        // further tenth or so between old hosts; nothing else moves.
        let to_new_share = to_new as f64 / 10_000.0;
        let moved_share = moved as f64 / 10_000.0;
        assert!(
            (0.17..0.23).contains(&to_new_share),
            "to new {to_new_share}"
        );
        assert!(moved_share < 0.35, "moved {moved_share}");
    }

    #[test]
    fn removing_a_host_only_moves_its_keys_when_entries_per_host_hold() {
        // With 4 entries per host either way, survivors keep exactly
        // their entries, so only the removed host's keys move.
        let eps = endpoints_at(0, 5);
        let before = RingHashLb::new(
            Arc::new(HostSet::build(&eps, None, 50.0)),
            20,
            20,
            SeededRandom::shared(1),
        );
        let after = RingHashLb::new(
            Arc::new(HostSet::build(&eps[..4], None, 50.0)),
            16,
            16,
            SeededRandom::shared(1),
        );
        assert_eq!(before.hashes_per_host(), [4; 5]);
        assert_eq!(after.hashes_per_host(), [4; 4]);
        let gone = eps[4].address;
        for key in keys() {
            let b = owner(&before, key);
            if b != gone {
                assert_eq!(owner(&after, key), b);
            }
        }
    }

    #[test]
    fn ring_size_follows_weights_and_bounds() {
        let l = lb(
            &[weighted("10.0.0.1:80", 1), weighted("10.0.0.2:80", 2)],
            1024,
        );
        // The light host gets ceil(1024 / 3) = 342 entries and the ring scales from there.
        let counts = l.hashes_per_host();
        assert_eq!(counts[0], 342);
        assert!((683..=685).contains(&counts[1]), "{counts:?}");

        let capped = RingHashLb::new(
            Arc::new(HostSet::build(&endpoints_at(0, 4), None, 50.0)),
            1024,
            100,
            SeededRandom::shared(1),
        );
        assert_eq!(capped.hashes_per_host(), [25, 25, 25, 25]);
    }

    #[test]
    fn weights_shape_the_key_share() {
        let l = lb(
            &[weighted("10.0.0.1:80", 1), weighted("10.0.0.2:80", 3)],
            4096,
        );
        let heavy = keys()
            .filter(|k| owner(&l, *k) == "10.0.0.2:80".parse().unwrap())
            .count();
        assert!((7_000..8_000).contains(&heavy), "{heavy}");
    }

    #[test]
    fn retry_attempts_walk_the_ring() {
        let l = lb(&endpoints_at(0, 3), 64);
        let first = owner(&l, 99);
        let avoid = [first];
        let other = l
            .pick(&LbContext::with_hash(99).avoiding(&avoid, 3))
            .unwrap()
            .address();
        assert_ne!(other, first);
        // Deterministic: the same retry lands on the same host.
        assert_eq!(
            l.pick(&LbContext::with_hash(99).avoiding(&avoid, 3))
                .unwrap()
                .address(),
            other
        );
    }
}
