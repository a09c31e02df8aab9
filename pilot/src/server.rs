//! Wires pilot-discovery together: sources → environment → debouncer → PushContext →
//! ADS, plus the debug and monitoring servers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use strait_proto::istio::MeshConfig;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::cli::DiscoveryArgs;
use crate::config::file::FileSource;
use crate::debug::{DebugSource, debug_router, monitoring_router};
use crate::environment::Environment;
use crate::features::Features;
use crate::metrics::Metrics;
use crate::model::{IstioConfig, PushContext};
use crate::push::debounce::{self, Debouncer};
use crate::push::request::{PushRequest, TriggerReason};
use crate::registry::kube_watch::{self, KubeOptions, KubeSource};
use crate::xds::ads::{XdsOptions, XdsServer};
use crate::xds::status::ConnectionStatus;

/// How often the config directory is checked for changes.
const FILE_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The running control plane's shared parts.
pub struct Discovery {
    pub env: Arc<Environment>,
    pub push: Arc<ArcSwap<PushContext>>,
    pub xds: Arc<XdsServer>,
    pub metrics: Arc<Metrics>,
    events: mpsc::UnboundedSender<PushRequest>,
}

pub fn load_mesh_config(path: &Path) -> anyhow::Result<MeshConfig> {
    if !path.exists() {
        info!(path = %path.display(), "no mesh config file; using Istio's defaults");
        return Ok(MeshConfig::default());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading mesh config {}", path.display()))?;
    let mesh = MeshConfig::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("mesh config {}: {e}", path.display()))?;
    let ignored = mesh.ignored_fields();
    if !ignored.is_empty() {
        warn!(path = %path.display(), fields = ?ignored, "mesh config fields not used by Strait are ignored");
    }
    Ok(mesh)
}

pub async fn run(args: DiscoveryArgs) -> anyhow::Result<()> {
    let features = Features::from_env().map_err(anyhow::Error::msg)?;
    let kube_registry = args.kubernetes_registry().map_err(anyhow::Error::msg)?;
    let kube_config = args.kubernetes_config();
    let mesh = Arc::new(load_mesh_config(&args.mesh_config)?);
    let env = Arc::new(Environment::new(mesh.clone(), &args.domain));
    let metrics = Arc::new(Metrics::new());
    let push = Arc::new(ArcSwap::from_pointee(PushContext::empty(
        mesh.clone(),
        env.endpoints.clone(),
    )));
    let xds = XdsServer::new(
        push.clone(),
        metrics.clone(),
        XdsOptions {
            push_throttle: features.effective_push_throttle(),
            connection_queue: 1,
            send_timeout: Duration::from_secs(10),
        },
    );
    let (events, events_rx) = mpsc::unbounded_channel();
    let discovery = Arc::new(Discovery {
        env: env.clone(),
        push: push.clone(),
        xds: xds.clone(),
        metrics: metrics.clone(),
        events,
    });

    // Load everything once before serving, so the first proxy gets a complete config.
    if let Some(dir) = &args.config_dir {
        let mut source = FileSource::new(dir);
        let scan = source.scan();
        log_errors(&scan.errors);
        env.apply_scan(scan);
        std::thread::Builder::new()
            .name("config-dir-watch".into())
            .spawn({
                let discovery = discovery.clone();
                move || watch_files(source, discovery)
            })
            .context("starting the config directory watcher")?;
    }
    let mut kube = if kube_registry || kube_config {
        let client = kube_watch::connect(args.kubeconfig.as_deref()).await?;
        info!(
            registry = kube_registry,
            config = kube_config,
            "watching the Kubernetes API server"
        );
        let options = KubeOptions {
            registry: kube_registry,
            config: kube_config,
            cluster_id: args.cluster_id.clone(),
        };
        let pushes = discovery.clone();
        let source = KubeSource::start(client, env.clone(), metrics.clone(), options, move |req| {
            pushes.enqueue(req)
        })
        .context("starting the Kubernetes watches")?;
        Some(source)
    } else {
        None
    };

    tokio::spawn(debounce::run(
        Debouncer::new(features.debounce_after, features.debounce_max),
        events_rx,
        {
            let discovery = discovery.clone();
            move |req| {
                let discovery = discovery.clone();
                async move { discovery.push(req).await }
            }
        },
        {
            let metrics = metrics.clone();
            move |waited| metrics.observe_debounce(waited.as_secs_f64())
        },
    ));

    let source: Arc<dyn DebugSource> = discovery.clone();
    let http = serve_http(args.http_addr, debug_router(source.clone()));
    let monitoring = serve_http(args.monitoring_addr, monitoring_router(source));
    info!(http = %args.http_addr, monitoring = %args.monitoring_addr, "pilot-discovery serving HTTP");
    // As Istio, the ADS port opens once the caches have synced, so the first proxy
    // gets a complete config; until then /ready says why not.
    let grpc = async {
        if let Some(kube) = kube.as_mut() {
            info!("waiting for the Kubernetes caches to sync");
            kube.wait_synced().await;
        }
        discovery.install(env.build_push_context());
        xds.set_ready();
        info!(grpc = %args.grpc_addr, "pilot-discovery serving ADS");
        serve_grpc(args.grpc_addr, xds.clone()).await
    };
    tokio::select! {
        r = grpc => r.context("gRPC server")?,
        r = http => r.context("HTTP server")?,
        r = monitoring => r.context("monitoring server")?,
        _ = shutdown_signal() => info!("shutting down"),
    }
    Ok(())
}

