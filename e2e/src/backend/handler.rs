//! What a test backend answers: who it is, what arrived, and the behaviour the
//! request asked for.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

/// Header whose value names a "fail once" key: the first request carrying a
/// given key is answered 503, later ones normally (retry tests).
pub const FAIL_FIRST_HEADER: &str = "x-fail-first";
/// Response header naming the backend: `<name>-<version>`.
pub const BACKEND_HEADER: &str = "x-backend";
/// How many received requests are kept for [`State::received`].
const RECEIVED_LIMIT: usize = 1000;

/// One request as it arrived at a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub method: String,
    /// Path and query, as sent on the wire.
    pub path: String,
    /// `Host` header (HTTP/1.1) or `:authority` (HTTP/2).
    pub host: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub protocol: String,
    /// Header names in lowercase; repeated headers appear once per value.
    pub headers: Vec<(String, String)>,
}

impl ReceivedRequest {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub name: String,
    pub version: String,
    pub requests: AtomicU64,
    failed_keys: Mutex<HashSet<String>>,
    received: Mutex<Vec<ReceivedRequest>>,
}

impl State {
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            requests: AtomicU64::new(0),
            failed_keys: Mutex::new(HashSet::new()),
            received: Mutex::new(Vec::new()),
        }
    }

    pub fn id(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    pub fn received(&self) -> Vec<ReceivedRequest> {
        lock(&self.received).clone()
    }

    pub fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
        lock(&self.failed_keys).clear();
        lock(&self.received).clear();
    }

    /// True the first time `key` is seen.
    fn first_failure(&self, key: &str) -> bool {
        lock(&self.failed_keys).insert(key.to_owned())
    }

    fn record(&self, request: ReceivedRequest) {
        let mut received = lock(&self.received);
        if received.len() >= RECEIVED_LIMIT {
            received.remove(0);
        }
        received.push(request);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) async fn handle(
    state: std::sync::Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    // The body is only counted; a broken upload still gets an answer.
    let body_bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);

    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let received = ReceivedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        host: host.clone(),
        protocol: format!("{:?}", parts.version),
        headers: header_pairs(&parts.headers),
    };
    state.record(received.clone());

    let status = choose_status(&state, &parts.headers, parts.uri.path()).await;
    let body = json!({
        "name": state.name,
        "version": state.version,
        "method": received.method,
        "path": path,
        "host": host,
        "protocol": received.protocol,
        "headers": header_object(&parts.headers),
        "body_bytes": body_bytes,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = header::HeaderValue::from_str(&state.id()) {
        headers.insert(BACKEND_HEADER, value);
    }
    Ok(response)
}

async fn choose_status(state: &State, headers: &HeaderMap, path: &str) -> StatusCode {
    if let Some(key) = headers.get(FAIL_FIRST_HEADER).and_then(|v| v.to_str().ok())
        && state.first_failure(key)
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        return match ms.parse::<u64>() {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                StatusCode::OK
            }
            Err(_) => StatusCode::BAD_REQUEST,
        };
    }
    StatusCode::OK
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Headers as a JSON object; repeated headers are joined with ", " as HTTP
/// allows for list-valued fields.
fn header_object(headers: &HeaderMap) -> serde_json::Value {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in header_pairs(headers) {
        map.entry(k)
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&v);
            })
            .or_insert(v);
    }
    json!(map)
}
