//! Envoy's RDS subscription stats, `http.<stat_prefix>.rds.<route_config>.*`: one set per
//! route configuration, under the stat prefix of the first connection manager that
//! asked for it (Envoy shares one subscription between the managers that name the same
//! route configuration, and scopes it by the one that created it).

use std::collections::HashMap;

use parking_lot::Mutex;

use super::Telemetry;
use crate::stats::bundle::stat_bundle;

stat_bundle! {
    pub struct RdsCounters {
        counters: [update_attempt, update_success, update_rejected, update_empty, config_reload],
        gauges: [],
        histograms: [],
    }
}

#[derive(Debug, Default)]
pub struct RdsStats {
    by_route: Mutex<HashMap<String, RdsCounters>>,
}

/// What one RDS response did to one route configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdsOutcome {
    /// Accepted; `changed` when its content differs from what was in place.
    Accepted {
        changed: bool,
    },
    Rejected,
    /// Removed (delta) or left out.
    Empty,
}

impl RdsStats {
    /// Registers the subscription of `route` under `stat_prefix` unless it has one.
    /// Envoy counts the initial fetch as an attempt.
    pub fn subscribe(&self, telemetry: &Telemetry, route: &str, stat_prefix: &str) {
        self.by_route
            .lock()
            .entry(route.to_string())
            .or_insert_with(|| {
                let counters = RdsCounters::new(
                    telemetry.store(),
                    &format!("http.{stat_prefix}.rds.{route}"),
                );
                counters.update_attempt.inc();
                counters
            });
    }

    pub fn record(&self, route: &str, outcome: RdsOutcome) {
        let routes = self.by_route.lock();
        let Some(c) = routes.get(route) else {
            return;
        };
        c.update_attempt.inc();
        match outcome {
            RdsOutcome::Accepted { changed } => {
                c.update_success.inc();
                if changed {
                    c.config_reload.inc();
                }
            }
            RdsOutcome::Rejected => c.update_rejected.inc(),
            RdsOutcome::Empty => {
                c.update_success.inc();
                c.update_empty.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_under_the_first_subscriber() {
        let telemetry = Telemetry::detached();
        let rds = RdsStats::default();
        rds.subscribe(&telemetry, "9080", "outbound_0.0.0.0_9080;");
        rds.subscribe(&telemetry, "9080", "other");
        rds.record("9080", RdsOutcome::Accepted { changed: true });
        rds.record("9080", RdsOutcome::Accepted { changed: false });
        rds.record("9080", RdsOutcome::Rejected);
        rds.record("unknown", RdsOutcome::Rejected);
        let snap = telemetry.store().snapshot();
        let v = |s: &str| snap.value(&format!("http.outbound_0.0.0.0_9080;.rds.9080.{s}"));
        assert_eq!(v("update_attempt"), Some(4));
        assert_eq!(v("update_success"), Some(2));
        assert_eq!(v("config_reload"), Some(1));
        assert_eq!(v("update_rejected"), Some(1));
        assert!(snap.get("http.other.rds.9080.update_attempt").is_none());
    }
}
