//! The wiring, end to end inside the process: real listeners, the HTTP connection
//! manager and the TCP proxy, with stats, Istio metrics and access logs read back the
//! way `/stats` and a log file show them; and listener drain on removal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Telemetry;
use crate::config::access_log::{AccessLog, AccessLogSink};
use crate::config::cluster::LbPolicy;
use crate::config::listener::{
    ClusterSpecifier, CodecType, FilterChain, HttpConnectionManager, HttpFilter, Listener,
    ListenerFilters, NetworkFilter, RouteSource, TcpProxy,
};
use crate::config::route::{PathMatch, RouteConfig};
use crate::http::HttpService;
use crate::listener::connection::Dispatcher;
use crate::listener::manager::ListenerManager;
use crate::router::testutil::{forward, route, vhost};
use crate::stats::{Snapshot, Store, Value};
use crate::upstream::test_util::{cluster, eds, endpoint};
use crate::upstream::{ClusterManager, SeededRandom};
use crate::worker::Workers;

const PREFIX: &str = "outbound_0.0.0.0_9080;";

/// An HTTP/1 backend answering `ok`.
async fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// Answers each connection with what it read, then closes.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf).await;
                let _ = s.write_all(&buf).await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hcm(access_log: Vec<AccessLog>) -> HttpConnectionManager {
    let routes = RouteConfig {
        name: "9080".into(),
        virtual_hosts: vec![Arc::new(vhost(
            "reviews.default.svc.cluster.local:9080",
            &["*"],
            vec![
                route(
                    "ok",
                    PathMatch::Prefix("/ok".into()),
                    crate::config::route::RouteAction::Forward(Box::new(forward("backend"))),
                ),
                route(
                    "empty",
                    PathMatch::Prefix("/empty".into()),
                    crate::config::route::RouteAction::Forward(Box::new(forward("empty"))),
                ),
            ],
        ))],
        ..Default::default()
    };
    HttpConnectionManager {
        stat_prefix: PREFIX.into(),
        codec_type: CodecType::Auto,
        route_source: RouteSource::Inline(Arc::new(routes)),
        http_filters: vec![HttpFilter::Router],
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
        access_log,
        upgrade_types: vec![],
    }
}

fn listener(name: &str, port: u16, filter: NetworkFilter) -> Arc<Listener> {
    Arc::new(Listener {
        name: name.into(),
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        bind_to_port: true,
        use_original_dst: false,
        listener_filters: ListenerFilters::default(),
        filter_chains: vec![FilterChain {
            name: "chain".into(),
            filter_chain_match: Default::default(),
            filter,
            has_transport_socket: false,
        }],
        default_filter_chain: None,
        transparent: false,
        stat_prefix: None,
    })
}

struct World {
    manager: ListenerManager,
    telemetry: Arc<Telemetry>,
    store: Arc<Store>,
    clusters: Arc<ClusterManager>,
}

async fn world(drain_time: Duration) -> World {
    let clusters = Arc::new(ClusterManager::new(SeededRandom::shared(1)));
    let mut backend_cluster = cluster(
        "backend",
        LbPolicy::RoundRobin,
        crate::config::cluster::Discovery::Static(vec![endpoint(&backend().await.to_string())]),
    );
    backend_cluster.stat_name = Some("backend;".into());
    clusters.update_clusters([
        Arc::new(backend_cluster),
        Arc::new(cluster("empty", LbPolicy::RoundRobin, eds("empty"))),
        Arc::new(cluster(
            "echo",
            LbPolicy::RoundRobin,
            crate::config::cluster::Discovery::Static(vec![endpoint(&echo().await.to_string())]),
        )),
    ]);
    let store = Arc::new(Store::default());
    let metadata = json!({
        "ISTIO_VERSION": "1.30.0",
        "NAMESPACE": "default",
        "WORKLOAD_NAME": "productpage-v1",
        "CLUSTER_ID": "Kubernetes",
        "LABELS": {"app": "productpage", "version": "v1"},
    });
    let telemetry = Telemetry::new(
        store.clone(),
        metadata.as_object(),
        Duration::from_millis(20),
    );
    telemetry.upstreams().set_services([(
        "backend".to_string(),
        super::upstreams::service_of(&json!({"services": [
            {"host": "reviews.default.svc.cluster.local", "name": "reviews", "namespace": "default"}
        ]})),
    )]);
    telemetry.upstreams().rebuild(&clusters);
    store.add_source(Arc::new(crate::stats::ClusterStatsSource::new(
        clusters.clone(),
    )));
    let http = HttpService::new(crate::http::new_route_table(), clusters.clone());
    let manager = ListenerManager::with_telemetry(
        Arc::new(Workers::start(1).unwrap()),
        Arc::new(Dispatcher {
            clusters: clusters.clone(),
            http: Some(Arc::new(http)),
        }),
        telemetry.clone(),
        drain_time,
    );
    World {
        manager,
        telemetry,
        store,
        clusters,
    }
}

