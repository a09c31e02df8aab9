//! The Kubernetes registry fed by the API server: kube-runtime watchers over Services,
//! EndpointSlices, Pods (cut down, see [`shrink`]), and the metadata of Nodes and
//! Namespaces (locality and network labels, see [`augment`]); with
//! [`crate::config::crd_watch`], Istio config from its CRDs.
//!
//! Every watch sends its updates to one applier thread, which batches whatever is
//! queued and hands it to [`Environment::apply_from`] — the path the config directory
//! takes too, so conversion, validation and the pushes a change implies are the same.
//! Nothing is pushed until every watch has listed once (initial sync): the first
//! PushContext is built from the complete state, and `/ready` and the ADS port wait
//! for it, as Istio's wait for informer caches to sync.

mod augment;
mod backoff;
mod batch;
mod client;
mod relist;
mod shrink;
mod watch;

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PartialObjectMeta;
use kube::runtime::watcher::{self, watcher};
use tokio::sync::{mpsc, watch as signal};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::environment::{Environment, Source};
use crate::metrics::Metrics;
use crate::push::request::PushRequest;
use batch::{Applier, REGISTRY_STREAMS};

pub use batch::{CRDS, Update};
pub use client::{ClientError, connect};
pub use relist::Delta;
pub use shrink::json as shrink_json;
pub use watch::drive;

/// Where updates go.
pub type UpdateSender = mpsc::UnboundedSender<Update>;

/// Most updates applied as one change set.
const MAX_BATCH: usize = 4096;

#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// Watch Services, EndpointSlices, Pods, Nodes and Namespaces.
    pub registry: bool,
    /// Watch Istio's CRDs for config.
    pub config: bool,
    /// Labels endpoints with `topology.istio.io/cluster`.
    pub cluster_id: String,
}

/// The running watches. Dropping it stops them.
pub struct KubeSource {
    synced: signal::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl KubeSource {
    /// Starts the watches (on the current Tokio runtime) and the applier thread.
    /// Changes reach `push` only after initial sync; until then the caller builds its
    /// first PushContext from the complete state ([`KubeSource::wait_synced`]).
    pub fn start(
        client: kube::Client,
        env: Arc<Environment>,
        metrics: Arc<Metrics>,
        options: KubeOptions,
        push: impl Fn(PushRequest) + Send + 'static,
    ) -> std::io::Result<KubeSource> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut expected = Vec::new();
        let mut tasks = Vec::new();
        if options.registry {
            expected.extend(REGISTRY_STREAMS);
            tasks.extend(spawn_registry(&client, &tx, &metrics));
        }
        if options.config {
            expected.push(CRDS);
            tasks.push(tokio::spawn(crate::config::crd_watch::run(
                client.clone(),
                tx.clone(),
                metrics.clone(),
            )));
        }
        drop(tx);
        let applier = Applier::new(&options.cluster_id, expected);
        let (synced_tx, synced) = signal::channel(applier.is_synced());
        std::thread::Builder::new()
            .name("kube-apply".into())
            .spawn(move || apply_loop(rx, applier, env, synced_tx, push))?;
        Ok(KubeSource { synced, tasks })
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Resolves once every watch has listed everything once.
    pub async fn wait_synced(&mut self) {
        // An error means the applier is gone; readiness then never comes.
        if self.synced.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn spawn_registry(
    client: &kube::Client,
    tx: &UpdateSender,
    metrics: &Metrics,
) -> Vec<JoinHandle<()>> {
    // Istio's `type` labels for the registry's informers.
    let events = |kind: &str| Some(metrics.k8s_reg_events(kind));
    // A list served from the API server's watch cache, as client-go's informers ask.
    let config = || watcher::Config::default().any_semantic();
    vec![
        tokio::spawn(drive(
            batch::SERVICES,
            watcher(Api::<KubeService>::all(client.clone()), config()),
            events("Services"),
            send(tx, |d: Delta<KubeService>| {
                Update::Service(d.map(|mut s| {
                    shrink::meta(&mut s.metadata);
                    Box::new(s)
                }))
            }),
        )),
        tokio::spawn(drive(
            batch::ENDPOINT_SLICES,
            watcher(Api::<EndpointSlice>::all(client.clone()), config()),
            events("EndpointSlice"),
            send(tx, |d: Delta<EndpointSlice>| {
                Update::EndpointSlice(d.map(|mut s| {
                    shrink::meta(&mut s.metadata);
                    Box::new(s)
                }))
            }),
        )),
        tokio::spawn(drive(
            batch::PODS,
            watcher(Api::<Pod>::all(client.clone()), config()),
            events("Pods"),
            send(tx, |d: Delta<Pod>| {
                Update::Pod(d.map(|p| Box::new(shrink::pod(p))))
            }),
        )),
        tokio::spawn(drive(
            batch::NODES,
            watcher(
                Api::<PartialObjectMeta<Node>>::all(client.clone()),
                config(),
            ),
            events("Nodes"),
            send(tx, |d: Delta<PartialObjectMeta<Node>>| {
                Update::Node(d.map(|m| Box::new(m.metadata)))
            }),
        )),
        tokio::spawn(drive(
            batch::NAMESPACES,
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                config(),
            ),
            events("Namespaces"),
            send(tx, |d: Delta<PartialObjectMeta<Namespace>>| {
                Update::Namespace(d.map(|m| Box::new(m.metadata)))
            }),
        )),
    ]
}

fn send<K>(
    tx: &UpdateSender,
    wrap: fn(Delta<K>) -> Update,
) -> impl FnMut(Delta<K>) -> bool + use<K> {
    let tx = tx.clone();
    move |delta| tx.send(wrap(delta)).is_ok()
}

/// Applies queued updates in batches until every watch is gone. A thread of its own:
/// applying is synchronous work under the environment's lock.
fn apply_loop(
    mut rx: mpsc::UnboundedReceiver<Update>,
    mut applier: Applier,
    env: Arc<Environment>,
    synced: signal::Sender<bool>,
    push: impl Fn(PushRequest),
) {
    let started = Instant::now();
    let mut logged_pending = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(update) => batch.push(update),
                Err(_) => break,
            }
        }
        let was_synced = applier.is_synced();
        let scan = applier.apply(batch);
        let requests = env.apply_from(Source::Kubernetes, scan);
        if was_synced {
            for request in requests {
                push(request);
            }
        } else if applier.is_synced() {
            info!(
                elapsed = ?started.elapsed(),
                "Kubernetes caches synced"
            );
            let _ = synced.send(true);
        } else {
            let pending = applier.pending();
            if pending != logged_pending {
                debug!(waiting_for = ?pending, "Kubernetes caches syncing");
                logged_pending = pending;
            }
        }
    }
    if !applier.is_synced() {
        warn!("Kubernetes watches stopped before they synced");
    }
}
