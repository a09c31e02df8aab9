//! The ADS gRPC service and the push fan-out: `XdsServer` tracks connections, queues
//! pushes for them and lets at most `push_throttle` pushes run at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use strait_proto::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use strait_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::connection::{self, ConnectionHandle, Delta, Protocol, PushDone, PushEvent, Sotw};
use super::queue::{Dequeued, PushQueue};
use crate::metrics::Metrics;
use crate::model::PushContext;
use crate::push::request::PushRequest;
use crate::xds::status::ConnectionStatus;

/// Largest request accepted from a proxy (Istio's `ISTIO_GPRC_MAXRECVMSGSIZE`).
pub const MAX_RECV_MSG_SIZE: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct XdsOptions {
    /// Pushes in flight at once (`PILOT_PUSH_THROTTLE`); 0 picks Istio's default,
    /// `min(15 + 5 * cores, 100)`.
    pub push_throttle: usize,
    /// Pushes a connection may have waiting; requests merge in the push queue, so 1 is
    /// enough.
    pub connection_queue: usize,
    /// How long one response may wait for the proxy to read it before the stream is
    /// given up (`PILOT_XDS_SEND_TIMEOUT`); zero waits forever, Istio's default.
    pub send_timeout: Duration,
}

impl Default for XdsOptions {
    fn default() -> Self {
        XdsOptions {
            push_throttle: 0,
            connection_queue: 1,
            send_timeout: Duration::ZERO,
        }
    }
}

impl XdsOptions {
    pub fn effective_push_throttle(&self) -> usize {
        if self.push_throttle > 0 {
            return self.push_throttle;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (15 + 5 * cores).min(100)
    }
}

/// State shared by the service, the connection tasks and the push sender.
pub(crate) struct Shared {
    pub push: Arc<ArcSwap<PushContext>>,
    pub metrics: Arc<Metrics>,
    pub options: XdsOptions,
    ready: AtomicBool,
    connections: RwLock<HashMap<String, Arc<ConnectionHandle>>>,
    queue: Arc<PushQueue<String>>,
    throttle: Arc<Semaphore>,
    /// Connected proxies per Istio version, for `pilot_xds{version}`.
    versions: Mutex<HashMap<String, i64>>,
    sender_started: AtomicBool,
}

impl Shared {
    pub fn register(&self, handle: Arc<ConnectionHandle>, version: &str) {
        self.connections.write().insert(handle.id.clone(), handle);
        self.count_version(version, 1);
    }

    pub fn unregister(&self, id: &str, version: &str) {
        self.connections.write().remove(id);
        self.queue.remove(&id.to_string());
        self.count_version(version, -1);
    }

    fn count_version(&self, version: &str, delta: i64) {
        let mut versions = self.versions.lock();
        let count = versions.entry(version.to_string()).or_default();
        *count += delta;
        self.metrics.set_xds_clients(version, *count);
    }

    /// Starts the push sender on the current runtime, once.
    fn ensure_sender(self: &Arc<Self>) {
        if self.sender_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sender_started.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(send_pushes(self.clone()));
    }
}

/// Hands queued pushes to their connections, at most `push_throttle` at a time. A slot
/// is held until the connection finished (or gave up) that push, so a slow proxy only
/// ever occupies its own slot.
async fn send_pushes(shared: Arc<Shared>) {
    loop {
        let Ok(permit) = shared.throttle.clone().acquire_owned().await else {
            return;
        };
        let Some(Dequeued { key, req, enqueued }) = shared.queue.dequeue().await else {
            return;
        };
        shared
            .metrics
            .observe_queue_time(enqueued.elapsed().as_secs_f64());
        let done = PushDone::new(permit, shared.queue.clone(), key.clone());
        let Some(handle) = shared.connections.read().get(&key).cloned() else {
            continue;
        };
        match handle.pushes.try_send(PushEvent { req, done }) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            // The queue hands a connection one push at a time, so its channel has room;
            // should that ever not hold, wait for it without blocking the others.
            Err(TrySendError::Full(event)) => {
                tokio::spawn(async move {
                    let _ = handle.pushes.send(event).await;
                });
            }
        }
    }
}

