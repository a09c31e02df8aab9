//! The three kinds of stat, as handles the data plane resolves once and then bumps
//! without locks: a [`Counter`] only goes up, a [`Gauge`] is set or moved up and down, a
//! [`Histogram`] counts recorded values into fixed buckets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Envoy's default histogram bucket bounds, which Istio keeps for its standard metrics.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// A monotonically increasing count. Clones share the value.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Envoy marks a counter used once it was added to; a counter never added to stays
    /// at zero, so zero means unused.
    pub fn used(&self) -> bool {
        self.value() != 0
    }

    /// Both handles count into the same value.
    pub fn same_as(&self, other: &Counter) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Debug, Default)]
struct GaugeCell {
    value: AtomicU64,
    used: AtomicBool,
}

/// A value that goes up and down (connections open, hosts in a cluster, ...).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<GaugeCell>);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.value.store(value, Ordering::Relaxed);
        self.mark_used();
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn dec(&self) {
        self.sub(1);
    }

    pub fn add(&self, amount: u64) {
        self.0.value.fetch_add(amount, Ordering::Relaxed);
        self.mark_used();
    }

    /// Saturates at zero: a stray decrement must not wrap a gauge to 2^64.
    pub fn sub(&self, amount: u64) {
        let _ = self
            .0
            .value
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(amount))
            });
        self.mark_used();
    }

    pub fn value(&self) -> u64 {
        self.0.value.load(Ordering::Relaxed)
    }

    /// Set at least once, even to zero.
    pub fn used(&self) -> bool {
        self.0.used.load(Ordering::Relaxed)
    }

    fn mark_used(&self) {
        if !self.0.used.load(Ordering::Relaxed) {
            self.0.used.store(true, Ordering::Relaxed);
        }
    }

    /// Counts one unit until the guard drops (an open connection, an active request).
    pub fn track(&self) -> GaugeGuard {
        self.inc();
        GaugeGuard(self.clone())
    }
}

/// Decrements its gauge when dropped.
#[must_use = "the gauge goes back down when the guard drops"]
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug)]
struct HistogramCell {
    bounds: Arc<[f64]>,
    /// `buckets[i]` counts values in `(bounds[i-1], bounds[i]]`; values above the last
    /// bound are only in `count`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
}

/// Recorded values (milliseconds, bytes) counted into buckets, Prometheus style.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCell>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with_buckets(DEFAULT_BUCKETS)
    }
}

/// A histogram's values at one moment, buckets cumulative as Prometheus prints them.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: Arc<[f64]>,
    /// Values at or below each bound.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    /// `bounds` must be ascending; unsorted or non-finite bounds are dropped.
    pub fn with_buckets(bounds: &[f64]) -> Self {
        let mut clean: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        clean.sort_by(f64::total_cmp);
        clean.dedup();
        let buckets = clean.iter().map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(HistogramCell {
            bounds: clean.into(),
            buckets,
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }))
    }

    pub fn record(&self, value: u64) {
        let cell = &self.0;
        // Bounds are few (19 by default): a linear scan beats a binary search here.
        #[allow(clippy::cast_precision_loss)]
        let v = value as f64;
        if let Some(i) = cell.bounds.iter().position(|b| v <= *b)
            && let Some(bucket) = cell.buckets.get(i)
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        cell.count.fetch_add(1, Ordering::Relaxed);
        cell.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    pub fn used(&self) -> bool {
        self.count() != 0
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = self
            .0
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let sum = self.0.sum.load(Ordering::Relaxed) as f64;
        HistogramSnapshot {
            bounds: self.0.bounds.clone(),
            cumulative,
            count: self.count(),
            sum,
        }
    }
}

impl HistogramSnapshot {
    /// The value below which `q` (0..=1) of the recorded values fall, interpolated
    /// linearly inside the bucket that holds it, as Envoy's `/stats` summary estimates.
    /// `None` without values.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut lower_bound = 0.0;
        let mut below = 0u64;
        for (bound, cumulative) in self.bounds.iter().zip(&self.cumulative) {
            #[allow(clippy::cast_precision_loss)]
            if (*cumulative as f64) >= rank && *cumulative > below {
                let in_bucket = (cumulative - below) as f64;
                let into = (rank - below as f64).max(0.0) / in_bucket;
                return Some(lower_bound + (bound - lower_bound) * into);
            }
            lower_bound = *bound;
            below = *cumulative;
        }
        // Above the last bound: all that is known is that it exceeds it.
        Some(lower_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_and_gauge() {
        let c = Counter::default();
        let c2 = c.clone();
        assert!(!c.used());
        c.inc();
        c2.add(4);
        assert_eq!(c.value(), 5);
        assert!(c.same_as(&c2));

        let g = Gauge::default();
        assert!(!g.used());
        g.set(0);
        assert!(g.used());
        {
            let _a = g.track();
            let _b = g.track();
            assert_eq!(g.value(), 2);
        }
        assert_eq!(g.value(), 0);
        g.dec();
        assert_eq!(g.value(), 0, "saturates instead of wrapping");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::with_buckets(&[1.0, 10.0, 100.0]);
        for v in [0, 1, 5, 10, 50, 1000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 4, 5]);
        assert_eq!(s.count, 6);
        assert_eq!(s.sum, 1066.0);
        assert_eq!(s.quantile(0.0), Some(0.0));
        let median = s.quantile(0.5).unwrap();
        assert!((1.0..=10.0).contains(&median), "{median}");
        assert_eq!(s.quantile(1.0), Some(100.0));
        assert_eq!(Histogram::default().snapshot().quantile(0.5), None);
    }

    #[test]
    fn default_buckets_are_envoys() {
        let s = Histogram::default().snapshot();
        assert_eq!(s.bounds.len(), 19);
        assert_eq!(s.bounds[0], 0.5);
        assert_eq!(s.bounds[18], 3_600_000.0);
    }
}
