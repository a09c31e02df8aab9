//! A listener's telemetry, built when the listener (or a new config of it) is put in
//! place: its `listener.<address>.*` stats and, for each filter chain, the network
//! filter's telemetry and the drain its connections watch.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::time::Instant;
use xxhash_rust::xxh64::xxh64;

use super::Telemetry;
use super::drain::Drain;
use super::http::HcmTelemetry;
use super::tcp::TcpTelemetry;
use crate::config::listener::{FilterChain, Listener, NetworkFilter};
use crate::stats::ListenerStats;

#[derive(Debug)]
pub enum FilterTelemetry {
    Http(Arc<HcmTelemetry>),
    Tcp(Arc<TcpTelemetry>),
}

#[derive(Debug)]
pub struct ChainTelemetry {
    pub filter: FilterTelemetry,
    pub drain: Drain,
    name: String,
    /// Tells an unchanged chain from a changed one across listener updates.
    fingerprint: u64,
}

impl ChainTelemetry {
    fn new(
        telemetry: &Arc<Telemetry>,
        listener: &Listener,
        chain: &FilterChain,
        fingerprint: u64,
    ) -> Self {
        let filter = match &chain.filter {
            NetworkFilter::HttpConnectionManager(hcm) => {
                FilterTelemetry::Http(Arc::new(HcmTelemetry::new(telemetry, listener, hcm)))
            }
            NetworkFilter::TcpProxy(tcp) => {
                FilterTelemetry::Tcp(Arc::new(TcpTelemetry::new(telemetry, listener, tcp)))
            }
        };
        ChainTelemetry {
            filter,
            drain: Drain::default(),
            name: chain.name.clone(),
            fingerprint,
        }
    }

    pub fn http(&self) -> Option<&Arc<HcmTelemetry>> {
        match &self.filter {
            FilterTelemetry::Http(h) => Some(h),
            FilterTelemetry::Tcp(_) => None,
        }
    }

    pub fn tcp(&self) -> Option<&Arc<TcpTelemetry>> {
        match &self.filter {
            FilterTelemetry::Tcp(t) => Some(t),
            FilterTelemetry::Http(_) => None,
        }
    }
}

#[derive(Debug)]
pub struct ListenerTelemetry {
    pub stats: ListenerStats,
    chains: Vec<Arc<ChainTelemetry>>,
    default_chain: Option<Arc<ChainTelemetry>>,
}

fn fingerprint(chain: &FilterChain) -> u64 {
    xxh64(format!("{chain:?}").as_bytes(), 0)
}

impl ListenerTelemetry {
    pub fn new(telemetry: &Arc<Telemetry>, listener: &Listener) -> ListenerTelemetry {
        ListenerTelemetry::updated(telemetry, listener, None)
    }

    /// The telemetry of a new config of a listener: chains that did not change keep
    /// theirs (and the drain their connections watch).
    pub fn updated(
        telemetry: &Arc<Telemetry>,
        listener: &Listener,
        previous: Option<&ListenerTelemetry>,
    ) -> ListenerTelemetry {
        let chain = |c: &FilterChain| {
            let print = fingerprint(c);
            previous
                .and_then(|p| {
                    p.all()
                        .find(|old| old.name == c.name && old.fingerprint == print)
                        .cloned()
                })
                .unwrap_or_else(|| Arc::new(ChainTelemetry::new(telemetry, listener, c, print)))
        };
        ListenerTelemetry {
            stats: ListenerStats::new(telemetry.store(), listener),
            chains: listener.filter_chains.iter().map(chain).collect(),
            default_chain: listener.default_filter_chain.as_ref().map(chain),
        }
    }

    /// The telemetry of `chain`, which must be one of `listener`'s (the config this
    /// telemetry was built for).
    pub fn chain(&self, listener: &Listener, chain: &FilterChain) -> Option<&ChainTelemetry> {
        if let Some(default) = &listener.default_filter_chain
            && std::ptr::eq(default, chain)
        {
            return self.default_chain.as_deref();
        }
        let index = listener
            .filter_chains
            .iter()
            .position(|c| std::ptr::eq(c, chain))?;
        self.chains.get(index).map(|c| &**c)
    }

    fn all(&self) -> impl Iterator<Item = &Arc<ChainTelemetry>> {
        self.chains.iter().chain(self.default_chain.iter())
    }

    /// Every chain's connections drain; returns how many chains started draining.
    pub fn drain_all(&self, deadline: Instant) -> usize {
        self.all()
            .filter(|c| {
                let fresh = !c.drain.is_draining();
                c.drain.start(deadline);
                fresh
            })
            .count()
    }

    /// Drains the chains `next` does not keep (Envoy's in-place filter chain update);
    /// returns how many started draining.
    pub fn drain_replaced(&self, next: &ListenerTelemetry, deadline: Instant) -> usize {
        let kept: HashSet<*const ChainTelemetry> = next.all().map(Arc::as_ptr).collect();
        self.all()
            .filter(|c| !kept.contains(&Arc::as_ptr(c)))
            .filter(|c| {
                let fresh = !c.drain.is_draining();
                c.drain.start(deadline);
                fresh
            })
            .count()
    }
}
