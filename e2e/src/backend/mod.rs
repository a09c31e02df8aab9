//! In-process HTTP test servers ("backends") living inside a network namespace.
//!
//! Each backend runs on its own OS thread, which enters the namespace and
//! drives a private single-threaded tokio runtime. That keeps a backend
//! independent of the test's runtime flavour and of whatever the test blocks on.

pub mod grpc;
mod handler;
pub mod tcp;
mod ws;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::oneshot;

use handler::State;
pub use handler::{BACKEND_HEADER, FAIL_FIRST_HEADER, ReceivedRequest};

use crate::netns::Netns;

/// A running test backend, answering HTTP/1.1 and h2c (prior knowledge) on
/// `0.0.0.0:<port>` inside its namespace. Every response carries
/// `x-backend: <name>-<version>` and a JSON body echoing the request:
/// `{"name","version","method","path","host","protocol","headers","body_bytes"}`.
///
/// Behaviours chosen by the request: `/status/<code>` answers that code,
/// `/delay/<ms>` sleeps then answers 200, and a header `x-fail-first: <key>`
/// makes the first request with that key answer 503. A WebSocket upgrade request is
/// answered 101 and its messages echoed back. Stopped on drop.
#[derive(Debug)]
pub struct Backend {
    state: Arc<State>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts a backend in `netns` on `port` (0 picks a free one). Returns once
    /// the socket is listening.
    pub fn start(netns: &Netns, port: u16, name: &str, version: &str) -> Result<Self> {
        let state = Arc::new(State::new(name, version));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<u16>>();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread_state = Arc::clone(&state);
        let thread_netns = netns.clone();
        let thread = std::thread::Builder::new()
            .name(format!("backend-{}", state.id()))
            .spawn(move || {
                let setup = || -> Result<_> {
                    thread_netns.enter_current_thread()?;
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let listener = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                        .with_context(|| format!("binding port {port}"))?;
                    listener.set_nonblocking(true)?;
                    Ok((runtime, listener))
                };
                match setup() {
                    Ok((runtime, listener)) => {
                        let port = listener.local_addr().map(|a| a.port()).map_err(Into::into);
                        let _ = ready_tx.send(port);
                        runtime.block_on(serve(listener, thread_state, stop_rx));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .context("spawning a backend thread")?;
        let port = ready_rx
            .recv()
            .map_err(|_| anyhow!("backend thread ended before listening"))?
            .with_context(|| format!("starting backend {} in {}", state.id(), netns.name()))?;
        Ok(Self {
            state,
            addr: SocketAddr::from((netns.ip(), port)),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The namespace address and port to reach this backend at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn version(&self) -> &str {
        &self.state.version
    }

    /// `<name>-<version>`, the value of the `x-backend` response header.
    pub fn id(&self) -> String {
        self.state.id()
    }

    /// Requests received since start (or the last [`Backend::reset`]).
    pub fn request_count(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The most recent requests received (up to 1000), oldest first.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state.received()
    }

    /// Clears the request counter, the received log and the fail-first keys.
    pub fn reset(&self) {
        self.state.reset();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("strait-e2e: backend {} thread panicked", self.state.id());
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("strait-e2e: backend {}: {e}", state.id());
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move {
                            if ws::is_upgrade(&req) {
                                ws::accept(state, req).await
                            } else {
                                handler::handle(state, req).await
                            }
                        }
                    });
                    // Connection errors (client resets, Envoy closing idle
                    // connections) are part of normal test traffic.
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}
