//! A one-request HTTP/1.1 GET over a fresh connection: enough to poll `/ready`
//! without pulling an HTTP client into the benchmark's own timings.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Returns the status code and body of `GET path` (read until the server closes).
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await?;
        let status = parse_status_line(&all)?;
        let text = String::from_utf8_lossy(&all);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    })
    .await
    .with_context(|| format!("GET {addr}{path} timed out"))?
}

/// Returns the status code of `GET path`.
pub async fn get_status(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<u16> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        parse_status_line(&head)
    })
    .await
    .with_context(|| format!("GET {addr}{path} timed out"))?
}

fn parse_status_line(head: &[u8]) -> anyhow::Result<u16> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = std::str::from_utf8(line).context("status line is not UTF-8")?;
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => bail!("not an HTTP status line: {line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 OK\r\nx: y\r\n").unwrap(),
            200
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\n").unwrap(),
            503
        );
        assert!(parse_status_line(b"SSH-2.0\r\n").is_err());
    }

    #[tokio::test]
    async fn reads_status_from_a_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        assert_eq!(
            get_status(addr, "/ready", Duration::from_secs(5))
                .await
                .unwrap(),
            503
        );
    }

    #[tokio::test]
    async fn reads_a_body_until_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(
                b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nm_sum 1.5\nm_count 3\n",
            )
            .await
            .unwrap();
        });
        let (status, body) = get(addr, "/metrics", Duration::from_secs(5)).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "m_sum 1.5\nm_count 3\n");
    }
}
