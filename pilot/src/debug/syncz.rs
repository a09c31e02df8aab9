//! `/debug/syncz`: per connection, the nonces sent and acknowledged for each type and the
//! last NACK, shaped as Istio's `SyncStatus` (what `istioctl proxy-status` reads).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Serialize;
use strait_proto::xds::type_url;

use super::respond::{self, Params, Source};
use super::time::rfc3339_or_zero;
use crate::xds::status::{ConnectionStatus, WatchStatus};

#[derive(Debug, Serialize)]
pub(crate) struct SyncStatus {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_id: String,
    #[serde(rename = "proxy", skip_serializing_if = "String::is_empty")]
    pub proxy_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub istio_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_sent: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_acked: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub listener_sent: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub listener_acked: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub route_sent: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub route_acked: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub endpoint_sent: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub endpoint_acked: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub extensionconfig_sent: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub extensionconfig_acked: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, ResourceStatus>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceStatus {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sent: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub acked: String,
    /// Go's `omitempty` never omits a `time.Time`, so "never sent" is the zero time.
    pub sent_time: String,
    /// The `error_detail` of the last NACK: how a rejecting proxy shows up.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_error: String,
}

impl From<&WatchStatus> for ResourceStatus {
    fn from(w: &WatchStatus) -> Self {
        ResourceStatus {
            sent: w.nonce_sent.clone().unwrap_or_default(),
            acked: w.nonce_acked.clone().unwrap_or_default(),
            sent_time: rfc3339_or_zero(w.sent_time),
            last_error: w.last_error.clone().unwrap_or_default(),
        }
    }
}

fn nonces(con: &ConnectionStatus, type_url: &str) -> (String, String) {
    con.watches
        .get(type_url)
        .map_or_else(Default::default, |w| {
            (
                w.nonce_sent.clone().unwrap_or_default(),
                w.nonce_acked.clone().unwrap_or_default(),
            )
        })
}

pub(crate) fn sync_status(con: &ConnectionStatus) -> SyncStatus {
    let proxy = &con.proxy;
    let (cluster_sent, cluster_acked) = nonces(con, type_url::CLUSTER);
    let (listener_sent, listener_acked) = nonces(con, type_url::LISTENER);
    let (route_sent, route_acked) = nonces(con, type_url::ROUTE);
    let (endpoint_sent, endpoint_acked) = nonces(con, type_url::ENDPOINT);
    let (extensionconfig_sent, extensionconfig_acked) = nonces(con, type_url::EXTENSION_CONFIG);
    SyncStatus {
        cluster_id: proxy.metadata.cluster_id.clone().unwrap_or_default(),
        proxy_id: proxy.id.clone(),
        proxy_type: proxy.node_type.as_str().to_string(),
        proxy_version: String::new(),
        istio_version: proxy.metadata.istio_version.clone().unwrap_or_default(),
        cluster_sent,
        cluster_acked,
        listener_sent,
        listener_acked,
        route_sent,
        route_acked,
        endpoint_sent,
        endpoint_acked,
        extensionconfig_sent,
        extensionconfig_acked,
        resources: con
            .watches
            .iter()
            .map(|(type_url, w)| (type_url.clone(), ResourceStatus::from(w)))
            .collect(),
    }
}

/// `/debug/syncz[?namespace=]`.
pub(crate) async fn syncz(State(source): State<Source>, Query(params): Query<Params>) -> Response {
    let namespace = params.get("namespace").filter(|ns| !ns.is_empty());
    let statuses: Vec<SyncStatus> = respond::sorted_connections(&*source)
        .iter()
        .filter(|con| namespace.is_none_or(|ns| con.proxy.namespace == *ns))
        .map(sync_status)
        .collect();
    respond::json(&statuses, &params)
}