async fn get(port: u16, path: &str) -> StatusCode {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", "reviews:9080")
        .header("user-agent", "stats-test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

fn value(snap: &Snapshot, name: &str) -> u64 {
    snap.value(name)
        .unwrap_or_else(|| panic!("no stat {name} in {:?}", names(snap)))
}

fn names(snap: &Snapshot) -> Vec<&str> {
    snap.samples.iter().map(|s| s.name.as_str()).collect()
}

/// Waits until the stats say `n` requests were completed (the report goes out when
/// the response body is done, just after the client has it).
async fn completed(store: &Store, n: u64) -> Snapshot {
    for _ in 0..200 {
        let snap = store.snapshot();
        if snap.value(&format!("http.{PREFIX}.downstream_rq_completed")) >= Some(n) {
            return snap;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.snapshot()
}

#[tokio::test]
async fn requests_count_in_envoy_stats_istio_metrics_and_the_access_log() {
    let w = world(Duration::from_secs(600)).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let access = vec![AccessLog {
        sink: AccessLogSink::File(log.clone()),
        format: None,
        json_format: None,
    }];
    let port = free_port();
    w.manager
        .update(vec![listener(
            "0.0.0.0_9080",
            port,
            NetworkFilter::HttpConnectionManager(Arc::new(hcm(access))),
        )])
        .unwrap();
    assert_eq!(get(port, "/ok").await, StatusCode::OK);
    assert_eq!(get(port, "/ok/again").await, StatusCode::OK);
    assert_eq!(get(port, "/nowhere").await, StatusCode::NOT_FOUND);
    assert_eq!(get(port, "/empty").await, StatusCode::SERVICE_UNAVAILABLE);
    let snap = completed(&w.store, 4).await;

    let http = |stat: &str| value(&snap, &format!("http.{PREFIX}.{stat}"));
    assert_eq!(http("downstream_rq_total"), 4);
    assert_eq!(http("downstream_rq_completed"), 4);
    assert_eq!(http("downstream_rq_2xx"), 2);
    assert_eq!(http("downstream_rq_4xx"), 1);
    assert_eq!(http("downstream_rq_5xx"), 1);
    assert_eq!(http("downstream_rq_http1_total"), 4);
    assert_eq!(http("downstream_cx_total"), 4);
    assert_eq!(http("downstream_cx_http1_total"), 4);
    assert_eq!(http("no_route"), 1);
    assert!(http("downstream_cx_rx_bytes_total") > 4 * 30);
    assert!(http("downstream_cx_tx_bytes_total") > 4 * 30);
    let listener_scope = format!("listener.127.0.0.1_{port}");
    assert_eq!(
        value(&snap, &format!("{listener_scope}.downstream_cx_total")),
        4
    );
    assert_eq!(
        value(
            &snap,
            &format!("{listener_scope}.http.{PREFIX}.downstream_rq_2xx")
        ),
        2
    );
    assert_eq!(value(&snap, "cluster.backend;.upstream_rq_total"), 2);
    assert_eq!(value(&snap, "cluster.backend;.upstream_rq_200"), 2);
    assert_eq!(value(&snap, "cluster.backend;.upstream_rq_2xx"), 2);
    // The second request reuses the pooled connection, unless it came before the
    // connection was back in the pool.
    assert!((1..=2).contains(&value(&snap, "cluster.backend;.upstream_cx_total")));
    assert_eq!(value(&snap, "cluster.empty.upstream_rq_503"), 1);
    assert_eq!(value(&snap, "cluster.empty.upstream_cx_none_healthy"), 1);
    assert_eq!(value(&snap, "cluster.empty.upstream_rq_total"), 0);
    assert_eq!(value(&snap, "listener_manager.listener_added"), 1);
    assert_eq!(value(&snap, "listener_manager.total_listeners_active"), 1);

    // Istio's request metric, labelled from the node, the cluster's service and the
    // route outcome.
    let series: Vec<_> = snap
        .samples
        .iter()
        .filter(|s| s.extracted == crate::stats::istio::REQUESTS_TOTAL)
        .collect();
    let find = |code: &str| {
        series
            .iter()
            .find(|s| {
                s.tags
                    .iter()
                    .any(|t| t.name == "response_code" && t.value == code)
            })
            .unwrap_or_else(|| panic!("no istio_requests_total for {code}"))
    };
    let ok = find("200");
    assert!(matches!(ok.value, Value::Counter { value: 2, .. }));
    let tag = |s: &crate::stats::Sample, k: &str| {
        s.tags
            .iter()
            .find(|t| t.name == k)
            .map(|t| t.value.clone())
            .unwrap()
    };
    assert_eq!(tag(ok, "reporter"), "source");
    assert_eq!(tag(ok, "source_workload"), "productpage-v1");
    assert_eq!(
        tag(ok, "destination_service"),
        "reviews.default.svc.cluster.local"
    );
    assert_eq!(tag(ok, "destination_service_name"), "reviews");
    let not_found = find("404");
    assert_eq!(tag(not_found, "response_flags"), "NR");
    assert_eq!(tag(not_found, "destination_service"), "reviews:9080");
    assert_eq!(tag(find("503"), "response_flags"), "UH");

    w.telemetry.sinks().flush_all();
    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].contains("\"GET /ok HTTP/1.1\" 200 - "),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("\"stats-test\""), "{}", lines[0]);
    assert!(lines[2].contains("\" 404 NR "), "{}", lines[2]);
    assert!(lines[3].contains("\" 503 UH "), "{}", lines[3]);
    drop(w.clusters);
}

#[tokio::test]
async fn tcp_connections_count_and_log_when_they_close() {
    let w = world(Duration::from_secs(600)).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tcp.log");
    let port = free_port();
    let tcp = TcpProxy {
        stat_prefix: "outbound|7000||echo".into(),
        cluster: ClusterSpecifier::Cluster("echo".into()),
        idle_timeout: Some(Duration::from_secs(5)),
        access_log: vec![AccessLog {
            sink: AccessLogSink::File(log.clone()),
            format: Some(
                "%UPSTREAM_CLUSTER% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS%\n".into(),
            ),
            json_format: None,
        }],
    };
    w.manager
        .update(vec![listener(
            "10.96.0.20_7000",
            port,
            NetworkFilter::TcpProxy(Arc::new(tcp)),
        )])
        .unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"hello");

    let mut logged = String::new();
    for _ in 0..200 {
        w.telemetry.sinks().flush_all();
        logged = std::fs::read_to_string(&log).unwrap_or_default();
        if !logged.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(logged, "echo 5 5 -\n");
    let snap = w.store.snapshot();
    assert_eq!(
        value(&snap, "tcp.outbound|7000||echo.downstream_cx_total"),
        1
    );
    assert_eq!(
        value(
            &snap,
            "tcp.outbound|7000||echo.downstream_cx_rx_bytes_total"
        ),
        5
    );
    assert_eq!(value(&snap, "cluster.echo.upstream_cx_total"), 1);
    let opened = snap
        .samples
        .iter()
        .find(|s| s.extracted == crate::stats::istio::TCP_OPENED)
        .unwrap();
    assert!(matches!(opened.value, Value::Counter { value: 1, .. }));
    assert!(
        opened
            .tags
            .iter()
            .any(|t| t.name == "request_protocol" && t.value == "tcp")
    );
}

#[tokio::test]
async fn removed_listeners_drain_their_connections() {
    let drain_time = Duration::from_millis(400);
    let w = world(drain_time).await;
    let port = free_port();
    let hcm = Arc::new(hcm(vec![]));
    w.manager
        .update(vec![listener(
            "0.0.0.0_9080",
            port,
            NetworkFilter::HttpConnectionManager(hcm),
        )])
        .unwrap();

    // An HTTP/1 keep-alive connection and an HTTP/2 one, both open before the removal.
    let h1 = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut h1_send, h1_conn) = hyper::client::conn::http1::handshake(TokioIo::new(h1))
        .await
        .unwrap();
    let h1_conn = tokio::spawn(h1_conn);
    let h2 = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut h2_send, h2_conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(h2))
            .await
            .unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    let req = || {
        Request::get("http://reviews:9080/ok")
            .header("host", "reviews:9080")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let first = h1_send.send_request(req()).await.unwrap();
    assert!(first.headers().get("connection").is_none());
    let _ = first.into_body().collect().await;
    let r = h2_send.send_request(req()).await.unwrap();
    let _ = r.into_body().collect().await;

    w.manager.update(vec![]).unwrap();
    let snap = w.store.snapshot();
    assert_eq!(value(&snap, "listener_manager.total_listeners_draining"), 1);
    assert_eq!(value(&snap, "listener_manager.listener_removed"), 1);
    assert_eq!(value(&snap, "listener_manager.total_listeners_active"), 0);

    // HTTP/1: the next response closes the connection.
    let last = h1_send.send_request(req()).await.unwrap();
    assert_eq!(last.headers()["connection"], "close");
    let _ = last.into_body().collect().await;
    tokio::time::timeout(Duration::from_secs(2), h1_conn)
        .await
        .expect("the HTTP/1 connection closes after its last response")
        .unwrap()
        .unwrap();
    // HTTP/2: GOAWAY, then the connection ends.
    tokio::time::timeout(Duration::from_secs(2), h2_conn)
        .await
        .expect("the HTTP/2 connection goes away")
        .unwrap()
        .unwrap();
    // No longer accepting.
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());

    tokio::time::sleep(drain_time + Duration::from_millis(200)).await;
    let snap = w.store.snapshot();
    assert_eq!(value(&snap, "listener_manager.total_listeners_draining"), 0);
}

#[tokio::test]
async fn an_idle_drained_http1_connection_closes_at_the_deadline() {
    let drain_time = Duration::from_millis(300);
    let w = world(drain_time).await;
    let port = free_port();
    let l = listener(
        "0.0.0.0_9080",
        port,
        NetworkFilter::HttpConnectionManager(Arc::new(hcm(vec![]))),
    );
    w.manager.update(vec![l]).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nhost: reviews\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let start = tokio::time::Instant::now();
    w.manager.update(vec![]).unwrap();
    // Nothing more is sent; the proxy closes the idle connection at the deadline.
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(start.elapsed() >= drain_time - Duration::from_millis(50));
}
