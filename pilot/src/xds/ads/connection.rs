//! One ADS stream: a task that answers the proxy's requests and delivers the pushes the
//! push queue hands it, one at a time, in Istio's push order. The protocol decisions
//! live in `sotw` and `delta`; this file is the I/O around them.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use strait_proto::envoy::config::core::v3::Node;
use strait_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use strait_proto::xds::type_url::{self, metric_type, short_type};
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::server::Shared;
use super::watch::{Decision, Scope, Sent, Watch, Watches, is_generated, nonce, push_order};
use super::{delta, node, queue::PushQueue, sotw};
use crate::model::service::parse_cluster_name;
use crate::model::{Proxy, PushContext};
use crate::push::request::PushRequest;
use crate::xds::status::ConnectionStatus;
use crate::xds::{self, Resource};

/// The wire protocol of a stream: SotW or Delta.
pub(crate) trait Protocol: Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    const DELTA: bool;
    fn node(req: &Self::Request) -> Option<&Node>;
    fn type_url(req: &Self::Request) -> &str;
    fn decide(watches: &mut Watches, req: &Self::Request) -> Decision;
    fn build(
        watch: &Watch,
        type_url: &str,
        version: &str,
        nonce: String,
        resources: Vec<Resource>,
        scope: &Scope,
    ) -> Option<(Self::Response, Sent)>;
}

pub(crate) struct Sotw;

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const DELTA: bool = false;

    fn node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn type_url(req: &DiscoveryRequest) -> &str {
        &req.type_url
    }

    fn decide(watches: &mut Watches, req: &DiscoveryRequest) -> Decision {
        sotw::decide(watches, req)
    }

    fn build(
        watch: &Watch,
        type_url: &str,
        version: &str,
        nonce: String,
        resources: Vec<Resource>,
        scope: &Scope,
    ) -> Option<(DiscoveryResponse, Sent)> {
        Some(sotw::build(
            watch, type_url, version, nonce, resources, scope,
        ))
    }
}

pub(crate) struct Delta;

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const DELTA: bool = true;

    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn type_url(req: &DeltaDiscoveryRequest) -> &str {
        &req.type_url
    }

    fn decide(watches: &mut Watches, req: &DeltaDiscoveryRequest) -> Decision {
        delta::decide(watches, req)
    }

    fn build(
        watch: &Watch,
        type_url: &str,
        version: &str,
        nonce: String,
        resources: Vec<Resource>,
        scope: &Scope,
    ) -> Option<(DeltaDiscoveryResponse, Sent)> {
        delta::build(watch, type_url, version, nonce, resources, scope)
    }
}

/// A push handed to a connection. Dropping it (done, failed, or the connection gone)
/// frees the throttle slot and lets the queue hand the connection its next push.
pub(crate) struct PushEvent {
    pub req: PushRequest,
    pub done: PushDone,
}

pub(crate) struct PushDone {
    _permit: OwnedSemaphorePermit,
    queue: Arc<PushQueue<String>>,
    key: String,
}

impl PushDone {
    pub fn new(permit: OwnedSemaphorePermit, queue: Arc<PushQueue<String>>, key: String) -> Self {
        PushDone {
            _permit: permit,
            queue,
            key,
        }
    }
}

impl Drop for PushDone {
    fn drop(&mut self) {
        self.queue.mark_done(&self.key);
    }
}

/// What the server keeps about a live connection; the connection task is the only writer.
pub(crate) struct ConnectionHandle {
    pub id: String,
    pub address: String,
    pub connected_at: SystemTime,
    pub delta: bool,
    pub pushes: mpsc::Sender<PushEvent>,
    pub state: Mutex<ConnectionState>,
}

pub(crate) struct ConnectionState {
    pub proxy: Arc<Proxy>,
    pub watches: Watches,
}

impl ConnectionHandle {
    /// Whether this proxy watches EDS for a cluster of one of these hosts.
    pub fn watches_endpoints_of(&self, hosts: &BTreeSet<&str>) -> bool {
        let state = self.state.lock();
        state.watches.get(type_url::ENDPOINT).is_some_and(|w| {
            w.names
                .iter()
                .any(|n| parse_cluster_name(n).is_some_and(|k| hosts.contains(k.host)))
        })
    }

