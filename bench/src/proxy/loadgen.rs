//! The load generator: hyper clients on keep-alive connections, driven on one thread.
//!
//! - **Closed loop** (maximum throughput): every lane (an HTTP/1.1 connection, or one of
//!   an HTTP/2 connection's concurrent streams) sends its next request as soon as the
//!   previous response has been read.
//! - **Open loop** (latency at a fixed rate): requests are due on a fixed schedule,
//!   spread evenly over the lanes (as wrk2 does). Latency is measured from when a
//!   request was *due*, not from when it could be sent, whenever its lane was still busy
//!   with an earlier response; so a stall counts against every request it delays
//!   (no coordinated omission). When the lane was idle, the clock starts at the actual
//!   send instead, so the 1 ms granularity of the timer that wakes the lane is not
//!   charged to the proxies.
//!
//! Counting and CPU sampling cover the same window: after a warm-up, the completed
//! count and each probed process's CPU time are read at the window's start and end.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::cpu::CoreTimes;
use super::histogram::Histogram;
use crate::procstat;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    Http2,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// As fast as the lanes go.
    Closed,
    /// `rate` requests per second in total.
    Open { rate: f64 },
}

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub protocol: Protocol,
    pub connections: usize,
    /// Concurrent requests per connection; HTTP/1.1 always has 1.
    pub streams: usize,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    /// `Host` / `:authority`.
    pub authority: String,
    pub path: String,
    pub request_timeout: Duration,
}

impl LoadSpec {
    pub fn lanes(&self) -> usize {
        let streams = match self.protocol {
            Protocol::Http1 => 1,
            Protocol::Http2 => self.streams.max(1),
        };
        self.connections.max(1) * streams
    }
}

#[derive(Clone, Debug)]
pub struct LoadResult {
    /// Responses `200` completed inside the window.
    pub requests: u64,
    /// Failed requests (status other than 200, reset, timeout) over the whole run.
    pub errors: u64,
    /// Open loop: requests that were due while their lane was still busy.
    pub late: u64,
    pub window: Duration,
    /// Nanoseconds. Closed loop: requests completed inside the window; open loop:
    /// requests due inside it.
    pub latency: Histogram,
    /// CPU time each probed process used during the window, in probe order.
    pub cpu: Vec<Duration>,
    /// This process (load generator, upstream server) during the window.
    pub own_cpu: Duration,
    /// Each core's busy share during the window, whoever ran there (0..=1).
    pub core_busy: Vec<f64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            // Request counts stay far below 2^52.
            #[allow(clippy::cast_precision_loss)]
            let n = self.requests as f64;
            n / secs
        } else {
            0.0
        }
    }
}

/// Opens a new TCP connection to the target (for the bench: inside the client's
/// network namespace, towards the service VIP the sidecar captures).
pub type Connector = Arc<dyn Fn() -> io::Result<std::net::TcpStream> + Send + Sync>;

/// Runs `spec` to completion on the calling thread (it builds its own runtime, so
/// call it from a plain thread, not from inside another runtime), sampling the CPU
/// time of the processes `probes`.
pub fn run(spec: &LoadSpec, connect: Connector, probes: &[u32]) -> anyhow::Result<LoadResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(drive(spec.clone(), connect, probes.to_vec()))
}

/// One request over a fresh connection; returns the status. For readiness checks.
pub fn probe(
    protocol: Protocol,
    connect: Connector,
    authority: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let target = Target::new(authority, path)?;
    rt.block_on(async move {
        tokio::time::timeout(timeout, async {
            let mut conn = Conn::open(protocol, &connect).await?;
            conn.request(&target).await
        })
        .await
        .context("probe timed out")?
    })
}

#[derive(Clone)]
struct Target {
    authority: http::HeaderValue,
    path: Uri,
    absolute: Uri,
}

impl Target {
    fn new(authority: &str, path: &str) -> anyhow::Result<Target> {
        Ok(Target {
            authority: authority.parse()?,
            path: path.parse()?,
            absolute: format!("http://{authority}{path}").parse()?,
        })
    }
}

enum Conn {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Conn {
    async fn open(protocol: Protocol, connect: &Connector) -> anyhow::Result<Conn> {
        let std = connect().context("connecting")?;
        std.set_nonblocking(true)?;
        std.set_nodelay(true)?;
        let io = TokioIo::new(tokio::net::TcpStream::from_std(std)?);
        Ok(match protocol {
            Protocol::Http1 => {
                let (send, conn) = http1::handshake(io).await?;
                tokio::spawn(conn);
                Conn::H1(send)
            }
            Protocol::Http2 => {
                let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Conn::H2(send)
            }
        })
    }

