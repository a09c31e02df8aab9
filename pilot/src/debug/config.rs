//! `/debug/configz`, `/debug/resourcesz` and `/debug/mesh`: the config the server holds.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Serialize;

use super::respond::{self, Params, Source};
use crate::model::ConfigKind;

/// Istio config kinds the config store serves, in Istio's schema order by kind name.
const SERVED_KINDS: [ConfigKind; 5] = [
    ConfigKind::DestinationRule,
    ConfigKind::ServiceEntry,
    ConfigKind::Sidecar,
    ConfigKind::VirtualService,
    ConfigKind::WorkloadEntry,
];

/// Istio's `config.GroupVersionKind`.
#[derive(Debug, Serialize)]
struct GroupVersionKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

/// `/debug/configz`: every config object as Kubernetes JSON.
pub(crate) async fn configz(
    State(source): State<Source>,
    Query(params): Query<Params>,
) -> Response {
    let configs: Vec<serde_json::Value> =
        source.configs().iter().map(|c| c.to_kube_json()).collect();
    respond::json(&configs, &params)
}

/// `/debug/resourcesz`: the kinds the config store serves.
pub(crate) async fn resourcesz(Query(params): Query<Params>) -> Response {
    let kinds: Vec<GroupVersionKind> = SERVED_KINDS
        .iter()
        .map(|k| GroupVersionKind {
            group: "networking.istio.io",
            version: "v1",
            kind: k.as_str(),
        })
        .collect();
    respond::json(&kinds, &params)
}

/// `/debug/mesh`: the active MeshConfig.
pub(crate) async fn mesh(State(source): State<Source>, Query(params): Query<Params>) -> Response {
    respond::json(&source.mesh_config(), &params)
}
