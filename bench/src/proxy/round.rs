//! One kind of sidecar, one round: start a stage, read memory at rest, run every load,
//! then give pilot-discovery the 1000-service mesh and read memory again.

use std::time::Duration;

use super::config::{self, HTTP1_PORT, HTTP2_PORT};
use super::loadgen::{self, LoadResult, LoadSpec, Mode, Protocol};
use super::memory::{self, Memory};
use super::stage::{Binaries, ConfigChange, Kind, Stage, StageOptions};
use crate::mesh::Scenario;

/// The four loads, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Load {
    MaxHttp1,
    MaxHttp2,
    RateHttp1,
    RateHttp2,
}

impl Load {
    pub const ALL: [Load; 4] = [
        Load::MaxHttp1,
        Load::MaxHttp2,
        Load::RateHttp1,
        Load::RateHttp2,
    ];

    pub fn from_key(key: &str) -> Option<Load> {
        Load::ALL.into_iter().find(|l| l.key() == key)
    }

    pub fn key(self) -> &'static str {
        match self {
            Load::MaxHttp1 => "max_http1",
            Load::MaxHttp2 => "max_http2",
            Load::RateHttp1 => "rate_http1",
            Load::RateHttp2 => "rate_http2",
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            Load::MaxHttp1 | Load::RateHttp1 => Protocol::Http1,
            Load::MaxHttp2 | Load::RateHttp2 => Protocol::Http2,
        }
    }

    pub fn is_closed(self) -> bool {
        matches!(self, Load::MaxHttp1 | Load::MaxHttp2)
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub http1_connections: usize,
    pub http2_connections: usize,
    pub http2_streams: usize,
    /// Requests per second for the latency loads.
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Quiet time before each memory reading.
    pub settle: Duration,
    /// The loads to run (all by default), in [`Load::ALL`] order.
    pub loads: Vec<Load>,
    /// The mesh added for the "1000 services" memory reading; `None` skips it.
    pub large: Scenario,
    pub measure_large: bool,
    pub stage: StageOptions,
}

impl Settings {
    pub fn spec(&self, load: Load) -> LoadSpec {
        let protocol = load.protocol();
        let (connections, streams, port) = match protocol {
            Protocol::Http1 => (self.http1_connections, 1, HTTP1_PORT),
            Protocol::Http2 => (self.http2_connections, self.http2_streams, HTTP2_PORT),
        };
        LoadSpec {
            protocol,
            connections,
            streams,
            mode: if load.is_closed() {
                Mode::Closed
            } else {
                Mode::Open { rate: self.rate }
            },
            warmup: self.warmup,
            duration: self.duration,
            authority: config::authority(port),
            path: "/".to_string(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RoundResult {
    pub kind: Kind,
    pub round: usize,
    /// Client sidecar, server sidecar: ready with the small config, before any load.
    pub idle: [Memory; 2],
    pub loads: Vec<(Load, LoadResult)>,
    pub after_load: [Memory; 2],
    /// After the 1000-service mesh arrived (zero when not measured).
    pub large: [Memory; 2],
    pub large_change: ConfigChange,
    /// Each sidecar's thread count and allowed cores, as a check on `--concurrency`
    /// and pinning.
    pub threads: [u64; 2],
    pub cores: [String; 2],
    pub nice: [Option<i32>; 2],
    /// Scheduling policy (0 normal, 2 round robin).
    pub policy: [Option<u32>; 2],
    /// The machine's busy share (mean over cores) just before the round.
    pub machine_busy_before: f64,
}

fn memory_of(stage: &Stage) -> anyhow::Result<[Memory; 2]> {
    let [c, s] = stage.pids();
    Ok([memory::read(c)?, memory::read(s)?])
}

pub async fn run(
    kind: Kind,
    round: usize,
    bins: &Binaries,
    settings: &Settings,
) -> anyhow::Result<RoundResult> {
    let stage = Stage::start(kind, bins, &settings.stage).await?;
    tokio::time::sleep(settings.settle).await;
    let idle = memory_of(&stage)?;
    let ticks = crate::procstat::clock_ticks();
    let [cp, sp] = stage.pids();
    let threads = [
        crate::procstat::read(cp, ticks)?.threads,
        crate::procstat::read(sp, ticks)?.threads,
    ];
    let cores = [
        super::affinity::allowed_cores(cp).unwrap_or_default(),
        super::affinity::allowed_cores(sp).unwrap_or_default(),
    ];

    let nice = [super::affinity::nice_of(cp), super::affinity::nice_of(sp)];
    let policy = [
        super::affinity::policy_of(cp),
        super::affinity::policy_of(sp),
    ];

    let mut loads = Vec::new();
    for &load in &settings.loads {
        let spec = settings.spec(load);
        let port = match load.protocol() {
            Protocol::Http1 => HTTP1_PORT,
            Protocol::Http2 => HTTP2_PORT,
        };
        let connect = stage.connector(port);
        let probes = stage.pids();
        let result =
            tokio::task::spawn_blocking(move || loadgen::run(&spec, connect, &probes)).await??;
        println!(
            "  {} round {round} {:<10} {:>9.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  cpu {:.2}+{:.2} s  errors {}",
            kind.label(),
            load.key(),
            result.rps(),
            ns_to_us(result.latency.quantile(0.5)),
            ns_to_us(result.latency.quantile(0.99)),
            result.cpu.first().map_or(0.0, Duration::as_secs_f64),
            result.cpu.get(1).map_or(0.0, Duration::as_secs_f64),
            result.errors
        );
        loads.push((load, result));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(settings.settle).await;
    let after_load = memory_of(&stage)?;

    let (large_change, large) = if settings.measure_large {
        let mut change = stage
            .add_services(&settings.large, settings.stage.config_timeout)
            .await?;
        tokio::time::sleep(settings.settle).await;
        let memory = memory_of(&stage)?;
        stage.verify_clusters(&mut change).await?;
        (change, memory)
    } else {
        (ConfigChange::default(), [Memory::default(); 2])
    };
    println!(
        "  {} round {round} memory: idle {:.1}/{:.1} MiB, with {} services {:.1}/{:.1} MiB ({} clusters, {:.1} s)",
        kind.label(),
        crate::stats::mib(idle[0].rss),
        crate::stats::mib(idle[1].rss),
        settings.large.services,
        crate::stats::mib(large[0].rss),
        crate::stats::mib(large[1].rss),
        large_change.clusters[0],
        large_change.took.as_secs_f64()
    );
    Ok(RoundResult {
        kind,
        round,
        idle,
        loads,
        after_load,
        large,
        large_change,
        threads,
        cores,
        nice,
        policy,
        machine_busy_before: f64::NAN,
    })
}

pub fn ns_to_us(ns: u64) -> f64 {
    // Latencies stay far below 2^52 ns.
    #[allow(clippy::cast_precision_loss)]
    let v = ns as f64;
    v / 1000.0
}
