//! Random numbers for the load balancers, behind a trait so tests can make every
//! choice reproducible.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub trait RandomSource: Send + Sync + Debug {
    fn next_u64(&self) -> u64;
}

/// The production source: the thread-local generator of `rand`, so workers never share
/// state.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRandom;

impl RandomSource for ThreadRandom {
    fn next_u64(&self) -> u64 {
        rand::random()
    }
}

impl ThreadRandom {
    pub fn shared() -> Arc<dyn RandomSource> {
        Arc::new(ThreadRandom)
    }
}

/// A deterministic SplitMix64 sequence; lock-free so it can stand in for [`ThreadRandom`]
/// anywhere, including from several threads (the interleaving then decides who gets
/// which number, but the multiset of numbers is fixed by the seed).
#[derive(Debug)]
pub struct SeededRandom {
    state: AtomicU64,
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        SeededRandom {
            state: AtomicU64::new(seed),
        }
    }

    pub fn shared(seed: u64) -> Arc<dyn RandomSource> {
        Arc::new(SeededRandom::new(seed))
    }
}

impl RandomSource for SeededRandom {
    fn next_u64(&self) -> u64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A uniform index below `len` (which must be non-zero). The modulo bias is below
/// 2^-32 for any realistic host count, which no load balancer can notice.
pub(crate) fn index(rng: &dyn RandomSource, len: usize) -> usize {
    (rng.next_u64() % len as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sequences_repeat_and_differ_by_seed() {
        let run = |seed| {
            let r = SeededRandom::new(seed);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn index_stays_in_range() {
        let rng = SeededRandom::new(1);
        let mut seen = [false; 5];
        for _ in 0..200 {
            seen[index(&rng, 5)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
