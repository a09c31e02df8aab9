//! Application probes rewritten by the injector: kubelet calls
//! `/app-health/<container>/{livez,readyz,startupz}` on the status port, and the agent
//! runs the original HTTP, TCP or gRPC probe (JSON-encoded in `ISTIO_KUBE_APP_PROBERS`)
//! against the pod's own IP from 127.0.0.6, which the capture rules let through.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method};
use serde::Deserialize;
use serde_json::Value;

use crate::http::{Call, send};

/// The source address of probe connections (Istio's inbound passthrough address).
pub const PROBE_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));
pub const ENV_NAME: &str = "ISTIO_KUBE_APP_PROBERS";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prober {
    #[serde(default)]
    pub http_get: Option<HttpGet>,
    #[serde(default)]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(default)]
    pub grpc: Option<Grpc>,
    #[serde(default)]
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    #[serde(default)]
    pub path: String,
    pub port: Value,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub http_headers: Vec<NameValue>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TcpSocket {
    pub port: Value,
    #[serde(default)]
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Grpc {
    pub port: Value,
    #[serde(default)]
    pub service: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{ENV_NAME}: {0}")]
pub struct ProbersError(pub String);

/// The probes by status-server path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppProbers {
    probers: BTreeMap<String, Prober>,
}

impl AppProbers {
    /// Parses and checks the injector's JSON: every path is
    /// `/app-health/<container>/{livez,readyz,startupz}`, every prober has exactly one
    /// kind and a numeric port.
    pub fn parse(json: &str) -> Result<AppProbers, ProbersError> {
        if json.trim().is_empty() {
            return Ok(AppProbers::default());
        }
        let probers: BTreeMap<String, Prober> =
            serde_json::from_str(json).map_err(|e| ProbersError(format!("invalid JSON: {e}")))?;
        for (path, prober) in &probers {
            if !is_probe_path(path) {
                return Err(ProbersError(format!(
                    "{path:?} is not /app-health/<container>/livez, readyz or startupz"
                )));
            }
            let kinds = usize::from(prober.http_get.is_some())
                + usize::from(prober.tcp_socket.is_some())
                + usize::from(prober.grpc.is_some());
            if kinds != 1 {
                return Err(ProbersError(format!(
                    "{path}: exactly one of httpGet, tcpSocket or grpc is required"
                )));
            }
            let port = prober
                .http_get
                .as_ref()
                .map(|h| &h.port)
                .or(prober.tcp_socket.as_ref().map(|t| &t.port))
                .or(prober.grpc.as_ref().map(|g| &g.port));
            if port.and_then(port_number).is_none() {
                return Err(ProbersError(format!(
                    "{path}: the port must be a number from 1 to 65535"
                )));
            }
        }
        Ok(AppProbers { probers })
    }

    pub fn get(&self, path: &str) -> Option<&Prober> {
        self.probers.get(path)
    }

    pub fn is_empty(&self) -> bool {
        self.probers.is_empty()
    }
}

fn is_probe_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/app-health/") else {
        return false;
    };
    match rest.split_once('/') {
        Some((container, kind)) => {
            !container.is_empty() && matches!(kind, "livez" | "readyz" | "startupz")
        }
        None => false,
    }
}

fn port_number(v: &Value) -> Option<u16> {
    v.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
}

/// The status code the status server answers for one probe run: 200 when the
/// application passed, its own status for HTTP, 500 when it could not be reached.
pub async fn run(prober: &Prober, destination: IpAddr, incoming: &HeaderMap) -> u16 {
    // Kubernetes' default probe timeout is one second.
    let timeout = Duration::from_secs(u64::from(prober.timeout_seconds.max(1)));
    if let Some(h) = &prober.http_get {
        return http_probe(h, destination, incoming, timeout).await;
    }
    if let Some(t) = &prober.tcp_socket {
        let addr = SocketAddr::new(destination, port_number(&t.port).unwrap_or(0));
        return match crate::http::connect(addr, Some(PROBE_SOURCE), timeout).await {
            Ok(_) => 200,
            Err(e) => {
                tracing::warn!("TCP probe of {addr} failed: {e}");
                500
            }
        };
    }
    if let Some(g) = &prober.grpc {
        let addr = SocketAddr::new(destination, port_number(&g.port).unwrap_or(0));
        return match grpc_health(addr, g.service.as_deref().unwrap_or(""), timeout).await {
            Ok(true) => 200,
            Ok(false) => 500,
            Err(e) => {
                tracing::warn!("gRPC probe of {addr} failed: {e}");
                500
            }
        };
    }
    500
}

async fn http_probe(
    h: &HttpGet,
    destination: IpAddr,
    incoming: &HeaderMap,
    timeout: Duration,
) -> u16 {
    if h.scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
    {
        tracing::warn!("HTTPS application probes are not supported; answering 500");
        return 500;
    }
    let addr = SocketAddr::new(destination, port_number(&h.port).unwrap_or(0));
    let path = if h.path.starts_with('/') {
        h.path.clone()
    } else {
        format!("/{}", h.path)
    };
    let mut call = Call::get(path).timeout(timeout);
    call.source = Some(PROBE_SOURCE);
    let overridden = |name: &str| {
        h.http_headers
            .iter()
            .any(|nv| nv.name.eq_ignore_ascii_case(name))
    };
    // Kubelet's headers go through, except those the probe sets itself.
    for (name, value) in incoming {
        if name == http::header::HOST || overridden(name.as_str()) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            call = call.header(name.as_str(), v);
        }
    }
    for nv in &h.http_headers {
        if nv.name.eq_ignore_ascii_case("host") || nv.name == ":authority" {
            call.host = nv.value.clone();
        } else {
            call = call.header(&nv.name, &nv.value);
        }
    }
    match send(addr, &call).await {
        // A redirect has passed, as kubelet sees it; a 3xx without Location would be
        // invalid to pass on.
        Ok(reply) if (300..400).contains(&reply.status) => 200,
        Ok(reply) => reply.status,
        Err(e) => {
            tracing::warn!("HTTP probe {} on {addr} failed: {e}", h.path);
            500
        }
    }
}

