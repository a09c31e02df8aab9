//! The HTTP connection manager's connections: choose the codec (HTTP/1.1 on hyper, or
//! HTTP/2 by prior knowledge on `h2`), apply the HCM's limits and timers, and close the
//! connection when it has been idle (no active stream) for the HCM's `idle_timeout`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::config::listener::{CodecType, HttpConnectionManager};
use crate::listener::connection::{BoxFuture, ChainContext, HttpHandler};
use crate::router::RouterOptions;
use crate::router::downstream::DownstreamConfig;
use crate::stats::Counter;
use crate::telemetry::{self, DrainWatch};
use crate::upstream::ClusterManager;

use super::body::{BoxError, ProxyBody};
use super::coalesce::CoalescingIo;
use super::h2_downstream::H2Connection;
use super::observer::{RequestInfo, RequestObserver};
use super::routes::RouteTable;
use super::stream::{self, ConnCtx, Shared};

/// The HTTP connection manager: serves connections whose filter chain ends in an HCM.
#[derive(Clone)]
pub struct HttpService {
    shared: Arc<Shared>,
}

impl HttpService {
    pub fn new(routes: RouteTable, clusters: Arc<ClusterManager>) -> HttpService {
        HttpService {
            shared: Arc::new(Shared {
                routes,
                clusters,
                observer: None,
                active_faults: Arc::new(AtomicU32::new(0)),
            }),
        }
    }

    /// Reports every finished request to `observer` (access logs, stats).
    pub fn with_observer(self, observer: Arc<dyn RequestObserver>) -> HttpService {
        HttpService {
            shared: Arc::new(Shared {
                routes: self.shared.routes.clone(),
                clusters: self.shared.clusters.clone(),
                observer: Some(observer),
                active_faults: self.shared.active_faults.clone(),
            }),
        }
    }

    pub fn routes(&self) -> &RouteTable {
        &self.shared.routes
    }

    /// Serves one downstream connection until it closes.
    pub async fn serve_connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        destination: SocketAddr,
        hcm: Arc<HttpConnectionManager>,
    ) {
        let chain = ChainContext::default();
        serve(self.shared.clone(), stream, peer, destination, hcm, chain).await;
    }
}

impl HttpHandler for HttpService {
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        destination: SocketAddr,
        hcm: Arc<HttpConnectionManager>,
        chain: ChainContext,
    ) -> BoxFuture {
        Box::pin(serve(
            self.shared.clone(),
            stream,
            peer,
            destination,
            hcm,
            chain,
        ))
    }
}

/// Reports to two observers (the chain's telemetry and one set on the service).
struct Both(Arc<dyn RequestObserver>, Arc<dyn RequestObserver>);

impl RequestObserver for Both {
    fn on_request_start(&self, version: http::Version) {
        self.0.on_request_start(version);
        self.1.on_request_start(version);
    }

    fn wants_headers(&self) -> bool {
        self.0.wants_headers() || self.1.wants_headers()
    }

    fn on_request_done(&self, info: &RequestInfo) {
        self.0.on_request_done(info);
        self.1.on_request_done(info);
    }
}

/// The service's shared parts with the chain's telemetry as the observer.
fn observed(shared: Arc<Shared>, chain: Option<&Arc<telemetry::HcmTelemetry>>) -> Arc<Shared> {
    let Some(chain) = chain else {
        return shared;
    };
    let chain: Arc<dyn RequestObserver> = chain.clone();
    let observer = match &shared.observer {
        Some(own) => Arc::new(Both(chain, own.clone())),
        None => chain,
    };
    Arc::new(Shared {
        routes: shared.routes.clone(),
        clusters: shared.clusters.clone(),
        observer: Some(observer),
        active_faults: shared.active_faults.clone(),
    })
}

/// Streams in flight on a connection, and since when there have been none.
#[derive(Debug)]
pub struct ActiveStreams {
    active: AtomicUsize,
    idle_since: Mutex<Instant>,
}

/// One stream in flight until dropped.
pub struct StreamTicket(Arc<ActiveStreams>);

impl Drop for StreamTicket {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock() = Instant::now();
        }
    }
}

