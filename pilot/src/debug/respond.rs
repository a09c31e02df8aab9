//! Response writing shared by the handlers, following Istio's `writeJSON`: JSON with
//! `Content-Type: application/json`, indented with four spaces when `?pretty` is given,
//! and the plain-text errors Istio answers with.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::source::DebugSource;
use crate::xds::status::ConnectionStatus;

/// The state every handler gets.
pub(crate) type Source = Arc<dyn DebugSource>;

/// Query parameters; a bare `?pretty` arrives as `pretty` → "".
pub(crate) type Params = HashMap<String, String>;

const NO_PROXY_ID: &str = "You must provide a proxyID in the query string\n";
const NOT_CONNECTED: &str =
    "Proxy not connected to this Pilot instance. It may be connected to another instance.\n";

/// `value` as JSON, pretty-printed when the query has `pretty`.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T, params: &Params) -> Response {
    json_with(value, params.contains_key("pretty"))
}

/// `value` as JSON, indented or compact.
pub(crate) fn json_with<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Response {
    match encode(value, pretty) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn encode<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Result<Vec<u8>, serde_json::Error> {
    if !pretty {
        return serde_json::to_vec(value);
    }
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    Ok(out)
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body.into(),
    )
        .into_response()
}

/// Connections sorted by ID, so listings are stable from one request to the next.
pub(crate) fn sorted_connections(source: &dyn DebugSource) -> Vec<ConnectionStatus> {
    let mut all = source.connections();
    all.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
    all
}

/// The first connection whose ID contains `proxy_id`, as Istio's `getProxyConnection`.
pub(crate) fn find_connection(
    source: &dyn DebugSource,
    proxy_id: &str,
) -> Option<ConnectionStatus> {
    sorted_connections(source)
        .into_iter()
        .find(|c| c.connection_id.contains(proxy_id))
}

/// The `proxyID` of the query, if given and not empty.
pub(crate) fn proxy_id(params: &Params) -> Option<&str> {
    params
        .get("proxyID")
        .map(String::as_str)
        .filter(|p| !p.is_empty())
}

/// Why `?proxyID=` named no connection; answered as Istio does (400 / 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    NoProxyId,
    NotConnected,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::NoProxyId => text(StatusCode::BAD_REQUEST, NO_PROXY_ID),
            Rejection::NotConnected => text(StatusCode::NOT_FOUND, NOT_CONNECTED),
        }
    }
}

/// The connection named by `?proxyID=`.
pub(crate) fn require_connection(
    source: &dyn DebugSource,
    params: &Params,
) -> Result<ConnectionStatus, Rejection> {
    let id = proxy_id(params).ok_or(Rejection::NoProxyId)?;
    find_connection(source, id).ok_or(Rejection::NotConnected)
}
