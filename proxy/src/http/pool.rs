//! Upstream HTTP connection pools, one set per worker thread (a connection lives on the
//! worker that opened it, as in Envoy), keyed by cluster, host and protocol.
//!
//! - HTTP/1.1: a connection carries one request at a time; it goes back to the pool when
//!   its response has been read to the end, and is reused until the upstream closes it,
//!   `max_requests_per_connection` is reached or it has been idle for the cluster's
//!   `idle_timeout`.
//! - HTTP/2: one multiplexed connection per host, replaced when it closes or has carried
//!   `max_requests_per_connection` requests.
//!
//! Every connection holds a unit of the cluster's `max_connections` breaker and counts on
//! its host until it closes. A request that needs a new connection is pending (the
//! `max_pending_requests` breaker) while it connects or waits for a connection slot.
//! Idle connections are swept every second by a task on the worker.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Version};
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::cluster::{HttpProtocolOptions, UpstreamProtocol};
use crate::upstream::breaker::{BreakerGuard, CircuitBreakers, Resource};
use crate::upstream::host::RequestGuard;
use crate::upstream::{ClusterState, Host};

use super::body::{self, BoxError, ProxyBody};
use super::connect::connect;
use super::h2_upstream::{self, H2Sender};
use super::reset::AttemptError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    /// The protocol to speak to a cluster's hosts for a request that arrived as
    /// `downstream`.
    pub fn for_cluster(options: &HttpProtocolOptions, downstream: Version) -> Protocol {
        match options.protocol {
            UpstreamProtocol::Http1 => Protocol::Http1,
            UpstreamProtocol::Http2 => Protocol::Http2,
            UpstreamProtocol::UseDownstream if downstream == Version::HTTP_2 => Protocol::Http2,
            UpstreamProtocol::UseDownstream => Protocol::Http1,
        }
    }

    pub fn version(self) -> Version {
        match self {
            Protocol::Http1 => Version::HTTP_11,
            Protocol::Http2 => Version::HTTP_2,
        }
    }
}

/// Where one attempt goes.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub cluster: &'a Arc<ClusterState>,
    pub host: &'a Arc<Host>,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    cluster: Arc<str>,
    address: SocketAddr,
    protocol: Protocol,
}

impl Key {
    fn of(target: &Target<'_>) -> Key {
        Key {
            cluster: target.cluster.shared_name().clone(),
            address: target.host.address(),
            protocol: target.protocol,
        }
    }
}

struct IdleH1 {
    send: http1::SendRequest<ProxyBody>,
    since: Instant,
    served: u32,
    idle_timeout: Option<Duration>,
}

struct H2Conn {
    send: H2Sender,
    served: u32,
    streams: Arc<Streams>,
    idle_timeout: Option<Duration>,
}

#[derive(Debug)]
struct Streams {
    active: AtomicUsize,
    idle_since: Mutex<Instant>,
}

struct StreamGuard(Arc<Streams>);

/// What one attempt keeps until its response body is done: its unit of the cluster's
/// `max_requests` breaker, its host's active-request count, the retry breaker's unit
/// when it is a retry, and its place on an HTTP/2 connection. A struct rather than a
/// list of boxes, so an attempt allocates nothing for them.
pub struct AttemptHold {
    _request: BreakerGuard,
    _host: RequestGuard,
    _retry: Option<BreakerGuard>,
    stream: Option<StreamGuard>,
}

impl AttemptHold {
    pub fn new(request: BreakerGuard, host: RequestGuard, retry: Option<BreakerGuard>) -> Self {
        AttemptHold {
            _request: request,
            _host: host,
            _retry: retry,
            stream: None,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock() = Instant::now();
        }
    }
}

#[derive(Default)]
struct Pools {
    h1: HashMap<Key, Vec<IdleH1>>,
    h2: HashMap<Key, H2Slot>,
    sweeper: Option<JoinHandle<()>>,
}

impl Pools {
    /// Drops closed and expired connections; true when nothing is left.
    fn sweep(&mut self, now: Instant) -> bool {
        let expired = |since: Instant, timeout: Option<Duration>| {
            timeout.is_some_and(|t| now.saturating_duration_since(since) >= t)
        };
        self.h1.retain(|_, idle| {
            idle.retain(|c| !c.send.is_closed() && !expired(c.since, c.idle_timeout));
            !idle.is_empty()
        });
        self.h2.retain(|_, slot| match slot {
            H2Slot::Ready(c) => {
                let idle = c.streams.active.load(Ordering::Acquire) == 0
                    && expired(*c.streams.idle_since.lock(), c.idle_timeout);
                !c.send.is_closed() && !idle
            }
            H2Slot::Connecting(_) => true,
        });
        self.h1.is_empty() && self.h2.is_empty()
    }

