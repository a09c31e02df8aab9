//! `/stats` and `/stats/prometheus` over the stats the data plane keeps: Envoy's stat
//! names for listener, connection manager, cluster, server and xDS stats; Envoy's and
//! Istio's tag extraction in the Prometheus output; Istio's standard metrics with their
//! labels.

// The fixtures are shared by the tests but are not `#[test]` functions themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, StatusCode};
use strait_proxy::admin::{Admin, AdminSource, DrainOptions, ServerDetails};
use strait_proxy::config::cluster::{
    Cluster, Discovery, HttpProtocolOptions, LbPolicy, Thresholds,
};
use strait_proxy::config::endpoint::{ClusterLoadAssignment, Health, LbEndpoint, Locality};
use strait_proxy::config::listener::{Listener, ListenerFilters};
use strait_proxy::stats::istio::{Reporter, RequestProtocol, SecurityPolicy};
use strait_proxy::stats::{
    ClusterStatsSource, HttpConnManagerStats, IstioRecorder, IstioRequest, ListenerStats,
    PeerLabels, ServerState, ServerStats, ServiceLabels, StatsConfig, Store,
};
use strait_proxy::upstream::{ClusterManager, SeededRandom};
use strait_proxy::xds::XdsStats;

const REVIEWS: &str = "outbound|9080||reviews.default.svc.cluster.local";

struct Idle;

impl AdminSource for Idle {
    fn server_state(&self) -> ServerState {
        ServerState::Live
    }
    fn server_details(&self) -> ServerDetails {
        ServerDetails::default()
    }
    fn quit(&self) {}
    fn drain_listeners(&self, _: DrainOptions) {}
}

fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        discovery: Discovery::Eds {
            service_name: String::new(),
        },
        lb_policy: LbPolicy::RoundRobin,
        connect_timeout: Duration::from_secs(10),
        thresholds: Thresholds {
            max_pending_requests: 1,
            max_requests: 1,
            ..Thresholds::default()
        },
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

fn endpoint(addr: &str, health: Health) -> LbEndpoint {
    LbEndpoint {
        address: addr.parse().unwrap(),
        weight: 1,
        health,
        locality: Locality::default(),
        priority: 0,
        locality_weight: None,
        metadata: Default::default(),
    }
}

fn listener(addr: &str) -> Listener {
    Listener {
        name: "virtualOutbound".into(),
        address: addr.parse().unwrap(),
        bind_to_port: true,
        use_original_dst: true,
        listener_filters: ListenerFilters::default(),
        filter_chains: vec![],
        default_filter_chain: None,
        transparent: false,
        stat_prefix: None,
    }
}

