//! The client's counters, shared with the admin/stats code. Names follow Envoy where it
//! has an aggregate stat (`cluster_manager.cds.*`, `listener_manager.lds.*`,
//! `control_plane.connected_state`). Envoy counts EDS and RDS per cluster and per route
//! configuration; the client only sees responses, so it keeps per-type totals under
//! `xds.eds.*` and `xds.rds.*`.

use std::sync::atomic::{AtomicU64, Ordering};

use strait_proto::xds::type_url;

/// Envoy's per-subscription update counters.
#[derive(Debug, Default)]
pub struct TypeStats {
    /// Responses received.
    pub update_attempt: AtomicU64,
    /// Responses applied and ACKed.
    pub update_success: AtomicU64,
    /// Responses NACKed.
    pub update_rejected: AtomicU64,
    /// Streams that failed or ended while subscribed.
    pub update_failure: AtomicU64,
}

impl TypeStats {
    pub fn attempts(&self) -> u64 {
        self.update_attempt.load(Ordering::Relaxed)
    }

    pub fn successes(&self) -> u64 {
        self.update_success.load(Ordering::Relaxed)
    }

    pub fn rejections(&self) -> u64 {
        self.update_rejected.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.update_failure.load(Ordering::Relaxed)
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct XdsStats {
    /// 1 while an ADS stream is up (`control_plane.connected_state`).
    pub connected_state: AtomicU64,
    pub cds: TypeStats,
    pub eds: TypeStats,
    pub lds: TypeStats,
    pub rds: TypeStats,
}

impl XdsStats {
    pub fn for_type(&self, url: &str) -> Option<&TypeStats> {
        match url {
            type_url::CLUSTER => Some(&self.cds),
            type_url::ENDPOINT => Some(&self.eds),
            type_url::LISTENER => Some(&self.lds),
            type_url::ROUTE => Some(&self.rds),
            _ => None,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected_state.load(Ordering::Relaxed) == 1
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected_state
            .store(u64::from(connected), Ordering::Relaxed);
    }

    /// Every value under its stat name, for the admin `/stats` output.
    pub fn entries(&self) -> Vec<(String, u64)> {
        let mut out = vec![(
            "control_plane.connected_state".to_string(),
            self.connected_state.load(Ordering::Relaxed),
        )];
        let types = [
            ("cluster_manager.cds", &self.cds),
            ("xds.eds", &self.eds),
            ("listener_manager.lds", &self.lds),
            ("xds.rds", &self.rds),
        ];
        for (prefix, stats) in types {
            out.push((format!("{prefix}.update_attempt"), stats.attempts()));
            out.push((format!("{prefix}.update_failure"), stats.failures()));
            out.push((format!("{prefix}.update_rejected"), stats.rejections()));
            out.push((format!("{prefix}.update_success"), stats.successes()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_use_envoy_names() {
        let stats = XdsStats::default();
        stats.set_connected(true);
        TypeStats::inc(&stats.cds.update_success);
        TypeStats::inc(&stats.lds.update_rejected);
        let entries = stats.entries();
        let get = |name: &str| entries.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(get("control_plane.connected_state"), Some(1));
        assert_eq!(get("cluster_manager.cds.update_success"), Some(1));
        assert_eq!(get("listener_manager.lds.update_rejected"), Some(1));
        assert_eq!(get("listener_manager.lds.update_success"), Some(0));
        assert!(stats.for_type(type_url::ROUTE).is_some());
        assert!(stats.for_type(type_url::SECRET).is_none());
    }
}