    pub fn status(&self) -> ConnectionStatus {
        let state = self.state.lock();
        ConnectionStatus {
            connection_id: self.id.clone(),
            connected_at: self.connected_at,
            address: self.address.clone(),
            proxy: state.proxy.clone(),
            delta: self.delta,
            watches: state
                .watches
                .iter()
                .map(|(t, w)| (t.clone(), w.status()))
                .collect(),
        }
    }
}

#[derive(Debug, Error)]
enum ConnectionError {
    #[error("stream closed by the client")]
    Closed,
    #[error("timeout sending {0}")]
    WriteTimeout(String),
    #[error("receive error: {0}")]
    Receive(Status),
}

/// Istio numbers connections across the process: `<pod>.<ns>-<n>`.
static CONNECTION_NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs one stream to its end.
pub(crate) async fn serve<P: Protocol>(
    shared: Arc<Shared>,
    mut requests: Streaming<P::Request>,
    responses: mpsc::Sender<Result<P::Response, Status>>,
    address: String,
) {
    let first = loop {
        match requests.next().await {
            // The agent may probe health before its first real request.
            Some(Ok(req)) if P::type_url(&req) == type_url::HEALTH_INFO => continue,
            Some(Ok(req)) => break req,
            Some(Err(status)) => {
                debug!(%address, "ADS: stream failed before the first request: {status}");
                return;
            }
            None => return,
        }
    };
    let proxy = match node::proxy_from_node(P::node(&first)) {
        Ok(proxy) => proxy,
        Err(status) => {
            warn!(%address, "ADS: rejecting stream: {}", status.message());
            let _ = responses.send(Err(status)).await;
            return;
        }
    };
    let number = CONNECTION_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let id = format!("{}-{number}", proxy.id);
    let span = info_span!("ads", conn = %id);
    run::<P>(shared, id, address, proxy, first, requests, responses)
        .instrument(span)
        .await;
}

async fn run<P: Protocol>(
    shared: Arc<Shared>,
    id: String,
    address: String,
    proxy: Proxy,
    first: P::Request,
    requests: Streaming<P::Request>,
    responses: mpsc::Sender<Result<P::Response, Status>>,
) {
    let (push_tx, push_rx) = mpsc::channel(shared.options.connection_queue.max(1));
    let version = proxy
        .metadata
        .istio_version
        .clone()
        .unwrap_or_else(|| "unknown".to_string());
    let handle = Arc::new(ConnectionHandle {
        id: id.clone(),
        address: address.clone(),
        connected_at: SystemTime::now(),
        delta: P::DELTA,
        pushes: push_tx,
        state: Mutex::new(ConnectionState {
            proxy: Arc::new(proxy),
            watches: Watches::new(),
        }),
    });
    // Registered before the context is read: a push for a newer context either finds
    // this connection, or happened before the read and so is already in it.
    shared.register(handle.clone(), &version);
    let push = shared.push.load_full();
    let mut conn = Connection::<P> {
        shared: shared.clone(),
        handle,
        responses,
        last_push: push.clone(),
        _protocol: std::marker::PhantomData,
    };
    conn.refresh_proxy(&push);
    info!(%address, delta = P::DELTA, "ADS: new connection for node:{id}");

    let result = conn.run(first, requests, push_rx).await;
    shared.unregister(&id, &version);
    match result {
        Ok(()) => info!(%address, "ADS: {id} terminated"),
        Err(err) => info!(%address, "ADS: {id} terminated: {err}"),
    }
}

struct Connection<P: Protocol> {
    shared: Arc<Shared>,
    handle: Arc<ConnectionHandle>,
    responses: mpsc::Sender<Result<P::Response, Status>>,
    /// The context of the last push; requests are answered from it so a proxy never
    /// gets a mix of two versions from one stream.
    last_push: Arc<PushContext>,
    _protocol: std::marker::PhantomData<fn() -> P>,
}

