//! Wires strait-proxy together: bootstrap → static resources → workers, cluster and
//! listener managers → the xDS client on its own thread → signals and drain.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use strait_proto::envoy::config::bootstrap::v3::Bootstrap;
use strait_proto::xds::json;
use tracing::{info, warn};

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::admin::{Admin, AdminServer};
use crate::admin_state::ProxyAdmin;
use crate::applier::{Applier, Routes};
use crate::cli::Cli;
use crate::config::cluster::Discovery;
use crate::convert::{AdsApiType, BootstrapConfig};
use crate::http::HttpService;
use crate::listener::connection::Dispatcher;
use crate::listener::manager::ListenerManager;
use crate::snapshot::Snapshot;
use crate::stats::cluster::ClusterStatsSource;
use crate::stats::config::StatsConfig;
use crate::stats::server::ServerStats;
use crate::stats::store::Store;
use crate::telemetry::Telemetry;
use crate::upstream::manager::ClusterManager;
use crate::upstream::random::ThreadRandom;
use crate::worker::Workers;
use crate::xds::{ApiType, XdsClient, XdsConfig};

/// Reads the bootstrap file (JSON, or YAML by extension) and merges `--config-yaml`.
pub fn load_bootstrap(cli: &Cli) -> anyhow::Result<Bootstrap> {
    let mut value = serde_json::Value::Object(Default::default());
    if let Some(path) = &cli.config_path {
        value = read_document(path)?;
    }
    if let Some(yaml) = &cli.config_yaml {
        let overlay: serde_json::Value =
            serde_yaml::from_str(yaml).context("--config-yaml is not valid YAML")?;
        merge(&mut value, overlay);
    }
    if value.as_object().is_some_and(|o| o.is_empty()) {
        bail!("no bootstrap: give -c FILE or --config-yaml");
    }
    json::from_json::<Bootstrap>(value).map_err(|e| anyhow::anyhow!("invalid bootstrap: {e}"))
}

fn read_document(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading bootstrap {}", path.display()))?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    if yaml {
        serde_yaml::from_str(&text).with_context(|| format!("{}: invalid YAML", path.display()))
    } else {
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
    }
}

