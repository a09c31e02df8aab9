//! Stats as Envoy keeps them: counters, gauges and histograms by full dotted name
//! (`cluster.<name>.upstream_rq_total`, `http.<prefix>.downstream_rq_2xx`,
//! `listener.0.0.0.0_15001.downstream_cx_total`, `server.live`, ...), with Envoy's tag
//! extraction for Prometheus and Istio's standard metrics.
//!
//! - `metric`: the lock-free handles ([`Counter`], [`Gauge`], [`Histogram`]).
//! - `store`: the registry by name; [`StatsSource`]s report state kept elsewhere.
//! - `tags`, `matcher`, `config`: `stats_config` (tag extraction, inclusion lists).
//! - `render`: `/stats` text and JSON, `/stats/prometheus`.
//! - bundles the data plane holds: [`ListenerStats`], [`HttpConnManagerStats`],
//!   [`TcpProxyStats`]; sources: [`ClusterStatsSource`], [`ServerStats`], `XdsStats`.
//! - `istio`: [`IstioRecorder`] for `istio_requests_total` and friends.

pub(crate) mod bundle;
pub mod cluster;
pub mod codes;
pub mod config;
pub mod http;
pub mod istio;
pub mod listener;
pub mod matcher;
pub mod metric;
pub mod render;
pub mod server;
pub mod store;
pub mod tags;
mod xds;

pub use cluster::ClusterStatsSource;
pub use codes::ResponseCodeStats;
pub use config::StatsConfig;
pub use http::{HttpConnManagerStats, TcpProxyStats};
pub use istio::{IstioRecorder, IstioRequest, PeerLabels, ServiceLabels};
pub use listener::{ConnectionTracker, ListenerManagerStats, ListenerStats};
pub use matcher::StatsMatcher;
pub use metric::{Counter, DEFAULT_BUCKETS, Gauge, GaugeGuard, Histogram, HistogramSnapshot};
pub use render::StatsFilter;
pub use server::{ServerState, ServerStats};
pub use store::{Collector, Sample, Snapshot, StatsSource, Store, Value};
pub use tags::{Tag, TagProducer};
