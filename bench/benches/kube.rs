//! `cargo bench -p strait-bench --bench kube`: pilot-discovery — Strait's, and
//! Istio's beside it — watching a real kube-apiserver (the e2e harness's control
//! plane, on loopback) while 2000 Services with 10000 endpoints are written to it.
//!
//! Each control plane gets its own fresh, identically started cluster (etcd,
//! kube-apiserver, kube-controller-manager, the same CRDs and namespaces), so
//! neither inherits the other's objects, watch history or apiserver cache, and both
//! see the same writes from the same manifests.
//!
//! Measured, with an ADS client standing in for a sidecar:
//! - **watch**: pilot-discovery runs from an empty cluster; every Service and
//!   EndpointSlice is written with `kubectl create` (several in parallel); the time
//!   from the last write returning to the client holding every service's cluster
//!   and every endpoint;
//! - **restart**: a fresh pilot-discovery against the populated cluster; the time to
//!   `/ready` (initial sync) and to the client's complete config;
//! - resident memory (VmRSS, and its peak VmHWM) once the config is complete.
//!
//! Services have no selector: their EndpointSlices are written directly (5
//! endpoints each by default), as an external controller would, which keeps the
//! write phase short. Needs the release binary (`cargo build --release -p
//! strait-pilot`), Istio's (`bench/istio/build.sh`) and the kube tools
//! (`e2e/kube/build.sh`, run by `scripts/setup`). Knobs: STRAIT_BENCH_KUBE_SERVICES
//! (2000), STRAIT_BENCH_KUBE_ENDPOINTS (per service, 5), STRAIT_BENCH_KUBE_WRITERS
//! (parallel kubectl, 8), STRAIT_BENCH_ONLY=strait|istio, STRAIT_PILOT_BIN,
//! ISTIO_PILOT_BIN, STRAIT_BENCH_OUT (results directory).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use prost::Message;
use serde_json::json;
use strait_bench::ads::{json_to_struct, sidecar_metadata, sidecar_node_id};
use strait_bench::kube_peer::{ISTIO_NAMESPACE, KubePilot, KubePilotSpec};
use strait_bench::procstat::Usage;
use strait_bench::server::Flavor;
use strait_bench::stats::{mib, ms, ratio};
use strait_bench::workdir::TempDir;
use strait_e2e::kube::{KubeCluster, KubeOptions};
use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use strait_proto::envoy::config::core::v3::Node;
use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use strait_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use strait_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use strait_proto::xds::type_url;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

const NAMESPACE: &str = "bench";
const PORT: u16 = 8080;
const CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/base/files/crd-all.gen.yaml"
);
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause before reading memory, so lazily freed buffers and background work settle.
const SETTLE: Duration = Duration::from_secs(2);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    services: usize,
    endpoints_per_service: usize,
    writers: usize,
}

impl Scenario {
    fn endpoints(&self) -> usize {
        self.services * self.endpoints_per_service
    }

    fn name(service: usize) -> String {
        format!("svc-{service:05}")
    }

    /// Services `range` and their EndpointSlices, as one multi-document manifest.
    fn manifest(&self, range: std::ops::Range<usize>) -> String {
        let mut out = String::new();
        for i in range {
            let name = Self::name(i);
            let addresses: Vec<String> = (0..self.endpoints_per_service)
                .map(|j| {
                    let k = i * self.endpoints_per_service + j;
                    format!(
                        "- addresses: [10.{}.{}.{}]\n  conditions: {{ready: true}}",
                        128 + (k >> 16),
                        (k >> 8) & 0xff,
                        k & 0xff
                    )
                })
                .collect();
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
                 spec:\n  ports: [{{name: http, port: {PORT}, targetPort: {PORT}}}]\n\
                 ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {{name: {name}-1, namespace: {NAMESPACE}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: {PORT}, protocol: TCP}}]\nendpoints:\n{}\n",
                addresses.join("\n")
            ));
        }
        out
    }
}