impl<P: Protocol> Connection<P> {
    async fn run(
        &mut self,
        first: P::Request,
        mut requests: Streaming<P::Request>,
        mut pushes: mpsc::Receiver<PushEvent>,
    ) -> Result<(), ConnectionError> {
        self.handle_request(first).await?;
        // Requests are served first (the proxy is waiting on them), but after two in a
        // row a waiting push gets its turn, as Istio's 2:1 priority.
        let mut requests_in_a_row = 0;
        loop {
            if requests_in_a_row >= 2 {
                requests_in_a_row = 0;
                if let Ok(event) = pushes.try_recv() {
                    self.handle_push(event).await?;
                    continue;
                }
            }
            tokio::select! {
                biased;
                req = requests.next() => match req {
                    Some(Ok(req)) => {
                        requests_in_a_row += 1;
                        self.handle_request(req).await?;
                    }
                    Some(Err(status)) => return Err(ConnectionError::Receive(status)),
                    None => return Ok(()),
                },
                event = pushes.recv() => match event {
                    Some(event) => {
                        requests_in_a_row = 0;
                        self.handle_push(event).await?;
                    }
                    None => return Ok(()),
                },
                () = self.responses.closed() => return Err(ConnectionError::Closed),
            }
        }
    }

    async fn handle_request(&mut self, req: P::Request) -> Result<(), ConnectionError> {
        let type_url = P::type_url(&req).to_string();
        if type_url == type_url::HEALTH_INFO {
            return Ok(());
        }
        let decision = P::decide(&mut self.handle.state.lock().watches, &req);
        let stype = short_type(&type_url);
        let id = &self.handle.id;
        match decision {
            Decision::Nack { code, message } => {
                self.shared.metrics.inc_xds_reject(metric_type(&type_url));
                warn!(
                    "ADS:{stype}: ACK ERROR {id} {:?}:{message}",
                    tonic::Code::from(code)
                );
            }
            Decision::Stale => {
                self.shared
                    .metrics
                    .inc_expired_nonce(metric_type(&type_url));
                debug!("ADS:{stype}: REQ {id} expired nonce");
            }
            Decision::Ack => debug!("ADS:{stype}: ACK {id}"),
            Decision::Unsubscribe => debug!("ADS:{stype}: UNSUBSCRIBE {id}"),
            Decision::Respond(scope) => {
                debug!("ADS:{stype}: REQ {id} responding");
                let push = self.last_push.clone();
                self.respond(&type_url, &push, scope).await?;
            }
        }
        Ok(())
    }

    async fn handle_push(&mut self, event: PushEvent) -> Result<(), ConnectionError> {
        let PushEvent { req, done } = event;
        let push = req
            .push
            .clone()
            .unwrap_or_else(|| self.shared.push.load_full());
        if req.full {
            self.refresh_proxy(&push);
        }
        self.last_push = push.clone();
        let hosts: BTreeSet<&str> = req.updated_endpoint_hosts().collect();
        let types = push_order(self.handle.state.lock().watches.keys());
        let mut pushed = 0;
        let mut changed_clusters = BTreeSet::new();
        for type_url in types {
            let scope = if req.full && type_url == type_url::ENDPOINT {
                Scope::all(req.forced).with_refresh(std::mem::take(&mut changed_clusters))
            } else if req.full {
                Scope::all(req.forced)
            } else if type_url == type_url::ENDPOINT {
                let names = self.endpoints_of(&hosts);
                if names.is_empty() {
                    continue;
                }
                Scope::names(names, req.forced)
            } else {
                continue;
            };
            let Some(sent) = self.respond(&type_url, &push, scope).await? else {
                continue;
            };
            pushed += 1;
            if type_url == type_url::CLUSTER {
                changed_clusters = sent.versions.into_iter().map(|(name, _)| name).collect();
            }
        }
        if pushed > 0 {
            self.shared
                .metrics
                .observe_convergence(req.start.elapsed().as_secs_f64());
        }
        debug!(
            full = req.full,
            reason = %req.reason_summary(),
            version = %push.version,
            "ADS: pushed {pushed} types to {}",
            self.handle.id
        );
        drop(done);
        Ok(())
    }

