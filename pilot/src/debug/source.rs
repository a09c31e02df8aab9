//! What the debug and monitoring handlers read: the server implements this when it
//! wires the HTTP servers, so the handlers know nothing of how state is kept.

use std::sync::Arc;

use crate::model::{IstioConfig, PushContext};
use crate::xds::status::ConnectionStatus;

pub trait DebugSource: Send + Sync + 'static {
    /// Ok when discovery caches are synced and the server is ready; Err(reason) otherwise.
    fn ready(&self) -> Result<(), String>;
    /// The current PushContext.
    fn push_context(&self) -> Arc<PushContext>;
    /// Every connected xDS client.
    fn connections(&self) -> Vec<ConnectionStatus>;
    /// Forces a full push to every connection (reason "debug"); returns how many.
    fn trigger_push(&self) -> usize;
    /// All Istio config objects.
    fn configs(&self) -> Vec<IstioConfig>;
    /// Prometheus exposition text (`crate::metrics::Metrics::encode`).
    fn metrics_text(&self) -> String;
    /// The active MeshConfig as JSON.
    fn mesh_config(&self) -> serde_json::Value;
}
