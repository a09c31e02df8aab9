//! What happens to an accepted connection: the original-destination handoff, the
//! listener filters (inspectors), filter-chain selection, then the network filter, with
//! the chain's telemetry and drain.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{Instrument, debug, info_span};

use super::filter_chain::{self, ConnectionFacts};
use super::inspect::{self, Detection, MAX_INSPECT_BYTES};
use super::original_dst::original_destination;
use crate::config::listener::{FilterChain, HttpConnectionManager, Listener, NetworkFilter};
use crate::tcp_proxy;
use crate::telemetry::{ChainTelemetry, DrainWatch, HcmTelemetry, ListenerTelemetry, TcpSession};
use crate::upstream::manager::ClusterManager;

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long listener filters wait for the first bytes before choosing a chain anyway
/// (Envoy's `listener_filters_timeout` with `continue_on_listener_filters_timeout`).
pub const LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(5);

/// A listener config as it serves: the config and the telemetry built for it.
#[derive(Debug)]
pub struct Installed {
    pub config: Arc<Listener>,
    pub telemetry: Arc<ListenerTelemetry>,
}

/// Every listener by address, for the handoff from `use_original_dst` listeners.
#[derive(Debug, Default)]
pub struct ListenerLookup {
    exact: HashMap<SocketAddr, Arc<Installed>>,
    wildcard_port: HashMap<u16, Arc<Installed>>,
}

impl ListenerLookup {
    pub fn new(listeners: Vec<Arc<Installed>>) -> ListenerLookup {
        let mut lookup = ListenerLookup::default();
        for l in listeners {
            let address = l.config.address;
            if address.ip().is_unspecified() {
                lookup.wildcard_port.insert(address.port(), l.clone());
            }
            lookup.exact.insert(address, l);
        }
        lookup
    }

    /// The listener for a destination: exact IP:port, else the wildcard one on the port.
    pub fn find(&self, destination: SocketAddr) -> Option<&Arc<Installed>> {
        self.exact
            .get(&destination)
            .or_else(|| self.wildcard_port.get(&destination.port()))
    }
}

pub trait ConnectionHandler: Send + Sync + 'static {
    fn handle(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        listener: Arc<Installed>,
        lookup: Arc<ListenerLookup>,
    ) -> BoxFuture;
}

/// What an HTTP connection manager gets from its filter chain besides the socket.
#[derive(Clone, Debug)]
pub struct ChainContext {
    /// The connection manager's telemetry (stats, access logs).
    pub telemetry: Option<Arc<HcmTelemetry>>,
    /// Started when the chain's listener drains.
    pub drain: DrainWatch,
}

impl Default for ChainContext {
    fn default() -> Self {
        ChainContext {
            telemetry: None,
            drain: DrainWatch::never(),
        }
    }
}

/// Serves connections whose chain ends in an HTTP connection manager.
pub trait HttpHandler: Send + Sync + 'static {
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        destination: SocketAddr,
        hcm: Arc<HttpConnectionManager>,
        chain: ChainContext,
    ) -> BoxFuture;
}

/// The handler the proxy runs: listener filters, chain, network filter.
pub struct Dispatcher {
    pub clusters: Arc<ClusterManager>,
    pub http: Option<Arc<dyn HttpHandler>>,
}

impl ConnectionHandler for Dispatcher {
    fn handle(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        listener: Arc<Installed>,
        lookup: Arc<ListenerLookup>,
    ) -> BoxFuture {
        let clusters = self.clusters.clone();
        let http = self.http.clone();
        let span = info_span!("conn", listener = %listener.config.name, peer = %peer);
        Box::pin(
            async move {
                let Ok(local) = stream.local_addr() else {
                    return;
                };
                let config = &listener.config;
                let destination = if config.use_original_dst || config.listener_filters.original_dst
                {
                    original_destination(&stream, local).unwrap_or(local)
                } else {
                    local
                };
                let installed = handoff(listener, &lookup, destination);
                let listener = &installed.config;
                let stats = &installed.telemetry.stats;
                let facts = {
                    let _inspecting = stats.counters.downstream_pre_cx_active.track();
                    inspect_connection(&stream, listener, peer, destination).await
                };
                let Some(chain) = filter_chain::select(
                    &listener.filter_chains,
                    listener.default_filter_chain.as_ref(),
                    &facts,
                ) else {
                    stats.counters.no_filter_chain_match.inc();
                    debug!(%destination, "no filter chain matched; closing");
                    return;
                };
                let _open = stats.connection();
                let chain_telemetry = installed.telemetry.chain(listener, chain);
                let conn = Conn {
                    stream,
                    peer,
                    destination,
                    server_name: facts.server_name,
                };
                run_chain(chain, chain_telemetry, conn, &clusters, http.as_deref()).await;
            }
            .instrument(span),
        )
    }
}

/// A connection accepted by a `use_original_dst` listener moves to the listener that
/// owns its original destination, if there is one other than itself.
fn handoff(
    listener: Arc<Installed>,
    lookup: &ListenerLookup,
    destination: SocketAddr,
) -> Arc<Installed> {
    if !listener.config.use_original_dst {
        return listener;
    }
    match lookup.find(destination) {
        Some(target) if target.config.name != listener.config.name => target.clone(),
        _ => listener,
    }
}

