//! The upstream application: a minimal hyper server (HTTP/1.1 and h2c prior knowledge
//! on every port) answering each request with a fixed body, on one thread of its own.
//! It does as little as possible so the proxies dominate the measured path.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::oneshot;

/// Where Istio's inbound sidecar connects from (its `upstream_bind_config`); a
/// connection from here proves the request came through the server-side sidecar.
pub const INBOUND_SIDECAR_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));

#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    pub connections_from_sidecar: AtomicU64,
}

pub struct Upstream {
    counters: Arc<Counters>,
    addrs: Vec<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Serves `listeners` (already bound, e.g. inside a network namespace) until
    /// dropped, answering `200` with `body_bytes` bytes.
    pub fn start(
        listeners: Vec<std::net::TcpListener>,
        body_bytes: usize,
    ) -> anyhow::Result<Upstream> {
        let counters = Arc::new(Counters::default());
        let mut addrs = Vec::new();
        for l in &listeners {
            l.set_nonblocking(true)?;
            addrs.push(l.local_addr()?);
        }
        let body = Bytes::from(vec![b'x'; body_bytes]);
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("bench-upstream".into())
            .spawn(move || {
                runtime.block_on(async move {
                    for l in listeners {
                        match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => {
                                tokio::spawn(accept_loop(l, body.clone(), thread_counters.clone()));
                            }
                            Err(e) => eprintln!("bench upstream: {e}"),
                        }
                    }
                    let _ = stopped.await;
                });
            })
            .context("spawning the upstream thread")?;
        Ok(Upstream {
            counters,
            addrs,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, body: Bytes, counters: Arc<Counters>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("bench upstream: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        counters.connections.fetch_add(1, Ordering::Relaxed);
        if peer.ip() == INBOUND_SIDECAR_SOURCE {
            counters
                .connections_from_sidecar
                .fetch_add(1, Ordering::Relaxed);
        }
        let body = body.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                counters.requests.fetch_add(1, Ordering::Relaxed);
                let response = Response::new(Full::new(body.clone()));
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            // Errors here are peers going away at the end of a run.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn answers_http1_keep_alive_with_the_body() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up = Upstream::start(vec![l], 16).unwrap();
        let addr = up.addrs()[0];
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        for _ in 0..2 {
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.ends_with(&[b'x'; 16]) {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            assert!(text.contains("content-length: 16"), "{text}");
        }
        assert_eq!(up.counters().requests.load(Ordering::Relaxed), 2);
        assert_eq!(up.counters().connections.load(Ordering::Relaxed), 1);
        assert_eq!(
            up.counters()
                .connections_from_sidecar
                .load(Ordering::Relaxed),
            0
        );
    }
}
