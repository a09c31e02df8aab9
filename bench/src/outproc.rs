//! One control plane, out of process: start it on the config tree, then measure
//! readiness, one sidecar's full config, ten more sidecars, memory and CPU after each
//! step, and how long an edited VirtualService takes to reach a connected sidecar.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::ads::{self, AdsClient, TypeStats};
use crate::mesh::{DEFAULT_V1_WEIGHT, SERVICE_PORT, Scenario};
use crate::metrics::{self, Scraped};
use crate::procstat::Usage;
use crate::server::{Server, ServerSpec};
use crate::stats::Summary;

#[derive(Clone, Debug)]
pub struct Options {
    /// Sidecars connected after the first one.
    pub extra_clients: usize,
    /// VirtualService edits timed for convergence.
    pub edits: usize,
    /// Pause after each step before reading memory, so lazily freed buffers and
    /// background work settle.
    pub settle: Duration,
    pub ready_timeout: Duration,
    pub config_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            extra_clients: 10,
            edits: 5,
            settle: Duration::from_secs(2),
            ready_timeout: Duration::from_secs(180),
            config_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct OutOfProcess {
    pub command: String,
    pub pid: u32,
    /// Spawn to `/ready` answering 200.
    pub ready: Duration,
    pub after_load: Usage,
    /// First sidecar: first request to full config.
    pub first_client: Duration,
    /// Per type, what the first sidecar received until its config was complete.
    pub first_client_types: BTreeMap<&'static str, TypeStats>,
    /// Responses the first sidecar got until complete: (type, ms since request, resources).
    pub first_client_timeline: Vec<(&'static str, Duration, u64)>,
    pub after_first_client: Usage,
    /// Extra sidecars connecting at once: start of the batch until all are complete.
    pub extra_clients: usize,
    pub extra_clients_all: Duration,
    /// Each extra sidecar's own first request to full config.
    pub extra_clients_each: Summary,
    pub after_extra_clients: Usage,
    /// Edit of one VirtualService file until the first sidecar receives the new route,
    /// with only that sidecar connected.
    pub convergence_one: Summary,
    /// The same with every sidecar connected: until the first sidecar has it.
    pub convergence_all: Summary,
    /// … and until every sidecar has it.
    pub convergence_all_last: Summary,
    pub after_edits: Usage,
    /// Istio-named histograms from the monitoring port's /metrics at the end.
    pub metrics: Scraped,
}

pub async fn run(
    spec: ServerSpec,
    scenario: &Scenario,
    opts: &Options,
) -> anyhow::Result<OutOfProcess> {
    let config_dir = spec.config_dir.clone();
    let mut server = Server::start(spec).await?;
    let result = drive(&mut server, &config_dir, scenario, opts).await;
    let log = server.log_tail(20);
    server.stop().await?;
    result.with_context(|| format!("last log lines:\n{log}"))
}

async fn drive(
    server: &mut Server,
    config_dir: &Path,
    scenario: &Scenario,
    opts: &Options,
) -> anyhow::Result<OutOfProcess> {
    let mut out = OutOfProcess {
        command: server.spec.command_line(&server.ports),
        pid: server.pid(),
        extra_clients: opts.extra_clients,
        ..Default::default()
    };
    out.ready = server.wait_ready(opts.ready_timeout).await?;
    tokio::time::sleep(opts.settle).await;
    out.after_load = server.usage()?;

    let watched = format!("outbound|{SERVICE_PORT}|v1|{}", scenario.host(0));
    let mut first = connect(server, 0, Some(watched.clone())).await?;
    let state = first.wait_complete(opts.config_timeout).await?;
    out.first_client = state.time_to_full_config().context("no completion time")?;
    out.first_client_types = state.initial.clone();
    out.first_client_timeline = state.timeline.clone();
    tokio::time::sleep(opts.settle).await;
    out.after_first_client = server.usage()?;

    // The initial route must be in place before edits are timed against it.
    first
        .wait_weight(DEFAULT_V1_WEIGHT, opts.config_timeout)
        .await?;
    let mut weight = DEFAULT_V1_WEIGHT;
    let (one, _) = converge(&mut first, &mut [], config_dir, scenario, &mut weight, opts).await?;
    out.convergence_one = one;

    let batch_start = Instant::now();
    let mut extra = Vec::with_capacity(opts.extra_clients);
    for i in 1..=opts.extra_clients {
        extra.push(connect(server, i, Some(watched.clone())).await?);
    }
    let mut each = Vec::with_capacity(extra.len());
    for client in &mut extra {
        let state = client.wait_complete(opts.config_timeout).await?;
        each.push(state.time_to_full_config().context("no completion time")?);
    }
    out.extra_clients_all = batch_start.elapsed();
    out.extra_clients_each = Summary::of(&each);
    tokio::time::sleep(opts.settle).await;
    out.after_extra_clients = server.usage()?;

    let (first_has, all_have) = converge(
        &mut first,
        &mut extra,
        config_dir,
        scenario,
        &mut weight,
        opts,
    )
    .await?;
    out.convergence_all = first_has;
    out.convergence_all_last = all_have;
    out.after_edits = server.usage()?;
    out.metrics = match crate::http::get(
        server.ports.monitoring,
        "/metrics",
        Duration::from_secs(10),
    )
    .await
    {
        Ok((200, body)) => metrics::parse(&body),
        _ => Scraped::new(),
    };

    // Leave the tree as generated for the next control plane.
    scenario.write_virtual_service(config_dir, 0, DEFAULT_V1_WEIGHT)?;
    first
        .wait_weight(DEFAULT_V1_WEIGHT, opts.config_timeout)
        .await?;
    drop(extra);
    Ok(out)
}

/// Edits VirtualService 0 `opts.edits` times, lowering its v1 weight by one each time,
/// and times each edit until `first` holds the new route, and until every client does.
async fn converge(
    first: &mut AdsClient,
    others: &mut [AdsClient],
    config_dir: &Path,
    scenario: &Scenario,
    weight: &mut u32,
    opts: &Options,
) -> anyhow::Result<(Summary, Summary)> {
    let mut first_samples = Vec::with_capacity(opts.edits);
    let mut all_samples = Vec::with_capacity(opts.edits);
    for _ in 0..opts.edits {
        *weight = weight.saturating_sub(1).max(1);
        scenario.write_virtual_service(config_dir, 0, *weight)?;
        let edited = Instant::now();
        let arrived = first.wait_weight(*weight, opts.config_timeout).await?;
        let mut last = arrived;
        for other in others.iter_mut() {
            last = last.max(other.wait_weight(*weight, opts.config_timeout).await?);
        }
        first_samples.push(arrived.saturating_duration_since(edited));
        all_samples.push(last.saturating_duration_since(edited));
        // Quiet time before the next edit, so each sample is one debounced push.
        tokio::time::sleep(opts.settle).await;
    }
    Ok((Summary::of(&first_samples), Summary::of(&all_samples)))
}

/// Sidecar `i` has address 10.0.0.(i+1) — outside the workloads' 10.1.0.0/16.
async fn connect(server: &Server, i: usize, watch: Option<String>) -> anyhow::Result<AdsClient> {
    let ip = format!("10.0.{}.{}", (i + 1) / 250, (i + 1) % 250);
    let name = format!("bench-{i}");
    AdsClient::start(
        server.ports.grpc,
        ads::sidecar_node_id(&ip, &name, "default"),
        ads::sidecar_metadata(&ip, &name, "default"),
        watch,
    )
    .await
}