impl Discovery {
    /// Swaps in a new PushContext and updates the gauges derived from it.
    fn install(&self, ctx: PushContext) -> Arc<PushContext> {
        self.metrics
            .observe_pushcontext_init(ctx.init_duration.as_secs_f64());
        self.metrics.set_services(ctx.all_services().len() as i64);
        self.metrics
            .set_virtual_services(ctx.configs.virtual_services.len() as i64);
        let ctx = Arc::new(ctx);
        self.push.store(ctx.clone());
        ctx
    }

    /// Runs one debounced push: a full push rebuilds the PushContext; an EDS-only push
    /// reuses the current one (the endpoint index already holds the new endpoints).
    async fn push(&self, mut req: PushRequest) {
        for (reason, count) in &req.reason {
            self.metrics
                .inc_push_trigger(reason.as_str(), u64::from(*count));
        }
        let ctx = if req.full {
            let env = self.env.clone();
            match tokio::task::spawn_blocking(move || env.build_push_context()).await {
                Ok(ctx) => self.install(ctx),
                Err(e) => {
                    warn!(error = %e, "building the PushContext failed; keeping the last one");
                    self.metrics.inc_internal_error();
                    return;
                }
            }
        } else {
            self.push.load_full()
        };
        info!(version = %ctx.version, full = req.full, reason = %req.reason_summary(), "push");
        req.push = Some(ctx);
        self.xds.push(req);
    }

    fn enqueue(&self, req: PushRequest) {
        let kind = if req.full { "config" } else { "eds" };
        self.metrics.inc_inbound_update(kind);
        let _ = self.events.send(req);
    }
}

/// Polls the config directory and feeds changes to the debouncer. A thread of its own:
/// file reads are blocking, and nothing else waits on it.
fn watch_files(mut source: FileSource, discovery: Arc<Discovery>) {
    loop {
        std::thread::sleep(FILE_POLL_INTERVAL);
        if !source.poll_changed() {
            continue;
        }
        let scan = source.scan();
        log_errors(&scan.errors);
        for req in discovery.env.apply_scan(scan) {
            discovery.enqueue(req);
        }
    }
}

fn log_errors(errors: &[crate::config::file::SourceError]) {
    for e in errors {
        warn!(object = %e.key, file = %e.file, "invalid config: {}", e.message);
    }
}

async fn serve_grpc(addr: SocketAddr, xds: Arc<XdsServer>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding gRPC address {addr}"))?;
    // tonic ignores its tcp_nodelay setting for a caller-supplied stream; without
    // TCP_NODELAY, Nagle stalls each small ADS exchange by ~40 ms.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(xds.service())
        .serve_with_incoming(incoming)
        .await
        .context("serving ADS")
}

async fn serve_http(addr: SocketAddr, router: axum::Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding HTTP address {addr}"))?;
    axum::serve(listener, router).await.context("serving HTTP")
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

impl DebugSource for Discovery {
    fn ready(&self) -> Result<(), String> {
        if self.xds.is_ready() {
            Ok(())
        } else {
            Err("discovery is not ready: caches not synced yet".to_string())
        }
    }

    fn push_context(&self) -> Arc<PushContext> {
        self.push.load_full()
    }

    fn connections(&self) -> Vec<ConnectionStatus> {
        self.xds.connections()
    }

    fn trigger_push(&self) -> usize {
        let mut req = PushRequest::full(TriggerReason::Debug, []);
        req.forced = true;
        req.push = Some(self.push.load_full());
        self.xds.push(req);
        self.xds.connection_count()
    }

    fn configs(&self) -> Vec<IstioConfig> {
        self.env.configs()
    }

    fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    fn mesh_config(&self) -> serde_json::Value {
        serde_json::to_value(&*self.env.mesh).unwrap_or_default()
    }
}
