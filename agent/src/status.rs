//! The status server (15020): `/healthz/ready`, the merged `/stats/prometheus` (also
//! `/metrics`), `/app-health/<container>/{livez,readyz,startupz}`, and the
//! localhost-only controls `/quitquitquit` and `/drain`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::admin::AdminClient;
use crate::http::{Call, send};
use crate::metrics::{self, AgentMetrics, ScrapeConfig, ScrapeSource};
use crate::probes::{self, AppProbers};
use crate::readiness::Readiness;

/// Headers of a Prometheus scrape passed on to the proxy and the application.
const SCRAPE_HEADERS: &[&str] = &[
    "accept",
    "user-agent",
    "x-prometheus-scrape-timeout-seconds",
];
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the status server serves from.
#[derive(Debug)]
pub struct StatusState {
    pub readiness: Readiness,
    pub metrics: AgentMetrics,
    pub admin: AdminClient,
    /// `127.0.0.1` or `::1`: where the proxy's and the application's metrics are.
    pub localhost: IpAddr,
    pub prometheus_port: u16,
    pub scrape: Option<ScrapeConfig>,
    pub probers: AppProbers,
    pub probe_destination: IpAddr,
    /// Set by `/drain`: a later SIGTERM exits without waiting.
    pub drained: AtomicBool,
    /// Woken by `/quitquitquit`.
    pub quit: Notify,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    reply(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(body.into()),
    )
}

/// Binds the status port on all addresses (kubelet reaches it on the pod IP): IPv6
/// and IPv4 together where the host has IPv6, else IPv4 only.
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    match TcpListener::bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))).await {
        Ok(l) => Ok(l),
        Err(_) => TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await,
    }
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<StatusState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("status server accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, peer, req).await) }
            });
            // Probe clients close abruptly; that is not worth a log line.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(state: &StatusState, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let method = req.method().clone();
    match path.as_str() {
        "/healthz/ready" => match state.readiness.check().await {
            Ok(()) => text(StatusCode::OK, ""),
            Err(reason) => {
                warn!("proxy is not ready: {reason}");
                text(StatusCode::SERVICE_UNAVAILABLE, reason + "\n")
            }
        },
        "/stats/prometheus" | "/metrics" => scrape(state, query.as_deref(), req.headers()).await,
        "/quitquitquit" | "/drain" => {
            // On a dual-stack socket IPv4 peers appear as ::ffff:a.b.c.d.
            if !peer.ip().to_canonical().is_loopback() {
                return text(
                    StatusCode::FORBIDDEN,
                    "Only requests from localhost are allowed\n",
                );
            }
            if method != Method::POST {
                return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
            }
            if path == "/quitquitquit" {
                info!("handling /quitquitquit: exiting without draining");
                state.quit.notify_one();
                return text(StatusCode::OK, "OK");
            }
            info!("handling /drain: draining the proxy's inbound listeners");
            if let Err(e) = state.admin.drain_listeners(true, true).await {
                warn!("draining: {e}");
                return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
            }
            state.drained.store(true, Ordering::SeqCst);
            text(StatusCode::OK, "OK")
        }
        p if p.starts_with("/app-health/") => match state.probers.get(p) {
            Some(prober) => {
                let code = probes::run(prober, state.probe_destination, req.headers()).await;
                text(
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    "",
                )
            }
            None => text(
                StatusCode::BAD_REQUEST,
                format!("app prober config does not exist for {p}\n"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, format!("no such path {path}\n")),
    }
}

fn scrape_call(path: String, headers: &HeaderMap) -> Call {
    let timeout = headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_SCRAPE_TIMEOUT, Duration::from_secs_f64);
    let mut call = Call::get(path).timeout(timeout);
    for name in SCRAPE_HEADERS {
        if let Some(v) = headers.get(*name).and_then(|v| v.to_str().ok()) {
            call = call.header(name, v);
        }
    }
    call
}

/// Never fails as a whole: a part that cannot be scraped is logged, counted and left
/// out, so the other metrics still arrive.
async fn scrape(state: &StatusState, query: Option<&str>, headers: &HeaderMap) -> Reply {
    state.metrics.scrape_started();
    let envoy_path = match query {
        Some(q) if !q.is_empty() => format!("/stats/prometheus?{q}"),
        _ => "/stats/prometheus".to_owned(),
    };
    let envoy_addr = SocketAddr::new(state.localhost, state.prometheus_port);
    let envoy = match send(envoy_addr, &scrape_call(envoy_path, headers)).await {
        Ok(r) if r.status == 200 => Some(r.body),
        Ok(r) => {
            warn!(
                "scraping the proxy's metrics: {envoy_addr} answered {}",
                r.status
            );
            state.metrics.scrape_failed(ScrapeSource::Envoy);
            None
        }
        Err(e) => {
            warn!("scraping the proxy's metrics: {e}");
            state.metrics.scrape_failed(ScrapeSource::Envoy);
            None
        }
    };
    let app = match &state.scrape {
        None => None,
        Some(cfg) => {
            let addr = SocketAddr::new(state.localhost, cfg.port);
            match send(addr, &scrape_call(cfg.path.clone(), headers)).await {
                Ok(r) if r.status == 200 => {
                    let ct = r.content_type().map(str::to_owned);
                    Some((r.body, ct))
                }
                Ok(r) => {
                    warn!(
                        "scraping the application's metrics: {addr}{} answered {}",
                        cfg.path, r.status
                    );
                    state.metrics.scrape_failed(ScrapeSource::Application);
                    None
                }
                Err(e) => {
                    warn!("scraping the application's metrics: {e}");
                    state.metrics.scrape_failed(ScrapeSource::Application);
                    None
                }
            }
        }
    };
    let agent = state.metrics.render(metrics::resident_memory_bytes());
    let (body, content_type) = metrics::merge(
        &agent,
        envoy.as_deref(),
        app.as_ref().map(|(b, ct)| (&b[..], ct.as_deref())),
    );
    reply(StatusCode::OK, content_type, body)
}