/// A store fed the way the data plane feeds it: one outbound request to reviews that got
/// a 200, one overflowed, a listener connection, the HCM's counters, server and xDS state,
/// and Istio's request metrics.
fn traffic(config: StatsConfig) -> Admin {
    let store = Arc::new(Store::new(config));

    let manager = Arc::new(ClusterManager::new(SeededRandom::shared(3)));
    manager.update_clusters([Arc::new(cluster(REVIEWS)), Arc::new(cluster("xds-grpc"))]);
    manager.update_assignment(ClusterLoadAssignment {
        cluster_name: REVIEWS.into(),
        endpoints: vec![
            endpoint("10.244.0.11:9080", Health::Healthy),
            endpoint("10.244.0.12:9080", Health::Unhealthy),
        ],
    });
    store.add_source(Arc::new(ClusterStatsSource::new(manager.clone())));
    let reviews = manager.get(REVIEWS).unwrap();
    reviews
        .stats()
        .upstream_rq_total
        .fetch_add(3, Ordering::Relaxed);
    reviews
        .stats()
        .upstream_cx_total
        .fetch_add(1, Ordering::Relaxed);
    for _ in 0..2 {
        reviews.stats().upstream_rq.record(200);
    }
    reviews.stats().upstream_rq.record(503);
    reviews.stats().upstream_rq_time.record(12);
    let _held = reviews.breakers().try_acquire_request().unwrap();
    assert!(reviews.breakers().try_acquire_request().is_none());
    manager
        .get("xds-grpc")
        .unwrap()
        .stats()
        .upstream_rq
        .record(200);

    let listener_stats = ListenerStats::new(&store, &listener("0.0.0.0:15001"));
    std::mem::forget(listener_stats.connection());
    let hcm =
        HttpConnManagerStats::new(&store, "outbound_0.0.0.0_9080", Some(&listener_stats.scope));
    hcm.counters.downstream_rq_total.inc();
    hcm.record_response(200);
    let ingress = HttpConnManagerStats::new(&store, "ingress_http", None);
    ingress.record_response(204);
    ingress.counters.no_route.inc();

    let server = Arc::new(ServerStats::new(2));
    server.set_state(ServerState::Live);
    store.add_source(server);
    let xds = Arc::new(XdsStats::default());
    xds.cds.update_success.fetch_add(1, Ordering::Relaxed);
    store.add_source(xds);

    let recorder = IstioRecorder::new(store.clone(), "1.30.0");
    let node = serde_json::json!({
        "WORKLOAD_NAME": "productpage-v1",
        "NAMESPACE": "default",
        "CLUSTER_ID": "Kubernetes",
        "LABELS": {"app": "productpage", "version": "v1",
                   "service.istio.io/canonical-name": "productpage",
                   "service.istio.io/canonical-revision": "v1"}
    });
    let own = PeerLabels::from_node_metadata(node.as_object().unwrap());
    let mut metadata = BTreeMap::new();
    metadata.insert(
        "istio".to_string(),
        serde_json::json!({"workload": "reviews-v1;default;reviews;v1;Kubernetes"}),
    );
    let peer = PeerLabels::from_endpoint_metadata(&metadata).unwrap();
    let service = ServiceLabels::resolve(
        Some("reviews:9080"),
        None,
        Some(REVIEWS),
        Some(
            &serde_json::json!({"services": [{"host": "reviews.default.svc.cluster.local", "name": "reviews", "namespace": "default"}]}),
        ),
    );
    recorder.record(&IstioRequest {
        reporter: Reporter::Source,
        source: &own,
        destination: &peer,
        service: &service,
        protocol: RequestProtocol::Http,
        status: 200,
        grpc_status: None,
        flags: "-",
        security: SecurityPolicy::Unknown,
        duration: Duration::from_millis(7),
        request_bytes: None,
        response_bytes: None,
    });

    Admin::new(Arc::new(Idle), store)
}

fn get(admin: &Admin, path: &str) -> String {
    let r = admin.handle(&Method::GET, path);
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    r.body
}