impl ActiveStreams {
    fn new() -> Arc<ActiveStreams> {
        Arc::new(ActiveStreams {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    pub fn start(self: &Arc<Self>) -> StreamTicket {
        self.active.fetch_add(1, Ordering::AcqRel);
        StreamTicket(self.clone())
    }

    /// Resolves once no stream has been active for `idle` (never when `None`).
    ///
    /// Nothing wakes it when a stream starts or ends: it looks again when its timer
    /// fires, at most `idle` later than it could have known. A keep-alive connection
    /// then costs no timer or wake-up per request.
    async fn idle_for(&self, idle: Option<Duration>) {
        let Some(idle) = idle else {
            return std::future::pending().await;
        };
        loop {
            let now = Instant::now();
            let deadline = if self.active.load(Ordering::Acquire) == 0 {
                let deadline = *self.idle_since.lock() + idle;
                if deadline <= now {
                    return;
                }
                deadline
            } else {
                now + idle
            };
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The downstream socket, counting the bytes that cross it
/// (`downstream_cx_rx_bytes_total`, `downstream_cx_tx_bytes_total`).
struct Counted {
    inner: TcpStream,
    rx: Option<Counter>,
    tx: Option<Counter>,
}

fn add(counter: &Option<Counter>, n: usize) {
    if let Some(c) = counter {
        c.add(n as u64);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            add(&self.rx, buf.filled().len() - before);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled {
            add(&self.tx, *n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            add(&self.tx, *n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Http1,
    Http2,
}

/// Tells HTTP/2 prior knowledge from HTTP/1 by the connection preface, without
/// consuming it. `None` when the client closed or sent nothing in time.
async fn sniff(stream: &TcpStream, timeout: Option<Duration>) -> Option<Codec> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut buf = [0u8; 24];
    loop {
        let peek = stream.peek(&mut buf);
        let n = match deadline {
            Some(d) => tokio::time::timeout_at(d, peek).await.ok()?.ok()?,
            None => peek.await.ok()?,
        };
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(Codec::Http1);
        }
        if n == H2_PREFACE.len() {
            return Some(Codec::Http2);
        }
        // A prefix of the preface: wait for more bytes.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// hyper's HTTP/1 read buffer must hold the largest allowed request head.
fn h1_buffer(max_header_bytes: usize) -> usize {
    const HYPER_DEFAULT: usize = 8192 + 4096 * 100;
    HYPER_DEFAULT.max(max_header_bytes + 8192)
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs a connection until it ends: after `idle` without streams it is closed (at once
/// when `$goaway` is false, as HTTP/1 has nothing to announce it with; else gracefully);
/// on a drain, HTTP/2 connections get a GOAWAY (`$goaway`) while HTTP/1 responses carry
/// `connection: close` (see `serve`); whatever is left goes at the drain deadline.
macro_rules! drive {
    ($conn:expr, $c:ident => $shutdown:expr, $streams:expr, $idle:expr, $drain:expr, $goaway:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        let mut drain: DrainWatch = $drain;
        let mut shutting_down = false;
        let mut hard_stop: Option<Instant> = None;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(error = %e, "downstream connection ended with an error");
                    }
                    break;
                }
                _ = $streams.idle_for($idle), if !shutting_down => {
                    debug!("downstream connection idle; closing");
                    if !$goaway {
                        break;
                    }
                    shutting_down = true;
                    let $c = conn.as_mut();
                    $shutdown;
                }
                deadline = drain.started(), if hard_stop.is_none() => {
                    hard_stop = Some(deadline);
                    if $goaway && !shutting_down {
                        shutting_down = true;
                        let $c = conn.as_mut();
                        $shutdown;
                    }
                }
                _ = sleep_until_some(hard_stop), if hard_stop.is_some() => {
                    debug!("drain deadline; closing the downstream connection");
                    break;
                }
            }
        }
    }};
}

/// Envoy's default `server_header_transformation` (OVERWRITE) writes this on every
/// response; made once per connection rather than per response.
fn server_header(hcm: &HttpConnectionManager) -> http::HeaderValue {
    match hcm.server_name.as_deref() {
        None | Some("envoy") => http::HeaderValue::from_static("envoy"),
        Some(name) => http::HeaderValue::from_str(name)
            .unwrap_or_else(|_| http::HeaderValue::from_static("envoy")),
    }
}

/// One request on a connection, start to response (the body still streams).
async fn respond<B>(
    ctx: Arc<ConnCtx>,
    drain: Arc<DrainWatch>,
    request: http::Request<B>,
) -> http::Response<ProxyBody>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let version = request.version();
    // Here, not before the future is first polled: a request reported started is then
    // always reported done (the stream creates its report at once).
    if let Some(observer) = &ctx.shared.observer {
        observer.on_request_start(version);
    }
    let mut response = stream::handle(ctx, request).await;
    if version != http::Version::HTTP_2
        && drain.deadline().is_some()
        && response.status() != http::StatusCode::SWITCHING_PROTOCOLS
    {
        // Envoy's drain for HTTP/1: the next response ends the connection.
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    destination: SocketAddr,
    hcm: Arc<HttpConnectionManager>,
    chain: ChainContext,
) {
    let _ = stream.set_nodelay(true);
    let mut counted = chain.telemetry.as_ref().map(|t| t.connection());
    let shared = observed(shared, chain.telemetry.as_ref());
    // Envoy has no default header timeout; the stream idle timeout, else the connection
    // idle timeout, bounds a client that never finishes its headers. (hyper also applies
    // it between keep-alive requests, where the connection idle timeout would.)
    let header_timeout = hcm
        .request_headers_timeout
        .or(hcm.stream_idle_timeout)
        .or(hcm.idle_timeout);
    let codec = match hcm.codec_type {
        CodecType::Http1 => Codec::Http1,
        CodecType::Http2 => Codec::Http2,
        CodecType::Auto => match sniff(&stream, header_timeout).await {
            Some(c) => c,
            None => return,
        },
    };
    if let Some(c) = &mut counted {
        c.set_codec(match codec {
            Codec::Http1 => telemetry::Codec::Http1,
            Codec::Http2 => telemetry::Codec::Http2,
        });
    }
    let streams = ActiveStreams::new();
    let ctx = Arc::new(ConnCtx {
        shared,
        downstream: DownstreamConfig::from_hcm(&hcm),
        router: RouterOptions::for_hcm(&hcm),
        hcm: hcm.clone(),
        peer,
        destination,
        streams: streams.clone(),
        server_header: server_header(&hcm),
    });
    let drain = Arc::new(chain.drain);
    let max_header_bytes = usize::try_from(hcm.max_request_headers_kb)
        .unwrap_or(usize::MAX / 2048)
        .saturating_mul(1024);
    let (rx, tx) = match &chain.telemetry {
        Some(t) => {
            let c = &t.stats().counters;
            (
                Some(c.downstream_cx_rx_bytes_total.clone()),
                Some(c.downstream_cx_tx_bytes_total.clone()),
            )
        }
        None => (None, None),
    };
    match codec {
        Codec::Http1 => {
            let io = TokioIo::new(Counted {
                inner: stream,
                rx,
                tx,
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            // No hyper timer: its header timeout arms a boxed timer for every request.
            // No stream is active while a head is awaited (between keep-alive requests
            // too), so the connection's idle timer, set to the header timeout, closes a
            // client that stalls in its headers.
            builder
                .keep_alive(true)
                .max_header_size(max_header_bytes)
                .max_buf_size(h1_buffer(max_header_bytes));
            drive!(
                builder
                    .serve_connection(
                        io,
                        // Boxed: inline, hyper moves the whole request future into its
                        // dispatcher on every request, which measured no cheaper.
                        service_fn(|request| {
                            let responding = respond(ctx.clone(), drain.clone(), request);
                            Box::pin(async move { Ok::<_, Infallible>(responding.await) })
                        }),
                    )
                    .with_upgrades(),
                c => c.graceful_shutdown(),
                streams,
                earliest(hcm.idle_timeout, header_timeout),
                (*drain).clone(),
                false
            );
        }
        Codec::Http2 => {
            let (io, flusher) = CoalescingIo::new(stream, rx, tx);
            let drain_for_streams = drain.clone();
            let max_header_list = u32::try_from(max_header_bytes).unwrap_or(u32::MAX);
            let connection = H2Connection::new(io, max_header_list, move |request| {
                respond(ctx.clone(), drain_for_streams.clone(), request)
            });
            drive!(
                flusher.drive(connection),
                c => c.get_mut().connection().get_mut().graceful_shutdown(),
                streams,
                hcm.idle_timeout,
                (*drain).clone(),
                true
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::tcp_pair as pair;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn sniffing_tells_h2_prior_knowledge_from_http1() {
        let (mut c, s) = pair().await;
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(sniff(&s, None).await, Some(Codec::Http1));

        let (mut c, s) = pair().await;
        c.write_all(&H2_PREFACE[..10]).await.unwrap();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.write_all(&H2_PREFACE[10..]).await.unwrap();
            c
        });
        assert_eq!(sniff(&s, None).await, Some(Codec::Http2));
        drop(later.await.unwrap());

        let (c, s) = pair().await;
        drop(c);
        assert_eq!(sniff(&s, None).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_noticed_after_the_last_stream() {
        let streams = ActiveStreams::new();
        let ticket = streams.start();
        let start = Instant::now();
        let s = streams.clone();
        let waiter = tokio::spawn(async move {
            s.idle_for(Some(Duration::from_secs(10))).await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(ticket);
        let done = waiter.await.unwrap();
        assert_eq!(done - start, Duration::from_secs(40));
    }
}
