//! What happens to an accepted connection: the original-destination handoff, the
//! listener filters (inspectors), filter-chain selection, then the network filter.

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
use crate::upstream::manager::ClusterManager;

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long listener filters wait for the first bytes before choosing a chain anyway
/// (Envoy's `listener_filters_timeout` with `continue_on_listener_filters_timeout`).
pub const LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(5);

/// Every listener by address, for the handoff from `use_original_dst` listeners.
#[derive(Debug, Default)]
pub struct ListenerLookup {
    exact: HashMap<SocketAddr, Arc<Listener>>,
    wildcard_port: HashMap<u16, Arc<Listener>>,
}

impl ListenerLookup {
    pub fn new(listeners: Vec<Arc<Listener>>) -> ListenerLookup {
        let mut lookup = ListenerLookup::default();
        for l in listeners {
            if l.address.ip().is_unspecified() {
                lookup.wildcard_port.insert(l.address.port(), l.clone());
            }
            lookup.exact.insert(l.address, l);
        }
        lookup
    }

    /// The listener for a destination: exact IP:port, else the wildcard one on the port.
    pub fn find(&self, destination: SocketAddr) -> Option<&Arc<Listener>> {
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
        listener: Arc<Listener>,
        lookup: Arc<ListenerLookup>,
    ) -> BoxFuture;
}

/// Serves connections whose chain ends in an HTTP connection manager.
pub trait HttpHandler: Send + Sync + 'static {
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        destination: SocketAddr,
        hcm: Arc<HttpConnectionManager>,
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
        listener: Arc<Listener>,
        lookup: Arc<ListenerLookup>,
    ) -> BoxFuture {
        let clusters = self.clusters.clone();
        let http = self.http.clone();
        let span = info_span!("conn", listener = %listener.name, peer = %peer);
        Box::pin(
            async move {
                let Ok(local) = stream.local_addr() else {
                    return;
                };
                let destination =
                    if listener.use_original_dst || listener.listener_filters.original_dst {
                        original_destination(&stream, local).unwrap_or(local)
                    } else {
                        local
                    };
                let listener = handoff(listener, &lookup, destination);
                let facts = inspect_connection(&stream, &listener, peer, destination).await;
                let Some(chain) = filter_chain::select(
                    &listener.filter_chains,
                    listener.default_filter_chain.as_ref(),
                    &facts,
                ) else {
                    debug!(%destination, "no filter chain matched; closing");
                    return;
                };
                run_chain(chain, stream, peer, destination, &clusters, http.as_deref()).await;
            }
            .instrument(span),
        )
    }
}

/// A connection accepted by a `use_original_dst` listener moves to the listener that
/// owns its original destination, if there is one other than itself.
fn handoff(
    listener: Arc<Listener>,
    lookup: &ListenerLookup,
    destination: SocketAddr,
) -> Arc<Listener> {
    if !listener.use_original_dst {
        return listener;
    }
    match lookup.find(destination) {
        Some(target) if target.name != listener.name => target.clone(),
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

async fn run_chain(
    chain: &FilterChain,
    stream: TcpStream,
    peer: SocketAddr,
    destination: SocketAddr,
    clusters: &ClusterManager,
    http: Option<&dyn HttpHandler>,
) {
    match &chain.filter {
        NetworkFilter::TcpProxy(config) => {
            match tcp_proxy::serve(stream, config, Some(destination), clusters).await {
                Ok(moved) => debug!(chain = %chain.name, ?moved, "tcp_proxy done"),
                Err(e) => debug!(chain = %chain.name, error = %e, "tcp_proxy failed"),
            }
        }
        NetworkFilter::HttpConnectionManager(hcm) => match http {
            Some(http) => http.serve(stream, peer, destination, hcm.clone()).await,
            None => debug!(chain = %chain.name, "no HTTP handler; closing"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::listener::ListenerFilters;

    fn listener(name: &str, addr: &str, use_original_dst: bool) -> Arc<Listener> {
        Arc::new(Listener {
            name: name.into(),
            address: addr.parse().unwrap(),
            bind_to_port: !addr.starts_with("0.0.0.0:9080"),
            use_original_dst,
            listener_filters: ListenerFilters::default(),
            filter_chains: vec![],
            default_filter_chain: None,
            transparent: false,
            stat_prefix: None,
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
            handoff(plain, &lookup, "10.96.0.11:9080".parse().unwrap()).name,
            "plain"
        );
    }
}
