//! Plain TCP test servers in a namespace: an echo server that speaks first (a greeting
//! line naming itself), and a raw HTTP/1.1 server that misbehaves on request (resets or
//! closes before or in the middle of its response) for the proxies' failure paths.
//!
//! Like [`super::Backend`], each runs on a thread of its own, in the namespace, with a
//! private single-threaded runtime, and stops on drop.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::netns::Netns;

/// A server task on its own thread inside a namespace; stopped on drop.
#[derive(Debug)]
pub(crate) struct ServerThread {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `0.0.0.0:<port>` in `netns` (0 picks a port) and runs `serve(listener, stop)`
    /// there. Returns once the socket is listening.
    pub(crate) fn spawn<F, Fut>(netns: &Netns, port: u16, label: &str, serve: F) -> Result<Self>
    where
        F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<u16>>();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread_netns = netns.clone();
        let thread = std::thread::Builder::new()
            .name(format!("server-{label}"))
            .spawn(move || {
                let setup = || -> Result<_> {
                    thread_netns.enter_current_thread()?;
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let listener = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                        .with_context(|| format!("binding port {port}"))?;
                    listener.set_nonblocking(true)?;
                    let port = listener.local_addr()?.port();
                    let listener = {
                        let _guard = runtime.enter();
                        TcpListener::from_std(listener)?
                    };
                    Ok((runtime, listener, port))
                };
                match setup() {
                    Ok((runtime, listener, port)) => {
                        let _ = ready_tx.send(Ok(port));
                        runtime.block_on(serve(listener, stop_rx));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .context("spawning a server thread")?;
        let port = ready_rx
            .recv()
            .map_err(|_| anyhow!("server thread ended before listening"))?
            .with_context(|| format!("starting {label} in {}", netns.name()))?;
        Ok(Self {
            addr: SocketAddr::from((netns.ip(), port)),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("strait-e2e: a server thread panicked");
        }
    }
}

/// Accepts connections until stopped, each handled by `handle` on its own task.
async fn accept_loop<F, Fut>(listener: TcpListener, mut stop: oneshot::Receiver<()>, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    // Connection tasks must not outlive the server (a held connection would keep its
    // peer waiting after the test dropped the server).
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tasks.spawn_local(handle(stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// How a [`TcpServer`] treats its connections.
#[derive(Debug, Clone)]
pub enum TcpMode {
    /// Sends `<greeting>\n` at once, then echoes every byte until the client half-closes,
    /// then half-closes too.
    Echo { greeting: String },
    /// A raw HTTP/1.1 server whose answer depends on the request path:
    /// `/reset-before` resets the connection without answering, `/close-before` closes
    /// it without answering, `/reset-mid` sends the head and part of the body then
    /// resets; anything else gets `200 ok` (keep-alive). Every response carries
    /// `x-backend: <name>`.
    FlakyHttp { name: String },
}

/// A raw TCP server (see [`TcpMode`]).
#[derive(Debug)]
pub struct TcpServer {
    server: ServerThread,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl TcpServer {
    /// Starts the server in `netns` on `port` (0 picks one).
    pub fn start(netns: &Netns, port: u16, mode: TcpMode) -> Result<Self> {
        let connections = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        let server = ServerThread::spawn(netns, port, "tcp", move |listener, stop| async move {
            let local = tokio::task::LocalSet::new();
            local
                .run_until(accept_loop(listener, stop, move |stream| {
                    c.fetch_add(1, Ordering::SeqCst);
                    let mode = mode.clone();
                    let requests = r.clone();
                    async move {
                        let _ = match mode {
                            TcpMode::Echo { greeting } => echo(stream, &greeting).await,
                            TcpMode::FlakyHttp { name } => {
                                flaky_http(stream, &name, &requests).await
                            }
                        };
                    }
                }))
                .await;
        })?;
        Ok(Self {
            server,
            connections,
            requests,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// HTTP requests read so far ([`TcpMode::FlakyHttp`]).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn echo(mut stream: TcpStream, greeting: &str) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.write_all(format!("{greeting}\n").as_bytes()).await?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Reads one request head; `None` at end of stream or when the head is not HTTP.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<String>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let path = head
                .lines()
                .next()
                .and_then(|line| line.split_whitespace().nth(1))
                .map(str::to_owned);
            return Ok(path);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn flaky_http(
    mut stream: TcpStream,
    name: &str,
    requests: &AtomicU64,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    // Requests have no bodies here: the head is the whole request.
    while let Some(path) = read_head(&mut stream, &mut buf).await? {
        requests.fetch_add(1, Ordering::SeqCst);
        match path.as_str() {
            "/reset-before" => return stream.set_zero_linger(),
            "/close-before" => return stream.shutdown().await,
            "/reset-mid" => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\nx-backend: {name}\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(b"0123456789").await?;
                stream.flush().await?;
                // Lets the head and first bytes reach the proxy before the reset does.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return stream.set_zero_linger();
            }
            _ => {
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nx-backend: {name}\r\n\r\nok"
                );
                stream.write_all(response.as_bytes()).await?;
            }
        }
    }
    Ok(())
}
