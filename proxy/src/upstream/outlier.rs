//! Outlier detection: consecutive 5xx and consecutive gateway failures, Envoy's way.
//!
//! - Every upstream outcome is recorded on the host (atomics, no lock): a 5xx bumps the
//!   5xx streak, a 502/503/504 also the gateway streak, any other 5xx ends the gateway
//!   streak and anything else ends both. Local failures count as Envoy counts them when
//!   it does not split local and upstream errors: a failed connect or a reset as 503, a
//!   timeout as 504.
//! - A streak reaching its threshold is a detection. Unless the host is already ejected,
//!   it is ejected if `100 × (ejected + 1) / hosts ≤ max_ejection_percent`, otherwise
//!   `ejections_overflow` counts; either way that streak restarts.
//! - An ejected host is out for `min(base_ejection_time × backoff, max_ejection_time)`;
//!   `backoff` grows with each ejection (until the product passes the maximum) and shrinks
//!   by one for every `interval` the host then spends in service. Hosts return only on an
//!   interval tick, and their streaks restart.
//!
//! The clock is a parameter everywhere, so the state machine is tested without sleeping.
//! Not covered: success-rate and failure-percentage ejection, split local/upstream
//! errors, enforcement percentages other than 0 and 100, jitter.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::cluster::OutlierDetection;

use super::host::Host;
use super::host_set::HostSet;

/// Envoy's default `max_ejection_time`.
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq)]
pub struct OutlierConfig {
    /// 0 disables the detector (the conversion edge maps `enforcing_consecutive_5xx: 0`
    /// to 0).
    pub consecutive_5xx: u32,
    /// 0 disables the detector. Envoy's default enforcement for it is 0 %, so a config
    /// that does not enforce it must arrive here as 0.
    pub consecutive_gateway_failure: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

impl From<&OutlierDetection> for OutlierConfig {
    fn from(o: &OutlierDetection) -> Self {
        OutlierConfig {
            consecutive_5xx: o.consecutive_5xx,
            consecutive_gateway_failure: o.consecutive_gateway_failure,
            interval: o.interval,
            base_ejection_time: o.base_ejection_time,
            // Envoy: the default, or the base time when that is larger.
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME.max(o.base_ejection_time),
            max_ejection_percent: o.max_ejection_percent.min(100),
        }
    }
}

/// How an upstream attempt ended, as far as outlier detection cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// The connection could not be made.
    ConnectFailed,
    /// The upstream did not answer in time.
    Timeout,
    /// The stream or connection was reset before a response.
    Reset,
}

impl Outcome {
    fn status(self) -> u16 {
        match self {
            Outcome::Status(code) => code,
            Outcome::ConnectFailed | Outcome::Reset => 503,
            Outcome::Timeout => 504,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
}

/// Per-host detector state; lives in [`super::HostStats`] so it survives EDS updates.
#[derive(Debug, Default)]
pub(crate) struct OutlierHostState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway_failure: AtomicU32,
    record: Mutex<EjectionRecord>,
}

#[derive(Clone, Copy, Debug, Default)]
struct EjectionRecord {
    ejected_at: Option<Instant>,
    last_unejected_at: Option<Instant>,
    backoff: u32,
    num_ejections: u32,
}

/// Counters named as Envoy's `outlier_detection.*` stats.
#[derive(Debug, Default)]
pub struct OutlierStats {
    pub ejections_enforced_total: AtomicU64,
    pub ejections_overflow: AtomicU64,
    pub ejections_enforced_consecutive_5xx: AtomicU64,
    pub ejections_detected_consecutive_5xx: AtomicU64,
    pub ejections_enforced_consecutive_gateway_failure: AtomicU64,
    pub ejections_detected_consecutive_gateway_failure: AtomicU64,
}

#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    stats: OutlierStats,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl OutlierDetector {
    pub fn new(config: OutlierConfig) -> Self {
        OutlierDetector {
            config,
            stats: OutlierStats::default(),
        }
    }

    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    pub fn stats(&self) -> &OutlierStats {
        &self.stats
    }

    /// Counts one outcome for `host`; returns the detection whose threshold this outcome
    /// reached, for the caller to pass to [`Self::on_detection`].
    pub fn record(&self, host: &Host, outcome: Outcome) -> Option<Detection> {
        let state = &host.stats().outlier;
        let status = outcome.status();
        if !(500..600).contains(&status) {
            state.consecutive_5xx.store(0, Ordering::Relaxed);
            state
                .consecutive_gateway_failure
                .store(0, Ordering::Relaxed);
            return None;
        }
        let mut detection = None;
        if matches!(status, 502..=504) {
            let streak = state
                .consecutive_gateway_failure
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            if self.config.consecutive_gateway_failure > 0
                && streak == self.config.consecutive_gateway_failure
            {
                detection = Some(Detection::ConsecutiveGatewayFailure);
            }
        } else {
            state
                .consecutive_gateway_failure
                .store(0, Ordering::Relaxed);
        }
        let streak = state.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        if self.config.consecutive_5xx > 0 && streak == self.config.consecutive_5xx {
            // Both can trip on one response; Envoy processes both, and the second finds
            // the host already ejected, so reporting the 5xx one is equivalent.
            detection = Some(Detection::Consecutive5xx);
        }
        detection
    }

