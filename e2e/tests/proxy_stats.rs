//! What a user scraping the admin endpoint or reading the access log sees, strait-proxy
//! against a stock Envoy: the same request script goes through an Envoy sidecar and a
//! strait-proxy sidecar of the same mesh (200s, a 404 with no route, a 503 to a service
//! without endpoints, a TCP connection), and the Envoy stats the script touches must
//! read the same in both. strait-proxy must also show Istio's standard metrics with the
//! labels Istio's stats filter gives them, which a stock Envoy cannot. Access logs are
//! compared here on static listeners with custom formats; `mesh_access_log.rs` covers
//! the loggers pilot-discovery configures from `meshConfig.accessLogFile`.
//! Needs root and Envoy 1.40.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use strait_e2e::backend::tcp::{TcpMode, TcpServer};
use strait_e2e::envoy::static_cluster;
use strait_e2e::mesh::{BookinfoMesh, MeshOptions, SidecarKind, single_pod_service};
use strait_e2e::{
    AdsApi, Backend, Bootstrap, Envoy, RequestSpec, SidecarNode, Topology, wait_until,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIGURED: Duration = Duration::from_secs(30);
const HCM: &str = "outbound_0.0.0.0_9080;";
const DETAILS: &str = "outbound|9080||details.default.svc.cluster.local;";
const REVIEWS_V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local;";
const SLIM: &str = "outbound|9080||slim.default.svc.cluster.local;";
const EMPTY: &str = "outbound|9080||empty.default.svc.cluster.local;";
const TCP_ECHO: &str = "outbound|9000||tcp-echo.default.svc.cluster.local;";

/// A service whose only route is `/only` (anything else: no route) and one without
/// endpoints; the TCP service comes from `single_pod_service`.
const EXTRA: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: slim, namespace: default, labels: {app: details}}
spec:
  clusterIP: 10.96.0.30
  selector: {app: details}
  ports:
  - {name: http, port: 9080}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default, labels: {app: nobody}}
spec:
  clusterIP: 10.96.0.31
  selector: {app: nobody}
  ports:
  - {name: http, port: 9080}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: slim, namespace: default}
spec:
  hosts: [slim]
  http:
  - match:
    - uri: {prefix: /only}
    route:
    - destination: {host: slim}
"#;

fn vip(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 96, 0, last], port))
}

/// `/stats` as numbers (histograms left out).
fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

struct Run {
    stats: BTreeMap<String, u64>,
    prometheus: String,
}

