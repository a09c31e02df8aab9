//! `/debug/push_status`: the problems the current PushContext recorded, as Istio's
//! `PushContext.StatusJSON` (the ProxyStatus map only, always indented).

use axum::extract::State;
use axum::response::Response;

use super::respond::{self, Source};

/// metric name → key → `{proxy, message}`.
pub(crate) async fn push_status(State(source): State<Source>) -> Response {
    let push = source.push_context();
    respond::json_with(&push.status.snapshot(), true)
}