    fn ensure_sweeper(&mut self) {
        if self.sweeper.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.sweeper = Some(tokio::spawn(sweep_loop()));
    }
}

thread_local! {
    static POOLS: RefCell<Pools> = RefCell::new(Pools::default());
}

const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

async fn sweep_loop() {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        if POOLS.with(|p| p.borrow_mut().sweep(Instant::now())) {
            return;
        }
    }
}

fn take_idle(key: &Key) -> Option<IdleH1> {
    POOLS.with(|p| {
        let mut pools = p.borrow_mut();
        // Most recently used first: its peer is least likely to have closed it. An
        // emptied list stays for the connection's return (the sweeper drops it later).
        pools.h1.get_mut(key)?.pop()
    })
}

fn put_idle(key: Key, conn: IdleH1) {
    // Nearly always nobody waits: skip the shared map then (it is on every request's path).
    let notify =
        (WAITING_FOR_CONNECTION.load(Ordering::Relaxed) > 0).then(|| notify_for(&key.cluster));
    POOLS.with(|p| {
        let mut pools = p.borrow_mut();
        pools.h1.entry(key).or_default().push(conn);
        pools.ensure_sweeper();
    });
    if let Some(notify) = notify {
        notify.notify_waiters();
    }
}

/// Requests (on any worker) parked in [`wait_for_connection`]. A wake-up missed between
/// the check and the park costs at most [`PENDING_RECHECK`]: waiters re-check on a timer.
static WAITING_FOR_CONNECTION: AtomicUsize = AtomicUsize::new(0);

/// Wakes requests waiting for a connection of a cluster (a connection went idle or closed).
fn notify_for(cluster: &str) -> Arc<Notify> {
    static NOTIFIES: OnceLock<Mutex<HashMap<String, Arc<Notify>>>> = OnceLock::new();
    let mut map = NOTIFIES.get_or_init(Default::default).lock();
    if let Some(n) = map.get(cluster) {
        return n.clone();
    }
    map.entry(cluster.to_string()).or_default().clone()
}

/// Idle HTTP/1.1 connections pooled on this thread.
pub fn idle_http1_connections() -> usize {
    POOLS.with(|p| p.borrow().h1.values().map(Vec::len).sum())
}

/// HTTP/2 connections pooled on this thread.
pub fn http2_connections() -> usize {
    POOLS.with(|p| p.borrow().h2.len())
}

/// Closes every pooled connection of this thread (tests, shutdown).
pub fn clear() {
    POOLS.with(|p| {
        let mut pools = p.borrow_mut();
        pools.h1.clear();
        pools.h2.clear();
    });
}

/// How long a pending request waits before checking again for a free slot, in case a
/// wake-up was missed.
const PENDING_RECHECK: Duration = Duration::from_millis(50);

/// Sends one request to `target`, reusing a pooled connection when there is one.
/// `hold` is kept alive until the response body is done (breaker and host guards).
pub async fn send(
    target: Target<'_>,
    request: Request<ProxyBody>,
    hold: AttemptHold,
) -> Result<Response<ProxyBody>, AttemptError> {
    match target.protocol {
        Protocol::Http1 => send_h1(target, request, hold).await,
        Protocol::Http2 => send_h2(target, request, hold).await,
    }
}

async fn send_h1(
    target: Target<'_>,
    mut request: Request<ProxyBody>,
    hold: AttemptHold,
) -> Result<Response<ProxyBody>, AttemptError> {
    let key = Key::of(&target);
    let options = &target.cluster.config().http;
    let breakers = target.cluster.breakers();
    let mut pending = None;
    loop {
        while let Some(mut idle) = take_idle(&key) {
            if idle.send.ready().await.is_err() {
                continue;
            }
            match idle.send.try_send_request(request).await {
                Ok(response) => {
                    let back = ReturnH1 {
                        key: key.clone(),
                        send: idle.send,
                        served: idle.served + 1,
                        max_requests: options.max_requests_per_connection,
                        idle_timeout: options.idle_timeout,
                    };
                    return Ok(wrap(response, Some(back), hold));
                }
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request went out: try another.
                    Some(r) => request = r,
                    None => return Err(AttemptError::send(&e.into_error(), true)),
                },
            }
        }
        if pending.is_none() {
            pending = Some(
                breakers
                    .try_acquire_pending_request()
                    .ok_or_else(AttemptError::overflow)?,
            );
        }
        let Some(slot) = connection_slot(breakers) else {
            wait_for_connection(&key.cluster).await;
            continue;
        };
        let mut send = open_h1(&target, slot).await?;
        drop(pending);
        return match send.try_send_request(request).await {
            Ok(response) => {
                let back = ReturnH1 {
                    key,
                    send,
                    served: 1,
                    max_requests: options.max_requests_per_connection,
                    idle_timeout: options.idle_timeout,
                };
                Ok(wrap(response, Some(back), hold))
            }
            Err(mut e) => {
                let sent = e.take_message().is_none();
                Err(AttemptError::send(&e.into_error(), sent))
            }
        };
    }
}