/// The script: 3 × details (200), 2 × reviews as jason (200, v2), slim off its route
/// (404), empty (503), one TCP echo.
async fn run(sidecar: SidecarKind) -> Run {
    let mesh = BookinfoMesh::start(MeshOptions {
        api: AdsApi::Sotw,
        sidecar,
        extra_workloads: vec!["tcp-echo-v1".into()],
        extra_configs: vec![
            ("stats-extra.yaml".into(), EXTRA.into()),
            (
                "tcp-echo.yaml".into(),
                single_pod_service("tcp-echo", Ipv4Addr::new(10, 96, 0, 21), "tcp-echo", 9000),
            ),
        ],
        ..Default::default()
    })
    .await
    .expect("mesh starts");
    let _echo = TcpServer::start(
        &mesh.pods["tcp-echo-v1"],
        9000,
        TcpMode::Echo {
            greeting: "tcp-echo-v1".into(),
        },
    )
    .unwrap();
    mesh.wait_configured(CONFIGURED)
        .await
        .expect("sidecar configured");
    // The extra services, without sending traffic (which would count).
    mesh.envoy
        .wait_for("the extra services", CONFIGURED, |dump| {
            let text = dump.to_string();
            text.contains("10.96.0.21_9000")
                && text.contains("outbound|9080||empty.default.svc.cluster.local")
                && text.contains("slim.default.svc.cluster.local:9080")
        })
        .await
        .unwrap();
    if sidecar == SidecarKind::Envoy {
        wait_until("listeners warm", CONFIGURED, || async {
            let stats = parse_stats(&mesh.envoy.stats().await?);
            Ok(stats.get("listener_manager.total_listeners_warming") == Some(&0))
        })
        .await
        .unwrap();
    }

    let send = async |spec: RequestSpec, to: SocketAddr| {
        mesh.client
            .send(to, &spec)
            .await
            .unwrap_or_else(|e| panic!("{sidecar:?} {spec:?}: {e:#}"))
            .status
    };
    for _ in 0..3 {
        assert_eq!(
            send(RequestSpec::get("details:9080", "/"), vip(13, 9080)).await,
            200
        );
    }
    for _ in 0..2 {
        let jason = RequestSpec::get("reviews:9080", "/").header("end-user", "jason");
        assert_eq!(send(jason, vip(11, 9080)).await, 200);
    }
    assert_eq!(
        send(RequestSpec::get("slim:9080", "/other"), vip(30, 9080)).await,
        404
    );
    assert_eq!(
        send(RequestSpec::get("empty:9080", "/"), vip(31, 9080)).await,
        503
    );

    let mut tcp = mesh.client.connect(vip(21, 9000)).await.unwrap();
    let mut greeting = [0u8; 12];
    tcp.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"tcp-echo-v1\n");
    tcp.write_all(b"ping").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    tcp.read_to_end(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"ping");
    drop(tcp);

    // Requests and connections are counted as they end, a moment after the client
    // has seen them end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats = parse_stats(&mesh.envoy.stats().await.unwrap());
        let completed = stats.get(&format!("http.{HCM}.downstream_rq_completed"));
        // The listener lets go of a connection last, after its filter has counted it.
        let tcp_closed = stats.get("listener.10.96.0.21_9000.downstream_cx_destroy");
        let http_closed = stats.get("listener.0.0.0.0_9080.downstream_cx_destroy");
        let counted = completed == Some(&7) && http_closed == Some(&7) && tcp_closed == Some(&1);
        if counted || tokio::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let prometheus = mesh
        .envoy
        .admin_get("/stats/prometheus")
        .await
        .unwrap()
        .text();
    Run { stats, prometheus }
}

/// Stats whose values must be equal in both proxies after the script.
fn compared() -> Vec<String> {
    let mut names: Vec<String> = [
        "downstream_rq_total",
        "downstream_rq_completed",
        "downstream_rq_2xx",
        "downstream_rq_4xx",
        "downstream_rq_5xx",
        "downstream_rq_active",
        "downstream_cx_total",
        "downstream_cx_active",
        "downstream_cx_http1_total",
        "downstream_rq_http1_total",
        "downstream_cx_destroy",
        // What the client sent (what goes back differs: dates, timings in headers).
        "downstream_cx_rx_bytes_total",
        "no_route",
        "rq_total",
        "rds.9080.config_reload",
        "rds.9080.update_attempt",
    ]
    .iter()
    .map(|s| format!("http.{HCM}.{s}"))
    .collect();
    for s in [
        "downstream_rq_2xx",
        "downstream_rq_4xx",
        "downstream_rq_5xx",
    ] {
        names.push(format!("listener.0.0.0.0_9080.http.{HCM}.{s}"));
    }
    for s in [
        "downstream_cx_total",
        "downstream_cx_active",
        "downstream_cx_destroy",
        "no_filter_chain_match",
    ] {
        names.push(format!("listener.0.0.0.0_9080.{s}"));
        names.push(format!("listener.10.96.0.21_9000.{s}"));
    }
    // Every connection was handed to the listener of its destination.
    names.push("listener.0.0.0.0_15001.downstream_cx_total".into());
    for (cluster, stats) in [
        (
            DETAILS,
            &[
                "upstream_rq_total",
                "upstream_rq_200",
                "upstream_rq_2xx",
                "upstream_rq_completed",
                "upstream_rq_active",
                "upstream_rq_pending_overflow",
                "upstream_rq_retry",
                "upstream_rq_timeout",
                "membership_total",
                "membership_healthy",
            ][..],
        ),
        (REVIEWS_V2, &["upstream_rq_total", "upstream_rq_200"][..]),
        (SLIM, &["upstream_rq_total"][..]),
        (
            EMPTY,
            &[
                "upstream_rq_total",
                "upstream_rq_503",
                "upstream_rq_5xx",
                "upstream_rq_completed",
                "upstream_cx_total",
                "upstream_cx_none_healthy",
                "membership_total",
                "membership_healthy",
            ][..],
        ),
        (
            TCP_ECHO,
            &[
                "upstream_cx_total",
                "upstream_cx_active",
                "upstream_cx_destroy",
                "upstream_cx_connect_fail",
                "upstream_cx_rx_bytes_total",
                "upstream_cx_tx_bytes_total",
            ][..],
        ),
    ] {
        for s in stats {
            names.push(format!("cluster.{cluster}.{s}"));
        }
    }
    names.extend(
        [
            "cluster_manager.active_clusters",
            "cluster_manager.warming_clusters",
            "listener_manager.total_listeners_active",
            "listener_manager.total_listeners_warming",
            "listener_manager.total_listeners_draining",
            "listener_manager.listener_added",
            "listener_manager.listener_create_success",
            "listener_manager.listener_removed",
            "cluster_manager.cluster_added",
            "cluster_manager.cluster_removed",
        ]
        .map(String::from),
    );
    names
}