    fn share(&self) -> Option<Conn> {
        match self {
            Conn::H1(_) => None,
            Conn::H2(s) => Some(Conn::H2(s.clone())),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Conn::H1(s) => s.is_closed(),
            Conn::H2(s) => s.is_closed(),
        }
    }

    /// Sends one GET, reads the whole response; returns its status.
    async fn request(&mut self, target: &Target) -> anyhow::Result<u16> {
        let response = match self {
            Conn::H1(s) => {
                s.ready().await?;
                let req = Request::get(target.path.clone())
                    .header(header::HOST, target.authority.clone())
                    .body(Empty::new())?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                let req = Request::get(target.absolute.clone()).body(Empty::new())?;
                s.send_request(req).await?
            }
        };
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame?;
        }
        Ok(status)
    }
}

#[derive(Default)]
struct Shared {
    completed: AtomicU64,
    errors: AtomicU64,
    late: AtomicU64,
}

/// One lane's schedule.
#[derive(Clone)]
struct Plan {
    mode: Mode,
    /// Lane index and lane count (open loop: lane i sends requests i, i+n, i+2n, …).
    index: usize,
    lanes: usize,
    start: Instant,
    window_start: Instant,
    end: Instant,
    timeout: Duration,
}

impl Plan {
    /// When request `k` of this lane is due (open loop).
    fn due(&self, rate: f64, k: u64) -> Instant {
        // Both factors stay far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        let n = (self.index as f64) + (k as f64) * (self.lanes as f64);
        self.start + Duration::from_secs_f64(n / rate)
    }
}

async fn drive(spec: LoadSpec, connect: Connector, probes: Vec<u32>) -> anyhow::Result<LoadResult> {
    if let Mode::Open { rate } = spec.mode
        && !(rate > 0.0 && rate.is_finite())
    {
        bail!("open-loop rate must be positive, got {rate}");
    }
    let target = Target::new(&spec.authority, &spec.path)?;
    let lanes = spec.lanes();
    let mut conns = Vec::with_capacity(lanes);
    for _ in 0..spec.connections.max(1) {
        let conn = Conn::open(spec.protocol, &connect).await?;
        for _ in 1..(lanes / spec.connections.max(1)) {
            if let Some(shared) = conn.share() {
                conns.push(shared);
            }
        }
        conns.push(conn);
    }
    let ticks = procstat::clock_ticks();
    let start = Instant::now() + Duration::from_millis(5);
    let window_start = start + spec.warmup;
    let end = window_start + spec.duration;
    let shared = Arc::new(Shared::default());
    let mut handles = Vec::with_capacity(lanes);
    for (index, conn) in conns.into_iter().enumerate() {
        let plan = Plan {
            mode: spec.mode,
            index,
            lanes,
            start,
            window_start,
            end,
            timeout: spec.request_timeout,
        };
        handles.push(tokio::spawn(lane(
            conn,
            spec.protocol,
            connect.clone(),
            target.clone(),
            plan,
            shared.clone(),
        )));
    }

    type Sample = (Instant, u64, Vec<Duration>, Duration, CoreTimes);
    let sample = |probes: &[u32]| -> anyhow::Result<Sample> {
        let cores = CoreTimes::read();
        let cpu = probes
            .iter()
            .map(|&pid| procstat::read(pid, ticks).map(|u| u.cpu))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let own = procstat::read(std::process::id(), ticks)?.cpu;
        Ok((
            Instant::now(),
            shared.completed.load(Ordering::Relaxed),
            cpu,
            own,
            cores,
        ))
    };
    tokio::time::sleep_until(window_start.into()).await;
    let (t1, n1, cpu1, own1, cores1) = sample(&probes)?;
    tokio::time::sleep_until(end.into()).await;
    let (t2, n2, cpu2, own2, cores2) = sample(&probes)?;

    let mut latency = Histogram::new();
    for h in handles {
        latency.merge(&h.await?);
    }
    Ok(LoadResult {
        requests: n2 - n1,
        errors: shared.errors.load(Ordering::Relaxed),
        late: shared.late.load(Ordering::Relaxed),
        window: t2 - t1,
        latency,
        cpu: cpu2
            .iter()
            .zip(&cpu1)
            .map(|(b, a)| b.saturating_sub(*a))
            .collect(),
        own_cpu: own2.saturating_sub(own1),
        core_busy: cores1.busy_until(&cores2),
    })
}

