//! Maglev consistent hashing (section 3.4 of the Maglev paper), with Envoy's weighting:
//! - `table_size` (default 65537) must be prime so every host's permutation visits every
//!   slot; a non-prime size (which Envoy's config validation rejects) is raised to the
//!   next prime here;
//! - a host's permutation starts at `xxHash64(key, 0) % M` and steps by
//!   `xxHash64(key, 1) % (M - 1) + 1`;
//! - hosts take turns claiming their next free slot; a host of weight w claims on the
//!   turns where `turn × w` has caught up with what it has claimed so far in units of the
//!   largest weight, so every host claims once on the first turn and then at a rate
//!   proportional to its weight;
//! - hosts are ordered by hash key first, so the table does not depend on endpoint order.
//!
//! A request goes to `table[hash % M]`; a retry that must avoid the host rehashes.

use std::sync::Arc;

use super::{LbContext, LoadBalancer, choose_level};
use crate::upstream::hash::xxhash64;
use crate::upstream::host::Host;
use crate::upstream::host_set::HostSet;
use crate::upstream::random::RandomSource;

pub const DEFAULT_TABLE_SIZE: u64 = 65537;

/// Beyond this a table costs more memory than any sensible cluster needs; Envoy caps
/// `table_size` at 5000011.
const MAX_TABLE_SIZE: u64 = 5_000_011;

#[derive(Debug)]
pub struct MaglevLb {
    hosts: Arc<HostSet>,
    /// Per level: candidate index per slot (empty when the level has no candidates).
    tables: Vec<Vec<u32>>,
    rng: Arc<dyn RandomSource>,
}

struct Builder {
    candidate: u32,
    weight: u64,
    position: u64,
    skip: u64,
    claimed_target: u64,
}

impl MaglevLb {
    pub fn new(hosts: Arc<HostSet>, table_size: u64, rng: Arc<dyn RandomSource>) -> Self {
        let size = next_prime(if table_size == 0 {
            DEFAULT_TABLE_SIZE
        } else {
            table_size.min(MAX_TABLE_SIZE)
        });
        let tables = hosts
            .levels()
            .iter()
            .map(|l| build_table(l.candidates(), size))
            .collect();
        MaglevLb { hosts, tables, rng }
    }

    /// Slots per candidate of the first level (the `min/max_entries_per_host` gauges).
    pub fn entries_per_host(&self) -> Vec<usize> {
        let (Some(level), Some(table)) = (self.hosts.levels().first(), self.tables.first()) else {
            return Vec::new();
        };
        let mut counts = vec![0; level.candidates().len()];
        for i in table {
            if let Some(c) = counts.get_mut(*i as usize) {
                *c += 1;
            }
        }
        counts
    }
}

fn build_table(candidates: &[Arc<Host>], size: u64) -> Vec<u32> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut builders: Vec<Builder> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, host)| {
            let key = host.hash_key().as_bytes();
            Some(Builder {
                candidate: u32::try_from(i).ok()?,
                weight: u64::from(host.weight()),
                position: xxhash64(key, 0) % size,
                skip: xxhash64(key, 1) % (size - 1) + 1,
                claimed_target: 0,
            })
        })
        .collect();
    builders.sort_by(|a, b| {
        candidates[a.candidate as usize]
            .hash_key()
            .cmp(candidates[b.candidate as usize].hash_key())
    });
    let max_weight = builders.iter().map(|b| b.weight).max().unwrap_or(1);

    let empty = u32::MAX;
    let mut table = vec![empty; size as usize];
    let mut filled = 0u64;
    let mut turn = 1u64;
    while filled < size {
        for b in builders.iter_mut() {
            if filled == size {
                break;
            }
            if turn * b.weight < b.claimed_target {
                continue;
            }
            b.claimed_target += max_weight;
            // A prime size makes the permutation visit every slot, so a free one is found.
            while table[b.position as usize] != empty {
                b.position = (b.position + b.skip) % size;
            }
            table[b.position as usize] = b.candidate;
            b.position = (b.position + b.skip) % size;
            filled += 1;
        }
        turn += 1;
    }
    table
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn next_prime(mut n: u64) -> u64 {
    n = n.max(2);
    while !is_prime(n) {
        n += 1;
    }
    n
}