/// What an HTTP/2 pool slot holds: a connection, or a connection being opened (requests
/// arriving meanwhile wait for it instead of opening their own).
enum H2Slot {
    Ready(H2Conn),
    Connecting(Arc<Notify>),
}

/// Clears a `Connecting` slot if the request opening the connection gives up.
struct Connecting {
    key: Key,
    notify: Arc<Notify>,
}

impl Drop for Connecting {
    fn drop(&mut self) {
        POOLS.with(|p| {
            let mut pools = p.borrow_mut();
            if let Some(H2Slot::Connecting(n)) = pools.h2.get(&self.key)
                && Arc::ptr_eq(n, &self.notify)
            {
                pools.h2.remove(&self.key);
            }
        });
        self.notify.notify_waiters();
    }
}

enum H2State {
    Found(H2Sender, Arc<Streams>),
    Wait(Arc<Notify>),
    Open(Connecting),
}

async fn send_h2(
    target: Target<'_>,
    request: Request<ProxyBody>,
    mut hold: AttemptHold,
) -> Result<Response<ProxyBody>, AttemptError> {
    let key = Key::of(&target);
    let options = &target.cluster.config().http;
    let breakers = target.cluster.breakers();
    let mut pending = None;
    let (mut send, streams) = loop {
        let state = POOLS.with(|p| {
            let mut pools = p.borrow_mut();
            match pools.h2.get_mut(&key) {
                Some(H2Slot::Ready(conn))
                    if !conn.send.is_closed()
                        && options
                            .max_requests_per_connection
                            .is_none_or(|max| conn.served < max) =>
                {
                    conn.served += 1;
                    return H2State::Found(conn.send.clone(), conn.streams.clone());
                }
                Some(H2Slot::Connecting(n)) => return H2State::Wait(n.clone()),
                _ => {}
            }
            let notify = Arc::new(Notify::new());
            pools
                .h2
                .insert(key.clone(), H2Slot::Connecting(notify.clone()));
            H2State::Open(Connecting {
                key: key.clone(),
                notify,
            })
        });
        let connecting = match state {
            H2State::Found(send, streams) => break (send, streams),
            H2State::Wait(notify) => {
                if pending.is_none() {
                    pending = Some(
                        breakers
                            .try_acquire_pending_request()
                            .ok_or_else(AttemptError::overflow)?,
                    );
                }
                let _ = tokio::time::timeout(PENDING_RECHECK, notify.notified()).await;
                continue;
            }
            H2State::Open(connecting) => connecting,
        };
        if pending.is_none() {
            pending = Some(
                breakers
                    .try_acquire_pending_request()
                    .ok_or_else(AttemptError::overflow)?,
            );
        }
        let Some(slot) = connection_slot(breakers) else {
            drop(connecting);
            wait_for_connection(&key.cluster).await;
            continue;
        };
        let send = open_h2(&target, slot).await?;
        let streams = Arc::new(Streams {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        });
        POOLS.with(|p| {
            let mut pools = p.borrow_mut();
            pools.h2.insert(
                key.clone(),
                H2Slot::Ready(H2Conn {
                    send: send.clone(),
                    served: 1,
                    streams: streams.clone(),
                    idle_timeout: options.idle_timeout,
                }),
            );
            pools.ensure_sweeper();
        });
        drop(connecting);
        break (send, streams);
    };
    drop(pending);
    streams.active.fetch_add(1, Ordering::AcqRel);
    hold.stream = Some(StreamGuard(streams));
    if send.ready().await.is_err() {
        POOLS.with(|p| p.borrow_mut().h2.remove(&key));
        return Err(AttemptError::send_closed());
    }
    let response = h2_upstream::send(&mut send, request).await?;
    Ok(wrap(response, None, hold))
}

/// A unit of the connection breaker, or `None` (counted as an overflow) when the
/// cluster is at `max_connections`.
fn connection_slot(breakers: &Arc<CircuitBreakers>) -> Option<crate::upstream::BreakerGuard> {
    if breakers.can_acquire(Resource::Connections) {
        if let Some(g) = breakers.try_acquire_connection() {
            return Some(g);
        }
    } else {
        // Counts `upstream_cx_overflow`, as Envoy does when the pool cannot grow.
        let _ = breakers.try_acquire_connection();
    }
    None
}

async fn wait_for_connection(cluster: &str) {
    // Counted down on drop too: a request timeout may cancel the wait.
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            WAITING_FOR_CONNECTION.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let notify = notify_for(cluster);
    WAITING_FOR_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let _waiting = Waiting;
    let _ = tokio::time::timeout(PENDING_RECHECK, notify.notified()).await;
}

