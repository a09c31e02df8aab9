//! Summaries of repeated timings.

use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Summary {
    /// Median (mean of the two middle values for an even count), min and max.
    pub fn of(samples: &[Duration]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let mut s = samples.to_vec();
        s.sort();
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        };
        Summary {
            runs: n,
            median,
            min: s[0],
            max: s[n - 1],
        }
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn mib(bytes: u64) -> f64 {
    // Precision loss above 2^52 bytes is irrelevant here.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / (1024.0 * 1024.0)
}

pub fn kib(bytes: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / 1024.0
}

/// `a / b`, or None when b is zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn median_min_max() {
        let s = Summary::of(&[d(5), d(1), d(3)]);
        assert_eq!((s.runs, s.median, s.min, s.max), (3, d(3), d(1), d(5)));
        assert_eq!(Summary::of(&[d(4), d(1), d(2), d(10)]).median, d(3));
        assert_eq!(Summary::of(&[]).runs, 0);
    }

    #[test]
    fn units_and_ratio() {
        assert!((mib(3 * 1024 * 1024) - 3.0).abs() < 1e-9);
        assert!((kib(2048) - 2.0).abs() < 1e-9);
        assert!((ms(d(1500)) - 1500.0).abs() < 1e-9);
        assert_eq!(ratio(6.0, 3.0), Some(2.0));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
