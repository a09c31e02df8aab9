//! A small HTTP/1.1 client for the agent's local calls: the proxy's admin port, its
//! Prometheus listener, the application's metrics and probes. One connection per
//! request (as kubelet probes do), an optional source address (probes come from
//! 127.0.0.6 so the sidecar's capture rules let them through), and one deadline for
//! the whole exchange.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{what} timed out after {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    #[error("request to {addr}: {message}")]
    Protocol { addr: SocketAddr, message: String },
    #[error("invalid request: {0}")]
    Request(String),
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// The `Host` header; the target address when empty.
    pub host: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Bind the connection to this source address first.
    pub source: Option<IpAddr>,
    pub timeout: Duration,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Call {
        Call {
            method: Method::GET,
            path: path.into(),
            host: String::new(),
            headers: Vec::new(),
            body: Bytes::new(),
            source: None,
            timeout: Duration::from_secs(3),
        }
    }

    pub fn post(path: impl Into<String>) -> Call {
        Call {
            method: Method::POST,
            ..Call::get(path)
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = timeout;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }
}

/// Opens a TCP connection to `addr` (from `source` if given) within `timeout`.
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, HttpError> {
    let attempt = async {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        socket.connect(addr).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(HttpError::Connect { addr, source }),
        Err(_) => Err(HttpError::Timeout {
            what: format!("connecting to {addr}"),
            timeout,
        }),
    }
}

/// Sends `call` to `addr` over a fresh connection and reads the whole response.
pub async fn send(addr: SocketAddr, call: &Call) -> Result<Reply, HttpError> {
    let what = format!("{} http://{addr}{}", call.method, call.path);
    match tokio::time::timeout(call.timeout, exchange(addr, call)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout {
            what,
            timeout: call.timeout,
        }),
    }
}

async fn exchange(addr: SocketAddr, call: &Call) -> Result<Reply, HttpError> {
    let request = build(addr, call)?;
    let stream = connect(addr, call.source, call.timeout).await?;
    let protocol = |e: hyper::Error| HttpError::Protocol {
        addr,
        message: e.to_string(),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(protocol)?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender.send_request(request).await.map_err(protocol)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(protocol)?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

fn build(addr: SocketAddr, call: &Call) -> Result<Request<Full<Bytes>>, HttpError> {
    let host = if call.host.is_empty() {
        addr.to_string()
    } else {
        call.host.clone()
    };
    let mut request = Request::builder()
        .method(call.method.clone())
        .uri(call.path.as_str())
        .header(header::HOST, host)
        .body(Full::new(call.body.clone()))
        .map_err(|e| HttpError::Request(e.to_string()))?;
    for (name, value) in &call.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| HttpError::Request(format!("header {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| HttpError::Request(format!("header value {value:?}: {e}")))?;
        if name == header::HOST {
            request.headers_mut().insert(name, value);
        } else {
            request.headers_mut().append(name, value);
        }
    }
    Ok(request)
}

/// Percent-encodes a query value (Envoy's admin decodes it), leaving unreserved
/// characters as they are.
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query_value(r"^(server\.state|x)$"),
            "%5E%28server%5C.state%7Cx%29%24"
        );
    }

    #[tokio::test]
    async fn talks_to_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, peer) = listener.accept().await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = format!("{}|{}", peer.ip(), head.lines().next().unwrap_or(""));
            let reply = format!(
                "HTTP/1.1 201 Created\r\ncontent-type: text/x\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).await.unwrap();
        });
        let mut call = Call::post("/drain?x=1");
        call.source = Some("127.0.0.6".parse().unwrap());
        let reply = send(addr, &call).await.unwrap();
        assert_eq!(reply.status, 201);
        assert_eq!(reply.content_type(), Some("text/x"));
        assert_eq!(reply.text(), "127.0.0.6|POST /drain?x=1 HTTP/1.1");
    }

    #[tokio::test]
    async fn refused_connections_name_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = send(addr, &Call::get("/")).await.unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
