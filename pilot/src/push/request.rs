//! PushRequest: what changed and why, merged by the debouncer (Istio ≤1.30 semantics:
//! `full == false` is an EDS-only push that skips the PushContext rebuild).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use crate::model::{ConfigKey, ConfigKind, PushContext};

/// Why a push happened; the `pilot_push_triggers{type}` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TriggerReason {
    Endpoint,
    Config,
    Service,
    Proxy,
    Global,
    Unknown,
    Debug,
    Secret,
    Networks,
    ProxyRequest,
    Namespace,
    Cluster,
}

impl TriggerReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerReason::Endpoint => "endpoint",
            TriggerReason::Config => "config",
            TriggerReason::Service => "service",
            TriggerReason::Proxy => "proxy",
            TriggerReason::Global => "global",
            TriggerReason::Unknown => "unknown",
            TriggerReason::Debug => "debug",
            TriggerReason::Secret => "secret",
            TriggerReason::Networks => "networks",
            TriggerReason::ProxyRequest => "proxyrequest",
            TriggerReason::Namespace => "namespace",
            TriggerReason::Cluster => "cluster",
        }
    }
}

#[derive(Clone, Debug)]
pub struct PushRequest {
    /// A full push rebuilds the PushContext and regenerates every type; otherwise only
    /// EDS for the services in `configs_updated` is pushed.
    pub full: bool,
    /// Objects that changed; empty means "everything may have changed".
    pub configs_updated: BTreeSet<ConfigKey>,
    pub reason: BTreeMap<TriggerReason, u32>,
    /// When the first change merged into this request happened.
    pub start: Instant,
    /// Regenerate even if nothing seems to have changed.
    pub forced: bool,
    /// The context to push with; set when the request is handed to the push queue.
    pub push: Option<Arc<PushContext>>,
}

impl PushRequest {
    pub fn full(
        reason: TriggerReason,
        configs: impl IntoIterator<Item = ConfigKey>,
    ) -> PushRequest {
        PushRequest {
            full: true,
            configs_updated: configs.into_iter().collect(),
            reason: BTreeMap::from([(reason, 1)]),
            start: Instant::now(),
            forced: false,
            push: None,
        }
    }

    /// An EDS-only push for the endpoints of these service hostnames.
    pub fn endpoints(hosts: impl IntoIterator<Item = (String, String)>) -> PushRequest {
        PushRequest {
            full: false,
            configs_updated: hosts
                .into_iter()
                .map(|(namespace, host)| ConfigKey::new(ConfigKind::Endpoints, &namespace, &host))
                .collect(),
            reason: BTreeMap::from([(TriggerReason::Endpoint, 1)]),
            start: Instant::now(),
            forced: false,
            push: None,
        }
    }

    /// Merges a later request into this one: reasons summed, full and forced OR-ed,
    /// configs unioned, the oldest start kept, the later context wins.
    pub fn merge(mut self, other: PushRequest) -> PushRequest {
        self.full |= other.full;
        self.forced |= other.forced;
        for (reason, count) in other.reason {
            *self.reason.entry(reason).or_default() += count;
        }
        self.configs_updated.extend(other.configs_updated);
        if other.start < self.start {
            self.start = other.start;
        }
        if other.push.is_some() {
            self.push = other.push;
        }
        self
    }

    /// Hostnames whose endpoints changed (for EDS-only pushes).
    pub fn updated_endpoint_hosts(&self) -> impl Iterator<Item = &str> {
        self.configs_updated
            .iter()
            .filter(|k| k.kind == ConfigKind::Endpoints)
            .map(|k| k.name.as_str())
    }

    pub fn reason_summary(&self) -> String {
        self.reason
            .iter()
            .map(|(r, n)| format!("{}:{n}", r.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_reasons_and_ors_full() {
        let a = PushRequest::endpoints([("default".into(), "a.default.svc.cluster.local".into())]);
        let b = PushRequest::full(
            TriggerReason::Config,
            [ConfigKey::new(ConfigKind::VirtualService, "default", "a")],
        );
        let b_start = b.start;
        let merged = a.clone().merge(b);
        assert!(merged.full);
        assert_eq!(merged.configs_updated.len(), 2);
        assert_eq!(merged.reason[&TriggerReason::Endpoint], 1);
        assert_eq!(merged.reason[&TriggerReason::Config], 1);
        assert!(merged.start <= b_start);
        let eds_only = a.clone().merge(a);
        assert!(!eds_only.full);
        assert_eq!(eds_only.reason[&TriggerReason::Endpoint], 2);
        assert_eq!(eds_only.updated_endpoint_hosts().count(), 1);
    }
}