    /// Acts on a detection: ejects `host` unless it is already out or the cluster has
    /// reached `max_ejection_percent`. `hosts` is the cluster's current host set. Calls
    /// must not run concurrently with each other or with [`Self::tick`] for one cluster.
    /// Returns whether the host was ejected.
    pub fn on_detection(
        &self,
        host: &Host,
        detection: Detection,
        hosts: &HostSet,
        now: Instant,
    ) -> bool {
        if host.stats().is_ejected() {
            return false;
        }
        let (detected, enforced, streak) = match detection {
            Detection::Consecutive5xx => (
                &self.stats.ejections_detected_consecutive_5xx,
                &self.stats.ejections_enforced_consecutive_5xx,
                &host.stats().outlier.consecutive_5xx,
            ),
            Detection::ConsecutiveGatewayFailure => (
                &self.stats.ejections_detected_consecutive_gateway_failure,
                &self.stats.ejections_enforced_consecutive_gateway_failure,
                &host.stats().outlier.consecutive_gateway_failure,
            ),
        };
        bump(detected);
        streak.store(0, Ordering::Relaxed);

        let total = hosts.hosts().len().max(1) as u64;
        let ejected = hosts
            .hosts()
            .iter()
            .filter(|h| h.stats().is_ejected())
            .count() as u64;
        if 100 * (ejected + 1) > u64::from(self.config.max_ejection_percent) * total {
            bump(&self.stats.ejections_overflow);
            return false;
        }
        let mut record = host.stats().outlier.record.lock();
        record.ejected_at = Some(now);
        record.num_ejections += 1;
        let base = self.config.base_ejection_time;
        if base * record.backoff < self.config.max_ejection_time + base {
            record.backoff += 1;
        }
        host.stats().set_ejected(true);
        bump(&self.stats.ejections_enforced_total);
        bump(enforced);
        true
    }