    /// Watched EDS clusters whose service is one of `hosts`.
    fn endpoints_of(&self, hosts: &BTreeSet<&str>) -> BTreeSet<String> {
        let state = self.handle.state.lock();
        let Some(watch) = state.watches.get(type_url::ENDPOINT) else {
            return BTreeSet::new();
        };
        watch
            .names
            .iter()
            .filter(|n| parse_cluster_name(n).is_some_and(|k| hosts.contains(k.host)))
            .cloned()
            .collect()
    }

    /// Recomputes what depends on the registry (the services this workload serves).
    fn refresh_proxy(&self, push: &PushContext) {
        let mut proxy = (*self.handle.state.lock().proxy).clone();
        proxy.service_targets = push.service_targets(&proxy);
        self.handle.state.lock().proxy = Arc::new(proxy);
    }

    /// Generates and sends one type; what went out, if anything.
    async fn respond(
        &mut self,
        type_url: &str,
        push: &Arc<PushContext>,
        scope: Scope,
    ) -> Result<Option<Sent>, ConnectionError> {
        if !is_generated(type_url) {
            return Ok(None);
        }
        let started = Instant::now();
        let (proxy, names) = {
            let state = self.handle.state.lock();
            let Some(watch) = state.watches.get(type_url) else {
                return Ok(None);
            };
            let names: Vec<String> = match &scope.names {
                Some(names) => names.iter().cloned().collect(),
                None => watch.names.iter().cloned().collect(),
            };
            (state.proxy.clone(), names)
        };
        let generated = catch_unwind(AssertUnwindSafe(|| {
            xds::generate(type_url, &proxy, push, &names)
        }));
        let resources = match generated {
            Ok(resources) => resources,
            Err(panic) => {
                self.shared.metrics.inc_internal_error();
                error!(
                    "ADS:{}: generator failed for {}: {}; push skipped",
                    short_type(type_url),
                    self.handle.id,
                    panic_message(panic.as_ref())
                );
                return Ok(None);
            }
        };
        let built = {
            let state = self.handle.state.lock();
            let Some(watch) = state.watches.get(type_url) else {
                return Ok(None);
            };
            P::build(
                watch,
                type_url,
                &push.version,
                nonce(&push.version),
                resources,
                &scope,
            )
        };
        let Some((response, sent)) = built else {
            return Ok(None);
        };
        self.send(type_url, response).await?;
        if let Some(watch) = self.handle.state.lock().watches.get_mut(type_url) {
            watch.record_sent(&sent);
        }
        let mtype = metric_type(type_url);
        let metrics = &self.shared.metrics;
        metrics.inc_xds_push(mtype);
        metrics.observe_push_time(mtype, started.elapsed().as_secs_f64());
        metrics.observe_config_size(mtype, sent.bytes);
        debug!(
            "{}: PUSH for node:{} resources:{} removed:{} size:{}B version:{}",
            short_type(type_url),
            self.handle.id,
            sent.resources,
            sent.removed.len(),
            sent.bytes,
            sent.version
        );
        Ok(Some(sent))
    }

    /// Hands a response to the stream. A proxy that stops reading must not hold its
    /// push slot forever: past the send timeout the stream is given up, as Istio does.
    async fn send(&self, type_url: &str, response: P::Response) -> Result<(), ConnectionError> {
        let timeout = self.shared.options.send_timeout;
        let send = self.responses.send(Ok(response));
        let sent = if timeout.is_zero() {
            send.await
        } else {
            match tokio::time::timeout(timeout, send).await {
                Ok(sent) => sent,
                Err(_) => {
                    self.shared.metrics.inc_write_timeout();
                    info!(
                        "Timeout writing {}: {}",
                        self.handle.id,
                        short_type(type_url)
                    );
                    return Err(ConnectionError::WriteTimeout(
                        short_type(type_url).to_string(),
                    ));
                }
            }
        };
        sent.map_err(|_| ConnectionError::Closed)
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}
