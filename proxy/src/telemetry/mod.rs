//! Telemetry wired into the data path: what a user scraping `/stats` or reading the
//! access log sees of the traffic, named as Envoy (and Istio's stats filter) name it.
//!
//! [`Telemetry`] is the proxy-wide part (the stats store, access log destinations,
//! Istio's node labels, per-cluster lookups). When a listener config is put in place,
//! [`ListenerTelemetry`] resolves every stat handle its filter chains need, so a
//! connection or request only bumps atomics:
//!
//! - `listener`: per listener and filter chain, with the chain's [`Drain`];
//! - `http`: [`HcmTelemetry`], the connection manager's observer of finished requests;
//! - `tcp`: [`TcpTelemetry`] for `tcp_proxy` connections;
//! - `istio`: the cache of Istio metric handles per label set;
//! - `upstreams`: cluster counters, services and endpoint identities by cluster name;
//! - `rds`: the `http.<prefix>.rds.<name>.*` subscription stats;
//! - `drain`: asking a listener's connections to finish.

pub mod drain;
pub mod http;
pub mod istio;
pub mod listener;
pub mod rds;
pub mod tcp;
pub mod upstreams;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::warn;

pub use drain::{Drain, DrainWatch};
pub use http::{Codec, HcmConnection, HcmTelemetry};
pub use listener::{ChainTelemetry, FilterTelemetry, ListenerTelemetry};
pub use rds::{RdsOutcome, RdsStats};
pub use tcp::{TcpEnd, TcpSession, TcpTelemetry};
pub use upstreams::{ClusterTelemetry, UpstreamTable};

use crate::access_log::{AccessLogger, LogSinks};
use crate::config::access_log::AccessLog;
use crate::stats::bundle::stat_bundle;
use crate::stats::{IstioRecorder, ListenerManagerStats, PeerLabels, Store};
use crate::upstream::ClusterChanges;

stat_bundle! {
    /// `cluster_manager.*` counters of what CDS did.
    pub struct ClusterManagerCounters {
        counters: [cluster_added, cluster_modified, cluster_removed],
        gauges: [],
        histograms: [],
    }
}

#[derive(Debug)]
pub struct Telemetry {
    store: Arc<Store>,
    sinks: LogSinks,
    /// Istio's recorder and this proxy's own labels, for Istio sidecars.
    istio: Option<(Arc<IstioRecorder>, Arc<PeerLabels>)>,
    upstreams: UpstreamTable,
    rds: RdsStats,
    listener_manager: ListenerManagerStats,
    cluster_manager: ClusterManagerCounters,
}

impl Telemetry {
    /// `node_metadata` is the bootstrap node's: an Istio sidecar (one that names its
    /// `ISTIO_VERSION`) also gets Istio's standard metrics.
    pub fn new(
        store: Arc<Store>,
        node_metadata: Option<&Map<String, Value>>,
        flush_interval: Duration,
    ) -> Arc<Telemetry> {
        let istio = node_metadata.and_then(|meta| {
            let version = meta.get("ISTIO_VERSION").and_then(Value::as_str)?;
            let recorder = Arc::new(IstioRecorder::new(store.clone(), version));
            Some((recorder, Arc::new(PeerLabels::from_node_metadata(meta))))
        });
        Arc::new(Telemetry {
            sinks: LogSinks::new(flush_interval),
            istio,
            upstreams: UpstreamTable::default(),
            rds: RdsStats::default(),
            listener_manager: ListenerManagerStats::register(&store),
            cluster_manager: ClusterManagerCounters::new(&store, "cluster_manager"),
            store,
        })
    }

    /// Telemetry nobody reads (tests, tools): its own store, no Istio metrics.
    pub fn detached() -> Arc<Telemetry> {
        Telemetry::new(
            Arc::new(Store::default()),
            None,
            crate::access_log::writer::DEFAULT_FLUSH_INTERVAL,
        )
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn sinks(&self) -> &LogSinks {
        &self.sinks
    }

    pub fn istio(&self) -> Option<(&Arc<IstioRecorder>, &Arc<PeerLabels>)> {
        self.istio.as_ref().map(|(r, own)| (r, own))
    }

    pub fn upstreams(&self) -> &UpstreamTable {
        &self.upstreams
    }

    pub fn rds(&self) -> &RdsStats {
        &self.rds
    }

    pub fn listener_manager(&self) -> &ListenerManagerStats {
        &self.listener_manager
    }

    pub fn cluster_changes(&self, changes: &ClusterChanges) {
        let c = &self.cluster_manager;
        c.cluster_added.add(count(changes.added.len()));
        c.cluster_modified.add(count(changes.updated.len()));
        c.cluster_removed.add(count(changes.removed.len()));
    }

    /// The loggers of a filter. One that cannot be opened is left out (the config was
    /// valid; the file system said no) and reported.
    pub fn loggers(&self, configs: &[AccessLog]) -> Vec<AccessLogger> {
        configs
            .iter()
            .filter_map(|c| match AccessLogger::new(c, &self.sinks) {
                Ok(l) => Some(l),
                Err(e) => {
                    warn!(sink = ?c.sink, error = %e, "access log left out");
                    None
                }
            })
            .collect()
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