/// Deep-merges objects; anything else in `overlay` replaces what is there.
fn merge(base: &mut serde_json::Value, overlay: serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// The running proxy's shared parts.
pub struct Proxy {
    pub bootstrap: BootstrapConfig,
    pub workers: Arc<Workers>,
    pub clusters: Arc<ClusterManager>,
    pub listeners: Arc<ListenerManager>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub routes: Routes,
    pub xds: Option<XdsClient>,
    pub stats: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub admin: Option<AdminServer>,
    /// Woken by `/quitquitquit`.
    pub quit: Arc<Notify>,
    ready: Arc<AtomicBool>,
}

impl Proxy {
    /// Builds the proxy from a bootstrap, puts the static resources in place and
    /// connects to the control plane (on `control`, apart from the workers).
    pub fn start(
        cli: &Cli,
        mut pb: Bootstrap,
        control: &tokio::runtime::Handle,
    ) -> anyhow::Result<Proxy> {
        let node = pb.node.get_or_insert_with(Default::default);
        if let Some(id) = &cli.service_node {
            node.id = id.clone();
        }
        if let Some(cluster) = &cli.service_cluster {
            node.cluster = cluster.clone();
        }
        let node = node.clone();
        let bootstrap = BootstrapConfig::try_from(&pb).map_err(|e| anyhow::anyhow!("{e}"))?;
        for note in &bootstrap.notes {
            info!("bootstrap: {note}");
        }
        let concurrency = cli
            .concurrency
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let workers = Arc::new(Workers::start(concurrency).context("starting workers")?);
        let clusters = Arc::new(ClusterManager::new(ThreadRandom::shared()));
        let routes: Routes = Arc::new(ArcSwap::from_pointee(Default::default()));
        let http = HttpService::new(routes.clone(), clusters.clone());
        let stats_config = StatsConfig::from_proto(pb.stats_config.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let stats = Arc::new(Store::new(stats_config));
        let node_metadata = json::to_json(&node)
            .ok()
            .and_then(|n| match n.get("metadata") {
                Some(serde_json::Value::Object(m)) => Some(m.clone()),
                _ => None,
            });
        let flush_interval = Duration::from_millis(cli.file_flush_interval_msec.unwrap_or(1000));
        let telemetry = Telemetry::new(stats.clone(), node_metadata.as_ref(), flush_interval);
        let listeners = Arc::new(ListenerManager::with_telemetry(
            workers.clone(),
            Arc::new(Dispatcher {
                clusters: clusters.clone(),
                http: Some(Arc::new(http)),
            }),
            telemetry.clone(),
            Duration::from_secs(cli.drain_time_s),
        ));
        stats.add_source(Arc::new(ClusterStatsSource::new(clusters.clone())));
        let server_stats = Arc::new(ServerStats::new(
            u32::try_from(concurrency).unwrap_or(u32::MAX),
        ));
        stats.add_source(server_stats.clone());
        let initial = Snapshot {
            static_listeners: bootstrap
                .static_listeners
                .iter()
                .cloned()
                .map(Arc::new)
                .collect(),
            static_clusters: bootstrap
                .static_clusters
                .iter()
                .cloned()
                .map(Arc::new)
                .collect(),
            ..Snapshot::default()
        };
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let applier = Applier::new(
            initial,
            snapshot.clone(),
            clusters.clone(),
            listeners.clone(),
            routes.clone(),
        )
        .map_err(|rejected| anyhow::anyhow!("static resources: {rejected:?}"))?;

        let xds = match &bootstrap.ads {
            None => None,
            Some(ads) => {
                let address = ads_address(&bootstrap, &ads.cluster)?;
                let api = match ads.api_type {
                    AdsApiType::Grpc => ApiType::Grpc,
                    AdsApiType::DeltaGrpc => ApiType::DeltaGrpc,
                };
                info!(%address, api = api.as_str(), "connecting to the control plane");
                let config = XdsConfig::new(address, api, node);
                Some(
                    XdsClient::spawn_on(control, config, applier)
                        .context("starting the xDS client")?,
                )
            }
        };
        if let Some(xds) = &xds {
            stats.add_source(xds.stats());
        }

        // Ready (Envoy's LIVE) once the initial xDS config is applied; at once without ADS.
        let ready = Arc::new(AtomicBool::new(xds.is_none()));
        if let Some(xds) = &xds {
            let mut watch = xds.ready();
            let ready = ready.clone();
            let server_stats = server_stats.clone();
            control.spawn(async move {
                while !*watch.borrow() {
                    if watch.changed().await.is_err() {
                        return;
                    }
                }
                ready.store(true, Ordering::Relaxed);
                // The gauge pilot-agent's readiness check reads, not only what /ready computes.
                server_stats.set_state(crate::stats::server::ServerState::Live);
                server_stats.set_workers_started();
                info!("initial configuration applied; ready");
            });
        } else {
            server_stats.set_state(crate::stats::server::ServerState::Live);
            server_stats.set_workers_started();
        }

        let quit = Arc::new(Notify::new());
        let admin = match bootstrap.admin_address {
            None => None,
            Some(address) => {
                let source = Arc::new(ProxyAdmin {
                    bootstrap: pb.clone(),
                    started: SystemTime::now(),
                    snapshot: snapshot.clone(),
                    clusters: clusters.clone(),
                    listeners: listeners.clone(),
                    server: server_stats.clone(),
                    ready: ready.clone(),
                    draining: AtomicBool::new(false),
                    quit: quit.clone(),
                });
                let admin = Arc::new(Admin::new(source, stats.clone()));
                let server = control
                    .block_on(AdminServer::start(admin, address))
                    .with_context(|| format!("starting the admin server on {address}"))?;
                info!(%address, "admin listening");
                Some(server)
            }
        };
        Ok(Proxy {
            bootstrap,
            workers,
            clusters,
            listeners,
            snapshot,
            routes,
            xds,
            stats,
            telemetry,
            admin,
            quit,
            ready,
        })
    }

    /// Ready once the static config is in place and, with ADS, the initial xDS config.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Stops accepting and asks open connections to finish (HTTP/1 `connection:
    /// close`, HTTP/2 GOAWAY), then waits for them, at most `limit`.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        self.listeners.drain_connections(false, deadline);
        self.listeners.stop_accepting(false);
        while self.listeners.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left = self.listeners.open_connections();
        if left > 0 {
            warn!(
                open = left,
                "drain time over; closing remaining connections"
            );
        }
    }
}

/// The ADS server's address: the first endpoint of the bootstrap's static cluster.
fn ads_address(bootstrap: &BootstrapConfig, cluster: &str) -> anyhow::Result<String> {
    let c = bootstrap
        .static_clusters
        .iter()
        .find(|c| c.name == cluster)
        .with_context(|| {
            format!("ads_config names cluster {cluster:?}, which is not a static cluster")
        })?;
    match &c.discovery {
        Discovery::Static(endpoints) => endpoints
            .first()
            .map(|e| e.address.to_string())
            .with_context(|| format!("static cluster {cluster:?} has no endpoints")),
        Discovery::Dns { hosts, .. } => hosts
            .first()
            .map(|(h, p)| format!("{h}:{p}"))
            .with_context(|| format!("cluster {cluster:?} has no hosts")),
        _ => bail!("cluster {cluster:?} must be STATIC or DNS to reach the control plane"),
    }
}

/// Runs until SIGTERM or SIGINT, then drains.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let pb = load_bootstrap(&cli)?;
    if cli.mode == "validate" {
        BootstrapConfig::try_from(&pb).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "configuration '{}' OK",
            cli.config_path
                .as_deref()
                .unwrap_or(Path::new("-"))
                .display()
        );
        return Ok(());
    }
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("main")
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    let proxy = Proxy::start(&cli, pb, control.handle())?;
    control.spawn(eat_signals_envoy_ignores());
    control.block_on(async {
        tokio::select! {
            _ = shutdown_signal() => {
                info!("shutting down: draining listeners");
                proxy.drain(Duration::from_secs(cli.drain_time_s)).await;
            }
            _ = proxy.quit.notified() => info!("quitquitquit: exiting"),
        }
    });
    proxy.telemetry.sinks().flush_all();
    Ok(())
}

/// Envoy survives SIGHUP (it logs and ignores it) and SIGUSR1 (it reopens its access
/// logs); so must strait-proxy, which pilot-agent passes these signals on to.
async fn eat_signals_envoy_ignores() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut usr1)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => warn!("caught and ignoring SIGHUP (there is no hot restart)"),
            _ = usr1.recv() => info!("caught SIGUSR1; access log files are not reopened"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_merges_over_the_file() {
        let mut base = serde_json::json!({"node": {"id": "a", "cluster": "c"}, "admin": {"x": 1}});
        merge(&mut base, serde_json::json!({"node": {"id": "b"}}));
        assert_eq!(base["node"]["id"], "b");
        assert_eq!(base["node"]["cluster"], "c");
        assert_eq!(base["admin"]["x"], 1);
    }
}
