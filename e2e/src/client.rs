//! An HTTP client whose connections originate inside a network namespace, so
//! requests pass through that namespace's routes and iptables rules (and thus
//! through a sidecar's capture) exactly as a workload's would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpSocket, TcpStream};

use crate::backend::BACKEND_HEADER;
use crate::netns::Netns;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Wire protocol towards the server. Every request uses a new connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

/// What to send: method, `Host`/`:authority`, path (with query), headers, body.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RequestSpec {
    pub fn get(host: &str, path: &str) -> Self {
        Self {
            method: Method::GET,
            host: host.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// From the start of the TCP connect to the end of the body.
    pub elapsed: Duration,
}

impl Response {
    /// The first value of header `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `x-backend` header a test backend sets: `<name>-<version>`.
    pub fn backend(&self) -> Option<&str> {
        self.header(BACKEND_HEADER)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {}", self.text()))
    }
}

/// Counts of many requests' outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// By `x-backend` header; responses without one count under `""`.
    pub backends: BTreeMap<String, usize>,
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that got no response at all (connect failure, reset, timeout).
    pub errors: Vec<String>,
}

impl Tally {
    /// Responses from backend `id` (`<name>-<version>`).
    pub fn count(&self, id: &str) -> usize {
        self.backends.get(id).copied().unwrap_or(0)
    }

    /// Responses with `status`.
    pub fn status(&self, status: u16) -> usize {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// Sends requests from inside `netns`.
#[derive(Debug, Clone)]
pub struct HttpClient {
    netns: Netns,
    protocol: Protocol,
    timeout: Duration,
}

impl HttpClient {
    /// HTTP/1.1, 10 s per-request timeout.
    pub fn new(netns: &Netns) -> Self {
        Self {
            netns: netns.clone(),
            protocol: Protocol::Http1,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn h2c(self) -> Self {
        self.with_protocol(Protocol::H2c)
    }

    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// `GET path` to `addr` with `Host: host`.
    pub async fn get(&self, addr: SocketAddr, host: &str, path: &str) -> Result<Response> {
        self.send(addr, &RequestSpec::get(host, path)).await
    }

    /// Sends `spec` to `addr` over a new connection.
    pub async fn send(&self, addr: SocketAddr, spec: &RequestSpec) -> Result<Response> {
        let what = format!(
            "{} http://{}{} via {addr} from {}",
            spec.method,
            spec.host,
            spec.path,
            self.netns.name()
        );
        tokio::time::timeout(self.timeout, self.exchange(addr, spec))
            .await
            .map_err(|_| anyhow!("timed out after {:?}", self.timeout))
            .and_then(|r| r)
            .with_context(|| what)
    }

    /// Sends `spec` `n` times, one after another, and counts the outcomes.
    pub async fn tally(&self, addr: SocketAddr, spec: &RequestSpec, n: usize) -> Tally {
        let mut tally = Tally::default();
        for _ in 0..n {
            match self.send(addr, spec).await {
                Ok(response) => {
                    let backend = response.backend().unwrap_or_default().to_owned();
                    *tally.backends.entry(backend).or_default() += 1;
                    *tally.statuses.entry(response.status).or_default() += 1;
                }
                Err(e) => tally.errors.push(format!("{e:#}")),
            }
        }
        tally
    }

    /// A TCP connection to `addr` from inside the namespace (through its capture).
    pub async fn connect(&self, addr: SocketAddr) -> Result<TcpStream> {
        let socket = self.netns.run(|| match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        })??;
        let stream = socket.connect(addr).await.context("connecting")?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Writes `bytes` (a request as it goes on the wire, well-formed or not) on a new
    /// connection and reads what comes back until the server closes the connection or
    /// `wait` passes. Write errors are not fatal: a server may answer and close before
    /// it has read everything.
    pub async fn raw(&self, addr: SocketAddr, bytes: &[u8], wait: Duration) -> Result<RawReply> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let start = Instant::now();
        let mut stream = self.connect(addr).await?;
        let _ = stream.write_all(bytes).await;
        let deadline = tokio::time::Instant::now() + wait;
        let mut data = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let end = loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => break RawEnd::Open,
                Ok(Ok(0)) => break RawEnd::Closed,
                Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
                Ok(Err(_)) => break RawEnd::Reset,
            }
        };
        Ok(RawReply {
            data,
            end,
            elapsed: start.elapsed(),
        })
    }

    /// An HTTP/1.1 connection to `addr` that stays open for many requests.
    pub async fn keep_alive(&self, addr: SocketAddr) -> Result<KeepAlive> {
        let stream = self.connect(addr).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(async move {
            // The server closing the connection (drain, idle) ends it; the sender sees it.
            let _ = conn.await;
        });
        Ok(KeepAlive {
            sender,
            conn,
            timeout: self.timeout,
        })
    }

    async fn exchange(&self, addr: SocketAddr, spec: &RequestSpec) -> Result<Response> {
        let start = Instant::now();
        let stream = self.connect(addr).await?;
        let request = build_request(spec, self.protocol)?;
        let io = TokioIo::new(stream);
        let (response, connection) = match self.protocol {
            Protocol::Http1 => {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                let connection = tokio::spawn(conn);
                (sender.send_request(request).await, connection)
            }
            Protocol::H2c => {
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                let connection = tokio::spawn(conn);
                (sender.send_request(request).await, connection)
            }
        };
        let result = async {
            let (parts, body) = response?.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Response {
                status: parts.status.as_u16(),
                version: parts.version,
                headers: parts.headers,
                body,
                elapsed: start.elapsed(),
            })
        }
        .await;
        // Each request owns its connection: close it rather than leave it idle.
        connection.abort();
        result
    }
}

