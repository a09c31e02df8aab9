//! Problems found while building a push, by metric name then key; shown by
//! `/debug/push_status` and counted in gauges, as Istio's `ProxyStatus` map.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::Serialize;

/// Istio's push-status metric names that Strait records.
pub mod metric {
    pub const EDS_NO_INSTANCES: &str = "pilot_eds_no_instances";
    pub const VSERVICE_DUP_DOMAIN: &str = "pilot_vservice_dup_domain";
    pub const DESTRULE_SUBSETS: &str = "pilot_destrule_subsets";
    pub const DUPLICATE_ENVOY_CLUSTERS: &str = "pilot_duplicate_envoy_clusters";
    pub const CONFLICT_INBOUND_LISTENER: &str = "pilot_conflict_inbound_listener";
    pub const CONFLICT_OUTBOUND_LISTENER_TCP_OVER_HTTP: &str =
        "pilot_conflict_outbound_listener_tcp_over_current_http";
    pub const CONFLICT_OUTBOUND_LISTENER_HTTP_OVER_TCP: &str =
        "pilot_conflict_outbound_listener_http_over_current_tcp";
    pub const NO_IP: &str = "pilot_no_ip";
    pub const ENDPOINT_NOT_READY: &str = "pilot_endpoint_not_ready";
    /// Strait's own: config that could not be read or failed validation. The last good
    /// version of the object (if any) keeps serving.
    pub const INVALID_CONFIG: &str = "pilot_invalid_config";
    /// Strait's own: a VirtualService host already claimed by an older VirtualService.
    pub const VSERVICE_HOST_CONFLICT: &str = "pilot_vservice_host_conflict";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PushStatusEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct PushStatus {
    entries: Mutex<BTreeMap<&'static str, BTreeMap<String, PushStatusEntry>>>,
}

impl PushStatus {
    pub fn add(&self, metric: &'static str, key: impl Into<String>, message: impl Into<String>) {
        self.add_for_proxy(metric, key, None, message)
    }

    pub fn add_for_proxy(
        &self,
        metric: &'static str,
        key: impl Into<String>,
        proxy: Option<String>,
        message: impl Into<String>,
    ) {
        self.entries.lock().entry(metric).or_default().insert(
            key.into(),
            PushStatusEntry {
                proxy,
                message: message.into(),
            },
        );
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, BTreeMap<String, PushStatusEntry>> {
        self.entries.lock().clone()
    }

    pub fn count(&self, metric: &str) -> usize {
        self.entries.lock().get(metric).map_or(0, BTreeMap::len)
    }
}
