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

    async fn connect(&self, addr: SocketAddr) -> Result<TcpStream> {
        let socket = self.netns.run(|| match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        })??;
        let stream = socket.connect(addr).await.context("connecting")?;
        stream.set_nodelay(true)?;
        Ok(stream)
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