/// `grpc.health.v1.Health/Check` over h2c: true when the answer is SERVING.
async fn grpc_health(addr: SocketAddr, service: &str, timeout: Duration) -> Result<bool, String> {
    let attempt = async {
        let stream = crate::http::connect(addr, Some(PROBE_SOURCE), timeout)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(health_request(service)))
            .map_err(|e| e.to_string())?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let collected = http_body_util::BodyExt::collect(body)
                .await
                .map_err(|e| e.to_string())?;
            let status = parts
                .headers
                .get("grpc-status")
                .or(collected.trailers().and_then(|t| t.get("grpc-status")))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if status != "0" {
                return Err(format!("grpc-status {status:?}"));
            }
            Ok(serving(&collected.to_bytes()))
        }
        .await;
        driver.abort();
        result
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
}

/// A length-prefixed `HealthCheckRequest { service }`.
pub fn health_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(&message);
    framed.freeze()
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Whether a length-prefixed `HealthCheckResponse` says SERVING (status 1).
pub fn serving(framed: &[u8]) -> bool {
    let Some(message) = framed.get(5..) else {
        return false;
    };
    // The only field is 1 (varint); SERVING is 1.
    matches!(message, [0x08, 0x01, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const INJECTED: &str = r#"{
        "/app-health/reviews/livez": {"httpGet": {"path": "/healthz", "port": 9080, "scheme": "HTTP"}, "timeoutSeconds": 3},
        "/app-health/reviews/readyz": {"tcpSocket": {"port": 9080}},
        "/app-health/grpc/startupz": {"grpc": {"port": 9090, "service": "x"}}
    }"#;

    #[test]
    fn parses_what_the_injector_writes() {
        let p = AppProbers::parse(INJECTED).unwrap();
        let live = p.get("/app-health/reviews/livez").unwrap();
        assert_eq!(live.timeout_seconds, 3);
        assert_eq!(live.http_get.as_ref().unwrap().path, "/healthz");
        assert!(
            p.get("/app-health/reviews/readyz")
                .unwrap()
                .tcp_socket
                .is_some()
        );
        assert!(p.get("/app-health/other/readyz").is_none());
        assert!(AppProbers::parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_probers_naming_the_variable() {
        for (json, what) in [
            (r#"{"/healthz": {"tcpSocket": {"port": 1}}}"#, "/healthz"),
            (
                r#"{"/app-health/a/deadz": {"tcpSocket": {"port": 1}}}"#,
                "deadz",
            ),
            (
                r#"{"/app-health/a/livez": {"tcpSocket": {"port": 1}, "httpGet": {"port": 1}}}"#,
                "exactly one",
            ),
            (
                r#"{"/app-health/a/livez": {"tcpSocket": {"port": "http"}}}"#,
                "port",
            ),
            (r#"{"/app-health/a/livez": {}}"#, "exactly one"),
            ("[", "invalid JSON"),
        ] {
            let err = AppProbers::parse(json).unwrap_err().to_string();
            assert!(
                err.starts_with(ENV_NAME) && err.contains(what),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn grpc_health_messages() {
        assert_eq!(&health_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &health_request("ab")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']
        );
        assert!(serving(&[0, 0, 0, 0, 2, 0x08, 0x01]));
        assert!(!serving(&[0, 0, 0, 0, 2, 0x08, 0x02]));
        assert!(!serving(&[0, 0, 0, 0, 0]));
    }

    #[tokio::test]
    async fn tcp_and_http_probes_against_local_servers() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = open.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = open.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 2048];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let status = if head.starts_with("GET /redirect") {
                        "302 Found\r\nlocation: /x"
                    } else if head.contains("x-probe: yes") {
                        "204 No Content"
                    } else {
                        "503 Service Unavailable"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let json = format!(
            r#"{{"/app-health/a/livez": {{"httpGet": {{"path": "ok", "port": {port}, "httpHeaders": [{{"name": "x-probe", "value": "yes"}}]}}}},
                "/app-health/a/readyz": {{"httpGet": {{"path": "/redirect", "port": {port}}}}},
                "/app-health/a/startupz": {{"httpGet": {{"path": "/", "port": {port}}}}},
                "/app-health/b/livez": {{"tcpSocket": {{"port": {port}}}}},
                "/app-health/b/readyz": {{"tcpSocket": {{"port": {closed_port}}}}}}}"#
        );
        let p = AppProbers::parse(&json).unwrap();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let run_path = |path: &'static str| {
            let prober = p.get(path).unwrap().clone();
            async move { run(&prober, local, &HeaderMap::new()).await }
        };
        assert_eq!(run_path("/app-health/a/livez").await, 204);
        assert_eq!(run_path("/app-health/a/readyz").await, 200);
        assert_eq!(run_path("/app-health/a/startupz").await, 503);
        assert_eq!(run_path("/app-health/b/livez").await, 200);
        assert_eq!(run_path("/app-health/b/readyz").await, 500);
    }
}