async fn run() -> anyhow::Result<()> {
    let scenario = Scenario {
        services: env_usize("STRAIT_BENCH_KUBE_SERVICES", 2000),
        endpoints_per_service: env_usize("STRAIT_BENCH_KUBE_ENDPOINTS", 5),
        writers: env_usize("STRAIT_BENCH_KUBE_WRITERS", 8).max(1),
    };
    let only = std::env::var("STRAIT_BENCH_ONLY").ok();
    let strait_bin = pilot_binary();
    let istio_bin = istio_binary();
    let load_before = loadavg();
    println!(
        "kube: {} Services x {} endpoints, {} kubectl writers",
        scenario.services, scenario.endpoints_per_service, scenario.writers
    );
    let work = TempDir::new("kube")?;
    let chunks = write_chunks(&scenario, work.path())?;

    let mut outcomes: Vec<Result<Measured, String>> = Vec::new();
    for (flavor, bin, hint) in [
        (
            Flavor::Strait,
            &strait_bin,
            "build it with `cargo build --release -p strait-pilot`",
        ),
        (
            Flavor::Istio,
            &istio_bin,
            "build it with `bench/istio/build.sh`",
        ),
    ] {
        if only.as_deref().is_some_and(|o| o != flavor.label()) {
            outcomes.push(Err(format!(
                "skipped (STRAIT_BENCH_ONLY={})",
                only.as_deref().unwrap_or("")
            )));
            continue;
        }
        if !bin.is_file() {
            outcomes.push(Err(format!("{} not found; {hint}", bin.display())));
            continue;
        }
        println!("{} ({}) ...", flavor.label(), bin.display());
        let spec_dir = work.path().join(flavor.label());
        let outcome = measure(flavor, bin, &scenario, &chunks, &spec_dir)
            .await
            .map_err(|e| format!("{e:#}"));
        if let Err(e) = &outcome {
            println!("  {} failed: {e}", flavor.label());
        }
        outcomes.push(outcome);
        // Let the machine go quiet between the two control planes.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let istio = outcomes.pop().unwrap_or_else(|| Err("not run".into()));
    let strait = outcomes.pop().unwrap_or_else(|| Err("not run".into()));

    let report = json!({
        "command": command_line(),
        "machine": {
            "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        },
        "versions": {
            "strait_commit": first_line(Path::new("git"), &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]),
            "istio": first_line(&istio_bin, &["version", "--short"]),
            "istio_module": std::fs::read_to_string(istio_bin.with_extension("version")).ok().map(|s| s.trim().to_string()),
        },
        "scenario": {
            "services": scenario.services,
            "endpoints": scenario.endpoints(),
            "kubectl_writers": scenario.writers,
            "apiserver": "a fresh, identical control plane per peer",
        },
        "strait": outcome_json(&strait),
        "istio": outcome_json(&istio),
    });
    let markdown = markdown(&report);
    println!("\n{markdown}");
    let out_dir = std::env::var_os("STRAIT_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"));
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(
        out_dir.join("kube.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out_dir.join("kube.md"), markdown)?;
    println!("results written to {}", out_dir.join("kube.json").display());
    Ok(())
}

/// One control plane's figures.
struct Measured {
    command: String,
    /// On the empty cluster, before the writes.
    idle: Usage,
    writes: Duration,
    last_write_to_complete: Duration,
    after_watch: Usage,
    restart_ready: Duration,
    restart_complete: Duration,
    after_restart: Usage,
}

/// A fresh cluster (so each peer starts from an empty etcd and apiserver cache and
/// its restart lists only its own writes), the watch phase, then the restart phase.
async fn measure(
    flavor: Flavor,
    bin: &Path,
    scenario: &Scenario,
    chunks: &[PathBuf],
    dir: &Path,
) -> anyhow::Result<Measured> {
    let cluster = Arc::new(start_cluster().await?);
    let spec = KubePilotSpec {
        flavor,
        binary: bin.to_path_buf(),
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
        work_dir: dir.to_path_buf(),
    };
    let result = watch_and_restart(&cluster, &spec, scenario, chunks).await;
    match Arc::try_unwrap(cluster) {
        Ok(cluster) => cluster.stop()?,
        Err(_) => bail!("the cluster is still shared"),
    }
    result
}

async fn start_cluster() -> anyhow::Result<KubeCluster> {
    let cluster = KubeCluster::start(KubeOptions::default()).await?;
    cluster.apply_file(Path::new(CRDS)).await?;
    cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ])
        .await?;
    cluster.kubectl(&["create", "namespace", NAMESPACE]).await?;
    cluster
        .kubectl(&["create", "namespace", ISTIO_NAMESPACE])
        .await?;
    Ok(cluster)
}