/// How a raw exchange ([`HttpClient::raw`]) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEnd {
    /// The server closed the connection (FIN).
    Closed,
    /// The connection was reset.
    Reset,
    /// Still open when the wait was over.
    Open,
}

/// The bytes a raw exchange got back, and how it ended.
#[derive(Debug, Clone)]
pub struct RawReply {
    pub data: Vec<u8>,
    pub end: RawEnd,
    /// From the connect to the end of the exchange.
    pub elapsed: Duration,
}

impl RawReply {
    /// The response's status line (`HTTP/1.1 400 Bad Request`), empty if none came.
    pub fn status_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.data);
        text.lines()
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_owned()
    }

    /// The status code of the first response, if one came.
    pub fn status(&self) -> Option<u16> {
        self.status_line()
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
    }

    /// Header lines of the first response as (lowercase name, value).
    pub fn headers(&self) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(&self.data);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect()
    }

    /// The bytes after the first response's head.
    pub fn body(&self) -> &[u8] {
        self.data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(&[], |i| &self.data[i + 4..])
    }
}

/// One keep-alive HTTP/1.1 connection (see [`HttpClient::keep_alive`]); closed on drop.
#[derive(Debug)]
pub struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    conn: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl KeepAlive {
    /// True once the server (or an error) has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends `spec` on this connection and reads the whole response.
    pub async fn send(&mut self, spec: &RequestSpec) -> Result<Response> {
        let start = Instant::now();
        let exchange = async {
            self.sender.ready().await.context("connection not ready")?;
            let request = build_request(spec, Protocol::Http1)?;
            let (parts, body) = self.sender.send_request(request).await?.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Response {
                status: parts.status.as_u16(),
                version: parts.version,
                headers: parts.headers,
                body,
                elapsed: start.elapsed(),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| anyhow!("timed out after {:?}", self.timeout))
            .and_then(|r| r)
            .with_context(|| {
                format!(
                    "{} http://{}{} (keep-alive)",
                    spec.method, spec.host, spec.path
                )
            })
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

fn build_request(spec: &RequestSpec, protocol: Protocol) -> Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder().method(spec.method.clone());
    builder = match protocol {
        Protocol::Http1 => builder
            .version(Version::HTTP_11)
            .uri(spec.path.as_str())
            .header(header::HOST, spec.host.as_str()),
        // hyper derives :authority and :scheme from an absolute URI.
        Protocol::H2c => builder
            .version(Version::HTTP_2)
            .uri(format!("http://{}{}", spec.host, spec.path)),
    };
    let mut request = builder
        .body(Full::new(spec.body.clone()))
        .with_context(|| format!("building request for {}{}", spec.host, spec.path))?;
    for (name, value) in &spec.headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("header name {name:?}"))?,
            HeaderValue::from_str(value).with_context(|| format!("header value {value:?}"))?,
        );
    }
    Ok(request)
}
