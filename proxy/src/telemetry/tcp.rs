//! One TCP proxy filter's telemetry: `tcp.<stat_prefix>.*`, Istio's TCP connection
//! metrics and access log lines, all written when a connection ends (Istio's filter,
//! without peer metadata exchange, reports a connection only when it closes too).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Telemetry;
use super::istio::{IstioSide, LabelKey};
use crate::access_log::{AccessLogger, LogContext};
use crate::config::listener::{Listener, TcpProxy};
use crate::http::{ResponseFlag, ResponseFlags};
use crate::stats::istio::{Reporter, RequestProtocol};
use crate::stats::{ServiceLabels, TcpProxyStats};

#[derive(Debug)]
pub struct TcpTelemetry {
    stats: TcpProxyStats,
    loggers: Vec<AccessLogger>,
    istio: Option<IstioSide>,
    telemetry: Arc<Telemetry>,
}

/// How a proxied connection ended, beyond its byte counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcpEnd {
    /// Both sides closed.
    #[default]
    Closed,
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// The listener drained and the deadline passed.
    Drained,
    /// A write failed (the peer went away).
    Broken,
}

/// What one proxied connection did, for stats and access logs.
#[derive(Clone, Debug)]
pub struct TcpSession {
    pub start_time: SystemTime,
    pub start: Instant,
    pub duration: Option<Duration>,
    pub downstream_remote: SocketAddr,
    pub downstream_local: SocketAddr,
    pub requested_server_name: Option<String>,
    pub upstream_cluster: Option<String>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_transport_failure_reason: Option<String>,
    pub flags: ResponseFlags,
    /// From downstream (sent upstream).
    pub bytes_received: u64,
    /// To downstream.
    pub bytes_sent: u64,
    pub end: TcpEnd,
}

impl TcpSession {
    pub fn new(downstream_remote: SocketAddr, downstream_local: SocketAddr) -> TcpSession {
        TcpSession {
            start_time: SystemTime::now(),
            start: Instant::now(),
            duration: None,
            downstream_remote,
            downstream_local,
            requested_server_name: None,
            upstream_cluster: None,
            upstream_host: None,
            upstream_transport_failure_reason: None,
            flags: ResponseFlags::default(),
            bytes_received: 0,
            bytes_sent: 0,
            end: TcpEnd::Closed,
        }
    }
}

impl LogContext for TcpSession {
    fn start_time(&self) -> SystemTime {
        self.start_time
    }
    fn response_flags(&self) -> Cow<'_, str> {
        Cow::Owned(self.flags.to_string())
    }
    fn bytes_received(&self) -> u64 {
        self.bytes_received
    }
    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
    fn duration(&self) -> Option<Duration> {
        self.duration
    }
    fn upstream_host(&self) -> Option<SocketAddr> {
        self.upstream_host
    }
    fn upstream_cluster(&self) -> Option<&str> {
        self.upstream_cluster.as_deref()
    }
    fn upstream_transport_failure_reason(&self) -> Option<&str> {
        self.upstream_transport_failure_reason.as_deref()
    }
    fn downstream_local_address(&self) -> Option<SocketAddr> {
        Some(self.downstream_local)
    }
    fn downstream_remote_address(&self) -> Option<SocketAddr> {
        Some(self.downstream_remote)
    }
    fn requested_server_name(&self) -> Option<&str> {
        self.requested_server_name.as_deref()
    }
}

impl TcpTelemetry {
    pub fn new(telemetry: &Arc<Telemetry>, listener: &Listener, config: &TcpProxy) -> Self {
        let istio = telemetry.istio().and_then(|(recorder, own)| {
            super::istio::tcp_reporter(&listener.name, &config.stat_prefix)
                .map(|reporter| IstioSide::new(reporter, recorder.clone(), own.clone()))
        });
        TcpTelemetry {
            stats: TcpProxyStats::for_prefix(telemetry.store(), &config.stat_prefix),
            loggers: telemetry.loggers(&config.access_log),
            istio,
            telemetry: telemetry.clone(),
        }
    }

    pub fn stats(&self) -> &TcpProxyStats {
        &self.stats
    }

    /// A connection reached the filter.
    pub fn session(
        &self,
        downstream_remote: SocketAddr,
        downstream_local: SocketAddr,
    ) -> TcpSession {
        self.stats.downstream_cx_total.inc();
        TcpSession::new(downstream_remote, downstream_local)
    }

    /// The connection is over: stats, Istio metrics, access logs.
    pub fn finish(&self, session: &mut TcpSession) {
        session.duration = Some(session.start.elapsed());
        let s = &self.stats;
        s.downstream_cx_rx_bytes_total.add(session.bytes_received);
        s.downstream_cx_tx_bytes_total.add(session.bytes_sent);
        if session.end == TcpEnd::IdleTimeout {
            s.idle_timeout.inc();
        }
        if session.flags.contains(ResponseFlag::NoClusterFound) {
            s.downstream_cx_no_route.inc();
        }
        if let Some(istio) = &self.istio {
            self.record_istio(istio, session);
        }
        for logger in &self.loggers {
            logger.log(session);
        }
    }

    fn record_istio(&self, istio: &IstioSide, session: &TcpSession) {
        let cluster = session
            .upstream_cluster
            .as_deref()
            .and_then(|name| self.telemetry.upstreams().get(name));
        let service = match (&session.upstream_cluster, &cluster) {
            (_, Some(c)) if c.service.is_some() => c.service.clone(),
            _ => None,
        }
        .unwrap_or_else(|| {
            // Passthrough and blackhole clusters name the service; otherwise unknown.
            let name = session.upstream_cluster.clone().unwrap_or_default();
            let special = name.contains("Passthrough") || name == "BlackHoleCluster";
            Arc::new(ServiceLabels {
                host: String::new(),
                name: if special { name } else { String::new() },
            })
        });
        let peer = match istio.reporter() {
            Reporter::Source => cluster
                .as_deref()
                .zip(session.upstream_host)
                .and_then(|(c, host)| c.peer(host).cloned()),
            Reporter::Destination => None,
        };
        let handles = istio.tcp_handles(LabelKey {
            service,
            peer,
            protocol: RequestProtocol::Tcp,
            status: 0,
            grpc_status: None,
            flags: session.flags,
        });
        handles.opened.inc();
        handles.sent.add(session.bytes_sent);
        handles.received.add(session.bytes_received);
        handles.closed.inc();
    }
}