#[test]
fn stats_text_uses_envoys_names() {
    let admin = traffic(StatsConfig::envoy_default());
    let text = get(&admin, "/stats");
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        format!("cluster.{REVIEWS}.upstream_rq_total: 3"),
        format!("cluster.{REVIEWS}.upstream_rq_200: 2"),
        format!("cluster.{REVIEWS}.upstream_rq_2xx: 2"),
        format!("cluster.{REVIEWS}.upstream_rq_5xx: 1"),
        format!("cluster.{REVIEWS}.upstream_rq_completed: 3"),
        format!("cluster.{REVIEWS}.upstream_cx_total: 1"),
        format!("cluster.{REVIEWS}.upstream_cx_active: 0"),
        format!("cluster.{REVIEWS}.upstream_rq_pending_overflow: 1"),
        format!("cluster.{REVIEWS}.upstream_rq_retry_overflow: 0"),
        format!("cluster.{REVIEWS}.membership_total: 2"),
        format!("cluster.{REVIEWS}.membership_healthy: 1"),
        "http.outbound_0.0.0.0_9080.downstream_rq_total: 1".to_string(),
        "http.outbound_0.0.0.0_9080.downstream_rq_2xx: 1".to_string(),
        "http.ingress_http.no_route: 1".to_string(),
        "listener.0.0.0.0_15001.downstream_cx_total: 1".to_string(),
        "listener.0.0.0.0_15001.downstream_cx_active: 1".to_string(),
        "listener.0.0.0.0_15001.http.outbound_0.0.0.0_9080.downstream_rq_2xx: 1".to_string(),
        "server.live: 1".to_string(),
        "server.state: 0".to_string(),
        "cluster_manager.cds.update_success: 1".to_string(),
        "cluster_manager.active_clusters: 2".to_string(),
    ] {
        assert!(
            lines.contains(&expected.as_str()),
            "missing `{expected}` in\n{text}"
        );
    }
    let mut sorted_names: Vec<&str> = lines
        .iter()
        .filter(|l| !l.contains("P0("))
        .filter(|l| !l.contains("No recorded values"))
        .map(|l| l.rsplit_once(": ").unwrap().0)
        .collect();
    let names = sorted_names.clone();
    sorted_names.sort_unstable();
    assert_eq!(names, sorted_names, "sorted by name");
    assert!(text.contains(&format!("cluster.{REVIEWS}.upstream_rq_time: P0(nan,")));

    // What Istio's agent asks to decide readiness.
    let ready = get(
        &admin,
        "/stats?usedonly&filter=%5E(server%5C.state%7Clistener_manager%5C.workers_started)",
    );
    assert_eq!(
        ready,
        "listener_manager.workers_started: 0\nserver.state: 0\n"
    );
    let used = get(&admin, "/stats?usedonly&filter=upstream_rq_retry");
    assert!(
        !used.contains("upstream_rq_retry:"),
        "unused counters are left out"
    );

    let json: serde_json::Value = serde_json::from_str(&get(&admin, "/stats?format=json")).unwrap();
    assert!(json["stats"].as_array().unwrap().iter().any(|s| {
        s["name"] == format!("cluster.{REVIEWS}.upstream_rq_total") && s["value"] == 3
    }));
    assert_eq!(
        admin.handle(&Method::GET, "/stats?filter=(").status,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn prometheus_with_envoys_default_tags() {
    let admin = traffic(StatsConfig::envoy_default());
    let p = get(&admin, "/stats/prometheus");
    for expected in [
        "# TYPE envoy_cluster_upstream_rq_xx counter\n",
        "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"xds-grpc\"} 1\n",
        "envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"xds-grpc\"} 1\n",
        "envoy_listener_downstream_cx_total{envoy_listener_address=\"0.0.0.0_15001\"} 1\n",
        "envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"ingress_http\"} 1\n",
        "envoy_http_no_route{envoy_http_conn_manager_prefix=\"ingress_http\"} 1\n",
        "# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n",
        "envoy_cluster_manager_cds_update_success{} 1\n",
        // Istio's metrics keep their own names and labels under any tag config.
        "# TYPE istio_requests_total counter\n",
        "# TYPE istio_request_duration_milliseconds histogram\n",
        "# TYPE istio_build gauge\nistio_build{component=\"proxy\",tag=\"1.30.0\"} 1\n",
    ] {
        assert!(p.contains(expected), "missing `{expected}` in\n{p}");
    }
    // Envoy's defaults cut dotted names at the first dot, which is why Istio
    // replaces them.
    assert!(p.contains("envoy_cluster_name=\"outbound|9080||reviews\""));
}

#[test]
fn prometheus_with_istios_bootstrap_tags() {
    let config = StatsConfig {
        tags: strait_proxy::stats::TagProducer::istio(),
        matcher: strait_proxy::stats::StatsMatcher::AcceptAll,
    };
    let admin = traffic(config);
    let p = get(&admin, "/stats/prometheus");
    for expected in [
        format!("envoy_cluster_upstream_rq_total{{cluster_name=\"{REVIEWS}\"}} 3\n"),
        format!(
            "envoy_cluster_upstream_rq{{response_code=\"200\",cluster_name=\"{REVIEWS}\"}} 2\n"
        ),
        format!(
            "envoy_cluster_upstream_rq{{response_code_class=\"2xx\",cluster_name=\"{REVIEWS}\"}} 2\n"
        ),
        format!("envoy_cluster_upstream_rq_pending_overflow{{cluster_name=\"{REVIEWS}\"}} 1\n"),
        format!("envoy_cluster_membership_healthy{{cluster_name=\"{REVIEWS}\"}} 1\n"),
        "envoy_listener_downstream_cx_total{listener_address=\"0.0.0.0_15001\"} 1\n".to_string(),
        format!(
            "envoy_cluster_upstream_rq_time_bucket{{cluster_name=\"{REVIEWS}\",le=\"10\"}} 0\n"
        ),
        format!(
            "envoy_cluster_upstream_rq_time_bucket{{cluster_name=\"{REVIEWS}\",le=\"25\"}} 1\n"
        ),
        format!("envoy_cluster_upstream_rq_time_count{{cluster_name=\"{REVIEWS}\"}} 1\n"),
    ] {
        assert!(p.contains(&expected), "missing `{expected}` in\n{p}");
    }

    let labels = "reporter=\"source\",source_workload=\"productpage-v1\",\
        source_canonical_service=\"productpage\",source_canonical_revision=\"v1\",\
        source_workload_namespace=\"default\",source_principal=\"unknown\",\
        source_app=\"productpage\",source_version=\"v1\",source_cluster=\"Kubernetes\",\
        destination_workload=\"reviews-v1\",destination_workload_namespace=\"default\",\
        destination_principal=\"unknown\",destination_app=\"unknown\",\
        destination_version=\"unknown\",\
        destination_service=\"reviews.default.svc.cluster.local\",\
        destination_canonical_service=\"reviews\",destination_canonical_revision=\"v1\",\
        destination_service_name=\"reviews\",destination_service_namespace=\"default\",\
        destination_cluster=\"Kubernetes\",request_protocol=\"http\",response_code=\"200\",\
        grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"unknown\"";
    for expected in [
        format!("istio_requests_total{{{labels}}} 1\n"),
        format!("istio_request_duration_milliseconds_bucket{{{labels},le=\"5\"}} 0\n"),
        format!("istio_request_duration_milliseconds_bucket{{{labels},le=\"10\"}} 1\n"),
        format!("istio_request_duration_milliseconds_bucket{{{labels},le=\"3600000\"}} 1\n"),
        format!("istio_request_duration_milliseconds_bucket{{{labels},le=\"+Inf\"}} 1\n"),
        format!("istio_request_duration_milliseconds_sum{{{labels}}} 7\n"),
        format!("istio_request_duration_milliseconds_count{{{labels}}} 1\n"),
    ] {
        assert!(p.contains(&expected), "missing `{expected}` in\n{p}");
    }
    // Each metric is one block: TYPE line, samples, blank line.
    let block = p
        .split("\n\n")
        .find(|b| b.starts_with("# TYPE istio_requests_total counter"))
        .unwrap();
    assert_eq!(block.lines().count(), 2);
}

#[test]
fn istio_stats_matcher_keeps_only_what_istio_keeps() {
    let admin = traffic(StatsConfig::istio_default());
    let text = get(&admin, "/stats");
    assert!(!text.contains(&format!("cluster.{REVIEWS}.")), "{text}");
    assert!(text.contains("cluster.xds-grpc.upstream_rq_200: 1"));
    assert!(text.contains("server.live: 1"));
    assert!(text.contains("listener.0.0.0.0_15001.downstream_cx_active: 1"));
    assert!(!text.contains("listener.0.0.0.0_15001.downstream_cx_total"));
    assert!(text.contains(
        "istiocustom.istio_requests_total.reporter.source.source_workload.productpage-v1."
    ));
    let p = get(&admin, "/stats/prometheus");
    assert!(p.contains("istio_requests_total{reporter=\"source\""));
    assert!(
        p.contains("envoy_cluster_upstream_rq{response_code=\"200\",cluster_name=\"xds-grpc\"} 1")
    );
}