async fn tcp(target: &Target<'_>) -> Result<TokioIo<tokio::net::TcpStream>, AttemptError> {
    let config = target.cluster.config();
    let stream = connect(
        target.host.address(),
        config.connect_timeout,
        config.upstream_bind,
    )
    .await
    .map_err(|e| {
        target.cluster.report_outcome(
            target.host,
            crate::upstream::Outcome::ConnectFailed,
            Instant::now(),
        );
        AttemptError::connect(&e)
    })?;
    Ok(TokioIo::new(stream))
}

/// Runs a connection until it closes, holding its breaker unit and host count.
fn spawn_connection<F>(cluster: &str, conn: F, slot: crate::upstream::BreakerGuard, host: &Host)
where
    F: std::future::Future + Send + 'static,
{
    let host_guard = host.start_connection();
    let notify = notify_for(cluster);
    tokio::spawn(async move {
        let _ = conn.await;
        drop((slot, host_guard));
        notify.notify_waiters();
    });
}

async fn open_h1(
    target: &Target<'_>,
    slot: crate::upstream::BreakerGuard,
) -> Result<http1::SendRequest<ProxyBody>, AttemptError> {
    let io = tcp(target).await?;
    let (send, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| AttemptError::handshake(&e))?;
    spawn_connection(target.cluster.name(), conn, slot, target.host);
    Ok(send)
}

/// A fresh HTTP/1.1 connection that may be upgraded (WebSocket); never pooled.
pub async fn open_upgradable(
    target: &Target<'_>,
) -> Result<http1::SendRequest<ProxyBody>, AttemptError> {
    let slot = target
        .cluster
        .breakers()
        .try_acquire_connection()
        .ok_or_else(AttemptError::overflow)?;
    let io = tcp(target).await?;
    let (send, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| AttemptError::handshake(&e))?;
    spawn_connection(
        target.cluster.name(),
        conn.with_upgrades(),
        slot,
        target.host,
    );
    Ok(send)
}

async fn open_h2(
    target: &Target<'_>,
    slot: crate::upstream::BreakerGuard,
) -> Result<H2Sender, AttemptError> {
    let io = tcp(target).await?.into_inner();
    let (send, conn) = h2_upstream::handshake(io)
        .await
        .map_err(|e| AttemptError::handshake_h2(&e))?;
    spawn_connection(target.cluster.name(), conn, slot, target.host);
    Ok(send)
}

/// Puts an HTTP/1.1 connection back into its pool once its response is read.
struct ReturnH1 {
    key: Key,
    send: http1::SendRequest<ProxyBody>,
    served: u32,
    max_requests: Option<u32>,
    idle_timeout: Option<Duration>,
}

impl ReturnH1 {
    fn give_back(self) {
        if self.max_requests.is_some_and(|max| self.served >= max) || self.send.is_closed() {
            return;
        }
        put_idle(
            self.key,
            IdleH1 {
                send: self.send,
                since: Instant::now(),
                served: self.served,
                idle_timeout: self.idle_timeout,
            },
        );
    }
}

fn wrap<B>(response: Response<B>, back: Option<ReturnH1>, hold: AttemptHold) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, inner) = response.into_parts();
    let body = UpstreamBody {
        inner,
        back,
        ended: false,
        _hold: hold,
    };
    Response::from_parts(parts, body::boxed(body))
}

/// An upstream response body: returns its connection to the pool when read to the end;
/// dropped early, the connection closes instead (nothing else could read the rest).
struct UpstreamBody<B: Body> {
    inner: B,
    back: Option<ReturnH1>,
    ended: bool,
    _hold: AttemptHold,
}

impl<B: Body> Drop for UpstreamBody<B> {
    fn drop(&mut self) {
        if (self.ended || self.inner.is_end_stream())
            && let Some(back) = self.back.take()
        {
            back.give_back();
        }
    }
}

impl<B> Body for UpstreamBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        if self.ended
            && let Some(back) = self.back.take()
        {
            back.give_back();
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_follows_the_cluster_or_the_client() {
        let mut o = HttpProtocolOptions::default();
        assert_eq!(Protocol::for_cluster(&o, Version::HTTP_2), Protocol::Http1);
        o.protocol = UpstreamProtocol::Http2;
        assert_eq!(Protocol::for_cluster(&o, Version::HTTP_11), Protocol::Http2);
        o.protocol = UpstreamProtocol::UseDownstream;
        assert_eq!(Protocol::for_cluster(&o, Version::HTTP_2), Protocol::Http2);
        assert_eq!(Protocol::for_cluster(&o, Version::HTTP_11), Protocol::Http1);
    }
}