impl LoadBalancer for MaglevLb {
    fn choose(&self, ctx: &LbContext<'_>, attempt: u32) -> Option<Arc<Host>> {
        let hash = ctx.hash.unwrap_or_else(|| self.rng.next_u64());
        let level = choose_level(&self.hosts, || hash)?;
        let table = self.tables.get(level)?;
        if table.is_empty() {
            return None;
        }
        let hash = if attempt == 0 {
            hash
        } else {
            let mut buf = [0u8; 12];
            buf[..8].copy_from_slice(&hash.to_le_bytes());
            buf[8..].copy_from_slice(&attempt.to_le_bytes());
            xxhash64(&buf, 0)
        };
        let slot = table[(hash % table.len() as u64) as usize];
        self.hosts.levels()[level]
            .candidates()
            .get(slot as usize)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::endpoint::LbEndpoint;
    use crate::upstream::SeededRandom;
    use crate::upstream::test_util::{endpoints_at, weighted};
    use std::net::SocketAddr;

    fn lb(eps: &[LbEndpoint], size: u64) -> MaglevLb {
        MaglevLb::new(
            Arc::new(HostSet::build(eps, None, 50.0)),
            size,
            SeededRandom::shared(1),
        )
    }

    fn owner(lb: &MaglevLb, key: u64) -> SocketAddr {
        lb.pick(&LbContext::with_hash(key)).unwrap().address()
    }

    fn keys() -> impl Iterator<Item = u64> {
        (0..10_000u64).map(|k| xxhash64(&k.to_le_bytes(), 7))
    }

    #[test]
    fn table_fills_evenly_with_equal_weights() {
        let l = lb(&endpoints_at(0, 3), DEFAULT_TABLE_SIZE);
        let counts = l.entries_per_host();
        assert_eq!(counts.iter().sum::<usize>(), 65537);
        assert!(
            counts.iter().all(|c| (21845..=21846).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn weights_one_to_two_split_the_table_like_envoy() {
        let l = lb(
            &[weighted("10.0.0.1:80", 1), weighted("10.0.0.2:80", 2)],
            DEFAULT_TABLE_SIZE,
        );
        let counts = l.entries_per_host();
        // Envoy's docs: 21,846 and 43,691 entries.
        assert_eq!(counts, [21846, 43691]);
    }

    #[test]
    fn consistent_and_order_independent() {
        let eps = endpoints_at(0, 5);
        let a = lb(&eps, DEFAULT_TABLE_SIZE);
        let mut reversed = eps.clone();
        reversed.reverse();
        let b = lb(&reversed, DEFAULT_TABLE_SIZE);
        for key in keys().take(2000) {
            assert_eq!(owner(&a, key), owner(&b, key));
        }
    }

    #[test]
    fn removing_a_host_moves_few_other_keys() {
        let eps = endpoints_at(0, 5);
        let before = lb(&eps, DEFAULT_TABLE_SIZE);
        let gone = eps[2].address;
        let fewer: Vec<_> = eps.iter().filter(|e| e.address != gone).cloned().collect();
        let after = lb(&fewer, DEFAULT_TABLE_SIZE);
        let mut disrupted = 0;
        for key in keys() {
            let b = owner(&before, key);
            if b != gone && owner(&after, key) != b {
                disrupted += 1;
            }
        }
        // Keys of surviving hosts mostly stay put (Maglev is a little less stable than
        // a ring: a few percent move).
        assert!(disrupted < 1000, "{disrupted}");
    }

    #[test]
    fn non_prime_sizes_are_raised_and_retries_rehash() {
        let l = lb(&endpoints_at(0, 2), 100);
        assert_eq!(l.entries_per_host().iter().sum::<usize>(), 101);
        let first = owner(&l, 5);
        let avoid = [first];
        assert_ne!(
            l.pick(&LbContext::with_hash(5).avoiding(&avoid, 5))
                .unwrap()
                .address(),
            first
        );
    }
}
