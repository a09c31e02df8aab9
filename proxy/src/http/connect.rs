//! Opening an upstream TCP connection: optional source address (`upstream_bind_config`),
//! the cluster's connect timeout, and Envoy's wording for failures.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    /// The connection was refused or failed; the text is Envoy's transport failure
    /// reason (`delayed connect error: 111`).
    #[error("{0}")]
    Failed(String),
    #[error("connect timeout")]
    Timeout,
}

impl ConnectError {
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    pub fn transport_failure_reason(&self) -> Option<String> {
        match self {
            ConnectError::Failed(reason) => Some(reason.clone()),
            ConnectError::Timeout => None,
        }
    }
}

fn describe(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(errno) => format!("delayed connect error: {errno}"),
        None => format!("delayed connect error: {e}"),
    }
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
            ConnectError::Failed("delayed connect error: 111".into())
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
