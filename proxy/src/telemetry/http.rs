//! One HTTP connection manager's telemetry: built when its listener is put in place,
//! then told about each connection and request. A finished request updates the
//! `http.<stat_prefix>.*` stats (and the listener's copy of the response classes),
//! charges the response to its upstream cluster as Envoy's router does, records Istio's
//! request metrics and writes the access log lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Version;

use super::Telemetry;
use super::istio::{IstioSide, LabelKey, grpc_status_of_http};
use super::upstreams::ClusterTelemetry;
use crate::access_log::AccessLogger;
use crate::config::listener::{HttpConnectionManager, Listener};
use crate::http::{RequestInfo, RequestObserver, ResponseFlag};
use crate::stats::istio::{Reporter, RequestProtocol};
use crate::stats::{Gauge, HttpConnManagerStats, ListenerStats, ServiceLabels};
use crate::upstream::ClusterStats;

/// Routes Istio names its catch-all virtual hosts' routes after.
const BLOCK_ALL: &str = "block_all";
const ALLOW_ANY: &str = "allow_any";

/// Clusters that name the destination service themselves.
const SPECIAL_CLUSTERS: &[&str] = &[
    "BlackHoleCluster",
    "PassthroughCluster",
    "InboundPassthroughCluster",
    "InboundPassthroughClusterIpv4",
    "InboundPassthroughClusterIpv6",
];

#[derive(Debug)]
pub struct HcmTelemetry {
    stats: HttpConnManagerStats,
    loggers: Vec<AccessLogger>,
    istio: Option<IstioSide>,
    telemetry: Arc<Telemetry>,
}

/// The codec a connection settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Http1,
    Http2,
}

/// One downstream connection of the connection manager; counted until dropped.
#[must_use = "the connection stops counting as active when dropped"]
#[derive(Debug)]
pub struct HcmConnection {
    hcm: Arc<HcmTelemetry>,
    opened: Instant,
    codec: Option<Codec>,
}

impl HcmConnection {
    fn codec_gauge(&self, codec: Codec) -> &Gauge {
        let c = &self.hcm.stats.counters;
        match codec {
            Codec::Http1 => &c.downstream_cx_http1_active,
            Codec::Http2 => &c.downstream_cx_http2_active,
        }
    }

    /// The codec is known (after sniffing the preface).
    pub fn set_codec(&mut self, codec: Codec) {
        if self.codec.is_some() {
            return;
        }
        let c = &self.hcm.stats.counters;
        match codec {
            Codec::Http1 => c.downstream_cx_http1_total.inc(),
            Codec::Http2 => c.downstream_cx_http2_total.inc(),
        }
        self.codec_gauge(codec).inc();
        self.codec = Some(codec);
    }
}

