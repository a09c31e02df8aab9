//! `/debug/adsz` and `/debug/connections`: the connected xDS clients, shaped as Istio's
//! `AdsClients` / `AdsClient`.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::respond::{self, Params, Source};
use super::time::rfc3339;
use crate::model::Locality;
use crate::xds::status::ConnectionStatus;

#[derive(Debug, Serialize)]
pub(crate) struct AdsClients {
    #[serde(rename = "totalClients")]
    pub total: usize,
    #[serde(rename = "clients", skip_serializing_if = "Vec::is_empty")]
    pub connected: Vec<AdsClient>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AdsClient {
    #[serde(rename = "connectionId")]
    pub connection_id: String,
    #[serde(rename = "connectedAt")]
    pub connected_at: String,
    pub address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<LocalityView>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub watches: BTreeMap<String, Vec<String>>,
}

/// `envoy.config.core.v3.Locality` as Go's encoding/json prints the generated struct.
#[derive(Debug, Serialize)]
pub(crate) struct LocalityView {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub zone: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub_zone: String,
}

impl From<&Locality> for LocalityView {
    fn from(l: &Locality) -> Self {
        LocalityView {
            region: l.region.clone(),
            zone: l.zone.clone(),
            sub_zone: l.sub_zone.clone(),
        }
    }
}

fn brief(con: &ConnectionStatus) -> AdsClient {
    AdsClient {
        connection_id: con.connection_id.clone(),
        connected_at: rfc3339(con.connected_at),
        address: con.address.clone(),
        labels: BTreeMap::new(),
        metadata: None,
        locality: None,
        watches: BTreeMap::new(),
    }
}

fn detailed(con: &ConnectionStatus) -> AdsClient {
    AdsClient {
        labels: con.proxy.labels.clone(),
        metadata: Some(con.proxy.metadata.raw.clone()),
        locality: Some(LocalityView::from(&con.proxy.locality)),
        watches: con
            .watches
            .iter()
            .map(|(type_url, w)| (type_url.clone(), w.names.clone()))
            .collect(),
        ..brief(con)
    }
}

/// `/debug/adsz[?proxyID=][&push=true]`.
pub(crate) async fn adsz(State(source): State<Source>, Query(params): Query<Params>) -> Response {
    if params.get("push").is_some_and(|v| !v.is_empty()) {
        let pushed = source.trigger_push();
        return respond::text(StatusCode::OK, format!("Pushed to {pushed} servers\n"));
    }
    let connections = match respond::proxy_id(&params) {
        Some(id) => match respond::find_connection(&*source, id) {
            Some(con) => vec![con],
            None => return respond::Rejection::NotConnected.into_response(),
        },
        None => respond::sorted_connections(&*source),
    };
    let clients = AdsClients {
        total: connections.len(),
        connected: connections.iter().map(detailed).collect(),
    };
    respond::json(&clients, &params)
}

/// `/debug/connections`.
pub(crate) async fn connections(
    State(source): State<Source>,
    Query(params): Query<Params>,
) -> Response {
    let connections = respond::sorted_connections(&*source);
    let clients = AdsClients {
        total: connections.len(),
        connected: connections.iter().map(brief).collect(),
    };
    respond::json(&clients, &params)
}
