//! The machine's CPU time per core from /proc/stat, to see what else ran during a
//! measurement (other processes, interrupt work nobody is charged for) and to wait
//! for a quiet machine before a round.

use std::time::{Duration, Instant};

/// Busy and total ticks of each core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreTimes(pub Vec<(u64, u64)>);

impl CoreTimes {
    pub fn read() -> CoreTimes {
        std::fs::read_to_string("/proc/stat")
            .map(|s| parse(&s))
            .unwrap_or_default()
    }

    /// Per core, the share of time busy between `self` (earlier) and `later`, 0..=1.
    pub fn busy_until(&self, later: &CoreTimes) -> Vec<f64> {
        self.0
            .iter()
            .zip(&later.0)
            .map(|(&(b0, t0), &(b1, t1))| {
                let total = t1.saturating_sub(t0);
                // Tick counts over a run stay far below 2^52.
                #[allow(clippy::cast_precision_loss)]
                let share = if total == 0 {
                    0.0
                } else {
                    b1.saturating_sub(b0) as f64 / total as f64
                };
                share
            })
            .collect()
    }
}

/// The `cpuN` lines: busy = user + nice + system + irq + softirq + steal; total adds
/// idle and iowait.
fn parse(stat: &str) -> CoreTimes {
    let mut cores = Vec::new();
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        if !(name.starts_with("cpu") && name.len() > 3) {
            continue;
        }
        let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        if v.len() < 8 {
            continue;
        }
        let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        let total = busy + v[3] + v[4];
        cores.push((busy, total));
    }
    CoreTimes(cores)
}

/// Waits until the whole machine stays below `threshold` busy (0..=1, averaged over
/// the cores) for one second, at most `max_wait`; returns the last second's share.
pub async fn wait_quiet(threshold: f64, max_wait: Duration) -> f64 {
    let deadline = Instant::now() + max_wait;
    loop {
        let before = CoreTimes::read();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let shares = before.busy_until(&CoreTimes::read());
        #[allow(clippy::cast_precision_loss)]
        let mean = shares.iter().sum::<f64>() / shares.len().max(1) as f64;
        if mean <= threshold || Instant::now() >= deadline {
            return mean;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_per_core_lines() {
        let stat = "cpu  10 0 10 100 0 0 0 0 0 0\n\
                    cpu0 4 1 5 50 2 1 1 0 0 0\n\
                    cpu1 6 0 5 50 0 0 0 1 0 0\n\
                    intr 1 2 3\n";
        let t = parse(stat);
        assert_eq!(t.0, vec![(12, 64), (12, 62)]);
        let later = CoreTimes(vec![(22, 84), (12, 82)]);
        assert_eq!(t.busy_until(&later), vec![0.5, 0.0]);
    }

    #[test]
    fn reads_this_machine() {
        let t = CoreTimes::read();
        assert!(!t.0.is_empty());
        assert!(t.0.iter().all(|(b, total)| b <= total));
    }
}