async fn inspect_connection(
    stream: &TcpStream,
    listener: &Listener,
    peer: SocketAddr,
    destination: SocketAddr,
) -> ConnectionFacts {
    let mut facts = ConnectionFacts {
        destination,
        source: peer,
        server_name: None,
        transport_protocol: "raw_buffer",
        application_protocols: Vec::new(),
    };
    let filters = &listener.listener_filters;
    if !filters.tls_inspector && !filters.http_inspector {
        return facts;
    }
    let mut buf = vec![0u8; MAX_INSPECT_BYTES];
    let deadline = tokio::time::Instant::now() + LISTENER_FILTERS_TIMEOUT;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return facts,
        };
        let seen = &buf[..n];
        let tls = if filters.tls_inspector {
            inspect::detect_tls(seen)
        } else {
            Detection::No
        };
        let http = if filters.http_inspector {
            inspect::detect_http(seen)
        } else {
            Detection::No
        };
        match (tls, http) {
            (Detection::Yes(hello), _) => {
                facts.transport_protocol = "tls";
                facts.server_name = hello.server_name;
                facts.application_protocols = hello.alpn;
                return facts;
            }
            (_, Detection::Yes(protocol)) => {
                facts.application_protocols = vec![protocol.to_string()];
                return facts;
            }
            (Detection::No, Detection::No) => return facts,
            _ if n == 0 => return facts,
            _ => {
                // peek returns what is buffered; give the client a moment to send more.
                if tokio::time::Instant::now() >= deadline {
                    return facts;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

/// An accepted connection on its way to a network filter.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    destination: SocketAddr,
    /// SNI, when the TLS inspector saw one.
    server_name: Option<String>,
}

async fn run_chain(
    chain: &FilterChain,
    telemetry: Option<&ChainTelemetry>,
    conn: Conn,
    clusters: &ClusterManager,
    http: Option<&dyn HttpHandler>,
) {
    let drain = telemetry.map_or_else(DrainWatch::never, |t| t.drain.watch());
    match &chain.filter {
        NetworkFilter::TcpProxy(config) => {
            let tcp = telemetry.and_then(ChainTelemetry::tcp);
            let mut session = match tcp {
                Some(t) => t.session(conn.peer, conn.destination),
                None => TcpSession::new(conn.peer, conn.destination),
            };
            session.requested_server_name = conn.server_name;
            let result = tcp_proxy::serve_session(
                conn.stream,
                config,
                Some(conn.destination),
                clusters,
                &mut session,
                drain,
            )
            .await;
            if let Some(t) = tcp {
                t.finish(&mut session);
            }
            match result {
                Ok(()) => debug!(chain = %chain.name, end = ?session.end, "tcp_proxy done"),
                Err(e) => debug!(chain = %chain.name, error = %e, "tcp_proxy failed"),
            }
        }
        NetworkFilter::HttpConnectionManager(hcm) => match http {
            Some(http) => {
                let context = ChainContext {
                    telemetry: telemetry.and_then(ChainTelemetry::http).cloned(),
                    drain,
                };
                http.serve(
                    conn.stream,
                    conn.peer,
                    conn.destination,
                    hcm.clone(),
                    context,
                )
                .await;
            }
            None => debug!(chain = %chain.name, "no HTTP handler; closing"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::listener::ListenerFilters;
    use crate::telemetry::Telemetry;

    fn listener(name: &str, addr: &str, use_original_dst: bool) -> Arc<Installed> {
        let config = Listener {
            name: name.into(),
            address: addr.parse().unwrap(),
            bind_to_port: !addr.starts_with("0.0.0.0:9080"),
            use_original_dst,
            listener_filters: ListenerFilters::default(),
            filter_chains: vec![],
            default_filter_chain: None,
            transparent: false,
            stat_prefix: None,
        };
        Arc::new(Installed {
            telemetry: Arc::new(ListenerTelemetry::new(&Telemetry::detached(), &config)),
            config: Arc::new(config),
        })
    }

    #[test]
    fn handoff_prefers_exact_address_then_wildcard_port() {
        let outbound = listener("virtualOutbound", "0.0.0.0:15001", true);
        let http = listener("0.0.0.0_9080", "0.0.0.0:9080", false);
        let tcp = listener("10.96.0.12_3306", "10.96.0.12:3306", false);
        let lookup = ListenerLookup::new(vec![outbound.clone(), http, tcp]);
        let to = |dst: &str| {
            handoff(outbound.clone(), &lookup, dst.parse().unwrap())
                .config
                .name
                .clone()
        };
        assert_eq!(to("10.96.0.11:9080"), "0.0.0.0_9080");
        assert_eq!(to("10.96.0.12:3306"), "10.96.0.12_3306");
        assert_eq!(
            to("10.96.0.13:3306"),
            "virtualOutbound",
            "no listener: own chains"
        );
        assert_eq!(to("1.2.3.4:15001"), "virtualOutbound");
        // A listener without use_original_dst never hands off.
        let plain = listener("plain", "127.0.0.1:80", false);
        assert_eq!(
            handoff(plain, &lookup, "10.96.0.11:9080".parse().unwrap())
                .config
                .name,
            "plain"
        );
    }
}
