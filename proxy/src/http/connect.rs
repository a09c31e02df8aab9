//! Opening an upstream TCP connection: optional source address (`upstream_bind_config`),
//! the cluster's connect timeout, and Envoy's wording for failures.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    /// The connection was refused or failed; the text is Envoy's transport failure
    /// reason (`delayed connect error: Connection refused`).
    #[error("{0}")]
    Failed(String),
    #[error("connect timeout")]
    Timeout,
}

impl ConnectError {
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%` (`delayed connect error: Connection refused`,
    /// as Envoy logs it). Envoy 1.40 keeps a plain TCP failure out of the local reply body
    /// (see [`is_socket_failure`]); checked against Envoy in `e2e/tests/proxy_diff.rs`.
    pub fn transport_failure_reason(&self) -> Option<String> {
        match self {
            ConnectError::Failed(reason) => Some(reason.clone()),
            ConnectError::Timeout => None,
        }
    }
}

const DELAYED_CONNECT_ERROR: &str = "delayed connect error: ";

/// Whether a transport failure reason is the TCP socket's own connect error rather than
/// a transport socket's (TLS) failure.
pub fn is_socket_failure(reason: &str) -> bool {
    reason.starts_with(DELAYED_CONNECT_ERROR)
}

/// The errno's text without Rust's ` (os error N)` suffix, as `strerror` gives it.
fn describe(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    format!("{DELAYED_CONNECT_ERROR}{text}")
}

pub async fn connect(
    address: SocketAddr,
    timeout: Duration,
    bind: Option<SocketAddr>,
) -> Result<TcpStream, ConnectError> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| ConnectError::Failed(describe(&e)))?;
    if let Some(source) = bind {
        socket
            .bind(source)
            .map_err(|e| ConnectError::Failed(format!("binding source {source}: {e}")))?;
    }
    match tokio::time::timeout(timeout, socket.connect(address)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(ConnectError::Failed(describe(&e))),
        Err(_) => Err(ConnectError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connections_name_the_errno() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = connect(dead, Duration::from_secs(1), None)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ConnectError::Failed("delayed connect error: Connection refused".into())
        );
    }

    #[tokio::test]
    async fn bind_sets_the_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = connect(
            addr,
            Duration::from_secs(1),
            Some("127.0.0.2:0".parse().unwrap()),
        )
        .await
        .unwrap();
        assert_eq!(stream.local_addr().unwrap().ip().to_string(), "127.0.0.2");
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
    }
}
