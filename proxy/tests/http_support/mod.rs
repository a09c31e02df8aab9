//! Shared pieces of the HTTP connection manager tests: small hyper backends that answer
//! with their name and record what they saw, config builders, a proxy on a loopback
//! port, and HTTP/1.1 and HTTP/2 clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};

use strait_proxy::config::cluster::{
    Cluster, Discovery, HttpProtocolOptions, LbPolicy, Thresholds, UpstreamProtocol,
};
use strait_proxy::config::common::{
    AppendAction, HeaderMatch, HeaderMatcher, HeaderMutations, HeaderValueOption, StringMatch,
    StringMatcher,
};
use strait_proxy::config::endpoint::{Health, LbEndpoint};
use strait_proxy::config::listener::{
    ClusterSpecifier, CodecType, HttpConnectionManager, HttpFilter, RouteSource, WeightedCluster,
};
use strait_proxy::config::route::{
    ForwardAction, PathMatch, RetryOn, RetryPolicy, Route, RouteAction, RouteConfig, RouteMatch,
    VirtualHost,
};
use strait_proxy::http::{HttpService, RequestInfo, RequestObserver, new_route_table};
use strait_proxy::upstream::{ClusterManager, ThreadRandom};

/// What a backend saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    pub fn requests(&self) -> usize {
        self.seen.lock().len()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .last()
            .cloned()
            .expect("the backend saw a request")
    }
}

/// Answers `<name>` with `x-backend: <name>`. Paths steer it:
/// `/slow/<ms>` sleeps first; `/status/<code>` answers that status; `/fail-first` answers
/// 503 to its first request; `/echo` answers with the request body;
/// `/grpc` answers a gRPC message with `grpc-status` trailers.
async fn answer(
    name: Arc<str>,
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let collected = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let earlier = {
        let mut s = seen.lock();
        s.push(Seen {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            host,
            version: parts.version,
            headers: parts.headers.clone(),
            body: collected.clone(),
        });
        s.len() - 1
    };
    let mut status = StatusCode::OK;
    let mut text = Bytes::from(name.to_string());
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    } else if let Some(code) = path.strip_prefix("/status/") {
        status = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
    } else if path == "/fail-first" && earlier == 0 {
        status = StatusCode::SERVICE_UNAVAILABLE;
    } else if path == "/echo" {
        text = collected;
    }
    let mut response = Response::new(Full::new(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_str(&name).unwrap());
    response
}

async fn spawn_backend(name: &str, http2: bool) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = Backend {
        name: name.to_string(),
        addr: listener.local_addr().unwrap(),
        connections: Arc::new(AtomicUsize::new(0)),
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let (connections, seen) = (backend.connections.clone(), backend.seen.clone());
    let name: Arc<str> = Arc::from(name);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let (name, seen) = (name.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (name, seen) = (name.clone(), seen.clone());
                    async move { Ok::<_, Infallible>(answer(name, seen, req).await) }
                });
                let io = TokioIo::new(stream);
                if http2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                }
            });
        }
    });
    backend
}

pub async fn backend(name: &str) -> Backend {
    spawn_backend(name, false).await
}

pub async fn h2_backend(name: &str) -> Backend {
    spawn_backend(name, true).await
}

/// An address nobody listens on.
pub fn dead_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn endpoint(addr: SocketAddr) -> LbEndpoint {
    LbEndpoint {
        address: addr,
        weight: 1,
        health: Health::Healthy,
        locality: Default::default(),
        priority: 0,
        locality_weight: None,
        metadata: Default::default(),
    }
}

pub fn cluster(name: &str, addrs: &[SocketAddr]) -> Cluster {
    Cluster {
        name: name.into(),
        discovery: Discovery::Static(addrs.iter().copied().map(endpoint).collect()),
        lb_policy: LbPolicy::RoundRobin,
        connect_timeout: Duration::from_secs(2),
        thresholds: Thresholds::default(),
        http: HttpProtocolOptions::default(),
        upstream_bind: None,
        outlier_detection: None,
        healthy_panic_threshold: 50.0,
        stat_name: None,
        has_transport_socket: false,
        cleanup_interval: None,
        source_ip: None,
    }
}

pub fn h2_cluster(name: &str, addrs: &[SocketAddr]) -> Cluster {
    let mut c = cluster(name, addrs);
    c.http.protocol = UpstreamProtocol::Http2;
    c
}

pub fn clusters(list: Vec<Cluster>) -> Arc<ClusterManager> {
    let m = Arc::new(ClusterManager::new(ThreadRandom::shared()));
    m.update_clusters(list.into_iter().map(Arc::new));
    m
}

pub fn forward(cluster: &str) -> ForwardAction {
    ForwardAction {
        cluster: ClusterSpecifier::Cluster(cluster.into()),
        cluster_headers: vec![],
        timeout: Some(Duration::from_secs(15)),
        idle_timeout: None,
        retry_policy: None,
        prefix_rewrite: None,
        regex_rewrite: None,
        host_rewrite: None,
        auto_host_rewrite: false,
        mirrors: vec![],
        hash_policy: vec![],
        max_grpc_timeout: None,
        upgrade_types: vec![],
    }
}

pub fn weighted(split: &[(&str, u32)]) -> ForwardAction {
    let mut a = forward("");
    a.cluster = ClusterSpecifier::Weighted(
        split
            .iter()
            .map(|(n, w)| WeightedCluster {
                name: n.to_string(),
                weight: *w,
            })
            .collect(),
    );
    a
}