/// Stats that depend on timing (whether a pooled connection was back in the pool before
/// the next request): in the same range in both.
fn pooled() -> Vec<String> {
    ["upstream_cx_total", "upstream_rq_pending_total"]
        .iter()
        .map(|s| format!("cluster.{DETAILS}.{s}"))
        .collect()
}

/// Stats that depend on how many pushes happened: at least one in both.
fn pushed() -> Vec<String> {
    [
        "cluster_manager.cds.update_success",
        "listener_manager.lds.update_success",
        "http.outbound_0.0.0.0_9080;.rds.9080.update_success",
    ]
    .map(String::from)
    .to_vec()
}

/// The value of the Prometheus series with all of `labels`, 0 when there is none.
fn series(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_stats_match_and_istio_metrics_are_labelled() {
    let (envoy, strait) = tokio::join!(run(SidecarKind::Envoy), run(SidecarKind::Strait));
    let mut differences = Vec::new();
    for name in compared() {
        let (e, s) = (envoy.stats.get(&name), strait.stats.get(&name));
        if e.is_none() || e != s {
            differences.push(format!("  {name}: envoy {e:?}, strait {s:?}"));
        }
    }
    for name in pooled() {
        let (e, s) = (envoy.stats.get(&name), strait.stats.get(&name));
        let sane = |v: Option<&u64>| v.is_some_and(|v| (1..=3).contains(v));
        if !(sane(e) && sane(s)) {
            differences.push(format!("  {name}: envoy {e:?}, strait {s:?}"));
        }
    }
    for name in pushed() {
        let (e, s) = (envoy.stats.get(&name), strait.stats.get(&name));
        if !(e >= Some(&1) && s >= Some(&1)) {
            differences.push(format!("  {name}: envoy {e:?}, strait {s:?}"));
        }
    }
    // The TCP proxy's stats, under the prefix pilot-discovery gave it.
    let tcp: Vec<&String> = envoy
        .stats
        .keys()
        .filter(|k| k.starts_with("tcp.") && k.contains("tcp-echo"))
        .filter(|k| k.ends_with(".downstream_cx_total") || k.ends_with("_bytes_total"))
        .collect();
    assert!(!tcp.is_empty(), "Envoy has no tcp_proxy stats for tcp-echo");
    for name in tcp {
        let (e, s) = (envoy.stats.get(name), strait.stats.get(name));
        if e != s {
            differences.push(format!("  {name}: envoy {e:?}, strait {s:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "strait-proxy's stats differ from Envoy's:\n{}",
        differences.join("\n")
    );
    // The expected values themselves, so both cannot agree on something wrong.
    let e = |name: &str| envoy.stats.get(name).copied();
    assert_eq!(e(&format!("http.{HCM}.downstream_rq_2xx")), Some(5));
    assert_eq!(e(&format!("http.{HCM}.no_route")), Some(1));
    assert_eq!(e(&format!("cluster.{DETAILS}.upstream_rq_200")), Some(3));
    assert_eq!(
        e(&format!("cluster.{EMPTY}.upstream_cx_none_healthy")),
        Some(1)
    );

    // Istio's standard metrics, which only strait-proxy has.
    let p = &strait.prometheus;
    let details = [
        ("reporter", "source"),
        ("source_workload_namespace", "default"),
        ("source_canonical_service", "productpage"),
        ("source_app", "productpage"),
        ("destination_service", "details.default.svc.cluster.local"),
        ("destination_service_name", "details"),
        ("destination_service_namespace", "default"),
        ("destination_workload", "details-v1"),
        ("destination_canonical_service", "details"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("response_flags", "-"),
    ];
    assert_eq!(series(p, "istio_requests_total", &details), 3.0, "{p}");
    assert_eq!(
        series(p, "istio_request_duration_milliseconds_count", &details),
        3.0
    );
    assert_eq!(series(p, "istio_response_bytes_count", &details), 3.0);
    let reviews = [
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_workload", "reviews-v2"),
        ("destination_canonical_revision", "v2"),
        ("response_code", "200"),
    ];
    assert_eq!(series(p, "istio_requests_total", &reviews), 2.0, "{p}");
    let no_route = [
        ("destination_service", "slim:9080"),
        ("response_code", "404"),
        ("response_flags", "NR"),
    ];
    assert_eq!(series(p, "istio_requests_total", &no_route), 1.0, "{p}");
    let no_endpoints = [
        ("destination_service", "empty.default.svc.cluster.local"),
        ("destination_workload", "unknown"),
        ("response_code", "503"),
        ("response_flags", "UH"),
    ];
    assert_eq!(series(p, "istio_requests_total", &no_endpoints), 1.0, "{p}");
    let tcp = [
        ("reporter", "source"),
        ("destination_service", "tcp-echo.default.svc.cluster.local"),
        ("destination_workload", "tcp-echo-v1"),
        ("request_protocol", "tcp"),
    ];
    assert_eq!(
        series(p, "istio_tcp_connections_opened_total", &tcp),
        1.0,
        "{p}"
    );
    assert_eq!(series(p, "istio_tcp_connections_closed_total", &tcp), 1.0);
    assert_eq!(series(p, "istio_tcp_sent_bytes_total", &tcp), 16.0);
    assert_eq!(series(p, "istio_tcp_received_bytes_total", &tcp), 4.0);
    assert_eq!(
        series(
            p,
            "istio_build",
            &[("component", "proxy"), ("tag", "1.30.0")]
        ),
        1.0
    );
    assert!(
        !envoy.prometheus.contains("istio_requests_total"),
        "a stock Envoy has no Istio stats filter"
    );
}

// ---------------------------------------------------------------------------------------
// Access logs, on static listeners both proxies read from the same bootstrap.

/// Access log format without what varies between runs (times, ids).
const FORMAT: &str = "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %BYTES_RECEIVED% %BYTES_SENT% \"%REQ(USER-AGENT)%\" %UPSTREAM_CLUSTER% %ROUTE_NAME%\n";
const TCP_FORMAT: &str = "%UPSTREAM_CLUSTER% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS%\n";

fn file_log(path: &Path, format: Option<&str>) -> Value {
    let mut config = json!({
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": path.to_str().unwrap(),
    });
    if let Some(f) = format {
        config["log_format"] = json!({"text_format_source": {"inline_string": f}});
    }
    json!({"name": "envoy.access_loggers.file", "typed_config": config})
}

fn http_listener(dir: &Path) -> Value {
    json!({
        "name": "logged_http",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 18000}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "logged_http",
                "access_log": [
                    file_log(&dir.join("fields.log"), Some(FORMAT)),
                    file_log(&dir.join("default.log"), None),
                ],
                "route_config": {
                    "name": "logged",
                    "virtual_hosts": [{
                        "name": "all",
                        "domains": ["*"],
                        "routes": [
                            {"name": "ok", "match": {"prefix": "/ok"}, "route": {"cluster": "backend"}},
                            {"name": "direct", "match": {"prefix": "/direct"},
                             "direct_response": {"status": 503, "body": {"inline_string": "down"}}},
                        ],
                    }],
                },
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    })
}

fn tcp_listener(dir: &Path) -> Value {
    json!({
        "name": "logged_tcp",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 18001}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": "logged_tcp",
                "cluster": "backend",
                "access_log": [file_log(&dir.join("tcp.log"), Some(TCP_FORMAT))],
            },
        }]}],
    })
}