impl Drop for HcmConnection {
    fn drop(&mut self) {
        let c = &self.hcm.stats.counters;
        c.downstream_cx_active.dec();
        c.downstream_cx_destroy.inc();
        if let Some(codec) = self.codec {
            self.codec_gauge(codec).dec();
        }
        c.downstream_cx_length_ms
            .record(millis(self.opened.elapsed()));
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl HcmTelemetry {
    pub fn new(
        telemetry: &Arc<Telemetry>,
        listener: &Listener,
        hcm: &HttpConnectionManager,
    ) -> HcmTelemetry {
        let scope = ListenerStats::scope_of(listener);
        let istio = telemetry.istio().and_then(|(recorder, own)| {
            super::istio::http_reporter(&listener.name, &hcm.stat_prefix)
                .map(|reporter| IstioSide::new(reporter, recorder.clone(), own.clone()))
        });
        HcmTelemetry {
            stats: HttpConnManagerStats::new(telemetry.store(), &hcm.stat_prefix, Some(&scope)),
            loggers: telemetry.loggers(&hcm.access_log),
            istio,
            telemetry: telemetry.clone(),
        }
    }

    pub fn stats(&self) -> &HttpConnManagerStats {
        &self.stats
    }

    /// A downstream connection was accepted for this connection manager.
    pub fn connection(self: &Arc<Self>) -> HcmConnection {
        let c = &self.stats.counters;
        c.downstream_cx_total.inc();
        c.downstream_cx_active.inc();
        HcmConnection {
            hcm: self.clone(),
            opened: Instant::now(),
            codec: None,
        }
    }

    fn record_hcm(&self, info: &RequestInfo) {
        let c = &self.stats.counters;
        c.downstream_rq_active.dec();
        c.downstream_rq_time.record(millis(info.duration));
        if let Some(status) = info.status {
            self.stats.record_response(status);
        } else if info
            .response_flags
            .contains(ResponseFlag::DownstreamConnectionTermination)
        {
            c.downstream_rq_rx_reset.inc();
        }
        let flags = &info.response_flags;
        c.rq_total.inc();
        if flags.contains(ResponseFlag::NoRouteFound) {
            c.no_route.inc();
        }
        if flags.contains(ResponseFlag::NoClusterFound) {
            c.no_cluster.inc();
        }
        if flags.contains(ResponseFlag::StreamIdleTimeout) {
            c.downstream_rq_idle_timeout.inc();
        }
        match info.response_code_details.as_ref() {
            "direct_response" => c.rq_direct_response.inc(),
            "request_overall_timeout" => c.downstream_rq_timeout.inc(),
            details if details.contains("redirect") => c.rq_redirect.inc(),
            _ => {}
        }
    }

    fn record_istio(
        &self,
        istio: &IstioSide,
        info: &RequestInfo,
        cluster: Option<&ClusterTelemetry>,
    ) {
        let grpc = info.grpc_request;
        let status = info.status.unwrap_or(0);
        let key = LabelKey {
            service: destination_service(info, cluster),
            peer: match istio.reporter() {
                Reporter::Source => cluster
                    .zip(info.upstream_host)
                    .and_then(|(c, host)| c.peer(host).cloned()),
                // No peer metadata exchange: the client is unknown.
                Reporter::Destination => None,
            },
            protocol: if grpc {
                RequestProtocol::Grpc
            } else {
                RequestProtocol::Http
            },
            status,
            grpc_status: grpc.then(|| {
                info.grpc_status
                    .unwrap_or_else(|| grpc_status_of_http(status))
            }),
            flags: info.response_flags,
        };
        istio.request_handles(key).record(
            info.duration,
            Some(info.bytes_received),
            Some(info.bytes_sent),
        );
    }
}

/// Istio's `destination_service`: the cluster's service when it declares one, else
/// the request's authority (with the catch-all routes and passthrough clusters naming
/// themselves).
fn destination_service(
    info: &RequestInfo,
    cluster: Option<&ClusterTelemetry>,
) -> Arc<ServiceLabels> {
    let route = info.route_name.as_deref();
    let cluster_name = info.upstream_cluster.as_deref();
    let special = route == Some(BLOCK_ALL)
        || route == Some(ALLOW_ANY)
        || cluster_name.is_some_and(|c| SPECIAL_CLUSTERS.contains(&c));
    if !special && let Some(service) = cluster.and_then(|c| c.service.as_ref()) {
        return service.clone();
    }
    let authority = info.authority().unwrap_or_default().to_string();
    let name = match (route, cluster_name) {
        (Some(BLOCK_ALL), _) => "BlackHoleCluster".to_string(),
        (Some(ALLOW_ANY), _) => "PassthroughCluster".to_string(),
        (_, Some(c)) if SPECIAL_CLUSTERS.contains(&c) => c.to_string(),
        // Empty stays empty: the label builder puts the server's own canonical service
        // (or `unknown` on the client) there, as Istio does.
        _ => authority.clone(),
    };
    Arc::new(ServiceLabels {
        host: authority,
        name,
    })
}

/// Envoy's router charges each response to its cluster: `upstream_rq_<code>` and
/// friends for what came from (or stood in for) the upstream, and the timeout and
/// retry outcomes.
fn charge_cluster(stats: &ClusterStats, info: &RequestInfo) {
    use std::sync::atomic::Ordering::Relaxed;
    let flags = &info.response_flags;
    let details = info.response_code_details.as_ref();
    let charged = match details {
        "via_upstream" => {
            stats.upstream_rq_time.record(millis(info.duration));
            if info.attempt_count > 1 {
                stats.upstream_rq_retry_success.fetch_add(1, Relaxed);
            }
            true
        }
        "response_timeout" => {
            stats.upstream_rq_timeout.fetch_add(1, Relaxed);
            true
        }
        "upstream_per_try_timeout" => {
            stats.upstream_rq_per_try_timeout.fetch_add(1, Relaxed);
            true
        }
        d if d.starts_with(crate::http::reset::UPSTREAM_RESET_DETAILS) => {
            if flags.contains(ResponseFlag::UpstreamRemoteReset) {
                stats.upstream_rq_rx_reset.fetch_add(1, Relaxed);
            }
            true
        }
        _ => {
            flags.contains(ResponseFlag::NoHealthyUpstream)
                || flags.contains(ResponseFlag::UpstreamOverflow)
        }
    };
    if flags.contains(ResponseFlag::UpstreamRetryLimitExceeded) {
        stats.upstream_rq_retry_limit_exceeded.fetch_add(1, Relaxed);
    }
    if charged && let Some(status) = info.status {
        stats.upstream_rq.record(status);
    }
}

impl RequestObserver for HcmTelemetry {
    fn wants_headers(&self) -> bool {
        // Istio's metrics read only whether the request is gRPC (`grpc_request`).
        !self.loggers.is_empty()
    }

    fn on_request_start(&self, version: Version) {
        let c = &self.stats.counters;
        c.downstream_rq_total.inc();
        c.downstream_rq_active.inc();
        match version {
            Version::HTTP_2 => c.downstream_rq_http2_total.inc(),
            _ => c.downstream_rq_http1_total.inc(),
        }
    }

    fn on_request_done(&self, info: &RequestInfo) {
        let cluster = info
            .upstream_cluster
            .as_deref()
            .and_then(|name| self.telemetry.upstreams().get(name));
        if let Some(c) = &cluster {
            charge_cluster(&c.stats, info);
        }
        if let Some(istio) = &self.istio {
            self.record_istio(istio, info, cluster.as_deref());
        }
        for logger in &self.loggers {
            logger.log(info);
        }
        // Last: once a request counts as completed, everything else about it is there.
        self.record_hcm(info);
    }
}