pub fn retry_5xx(num_retries: u32) -> RetryPolicy {
    RetryPolicy {
        retry_on: RetryOn {
            five_xx: true,
            ..Default::default()
        },
        num_retries,
        per_try_timeout: None,
        per_try_idle_timeout: None,
        retriable_status_codes: vec![],
        base_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(20),
        avoid_previous_hosts: false,
        host_selection_retry_max_attempts: 1,
    }
}

pub fn route(prefix: &str, action: RouteAction) -> Route {
    Route {
        name: format!("route{prefix}").into(),
        route_match: RouteMatch {
            path: PathMatch::Prefix(prefix.into()),
            case_sensitive: true,
            headers: vec![],
            query_parameters: vec![],
            fraction: None,
            grpc: false,
        },
        action,
        headers: HeaderMutations::default(),
        response_headers: HeaderMutations::default(),
        fault: None,
        cors: None,
        operation: None,
    }
}

pub fn to(prefix: &str, action: ForwardAction) -> Route {
    route(prefix, RouteAction::Forward(Box::new(action)))
}

pub fn header_is(name: &str, value: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        matcher: HeaderMatch::String(StringMatcher {
            pattern: StringMatch::Exact(value.into()),
            ignore_case: false,
        }),
        invert: false,
        treat_missing_as_empty: false,
    }
}

pub fn set_header(name: &'static str, value: &'static str) -> HeaderMutations {
    HeaderMutations {
        add: vec![HeaderValueOption {
            name: HeaderName::from_static(name),
            value: HeaderValue::from_static(value),
            action: AppendAction::OverwriteIfExistsOrAdd,
            keep_empty: false,
        }],
        remove: vec![],
    }
}

pub fn vhost(domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: format!("vh-{}", domains.join(",")),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes: routes.into_iter().map(Arc::new).collect(),
        include_request_attempt_count: true,
        ..Default::default()
    }
}

pub fn route_config(vhosts: Vec<VirtualHost>) -> RouteConfig {
    RouteConfig {
        name: "test".into(),
        virtual_hosts: vhosts.into_iter().map(Arc::new).collect(),
        ..Default::default()
    }
}

pub fn hcm(routes: RouteSource) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: "test".into(),
        codec_type: CodecType::Auto,
        route_source: routes,
        http_filters: vec![HttpFilter::Fault, HttpFilter::Cors, HttpFilter::Router],
        stream_idle_timeout: Some(Duration::from_secs(300)),
        request_timeout: None,
        request_headers_timeout: None,
        idle_timeout: Some(Duration::from_secs(3600)),
        max_request_headers_kb: 60,
        use_remote_address: false,
        xff_num_trusted_hops: 0,
        generate_request_id: true,
        preserve_external_request_id: false,
        normalize_path: true,
        merge_slashes: false,
        strip_any_host_port: false,
        server_name: None,
        access_log: vec![],
        upgrade_types: vec!["websocket".into()],
    }
}

pub fn inline(vhosts: Vec<VirtualHost>) -> HttpConnectionManager {
    hcm(RouteSource::Inline(Arc::new(route_config(vhosts))))
}

/// Records every finished request.
#[derive(Default)]
pub struct Log(pub Mutex<Vec<RequestInfo>>);

impl RequestObserver for Log {
    fn on_request_done(&self, info: &RequestInfo) {
        self.0.lock().push(info.clone());
    }
}

impl Log {
    pub async fn wait_for(&self, n: usize) -> Vec<RequestInfo> {
        for _ in 0..200 {
            if self.0.lock().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.0.lock().clone()
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    pub clusters: Arc<ClusterManager>,
}

/// An HCM on a loopback port, each connection served on this runtime.
pub async fn proxy(hcm: HttpConnectionManager, clusters: Arc<ClusterManager>) -> Proxy {
    let log = Arc::new(Log::default());
    let service = HttpService::new(new_route_table(), clusters.clone()).with_observer(log.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hcm = Arc::new(hcm);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let service = service.clone();
            let hcm = hcm.clone();
            tokio::spawn(async move {
                service.serve_connection(stream, peer, addr, hcm).await;
            });
        }
    });
    Proxy {
        addr,
        log,
        clusters,
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn read_reply(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    }
}

/// An HTTP/1.1 client connection.
pub struct H1 {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> H1 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        H1 { send }
    }

    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Reply {
        self.send.ready().await.unwrap();
        read_reply(self.send.send_request(request).await.unwrap()).await
    }

    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut b = Request::get(path).header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Full::new(Bytes::new())).unwrap()).await
    }
}

/// One GET on a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    H1::connect(addr).await.get(host, path, headers).await
}

/// An HTTP/2 (prior knowledge) client connection.
pub struct H2 {
    pub send: hyper::client::conn::http2::SendRequest<
        http_body_util::combinators::BoxBody<Bytes, Infallible>,
    >,
}

impl H2 {
    pub async fn connect(addr: SocketAddr) -> H2 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        H2 { send }
    }

    pub async fn send(
        &mut self,
        request: Request<http_body_util::combinators::BoxBody<Bytes, Infallible>>,
    ) -> Reply {
        self.send.ready().await.unwrap();
        read_reply(self.send.send_request(request).await.unwrap()).await
    }
}

pub fn header_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
