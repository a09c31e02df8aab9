//! An immutable view of a cluster's hosts, grouped by priority, with the share of traffic
//! each priority level gets and whether it is in panic mode.
//!
//! Envoy's rules, as implemented here:
//! - A level's health is `min(100, 1.4 × 100 × healthy / total)` (overprovisioning factor
//!   1.4, host counts rather than weights, as Envoy does by default).
//! - The normalized total health is `min(100, Σ health)`; each level in priority order gets
//!   `health × 100 / normalized_total` of the traffic, capped by what higher levels left;
//!   the rounding remainder goes to the first level that got any.
//! - When no level has a healthy host, all traffic goes to the first level.
//! - Panic: only while the normalized total is below 100, a level whose healthy
//!   percentage is below the cluster's `healthy_panic_threshold` balances over all its
//!   hosts instead of the healthy ones. A threshold of 0 disables panic.
//!
//! Simplifications: degraded hosts are treated like unhealthy ones (Envoy would use them
//! as a lower tier before panicking); there are no per-priority panic thresholds,
//! locality weights or excluded hosts. Priorities need not be contiguous: missing levels
//! are empty and would get no traffic anyway, so only non-empty levels are kept.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::endpoint::LbEndpoint;

use super::host::{Host, HostStats};

/// Envoy's default overprovisioning factor (1.4), in percent.
pub const OVERPROVISIONING_FACTOR_PERCENT: u64 = 140;

/// Envoy's default `healthy_panic_threshold`.
pub const DEFAULT_PANIC_THRESHOLD: f64 = 50.0;

#[derive(Debug)]
pub struct PriorityLevel {
    priority: u32,
    hosts: Vec<Arc<Host>>,
    healthy: Vec<Arc<Host>>,
    /// Percent of traffic this level receives.
    load: u32,
    panic: bool,
}

impl PriorityLevel {
    pub fn priority(&self) -> u32 {
        self.priority
    }

    pub fn hosts(&self) -> &[Arc<Host>] {
        &self.hosts
    }

    pub fn healthy_hosts(&self) -> &[Arc<Host>] {
        &self.healthy
    }

    pub fn load(&self) -> u32 {
        self.load
    }

    pub fn in_panic(&self) -> bool {
        self.panic
    }

    /// The hosts a load balancer chooses among at this level.
    pub fn candidates(&self) -> &[Arc<Host>] {
        if self.panic {
            &self.hosts
        } else {
            &self.healthy
        }
    }
}

#[derive(Debug)]
pub struct HostSet {
    /// Every host, in the order the endpoints came.
    hosts: Vec<Arc<Host>>,
    /// Non-empty priority levels, highest priority (lowest number) first.
    levels: Vec<PriorityLevel>,
}

impl HostSet {
    pub fn empty() -> Self {
        HostSet {
            hosts: Vec::new(),
            levels: Vec::new(),
        }
    }

    /// Builds hosts for `endpoints`, reusing the counters of hosts in `previous` with the
    /// same address.
    pub fn build(
        endpoints: &[LbEndpoint],
        previous: Option<&HostSet>,
        panic_threshold: f64,
    ) -> Self {
        let kept: HashMap<SocketAddr, &Arc<HostStats>> = previous
            .map(|p| p.hosts.iter().map(|h| (h.address(), h.stats())).collect())
            .unwrap_or_default();
        let hosts = endpoints
            .iter()
            .map(|ep| Arc::new(Host::new(ep, kept.get(&ep.address).map(|s| Arc::clone(s)))))
            .collect();
        HostSet::from_hosts(hosts, panic_threshold)
    }

    /// Groups existing hosts again, re-reading their health (after an ejection changed).
    pub fn from_hosts(hosts: Vec<Arc<Host>>, panic_threshold: f64) -> Self {
        let mut by_priority: BTreeMap<u32, Vec<Arc<Host>>> = BTreeMap::new();
        for host in &hosts {
            by_priority
                .entry(host.priority())
                .or_default()
                .push(host.clone());
        }
        let mut levels: Vec<PriorityLevel> = by_priority
            .into_iter()
            .map(|(priority, hosts)| {
                let healthy = hosts.iter().filter(|h| h.is_healthy()).cloned().collect();
                PriorityLevel {
                    priority,
                    hosts,
                    healthy,
                    load: 0,
                    panic: false,
                }
            })
            .collect();
        assign_load(&mut levels, panic_threshold);
        HostSet { hosts, levels }
    }