async fn lane(
    mut conn: Conn,
    protocol: Protocol,
    connect: Connector,
    target: Target,
    plan: Plan,
    shared: Arc<Shared>,
) -> Histogram {
    let mut hist = Histogram::new();
    let mut k = 0u64;
    loop {
        let (began, counted) = match plan.mode {
            Mode::Closed => {
                let now = Instant::now();
                if now >= plan.end {
                    break;
                }
                (now, None)
            }
            Mode::Open { rate } => {
                let due = plan.due(rate, k);
                k += 1;
                if due >= plan.end {
                    break;
                }
                let now = Instant::now();
                let began = if now < due {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                } else {
                    // Still busy when this request was due: the wait is latency.
                    shared.late.fetch_add(1, Ordering::Relaxed);
                    due
                };
                (began, Some(due >= plan.window_start))
            }
        };
        let outcome = tokio::time::timeout(plan.timeout, conn.request(&target)).await;
        let done = Instant::now();
        match outcome {
            Ok(Ok(200)) => {
                shared.completed.fetch_add(1, Ordering::Relaxed);
                let in_window = counted.unwrap_or(done >= plan.window_start && done <= plan.end);
                if in_window {
                    hist.record_duration(done - began);
                }
            }
            _ => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if conn.is_closed() || outcome.is_err() {
                    // HTTP/1.1 lanes own their connection and can replace it; an
                    // HTTP/2 stream whose connection died stops.
                    if protocol == Protocol::Http2 {
                        break;
                    }
                    match Conn::open(protocol, &connect).await {
                        Ok(c) => conn = c,
                        Err(_) => break,
                    }
                }
            }
        }
    }
    hist
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream::Upstream;

    fn loopback_upstream() -> (Upstream, Connector) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up = Upstream::start(vec![l], 64).unwrap();
        let addr = up.addrs()[0];
        (up, Arc::new(move || std::net::TcpStream::connect(addr)))
    }

    fn spec(protocol: Protocol, mode: Mode) -> LoadSpec {
        LoadSpec {
            protocol,
            connections: 2,
            streams: 3,
            mode,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(400),
            authority: "upstream.test".into(),
            path: "/".into(),
            request_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn closed_loop_counts_what_the_server_answered() {
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let (up, connect) = loopback_upstream();
            let r = run(
                &spec(protocol, Mode::Closed),
                connect,
                &[std::process::id()],
            )
            .unwrap();
            let served = up.counters().requests.load(Ordering::Relaxed);
            assert_eq!(r.errors, 0, "{protocol:?}");
            assert!(r.requests > 50, "{protocol:?}: {}", r.requests);
            // The window is a part of the run; the server saw all of it.
            assert!(
                r.requests < served,
                "{protocol:?}: {} vs {served}",
                r.requests
            );
            // Latencies are kept for responses inside the window, whose edges are
            // read a moment apart from the count's.
            assert!(
                r.latency.count().abs_diff(r.requests) * 50 < r.requests,
                "{protocol:?}: {} vs {}",
                r.latency.count(),
                r.requests
            );
            assert!(r.window >= Duration::from_millis(390));
            assert_eq!(r.cpu.len(), 1);
            let expected_conns = 2;
            assert_eq!(
                up.counters().connections.load(Ordering::Relaxed),
                expected_conns,
                "{protocol:?}: keep-alive connections are reused"
            );
        }
    }

    #[test]
    fn open_loop_keeps_the_rate() {
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let (_up, connect) = loopback_upstream();
            let r = run(&spec(protocol, Mode::Open { rate: 500.0 }), connect, &[]).unwrap();
            assert_eq!(r.errors, 0);
            // 500/s over a 400 ms window: 200 requests, give or take the edges.
            assert!(
                (180..=220).contains(&r.requests),
                "{protocol:?}: {}",
                r.requests
            );
            assert!(
                (195..=205).contains(&r.latency.count()),
                "{protocol:?}: {}",
                r.latency.count()
            );
            // A loopback round trip is far below the 6 ms between a lane's requests.
            assert!(
                r.latency.quantile(0.5) < 5_000_000,
                "{}",
                r.latency.quantile(0.5)
            );
        }
    }

    #[test]
    fn a_stalled_server_shows_in_open_loop_latency() {
        // A server that answers only after 50 ms: with one lane at 100/s, every
        // request waits for the one before it, and latency grows with the backlog.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let mut s = spec(Protocol::Http1, Mode::Open { rate: 100.0 });
        s.connections = 1;
        s.warmup = Duration::ZERO;
        let r = run(
            &s,
            Arc::new(move || std::net::TcpStream::connect(addr)),
            &[],
        )
        .unwrap();
        assert!(r.late > 0);
        // A send-to-receive clock would show 50 ms for every request; measured from
        // when each was due, the last ones waited for the whole backlog.
        assert!(r.latency.max() > 150_000_000, "{}", r.latency.max());
        assert!(r.latency.min() >= 50_000_000);
    }

    #[test]
    fn probe_reports_the_status() {
        let (_up, connect) = loopback_upstream();
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let status = probe(
                protocol,
                connect.clone(),
                "upstream.test",
                "/",
                Duration::from_secs(5),
            )
            .unwrap();
            assert_eq!(status, 200);
        }
    }
}
