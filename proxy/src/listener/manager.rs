//! The listener manager: binds listeners, runs an accept loop per worker on each bound
//! socket, and swaps listener configs without closing sockets. Connections keep the
//! config they were accepted with. A removed or replaced listener stops accepting and
//! its connections drain; a listener updated in place drains the connections of the
//! filter chains that changed (Envoy's in-place filter chain update).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::connection::{ConnectionHandler, Installed, ListenerLookup};
use crate::config::listener::Listener;
use crate::stats::Gauge;
use crate::telemetry::{ListenerTelemetry, Telemetry};
use crate::worker::Workers;

/// Envoy's default `--drain-time-s`.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(600);

/// A listener that could not be put in place, for the LDS NACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerError {
    pub name: String,
    pub reason: String,
}

struct Active {
    current: Arc<ArcSwap<Installed>>,
    address: SocketAddr,
    bound: bool,
    /// Flipped to true to stop the accept loops.
    stop: Arc<watch::Sender<bool>>,
}

pub struct ListenerManager {
    workers: Arc<Workers>,
    handler: Arc<dyn ConnectionHandler>,
    active: Mutex<HashMap<String, Active>>,
    /// Every listener by address, for the original-destination handoff.
    lookup: Arc<ArcSwap<ListenerLookup>>,
    /// Connections open on any listener, for draining.
    open_connections: Arc<AtomicUsize>,
    telemetry: Arc<Telemetry>,
    drain_time: Duration,
}