    pub fn hosts(&self) -> &[Arc<Host>] {
        &self.hosts
    }

    pub fn levels(&self) -> &[PriorityLevel] {
        &self.levels
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn healthy_count(&self) -> usize {
        self.levels.iter().map(|l| l.healthy.len()).sum()
    }

    pub fn find(&self, address: SocketAddr) -> Option<&Arc<Host>> {
        self.hosts.iter().find(|h| h.address() == address)
    }

    pub fn level_of(&self, priority: u32) -> Option<&PriorityLevel> {
        self.levels.iter().find(|l| l.priority == priority)
    }

    /// The level a request goes to, from a random or hash value: `value % 100` against
    /// the cumulative per-level load. `None` when there are no hosts.
    pub fn choose_level(&self, value: u64) -> Option<usize> {
        let point = (value % 100) as u32;
        let mut cumulative = 0;
        for (i, level) in self.levels.iter().enumerate() {
            cumulative += level.load;
            if point < cumulative {
                return Some(i);
            }
        }
        None
    }
}

fn assign_load(levels: &mut [PriorityLevel], panic_threshold: f64) {
    let health: Vec<u32> = levels
        .iter()
        .map(|l| {
            let scaled =
                OVERPROVISIONING_FACTOR_PERCENT * l.healthy.len() as u64 / l.hosts.len() as u64;
            scaled.min(100) as u32
        })
        .collect();
    let normalized_total = health.iter().sum::<u32>().min(100);
    let mut remaining = 100;
    for (level, h) in levels.iter_mut().zip(&health) {
        level.load = (h * 100)
            .checked_div(normalized_total)
            .unwrap_or(0)
            .min(remaining);
        remaining -= level.load;
    }
    // The rounding remainder goes to the first level with load; with no healthy level at
    // all, everything goes to the first level.
    let first = levels.iter().position(|l| l.load > 0).unwrap_or(0);
    if let Some(level) = levels.get_mut(first) {
        level.load += remaining;
    }
    if normalized_total < 100 {
        for level in levels.iter_mut() {
            let healthy_percent = 100.0 * level.healthy.len() as f64 / level.hosts.len() as f64;
            level.panic = healthy_percent < panic_threshold;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::endpoint::Health;
    use crate::upstream::test_util::{endpoint, endpoints_at};

    /// `total` hosts at `priority` of which the first `healthy` are healthy.
    fn level(priority: u32, total: usize, healthy: usize) -> Vec<LbEndpoint> {
        let mut eps = endpoints_at(priority, total);
        for ep in eps.iter_mut().skip(healthy) {
            ep.health = Health::Unhealthy;
        }
        eps
    }

    fn loads(set: &HostSet) -> Vec<u32> {
        set.levels().iter().map(PriorityLevel::load).collect()
    }

    #[test]
    fn priority_spillover_follows_overprovisioning() {
        // Envoy's table: P=1 fully healthy, P=0 at 100/72/71/50/25/0 percent.
        for (healthy, expected) in [
            (100, [100, 0]),
            (72, [100, 0]),
            (71, [99, 1]),
            (50, [70, 30]),
            (25, [35, 65]),
            (0, [0, 100]),
        ] {
            let mut eps = level(0, 100, healthy);
            eps.extend(level(1, 10, 10));
            let set = HostSet::build(&eps, None, DEFAULT_PANIC_THRESHOLD);
            assert_eq!(loads(&set), expected, "P0 {healthy}% healthy");
            assert!(set.levels().iter().all(|l| !l.in_panic()));
        }
    }

    #[test]
    fn normalized_total_health_below_100_scales_loads() {
        // 25% + 25% healthy: health 35 + 35 = 70, normalized to 50/50.
        let mut eps = level(0, 4, 1);
        eps.extend(level(1, 4, 1));
        let set = HostSet::build(&eps, None, DEFAULT_PANIC_THRESHOLD);
        assert_eq!(loads(&set), [50, 50]);
        assert!(set.levels().iter().all(PriorityLevel::in_panic));
        assert_eq!(set.levels()[0].candidates().len(), 4);
    }

    #[test]
    fn failover_when_all_p0_hosts_unhealthy() {
        let mut eps = level(0, 3, 0);
        eps.extend(level(1, 2, 2));
        let set = HostSet::build(&eps, None, DEFAULT_PANIC_THRESHOLD);
        assert_eq!(loads(&set), [0, 100]);
        for v in 0..100 {
            assert_eq!(set.choose_level(v), Some(1));
        }
        assert_eq!(set.levels()[1].candidates().len(), 2);
    }

    #[test]
    fn panic_mode_uses_all_hosts_below_threshold() {
        // 1 of 4 healthy: 25% < 50% and the total health (35) is below 100.
        let set = HostSet::build(&level(0, 4, 1), None, DEFAULT_PANIC_THRESHOLD);
        let l = &set.levels()[0];
        assert!(l.in_panic());
        assert_eq!(l.candidates().len(), 4);
        assert_eq!(l.load(), 100);

        // 3 of 4 healthy: 75% is above the threshold (and 1.4 × 75 ≥ 100 anyway).
        let set = HostSet::build(&level(0, 4, 3), None, DEFAULT_PANIC_THRESHOLD);
        assert!(!set.levels()[0].in_panic());
        assert_eq!(set.levels()[0].candidates().len(), 3);

        // 2 of 3 healthy = 66%: total health 93 < 100, but 66% is above a 50% threshold.
        let set = HostSet::build(&level(0, 3, 2), None, DEFAULT_PANIC_THRESHOLD);
        assert!(!set.levels()[0].in_panic());
    }

    #[test]
    fn zero_threshold_never_panics_and_leaves_no_candidates() {
        let set = HostSet::build(&level(0, 2, 0), None, 0.0);
        assert!(!set.levels()[0].in_panic());
        assert!(set.levels()[0].candidates().is_empty());
        assert_eq!(set.choose_level(7), Some(0));
    }

    #[test]
    fn all_unhealthy_sends_everything_to_first_level_in_panic() {
        let mut eps = level(0, 2, 0);
        eps.extend(level(1, 2, 0));
        let set = HostSet::build(&eps, None, DEFAULT_PANIC_THRESHOLD);
        assert_eq!(loads(&set), [100, 0]);
        assert!(set.levels()[0].in_panic());
        assert_eq!(set.levels()[0].candidates().len(), 2);
    }

    #[test]
    fn non_contiguous_priorities_and_empty_sets() {
        let mut eps = level(2, 2, 2);
        eps.extend(level(7, 2, 2));
        let set = HostSet::build(&eps, None, DEFAULT_PANIC_THRESHOLD);
        assert_eq!(
            set.levels()
                .iter()
                .map(PriorityLevel::priority)
                .collect::<Vec<_>>(),
            [2, 7]
        );
        assert_eq!(loads(&set), [100, 0]);
        assert!(set.level_of(7).is_some());

        let empty = HostSet::build(&[], None, DEFAULT_PANIC_THRESHOLD);
        assert!(empty.is_empty());
        assert_eq!(empty.choose_level(0), None);
    }

    #[test]
    fn draining_and_degraded_are_not_candidates() {
        let mut eps = vec![
            endpoint("10.0.0.1:80"),
            endpoint("10.0.0.2:80"),
            endpoint("10.0.0.3:80"),
        ];
        eps[1].health = Health::Draining;
        eps[2].health = Health::Degraded;
        let set = HostSet::build(&eps, None, 0.0);
        let healthy: Vec<_> = set.levels()[0]
            .candidates()
            .iter()
            .map(|h| h.address())
            .collect();
        assert_eq!(healthy, [eps[0].address]);
    }

    #[test]
    fn persisting_hosts_keep_their_counters() {
        let first = HostSet::build(
            &[endpoint("10.0.0.1:80"), endpoint("10.0.0.2:80")],
            None,
            50.0,
        );
        let guard = first.hosts()[0].start_request();
        first.hosts()[1].stats().set_ejected(true);

        let mut changed = endpoint("10.0.0.1:80");
        changed.weight = 5;
        let second = HostSet::build(&[changed, endpoint("10.0.0.3:80")], Some(&first), 50.0);
        let kept = second.find(first.hosts()[0].address()).unwrap();
        assert_eq!(kept.weight(), 5);
        assert!(Arc::ptr_eq(kept.stats(), first.hosts()[0].stats()));
        assert_eq!(kept.stats().active_requests(), 1);
        drop(guard);
        assert_eq!(kept.stats().active_requests(), 0);
        assert_eq!(
            second
                .find("10.0.0.3:80".parse().unwrap())
                .unwrap()
                .stats()
                .total_requests(),
            0
        );

        // A host that leaves and comes back starts afresh.
        let third = HostSet::build(&[endpoint("10.0.0.2:80")], Some(&second), 50.0);
        assert!(!third.hosts()[0].stats().is_ejected());
    }
}
