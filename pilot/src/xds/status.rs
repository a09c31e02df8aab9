//! What the ADS server reports about its connections, for `/debug/adsz`,
//! `/debug/syncz`, `/debug/connections` and `/debug/config_dump`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::model::Proxy;

/// Per type URL: what was sent and what the proxy acknowledged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchStatus {
    /// Subscribed names; empty for a wildcard subscription.
    pub names: Vec<String>,
    pub wildcard: bool,
    pub nonce_sent: Option<String>,
    pub nonce_acked: Option<String>,
    pub version_sent: Option<String>,
    pub version_acked: Option<String>,
    pub sent_time: Option<SystemTime>,
    /// The `error_detail` of the proxy's last NACK, cleared by the next ACK.
    pub last_error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ConnectionStatus {
    /// `<pod>.<namespace>-<counter>`, as Istio's connection IDs.
    pub connection_id: String,
    pub connected_at: SystemTime,
    /// The peer's socket address.
    pub address: String,
    pub proxy: Arc<Proxy>,
    pub delta: bool,
    /// Type URL → status.
    pub watches: BTreeMap<String, WatchStatus>,
}
