//! A minimal HTTP/1.1 server in a namespace that answers every request from a
//! function of the peer address, e.g. `who connected to me` (which shows whether a
//! connection was made by the client itself or by a proxy in between).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::Netns;

type Answer = dyn Fn(SocketAddr) -> (&'static str, String) + Send + Sync;

/// Stopped on drop.
pub struct TinyHttp {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl std::fmt::Debug for TinyHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TinyHttp")
            .field("port", &self.port)
            .finish()
    }
}

impl TinyHttp {
    /// Answers with the peer's `ip:port`.
    pub fn whoami(netns: &Netns, port: u16) -> Result<TinyHttp> {
        Self::start(
            netns,
            port,
            Arc::new(|peer| ("text/plain", peer.to_string())),
        )
    }

    /// Answers with a fixed body.
    pub fn fixed(
        netns: &Netns,
        port: u16,
        content_type: &'static str,
        body: &str,
    ) -> Result<TinyHttp> {
        let body = body.to_owned();
        Self::start(netns, port, Arc::new(move |_| (content_type, body.clone())))
    }

    fn start(netns: &Netns, port: u16, answer: Arc<Answer>) -> Result<TinyHttp> {
        let listener = netns
            .run(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))?
            .with_context(|| format!("binding port {port} in {}", netns.name()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tiny-http-{port}"))
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let answer = answer.clone();
                            std::thread::spawn(move || serve_one(stream, peer, &*answer));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })?;
        Ok(TinyHttp {
            stop,
            thread: Some(thread),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

fn serve_one(mut stream: std::net::TcpStream, peer: SocketAddr, answer: &Answer) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (content_type, body) = answer(peer);
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

impl Drop for TinyHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