/// Counts a connection as open until dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(counter: &Arc<AtomicUsize>) -> OpenConnection {
        counter.fetch_add(1, Ordering::Relaxed);
        OpenConnection(counter.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn is_inbound(name: &str) -> bool {
    name.contains("inbound") || name.contains("Inbound")
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl ListenerManager {
    /// A manager whose stats nobody reads, draining for Envoy's default time.
    pub fn new(workers: Arc<Workers>, handler: Arc<dyn ConnectionHandler>) -> ListenerManager {
        ListenerManager::with_telemetry(workers, handler, Telemetry::detached(), DEFAULT_DRAIN_TIME)
    }

    pub fn with_telemetry(
        workers: Arc<Workers>,
        handler: Arc<dyn ConnectionHandler>,
        telemetry: Arc<Telemetry>,
        drain_time: Duration,
    ) -> ListenerManager {
        ListenerManager {
            workers,
            handler,
            active: Mutex::new(HashMap::new()),
            lookup: Arc::new(ArcSwap::from_pointee(ListenerLookup::default())),
            open_connections: Arc::new(AtomicUsize::new(0)),
            telemetry,
            drain_time,
        }
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    pub fn drain_time(&self) -> Duration {
        self.drain_time
    }

    /// Connections currently open on all listeners.
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Makes the given listeners the complete set (state-of-the-world). New sockets are
    /// bound before anything else changes, so a failure rejects the whole update and
    /// leaves the previous set serving. A listener passed as the same `Arc` as before
    /// is unchanged.
    pub fn update(&self, listeners: Vec<Arc<Listener>>) -> Result<(), Vec<ListenerError>> {
        let mut errors = Vec::new();
        let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
        for l in listeners.iter().filter(|l| l.bind_to_port) {
            if let Some(other) = seen.insert(l.address, &l.name) {
                errors.push(ListenerError {
                    name: l.name.clone(),
                    reason: format!(
                        "duplicate address {}: already used by listener {other}",
                        l.address
                    ),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let mut active = self.active.lock();
        let mut fresh: Vec<(Arc<Listener>, Option<std::net::TcpListener>)> = Vec::new();
        for listener in &listeners {
            let stays = active
                .get(&listener.name)
                .is_some_and(|a| a.address == listener.address && a.bound == listener.bind_to_port);
            if stays {
                continue;
            }
            if !listener.bind_to_port {
                fresh.push((listener.clone(), None));
                continue;
            }
            // SO_REUSEPORT lets a replacement bind while the listener it replaces drains.
            match bind(listener) {
                Ok(socket) => fresh.push((listener.clone(), Some(socket))),
                Err(e) => errors.push(ListenerError {
                    name: listener.name.clone(),
                    reason: format!("cannot bind {}: {e}", listener.address),
                }),
            }
        }
        if !errors.is_empty() {
            let stats = self.telemetry.listener_manager();
            stats.listener_create_failure.add(count(errors.len()));
            return Err(errors);
        }

        let stats = self.telemetry.listener_manager();
        let deadline = Instant::now() + self.drain_time;
        let wanted: HashSet<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
        active.retain(|name, a| {
            let keep = wanted.contains(name.as_str());
            if !keep {
                info!(listener = %name, "listener removed; its connections drain");
                let _ = a.stop.send(true);
                self.drain_listener(&a.current.load(), deadline);
                stats.listener_removed.inc();
            }
            keep
        });
        let replaced: HashSet<&str> = fresh.iter().map(|(l, _)| l.name.as_str()).collect();
        for listener in &listeners {
            if replaced.contains(listener.name.as_str()) {
                continue;
            }
            let Some(a) = active.get(&listener.name) else {
                continue;
            };
            let old = a.current.load_full();
            if Arc::ptr_eq(&old.config, listener) {
                continue;
            }
            let next = ListenerTelemetry::updated(&self.telemetry, listener, Some(&old.telemetry));
            let drained = old.telemetry.drain_replaced(&next, deadline);
            self.track_draining(&stats.total_filter_chains_draining, drained);
            a.current.store(Arc::new(Installed {
                config: listener.clone(),
                telemetry: Arc::new(next),
            }));
            stats.listener_modified.inc();
            stats.listener_in_place_updated.inc();
            stats.listener_create_success.add(count(self.workers.len()));
        }
        for (listener, socket) in fresh {
            match active.remove(&listener.name) {
                Some(old) => {
                    info!(listener = %listener.name, "listener replaced; the old one drains");
                    let _ = old.stop.send(true);
                    self.drain_listener(&old.current.load(), deadline);
                    stats.listener_modified.inc();
                }
                None => stats.listener_added.inc(),
            }
            let installed = Arc::new(Installed {
                telemetry: Arc::new(ListenerTelemetry::new(&self.telemetry, &listener)),
                config: listener.clone(),
            });
            let current = Arc::new(ArcSwap::new(installed));
            let (stop, stopped) = watch::channel(false);
            if let Some(socket) = socket {
                self.start_accepting(&listener, socket, current.clone(), stopped);
            }
            stats.listener_create_success.add(count(self.workers.len()));
            active.insert(
                listener.name.clone(),
                Active {
                    current,
                    address: listener.address,
                    bound: listener.bind_to_port,
                    stop: Arc::new(stop),
                },
            );
        }
        stats.total_listeners_active.set(count(active.len()));
        self.lookup.store(Arc::new(ListenerLookup::new(
            active.values().map(|a| a.current.load_full()).collect(),
        )));
        Ok(())
    }

    /// Every connection of a listener that is going away drains; the listener counts
    /// as draining for the drain time, as in Envoy.
    fn drain_listener(&self, installed: &Installed, deadline: Instant) {
        installed.telemetry.drain_all(deadline);
        let stats = self.telemetry.listener_manager();
        self.track_draining(&stats.total_listeners_draining, 1);
    }

    /// Raises a draining gauge by `n` for the drain time.
    fn track_draining(&self, gauge: &Gauge, n: usize) {
        if n == 0 {
            return;
        }
        let n = count(n);
        gauge.add(n);
        let gauge = gauge.clone();
        let drain_time = self.drain_time;
        match self.workers.iter().next() {
            Some(worker) => {
                worker.spawn(async move {
                    tokio::time::sleep(drain_time).await;
                    gauge.sub(n);
                });
            }
            None => gauge.sub(n),
        }
    }

    fn start_accepting(
        &self,
        listener: &Listener,
        socket: std::net::TcpListener,
        current: Arc<ArcSwap<Installed>>,
        stopped: watch::Receiver<bool>,
    ) {
        info!(listener = %listener.name, address = %listener.address, "listening");
        for worker in self.workers.iter() {
            let socket = match socket.try_clone() {
                Ok(s) => s,
                Err(e) => {
                    warn!(listener = %listener.name, error = %e, "cannot share the socket with a worker");
                    continue;
                }
            };
            let current = current.clone();
            let handler = self.handler.clone();
            let lookup = self.lookup.clone();
            let open = self.open_connections.clone();
            let mut stopped = stopped.clone();
            let name = listener.name.clone();
            worker.spawn(async move {
                let socket = match tokio::net::TcpListener::from_std(socket) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(listener = %name, error = %e, "cannot register the socket");
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        accepted = socket.accept() => match accepted {
                            Ok((stream, peer)) => {
                                let installed = current.load_full();
                                let handler = handler.clone();
                                let lookup = lookup.load_full();
                                let counted = OpenConnection::new(&open);
                                tokio::spawn(async move {
                                    handler.handle(stream, peer, installed, lookup).await;
                                    drop(counted);
                                });
                            }
                            Err(e) => {
                                debug!(listener = %name, error = %e, "accept failed");
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        },
                        _ = stopped.changed() => {
                            if *stopped.borrow() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    }

    /// Stops accepting on every listener (or the inbound ones); open connections go on.
    pub fn stop_accepting(&self, inbound_only: bool) {
        let active = self.active.lock();
        for (name, a) in active.iter() {
            if inbound_only && !is_inbound(name) {
                continue;
            }
            let _ = a.stop.send(true);
        }
    }

    /// Asks every connection of the listeners (or the inbound ones) to finish by
    /// `deadline`: HTTP/1 responses say `connection: close`, HTTP/2 connections get a
    /// GOAWAY, the rest close at the deadline. New connections are drained too.
    pub fn drain_connections(&self, inbound_only: bool, deadline: Instant) {
        let active = self.active.lock();
        for (name, a) in active.iter() {
            if inbound_only && !is_inbound(name) {
                continue;
            }
            a.current.load().telemetry.drain_all(deadline);
        }
    }

    /// Envoy's `/drain_listeners`: with `graceful`, connections drain for the drain
    /// time and then the listeners stop (unless `skip_exit`); otherwise they stop now.
    pub fn drain_listeners(&self, inbound_only: bool, graceful: bool, skip_exit: bool) {
        if !graceful {
            self.stop_accepting(inbound_only);
            return;
        }
        self.drain_connections(inbound_only, Instant::now() + self.drain_time);
        if skip_exit {
            return;
        }
        let stops: Vec<Arc<watch::Sender<bool>>> = self
            .active
            .lock()
            .iter()
            .filter(|(name, _)| !inbound_only || is_inbound(name))
            .map(|(_, a)| a.stop.clone())
            .collect();
        let drain_time = self.drain_time;
        let stop_all = move || {
            for stop in &stops {
                let _ = stop.send(true);
            }
        };
        match self.workers.iter().next() {
            Some(worker) => {
                worker.spawn(async move {
                    tokio::time::sleep(drain_time).await;
                    stop_all();
                });
            }
            None => stop_all(),
        }
    }

    /// Names and addresses of the current listeners.
    pub fn listeners(&self) -> Vec<Arc<Listener>> {
        let mut out: Vec<_> = self
            .active
            .lock()
            .values()
            .map(|a| a.current.load().config.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Binds a listener's socket the way Envoy does: SO_REUSEADDR and SO_REUSEPORT, and
/// IP_TRANSPARENT for
/// `transparent` listeners; non-blocking for tokio.
fn bind(listener: &Listener) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if listener.address.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if listener.transparent {
        socket.set_ip_transparent_v4(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&listener.address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::cluster::{Cluster, Discovery, HttpProtocolOptions, LbPolicy, Thresholds};
    use crate::config::endpoint::{Health, LbEndpoint};
    use crate::config::listener::{
        ClusterSpecifier, FilterChain, ListenerFilters, NetworkFilter, TcpProxy,
    };
    use crate::listener::connection::Dispatcher;
    use crate::upstream::manager::ClusterManager;
    use crate::upstream::random::ThreadRandom;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// An upstream answering every connection with a fixed word.
    async fn word_server(word: &'static str) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(word.as_bytes()).await;
            }
        });
        addr
    }

    fn static_cluster(name: &str, addr: SocketAddr) -> Arc<Cluster> {
        Arc::new(Cluster {
            name: name.into(),
            discovery: Discovery::Static(vec![LbEndpoint {
                address: addr,
                weight: 1,
                health: Health::Healthy,
                locality: Default::default(),
                priority: 0,
                locality_weight: None,
                metadata: Default::default(),
            }]),
            lb_policy: LbPolicy::RoundRobin,
            connect_timeout: Duration::from_secs(1),
            thresholds: Thresholds::default(),
            http: HttpProtocolOptions::default(),
            upstream_bind: None,
            outlier_detection: None,
            healthy_panic_threshold: 50.0,
            stat_name: None,
            has_transport_socket: false,
            cleanup_interval: None,
            source_ip: None,
        })
    }

    fn tcp_listener(name: &str, port: u16, cluster: &str) -> Arc<Listener> {
        Arc::new(Listener {
            name: name.into(),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            bind_to_port: true,
            use_original_dst: false,
            listener_filters: ListenerFilters::default(),
            filter_chains: vec![FilterChain {
                name: "tcp".into(),
                filter_chain_match: Default::default(),
                filter: NetworkFilter::TcpProxy(Arc::new(TcpProxy {
                    stat_prefix: name.into(),
                    cluster: ClusterSpecifier::Cluster(cluster.into()),
                    idle_timeout: None,
                    access_log: vec![],
                })),
                has_transport_socket: false,
            }],
            default_filter_chain: None,
            transparent: false,
            stat_prefix: None,
        })
    }

    async fn read_from(port: u16) -> std::io::Result<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
            .await
            .map_err(|_| std::io::Error::other("timed out"))??;
        Ok(out)
    }

    #[tokio::test]
    async fn serves_swaps_rejects_and_removes() {
        let blue = word_server("blue").await;
        let green = word_server("green").await;
        let clusters = Arc::new(ClusterManager::new(ThreadRandom::shared()));
        clusters.update_clusters([static_cluster("blue", blue), static_cluster("green", green)]);
        let workers = Arc::new(Workers::start(2).unwrap());
        let manager = ListenerManager::new(
            workers,
            Arc::new(Dispatcher {
                clusters,
                http: None,
            }),
        );
        let port = free_port();
        manager
            .update(vec![tcp_listener("front", port, "blue")])
            .unwrap();
        assert_eq!(read_from(port).await.unwrap(), "blue");

        // Same address, new config: the socket stays, new connections use the new config.
        manager
            .update(vec![tcp_listener("front", port, "green")])
            .unwrap();
        assert_eq!(read_from(port).await.unwrap(), "green");

        // Two listeners on one address: rejected, the previous set keeps serving.
        let err = manager
            .update(vec![
                tcp_listener("front", port, "blue"),
                tcp_listener("twin", port, "blue"),
            ])
            .unwrap_err();
        assert!(err[0].reason.contains("duplicate address"), "{err:?}");
        assert_eq!(read_from(port).await.unwrap(), "green");

        // Removed: no longer accepting.
        manager.update(vec![]).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(read_from(port).await.is_err(), "listener still accepting");
        assert!(manager.listeners().is_empty());
    }
}