struct Logs {
    fields: Vec<String>,
    default: Vec<String>,
    tcp: Vec<String>,
}

async fn logged(topology: &Topology, pod: &str, backend: SocketAddr, kind: SidecarKind) -> Logs {
    let ns = topology.add_workload(pod).unwrap();
    let dir = strait_e2e::workdir::WorkDir::new("access-log").unwrap();
    let bootstrap = Bootstrap::new(SidecarNode::new(ns.ip(), pod, "default"))
        .with_static_cluster(static_cluster("backend", &[backend]))
        .with_static_listener(http_listener(dir.path()))
        .with_static_listener(tcp_listener(dir.path()));
    let binary = match kind {
        SidecarKind::Envoy => strait_e2e::bins::envoy().unwrap(),
        SidecarKind::Strait => strait_e2e::bins::strait("strait-proxy").unwrap(),
    };
    let proxy = Envoy::start_binary(
        &ns,
        &bootstrap,
        &binary,
        &["--file-flush-interval-msec", "50"],
    )
    .await
    .unwrap();
    proxy.wait_live(CONFIGURED).await.unwrap();
    let client = strait_e2e::HttpClient::new(&ns);
    let at = SocketAddr::from((ns.ip(), 18000));
    for (path, status) in [
        ("/ok/1", 200),
        ("/ok/2", 200),
        ("/missing", 404),
        ("/direct", 503),
    ] {
        let spec = RequestSpec::get("logged.example", path).header("user-agent", "log-test");
        let response = client.send(at, &spec).await.unwrap();
        assert_eq!(response.status, status, "{kind:?} {path}");
    }
    let mut tcp = client
        .connect(SocketAddr::from((ns.ip(), 18001)))
        .await
        .unwrap();
    tcp.write_all(b"GET /ok/tcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    drop(tcp);

    let read = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    };
    let mut logs = Logs {
        fields: vec![],
        default: vec![],
        tcp: vec![],
    };
    wait_until("the access log lines", Duration::from_secs(15), || {
        logs = Logs {
            fields: read("fields.log"),
            default: read("default.log"),
            tcp: read("tcp.log"),
        };
        let done = logs.fields.len() >= 4 && logs.default.len() >= 4 && !logs.tcp.is_empty();
        async move { Ok(done) }
    })
    .await
    .unwrap_or_else(|e| panic!("{kind:?}: {e:#}\n{}", proxy.log_tail()));
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_match_envoy() {
    let topology = Topology::new().unwrap();
    let backend_ns = topology.add_workload("backend").unwrap();
    let backend = Backend::start(&backend_ns, 9080, "backend", "v1").unwrap();
    let (envoy, strait) = tokio::join!(
        logged(&topology, "envoy", backend.addr(), SidecarKind::Envoy),
        logged(&topology, "strait", backend.addr(), SidecarKind::Strait),
    );
    assert_eq!(strait.fields, envoy.fields);
    assert_eq!(strait.tcp, envoy.tcp);
    assert_eq!(envoy.fields.len(), 4, "{:?}", envoy.fields);
    assert!(envoy.fields[2].starts_with("GET /missing HTTP/1.1 404 NR route_not_found 0 0"));
    assert_eq!(envoy.tcp.len(), 1);
    // Envoy's default format: the same shape, with times and ids that differ.
    assert_eq!(strait.default.len(), envoy.default.len());
    for (s, e) in strait.default.iter().zip(&envoy.default) {
        // `[start] "GET /p HTTP/1.1" code flags rx tx duration upstream_time "xff" "ua"
        // "id" "authority" "upstream host"`: all but the time, durations and the id.
        let stable = |l: &str| -> Vec<String> {
            let fields: Vec<&str> = l.split(' ').collect();
            [1, 2, 3, 4, 5, 6, 7, 10, 11, 13, 14]
                .iter()
                .map(|i| fields.get(*i).copied().unwrap_or("<none>").to_string())
                .collect()
        };
        assert_eq!(stable(s), stable(e), "\nstrait: {s}\nenvoy:  {e}");
        assert!(s.starts_with('['), "{s}");
    }
}
