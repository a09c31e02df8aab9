//! Earliest-deadline-first scheduling, Envoy's weighted round robin: every entry is due
//! `1 / weight` after it was last served, and the entry due soonest is served next (ties
//! by insertion order), so each entry's share converges to its weight's share at every
//! prefix of the sequence.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

#[derive(Debug)]
struct Entry {
    deadline: f64,
    seq: u64,
    index: usize,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.deadline
            .total_cmp(&other.deadline)
            .then(self.seq.cmp(&other.seq))
    }
}

#[derive(Debug, Default)]
pub struct Edf {
    heap: BinaryHeap<Reverse<Entry>>,
    now: f64,
    seq: u64,
}

/// Weights are clamped to this so a zero or negative weight cannot stall the clock.
const MIN_WEIGHT: f64 = 1e-9;

impl Edf {
    pub fn new() -> Self {
        Edf::default()
    }

    pub fn add(&mut self, index: usize, weight: f64) {
        let deadline = self.now + 1.0 / weight.max(MIN_WEIGHT);
        self.heap.push(Reverse(Entry {
            deadline,
            seq: self.seq,
            index,
        }));
        self.seq += 1;
    }

    /// Serves the entry due soonest and schedules it again with the weight `weight_of`
    /// gives it now (least request lowers it for busy hosts).
    pub fn pick_and_add(&mut self, weight_of: impl FnOnce(usize) -> f64) -> Option<usize> {
        let Reverse(entry) = self.heap.pop()?;
        self.now = entry.deadline;
        self.add(entry.index, weight_of(entry.index));
        Some(entry.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_in_proportion_to_weight_and_interleaves() {
        let weights = [1.0, 2.0, 3.0];
        let mut edf = Edf::new();
        for (i, w) in weights.iter().enumerate() {
            edf.add(i, *w);
        }
        let seq: Vec<usize> = (0..6)
            .map(|_| edf.pick_and_add(|i| weights[i]).unwrap())
            .collect();
        let count = |i| seq.iter().filter(|s| **s == i).count();
        assert_eq!((count(0), count(1), count(2)), (1, 2, 3));
        // Interleaved rather than grouped: the heaviest entry is never served 3 times in a row.
        assert!(!seq.windows(3).any(|w| w.iter().all(|i| *i == 2)));
    }

    #[test]
    fn empty_schedule_serves_nothing() {
        assert_eq!(Edf::new().pick_and_add(|_| 1.0), None);
    }
}