/// The ADS server. Cheap to share behind the `Arc` `new` returns.
pub struct XdsServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for XdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsServer")
            .field("connections", &self.connection_count())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Drop for XdsServer {
    fn drop(&mut self) {
        self.shared.queue.close();
    }
}

impl XdsServer {
    pub fn new(
        push: Arc<ArcSwap<PushContext>>,
        metrics: Arc<Metrics>,
        options: XdsOptions,
    ) -> Arc<XdsServer> {
        let throttle = options.effective_push_throttle();
        let shared = Arc::new(Shared {
            push,
            metrics,
            options,
            ready: AtomicBool::new(false),
            connections: RwLock::new(HashMap::new()),
            queue: Arc::new(PushQueue::new()),
            throttle: Arc::new(Semaphore::new(throttle)),
            versions: Mutex::new(HashMap::new()),
            sender_started: AtomicBool::new(false),
        });
        shared.ensure_sender();
        super::version::preload();
        Arc::new(XdsServer { shared })
    }

    /// Lets streams in; until then they fail with `Unavailable`, as istiod's before its
    /// caches are synced.
    pub fn set_ready(&self) {
        self.shared.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The gRPC service, to add to a `tonic` server.
    pub fn service(self: &Arc<Self>) -> AggregatedDiscoveryServiceServer<AdsService> {
        AggregatedDiscoveryServiceServer::new(AdsService {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(MAX_RECV_MSG_SIZE)
        .max_encoding_message_size(usize::MAX)
    }

    /// Queues a push for every connection, or for an EDS-only push only for those that
    /// watch endpoints of an updated host. `req.push` is the context to push.
    pub fn push(&self, req: PushRequest) {
        self.shared.ensure_sender();
        let hosts: BTreeSet<&str> = req.updated_endpoint_hosts().collect();
        let connections: Vec<Arc<ConnectionHandle>> =
            self.shared.connections.read().values().cloned().collect();
        let mut queued = 0;
        for conn in connections {
            if req.full || conn.watches_endpoints_of(&hosts) {
                self.shared.queue.enqueue(conn.id.clone(), req.clone());
                queued += 1;
            }
        }
        debug!(
            full = req.full,
            reason = %req.reason_summary(),
            "ADS: queued push for {queued} connections"
        );
    }

    pub fn connections(&self) -> Vec<ConnectionStatus> {
        let handles: Vec<Arc<ConnectionHandle>> =
            self.shared.connections.read().values().cloned().collect();
        let mut out: Vec<ConnectionStatus> = handles.iter().map(|h| h.status()).collect();
        out.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        out
    }

    pub fn connection_count(&self) -> usize {
        self.shared.connections.read().len()
    }
}

/// The response half of an ADS stream.
pub type ResponseStream<R> = ReceiverStream<Result<R, Status>>;

/// The tonic service behind [`XdsServer::service`].
pub struct AdsService {
    shared: Arc<Shared>,
}

impl AdsService {
    fn start<P: Protocol>(
        &self,
        request: Request<Streaming<P::Request>>,
    ) -> Result<Response<ResponseStream<P::Response>>, Status> {
        if !self.shared.ready.load(Ordering::Acquire) {
            return Err(Status::unavailable(
                "server is not ready to serve discovery information",
            ));
        }
        self.shared.ensure_sender();
        let address = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        // One response in the channel: beyond what HTTP/2 buffers, a proxy that stops
        // reading makes the next send wait, which the send timeout bounds.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(connection::serve::<P>(
            self.shared.clone(),
            request.into_inner(),
            tx,
            address,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        self.start::<Sotw>(request)
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        self.start::<Delta>(request)
    }
}