async fn watch_and_restart(
    cluster: &Arc<KubeCluster>,
    spec: &KubePilotSpec,
    scenario: &Scenario,
    chunks: &[PathBuf],
) -> anyhow::Result<Measured> {
    let label = spec.flavor.label();
    // Watch: pilot-discovery follows the writes.
    let mut pilot = KubePilot::start(spec.clone(), "watch")?;
    let command = pilot.command_line();
    pilot.wait_ready(COMPLETE_TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;
    let idle = pilot.usage()?;
    let mut client = AdsProgress::connect(pilot.ports.grpc).await?;
    let writes_started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for chunk in chunks {
        let cluster = cluster.clone();
        let path = chunk.display().to_string();
        writers.spawn(async move { cluster.kubectl(&["create", "-f", &path]).await.map(|_| ()) });
    }
    while let Some(result) = writers.join_next().await {
        result??;
    }
    let last_write = Instant::now();
    let writes = last_write - writes_started;
    let complete = client
        .wait(scenario.services, scenario.endpoints())
        .await
        .with_context(|| pilot.log_tail(30))?;
    let last_write_to_complete = complete.saturating_duration_since(last_write);
    tokio::time::sleep(SETTLE).await;
    let after_watch = pilot.usage()?;
    println!(
        "  {label} watch: writes took {:.1} s; complete config {:.0} ms after the last write; RSS {:.1} MiB (peak {:.1})",
        writes.as_secs_f64(),
        ms(last_write_to_complete),
        mib(after_watch.rss),
        mib(after_watch.rss_peak)
    );
    drop(client);
    pilot.stop().await?;

    // Restart: a fresh pilot-discovery lists the populated cluster.
    let mut pilot = KubePilot::start(spec.clone(), "restart")?;
    let restart_ready = pilot.wait_ready(COMPLETE_TIMEOUT).await?;
    let mut client = AdsProgress::connect(pilot.ports.grpc).await?;
    client
        .wait(scenario.services, scenario.endpoints())
        .await
        .with_context(|| pilot.log_tail(30))?;
    let restart_complete = pilot.started_at.elapsed();
    tokio::time::sleep(SETTLE).await;
    let after_restart = pilot.usage()?;
    println!(
        "  {label} restart: ready after {:.0} ms, complete config after {:.0} ms; RSS {:.1} MiB (peak {:.1})",
        ms(restart_ready),
        ms(restart_complete),
        mib(after_restart.rss),
        mib(after_restart.rss_peak)
    );
    drop(client);
    pilot.stop().await?;
    Ok(Measured {
        command,
        idle,
        writes,
        last_write_to_complete,
        after_watch,
        restart_ready,
        restart_complete,
        after_restart,
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn usage_json(u: &Usage) -> serde_json::Value {
    json!({
        "rss_mib": round1(mib(u.rss)),
        "rss_peak_mib": round1(mib(u.rss_peak)),
        "cpu_s": (u.cpu.as_secs_f64() * 100.0).round() / 100.0,
    })
}

fn outcome_json(outcome: &Result<Measured, String>) -> serde_json::Value {
    match outcome {
        Err(e) => json!({ "error": e }),
        Ok(m) => json!({
            "command": m.command,
            "watch": {
                "writes_s": round1(m.writes.as_secs_f64()),
                "last_write_to_complete_ms": ms(m.last_write_to_complete).round(),
                "idle": usage_json(&m.idle),
                "after": usage_json(&m.after_watch),
            },
            "restart": {
                "ready_ms": ms(m.restart_ready).round(),
                "complete_ms": ms(m.restart_complete).round(),
                "after": usage_json(&m.after_restart),
            },
        }),
    }
}

/// The Strait and Istio columns and Istio ÷ Strait, from the JSON report.
fn markdown(r: &serde_json::Value) -> String {
    let (s, i) = (&r["strait"], &r["istio"]);
    let mut out = format!(
        "| pilot-discovery on kube-apiserver ({} Services, {} endpoints) | Strait | Istio | Istio ÷ Strait |\n\
         |---|---|---|---|\n",
        r["scenario"]["services"], r["scenario"]["endpoints"],
    );
    let rows: [(String, &[&str], &str); 9] = [
        (
            format!(
                "writes (`kubectl create`, {} in parallel)",
                r["scenario"]["kubectl_writers"]
            ),
            &["watch", "writes_s"],
            "s",
        ),
        (
            "last write → complete config at a sidecar".into(),
            &["watch", "last_write_to_complete_ms"],
            "ms",
        ),
        (
            "resident memory then".into(),
            &["watch", "after", "rss_mib"],
            "MiB",
        ),
        (
            "peak resident memory (VmHWM)".into(),
            &["watch", "after", "rss_peak_mib"],
            "MiB",
        ),
        (
            "CPU time used by then (user + system)".into(),
            &["watch", "after", "cpu_s"],
            "s",
        ),
        (
            "idle on the empty cluster: resident memory".into(),
            &["watch", "idle", "rss_mib"],
            "MiB",
        ),
        (
            "restart: process start → `/ready`".into(),
            &["restart", "ready_ms"],
            "ms",
        ),
        (
            "restart: process start → complete config".into(),
            &["restart", "complete_ms"],
            "ms",
        ),
        (
            "restart: resident memory (peak)".into(),
            &["restart", "after", "rss_mib"],
            "MiB",
        ),
    ];
    for (label, path, unit) in rows {
        let get = |v: &serde_json::Value| path.iter().fold(v, |v, k| &v[*k]).as_f64();
        let cell = |v: &serde_json::Value| match get(v) {
            Some(x) if label.starts_with("restart: resident") => format!(
                "{x} {unit} ({} {unit})",
                v["restart"]["after"]["rss_peak_mib"]
            ),
            Some(x) => format!("{x} {unit}"),
            None => "–".to_string(),
        };
        // The writes are kubectl's time, not the control plane's: no ratio.
        let ratio = match (get(s), get(i)) {
            (Some(a), Some(b)) if !label.starts_with("writes") => {
                ratio(b, a).map_or("–".to_string(), |q| format!("{q:.1}×"))
            }
            _ => "–".to_string(),
        };
        out.push_str(&format!(
            "| {label} | {} | {} | {ratio} |\n",
            cell(s),
            cell(i)
        ));
    }
    for (name, v) in [("Strait", s), ("Istio", i)] {
        if let Some(e) = v["error"].as_str() {
            out.push_str(&format!("\n{name}: {e}\n"));
        }
    }
    out
}

/// The manifests, split among the writers (each file: Services then their slices).
fn write_chunks(scenario: &Scenario, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let per = scenario.services.div_ceil(scenario.writers);
    let mut out = Vec::new();
    for (n, start) in (0..scenario.services).step_by(per.max(1)).enumerate() {
        let end = (start + per).min(scenario.services);
        let path = dir.join(format!("chunk-{n}.yaml"));
        std::fs::write(&path, scenario.manifest(start..end))?;
        out.push(path);
    }
    Ok(out)
}

/// How much of the benchmark's services a sidecar has: clusters, and endpoints.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    clusters: usize,
    endpoints: usize,
}

/// A state-of-the-world ADS client that asks for CDS and the EDS of every cluster,
/// ACKs everything and counts what it holds of the benchmark's namespace.
struct AdsProgress {
    progress: watch::Receiver<Progress>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Drop for AdsProgress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AdsProgress {
    async fn connect(addr: SocketAddr) -> anyhow::Result<AdsProgress> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await
            .with_context(|| format!("connecting to ADS at {addr}"))?;
        let mut client =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX);
        let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
        let node = Node {
            id: sidecar_node_id("10.0.0.1", "bench-client", NAMESPACE),
            cluster: format!("bench-client.{NAMESPACE}"),
            metadata: Some(json_to_struct(&sidecar_metadata(
                "10.0.0.1",
                "bench-client",
                NAMESPACE,
            ))),
            ..Default::default()
        };
        tx.send(DiscoveryRequest {
            node: Some(node),
            type_url: type_url::CLUSTER.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|_| anyhow!("request channel closed"))?;
        let inbound = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let task = tokio::spawn(follow(inbound, tx, progress_tx));
        Ok(AdsProgress { progress, task })
    }

    /// Waits until the client holds `clusters` clusters and `endpoints` endpoints of
    /// the benchmark's services; returns when the response completing them arrived.
    async fn wait(&mut self, clusters: usize, endpoints: usize) -> anyhow::Result<Instant> {
        let done = tokio::time::timeout(
            COMPLETE_TIMEOUT,
            self.progress
                .wait_for(|p| p.clusters >= clusters && p.endpoints >= endpoints),
        )
        .await;
        let done = done.map(|r| r.map(|_| ()));
        match done {
            Ok(Ok(())) => Ok(Instant::now()),
            Ok(Err(_)) => bail!("the ADS stream ended"),
            Err(_) => bail!(
                "timed out with {:?} of {clusters} clusters / {endpoints} endpoints",
                *self.progress.borrow()
            ),
        }
    }
}

async fn follow(
    mut inbound: tonic::Streaming<DiscoveryResponse>,
    tx: mpsc::Sender<DiscoveryRequest>,
    progress: watch::Sender<Progress>,
) -> anyhow::Result<()> {
    let suffix = format!(".{NAMESPACE}.svc.cluster.local");
    let mut eds_names: BTreeSet<String> = BTreeSet::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut eds_ack = (String::new(), String::new());
    let request = |url: &str, names: &BTreeSet<String>, ack: &(String, String)| DiscoveryRequest {
        type_url: url.to_string(),
        resource_names: names.iter().cloned().collect(),
        version_info: ack.0.clone(),
        response_nonce: ack.1.clone(),
        ..Default::default()
    };
    while let Some(resp) = inbound.message().await? {
        let ack = (resp.version_info.clone(), resp.nonce.clone());
        if resp.type_url == type_url::CLUSTER {
            let names: BTreeSet<String> = resp
                .resources
                .iter()
                .filter_map(|any| Cluster::decode(any.value.as_slice()).ok())
                .filter(|c| {
                    c.cluster_discovery_type
                        == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
                })
                .map(|c| c.name)
                .collect();
            tx.send(request(type_url::CLUSTER, &BTreeSet::new(), &ack))
                .await?;
            if names != eds_names {
                eds_names = names;
                counts.retain(|k, _| eds_names.contains(k));
                tx.send(request(type_url::ENDPOINT, &eds_names, &eds_ack))
                    .await?;
            }
        } else if resp.type_url == type_url::ENDPOINT {
            for any in &resp.resources {
                let cla = ClusterLoadAssignment::decode(any.value.as_slice())?;
                let n = cla.endpoints.iter().map(|l| l.lb_endpoints.len()).sum();
                counts.insert(cla.cluster_name, n);
            }
            eds_ack = ack;
            tx.send(request(type_url::ENDPOINT, &eds_names, &eds_ack))
                .await?;
        }
        let ours = |name: &String| name.starts_with("outbound|") && name.ends_with(&suffix);
        progress.send_replace(Progress {
            clusters: eds_names.iter().filter(|n| ours(n)).count(),
            endpoints: counts
                .iter()
                .filter(|(name, _)| ours(name))
                .map(|(_, n)| n)
                .sum(),
        });
    }
    Ok(())
}

/// `$CARGO_TARGET_DIR/release/pilot-discovery` (from this bench binary's path,
/// `<target>/release/deps/kube-<hash>`) unless STRAIT_PILOT_BIN says otherwise.
fn pilot_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STRAIT_PILOT_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("pilot-discovery")))
        .unwrap_or_else(|| PathBuf::from("pilot-discovery"))
}

fn istio_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ISTIO_PILOT_BIN") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("STRAIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/strait".into());
    cache.join("istio").join("pilot-discovery")
}

fn first_line(bin: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(bin).args(args).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

fn command_line() -> String {
    let mut parts: Vec<String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("STRAIT_BENCH_KUBE_")
                || k == "STRAIT_BENCH_ONLY"
                || k == "STRAIT_PILOT_BIN"
                || k == "ISTIO_PILOT_BIN"
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.push("cargo bench -p strait-bench --bench kube".into());
    parts.join(" ")
}

fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