    /// The periodic sweep, every `interval`: returns ejected hosts whose time is up, and
    /// lowers the backoff of hosts that stayed in service for a whole interval. Returns
    /// whether any host came back.
    pub fn tick(&self, hosts: &HostSet, now: Instant) -> bool {
        let mut returned = false;
        for host in hosts.hosts() {
            let stats = host.stats();
            let mut record = stats.outlier.record.lock();
            if stats.is_ejected() {
                let out_for = (self.config.base_ejection_time * record.backoff)
                    .min(self.config.max_ejection_time);
                let due = record
                    .ejected_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= out_for);
                if due {
                    stats.set_ejected(false);
                    stats.outlier.consecutive_5xx.store(0, Ordering::Relaxed);
                    stats
                        .outlier
                        .consecutive_gateway_failure
                        .store(0, Ordering::Relaxed);
                    record.last_unejected_at = Some(now);
                    returned = true;
                }
            } else if record
                .last_unejected_at
                .is_some_and(|at| now.saturating_duration_since(at) >= self.config.interval)
            {
                record.backoff = record.backoff.saturating_sub(1);
            }
        }
        returned
    }

    /// How many times `host` has been ejected (the `/clusters` admin output shows it).
    pub fn num_ejections(host: &Host) -> u32 {
        host.stats().outlier.record.lock().num_ejections
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::test_util::endpoints_at;

    fn config() -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: 3,
            consecutive_gateway_failure: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            max_ejection_percent: 100,
        }
    }

    fn fail(
        d: &OutlierDetector,
        host: &Host,
        set: &HostSet,
        outcome: Outcome,
        times: usize,
        now: Instant,
    ) -> bool {
        let mut ejected = false;
        for _ in 0..times {
            if let Some(det) = d.record(host, outcome) {
                ejected |= d.on_detection(host, det, set, now);
            }
        }
        ejected
    }

    #[test]
    fn consecutive_5xx_ejects_and_success_resets_the_streak() {
        let set = HostSet::build(&endpoints_at(0, 4), None, 50.0);
        let host = &set.hosts()[0];
        let d = OutlierDetector::new(config());
        let t0 = Instant::now();
        assert!(!fail(&d, host, &set, Outcome::Status(500), 2, t0));
        d.record(host, Outcome::Status(200));
        assert!(!fail(&d, host, &set, Outcome::Status(503), 2, t0));
        assert!(!host.stats().is_ejected());
        assert!(fail(&d, host, &set, Outcome::ConnectFailed, 1, t0));
        assert!(host.stats().is_ejected());
        assert!(!host.is_healthy());
        assert_eq!(
            d.stats()
                .ejections_enforced_consecutive_5xx
                .load(Ordering::Relaxed),
            1
        );
        assert_eq!(OutlierDetector::num_ejections(host), 1);
        // 4xx are not failures.
        let other = &set.hosts()[1];
        assert!(!fail(&d, other, &set, Outcome::Status(404), 10, t0));
    }

    #[test]
    fn gateway_failures_count_separately_and_only_when_enabled() {
        let set = HostSet::build(&endpoints_at(0, 2), None, 50.0);
        let host = &set.hosts()[0];
        let d = OutlierDetector::new(OutlierConfig {
            consecutive_5xx: 0,
            consecutive_gateway_failure: 2,
            ..config()
        });
        let t0 = Instant::now();
        // A plain 500 breaks the gateway streak.
        assert!(!fail(&d, host, &set, Outcome::Status(502), 1, t0));
        assert!(!fail(&d, host, &set, Outcome::Status(500), 5, t0));
        assert!(!fail(&d, host, &set, Outcome::Timeout, 1, t0));
        assert!(fail(&d, host, &set, Outcome::Status(504), 1, t0));
        assert_eq!(
            d.stats()
                .ejections_enforced_consecutive_gateway_failure
                .load(Ordering::Relaxed),
            1
        );

        let off = OutlierDetector::new(OutlierConfig {
            consecutive_5xx: 0,
            consecutive_gateway_failure: 0,
            ..config()
        });
        assert!(!fail(
            &off,
            &set.hosts()[1],
            &set,
            Outcome::Status(503),
            50,
            t0
        ));
    }

    #[test]
    fn host_returns_after_base_time_on_a_tick_and_backoff_grows() {
        let set = HostSet::build(&endpoints_at(0, 2), None, 50.0);
        let host = &set.hosts()[0];
        let d = OutlierDetector::new(config());
        let t0 = Instant::now();
        assert!(fail(&d, host, &set, Outcome::Status(500), 3, t0));
        assert!(!d.tick(&set, t0 + Duration::from_secs(29)));
        assert!(host.stats().is_ejected());
        assert!(d.tick(&set, t0 + Duration::from_secs(30)));
        assert!(!host.stats().is_ejected());

        // Ejected again right away: now out for twice the base time.
        let t1 = t0 + Duration::from_secs(31);
        assert!(fail(&d, host, &set, Outcome::Status(500), 3, t1));
        assert!(!d.tick(&set, t1 + Duration::from_secs(59)));
        assert!(d.tick(&set, t1 + Duration::from_secs(60)));

        // Healthy ticks wind the backoff down again (two intervals: 2 → 0), so the next
        // ejection lasts the base time again.
        let t2 = t1 + Duration::from_secs(60);
        d.tick(&set, t2 + Duration::from_secs(10));
        d.tick(&set, t2 + Duration::from_secs(20));
        let t3 = t2 + Duration::from_secs(21);
        assert!(fail(&d, host, &set, Outcome::Status(500), 3, t3));
        assert!(d.tick(&set, t3 + Duration::from_secs(30)));
    }

    #[test]
    fn ejection_time_is_capped_by_max_ejection_time() {
        let set = HostSet::build(&endpoints_at(0, 1), None, 50.0);
        let host = &set.hosts()[0];
        let d = OutlierDetector::new(OutlierConfig {
            max_ejection_time: Duration::from_secs(45),
            ..config()
        });
        let mut now = Instant::now();
        for _ in 0..4 {
            assert!(fail(&d, host, &set, Outcome::Status(500), 3, now));
            now += Duration::from_secs(45);
            assert!(d.tick(&set, now), "back after at most max_ejection_time");
        }
    }

    #[test]
    fn max_ejection_percent_limits_ejections() {
        let set = HostSet::build(&endpoints_at(0, 10), None, 50.0);
        let d = OutlierDetector::new(OutlierConfig {
            max_ejection_percent: 20,
            ..config()
        });
        let t0 = Instant::now();
        let ejected: Vec<bool> = set
            .hosts()
            .iter()
            .take(3)
            .map(|h| fail(&d, h, &set, Outcome::Status(500), 3, t0))
            .collect();
        assert_eq!(ejected, [true, true, false]);
        assert_eq!(d.stats().ejections_overflow.load(Ordering::Relaxed), 1);

        // 10% of 3 hosts allows none (Envoy counts the host about to be ejected).
        let small = HostSet::build(&endpoints_at(1, 3), None, 50.0);
        let d = OutlierDetector::new(OutlierConfig {
            max_ejection_percent: 10,
            ..config()
        });
        assert!(!fail(
            &d,
            &small.hosts()[0],
            &small,
            Outcome::Status(500),
            3,
            t0
        ));
    }

    #[test]
    fn from_config_defaults_max_ejection_time() {
        let c = OutlierConfig::from(&OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(600),
            max_ejection_percent: 150,
        });
        assert_eq!(c.max_ejection_time, Duration::from_secs(600));
        assert_eq!(c.max_ejection_percent, 100);
    }
}
