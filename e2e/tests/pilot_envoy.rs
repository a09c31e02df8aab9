//! pilot-discovery serving a stock Envoy sidecar: the acceptance tests of the
//! control-plane issue. Each scenario runs with state-of-the-world (GRPC) and delta
//! (DELTA_GRPC) ADS. Needs root (network namespaces, iptables) and Envoy 1.40.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use strait_e2e::envoy::{static_cluster, static_http_listener};
use strait_e2e::mesh::{self, BookinfoMesh, MeshOptions, SidecarKind};
use strait_e2e::{AdsApi, Backend, Bootstrap, Envoy, RequestSpec, SidecarNode, wait_until};

const CONFIGURED: Duration = Duration::from_secs(30);
const REVIEWS: &str = "reviews.default.svc.cluster.local";

/// Each scenario runs with both ADS flavours; `strait` scenarios also with strait-proxy
/// as the sidecar, against the same pilot config, with the same assertions.
macro_rules! both_apis {
    ($scenario:ident) => {
        mod $scenario {
            use strait_e2e::AdsApi;
            use strait_e2e::mesh::SidecarKind;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sotw() {
                super::$scenario(AdsApi::Sotw, SidecarKind::Envoy).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delta() {
                super::$scenario(AdsApi::Delta, SidecarKind::Envoy).await
            }
        }
    };
    ($scenario:ident, strait) => {
        mod $scenario {
            use strait_e2e::AdsApi;
            use strait_e2e::mesh::SidecarKind;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sotw() {
                super::$scenario(AdsApi::Sotw, SidecarKind::Envoy).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delta() {
                super::$scenario(AdsApi::Delta, SidecarKind::Envoy).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn strait_sotw() {
                super::$scenario(AdsApi::Sotw, SidecarKind::Strait).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn strait_delta() {
                super::$scenario(AdsApi::Delta, SidecarKind::Strait).await
            }
        }
    };
}

both_apis!(envoy_acks_everything_with_istio_names, strait);
both_apis!(weighted_and_header_routing, strait);
both_apis!(virtual_service_http_features, strait);
both_apis!(file_edits_reroute_a_running_envoy, strait);
both_apis!(new_endpoint_is_pushed_as_eds_only, strait);
both_apis!(bad_input_keeps_the_rest_serving, strait);
both_apis!(nacking_proxy_is_reported_and_others_keep_receiving, strait);

async fn start(api: AdsApi, sidecar: SidecarKind) -> BookinfoMesh {
    start_with(MeshOptions {
        api,
        sidecar,
        ..Default::default()
    })
    .await
}

async fn start_with(options: MeshOptions) -> BookinfoMesh {
    let sidecar = options.sidecar;
    let mesh = BookinfoMesh::start(options).await.expect("mesh starts");
    // The sidecar is the proxy the scenario asked for.
    let info = mesh.envoy.admin_get("/server_info").await.unwrap().text();
    assert_eq!(
        info.contains("strait-proxy"),
        sidecar == SidecarKind::Strait,
        "{sidecar:?} sidecar answered /server_info with {info}"
    );
    mesh.wait_configured(CONFIGURED)
        .await
        .expect("sidecar configured");
    mesh
}

/// A value from Prometheus text, 0 when the series is absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

async fn envoy_stat(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).await.expect("stats").unwrap_or(0)
}

fn reviews(path: &str) -> RequestSpec {
    RequestSpec::get("reviews:9080", path)
}

async fn envoy_acks_everything_with_istio_names(api: AdsApi, sidecar: SidecarKind) {
    let mesh = start(api, sidecar).await;
    let listeners = mesh.envoy.listener_names().await.unwrap();
    for name in ["virtualOutbound", "virtualInbound", "0.0.0.0_9080"] {
        assert!(
            listeners.iter().any(|l| l == name),
            "listener {name} missing: {listeners:?}"
        );
    }
    let clusters = mesh.envoy.cluster_names().await.unwrap();
    for name in [
        format!("outbound|9080||{REVIEWS}"),
        format!("outbound|9080|v1|{REVIEWS}"),
        format!("outbound|9080|v3|{REVIEWS}"),
        "outbound|9080|v1|ratings.default.svc.cluster.local".to_string(),
        "inbound|9080||".to_string(),
        "BlackHoleCluster".to_string(),
        "PassthroughCluster".to_string(),
        "InboundPassthroughCluster".to_string(),
    ] {
        assert!(
            clusters.contains(&name),
            "cluster {name} missing: {clusters:?}"
        );
    }
    let routes = mesh.envoy.route_config_names().await.unwrap();
    assert!(
        routes.iter().any(|r| r == "9080"),
        "route config 9080 missing: {routes:?}"
    );

    // Envoy took every update: nothing rejected, on its side or pilot's.
    for stat in [
        "cluster_manager.cds.update_rejected",
        "listener_manager.lds.update_rejected",
    ] {
        assert_eq!(envoy_stat(&mesh.envoy, stat).await, 0, "{stat}");
    }
    assert!(envoy_stat(&mesh.envoy, "cluster_manager.cds.update_success").await > 0);
    wait_until(
        "pilot to record the proxy's ACKs",
        Duration::from_secs(10),
        || async {
            let syncz = mesh.pilot.get_json("/debug/syncz").await?;
            let Some(proxy) = syncz.as_array().and_then(|a| a.first()) else {
                return Ok(false);
            };
            let acked = |kind: &str| {
                let sent = &proxy[format!("{kind}_sent")];
                !sent.is_null() && *sent == proxy[format!("{kind}_acked")]
            };
            Ok(acked("cluster") && acked("listener") && acked("route") && acked("endpoint"))
        },
    )
    .await
    .unwrap();
    let syncz = mesh.pilot.get_json("/debug/syncz").await.unwrap();
    let proxy = &syncz[0];
    assert_eq!(
        proxy["proxy"].as_str(),
        Some("productpage-v1.default"),
        "{syncz:#}"
    );
    for (type_url, status) in proxy["resources"].as_object().unwrap() {
        assert!(
            status["lastError"].as_str().unwrap_or_default().is_empty(),
            "{type_url}: {status}"
        );
    }
    let metrics = mesh.pilot.metrics().await.unwrap();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("pilot_total_xds_rejects{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "pilot_xds{version=\"1.30.0\"}"),
        1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "pilot_xds_pushes{type=\"cds\"}") >= 1.0,
        "{metrics}"
    );
    for name in [
        "pilot_proxy_convergence_time_bucket",
        "pilot_pushcontext_init_seconds_bucket",
        "pilot_xds_push_time_bucket",
        "pilot_xds_config_size_bytes_bucket",
        "pilot_debounce_time_bucket",
        "pilot_services ",
    ] {
        assert!(metrics.contains(name), "metric {name} missing:\n{metrics}");
    }
    assert_eq!(
        metric(&metrics, "pilot_services"),
        4.0,
        "the example has 4 services"
    );

    // The debug endpoints describe the same state Envoy has.
    let p = &mesh.pilot;
    let adsz = p.get_json("/debug/adsz").await.unwrap();
    assert_eq!(adsz["totalClients"], 1, "{adsz:#}");
    let connection = adsz["clients"][0]["connectionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        connection.starts_with("productpage-v1.default-"),
        "{connection}"
    );
    let dump = p
        .get_json("/debug/config_dump?proxyID=productpage-v1")
        .await
        .unwrap();
    let dump_text = dump.to_string();
    assert!(dump_text.contains(&format!("outbound|9080|v1|{REVIEWS}")));
    assert!(dump_text.contains("virtualOutbound"));
    assert_eq!(
        p.get("/debug/config_dump").await.unwrap().status,
        400,
        "proxyID is required"
    );
    let registry = p.get_json("/debug/registryz").await.unwrap();
    assert_eq!(registry.as_array().map(Vec::len), Some(4), "{registry:#}");
    let shards = p.get_json("/debug/endpointShardz").await.unwrap();
    assert_eq!(
        shards[REVIEWS]["default"]["Shards"]["Kubernetes/Kubernetes"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "three reviews pods: {shards:#}"
    );
    let configz = p.get_json("/debug/configz").await.unwrap();
    assert!(
        configz
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "VirtualService" && c["metadata"]["name"] == "reviews"),
        "{configz:#}"
    );
    let connections = p.get_json("/debug/connections").await.unwrap();
    assert_eq!(connections["totalClients"], 1);
}

async fn weighted_and_header_routing(api: AdsApi, sidecar: SidecarKind) {
    let mesh = start(api, sidecar).await;
    let addr = BookinfoMesh::service_addr("reviews");
    let tally = mesh.client.tally(addr, &reviews("/"), 1000).await;
    assert!(tally.errors.is_empty(), "{:?}", tally.errors);
    let v1 = tally.count("reviews-v1");
    let v3 = tally.count("reviews-v3");
    assert_eq!(v1 + v3, 1000, "only v1 and v3 are in the split: {tally:?}");
    assert!(
        (750..=850).contains(&v1),
        "80/20 split within ±5 points, got v1={v1} v3={v3}"
    );

    let jason = reviews("/").header("end-user", "jason");
    let tally = mesh.client.tally(addr, &jason, 100).await;
    assert_eq!(tally.count("reviews-v2"), 100, "{tally:?}");
}

const RATINGS_FEATURES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-features, namespace: default}
spec:
  hosts: [ratings]
  http:
  - name: abort
    match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]
  - name: delay
    match: [{uri: {prefix: /slowly}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]
  - name: timeout
    match: [{uri: {prefix: /delay/}}]
    timeout: 0.5s
    route: [{destination: {host: ratings}}]
  - name: retry
    match: [{uri: {prefix: /retry}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: 5xx}
    route: [{destination: {host: ratings}}]
  - name: noretry
    match: [{uri: {prefix: /noretry}}]
    retries: {attempts: 0}
    route: [{destination: {host: ratings}}]
  - name: rewrite
    match: [{uri: {prefix: /old/}}]
    rewrite: {uri: /new/}
    route: [{destination: {host: ratings}}]
  - name: direct
    match: [{uri: {exact: /direct}}]
    directResponse: {status: 503, body: {string: "ratings are resting"}}
  - route: [{destination: {host: ratings}}]
"#;

async fn virtual_service_http_features(api: AdsApi, sidecar: SidecarKind) {
    let mesh = start_with(MeshOptions {
        api,
        sidecar,
        without_virtual_services: true,
        extra_configs: vec![("ratings-features.yaml".into(), RATINGS_FEATURES.into())],
        ..Default::default()
    })
    .await;
    let addr = BookinfoMesh::service_addr("ratings");
    let get = |path: &str| RequestSpec::get("ratings", path);
    let client = &mesh.client;

    let r = client.send(addr, &get("/abort")).await.unwrap();
    assert_eq!(r.status, 418, "fault abort: {} {:?}", r.text(), r.headers);

    let r = client.send(addr, &get("/slowly")).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        // Envoy's timer may fire a hair early as seen from the client.
        r.elapsed >= Duration::from_millis(950),
        "fault delay of 1s, took {:?}",
        r.elapsed
    );

    let r = client.send(addr, &get("/delay/3000")).await.unwrap();
    assert_eq!(r.status, 504, "route timeout: {}", r.text());
    assert!(
        r.elapsed < Duration::from_millis(2500),
        "timed out at 0.5s, took {:?}",
        r.elapsed
    );

    let r = client
        .send(addr, &get("/retry").header("x-fail-first", "retry-1"))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        200,
        "the retry reaches a second attempt: {}",
        r.text()
    );
    let attempts = mesh.backends["ratings-v1"]
        .received()
        .iter()
        .filter(|req| req.path == "/retry")
        .count();
    assert_eq!(attempts, 2, "first attempt failed, second answered");

    let r = client
        .send(addr, &get("/noretry").header("x-fail-first", "noretry-1"))
        .await
        .unwrap();
    assert_eq!(
        r.status, 503,
        "attempts: 0 disables Istio's default retries"
    );

    let r = client.send(addr, &get("/old/stars")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["path"], "/new/stars", "prefix rewrite");

    let r = client.send(addr, &get("/direct")).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "ratings are resting");
    assert!(r.backend().is_none(), "answered by Envoy itself");

    let r = client.send(addr, &get("/anything")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), Some("ratings-v1"));
}

const REVIEWS_V2_ONLY: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
"#;

/// Sends requests until `n` in a row come from `backend`; returns how long it took.
async fn until_consistently(
    mesh: &BookinfoMesh,
    backend: &str,
    n: usize,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    let addr = BookinfoMesh::service_addr("reviews");
    let mut streak = 0;
    while started.elapsed() < limit {
        let r = mesh.client.send(addr, &reviews("/")).await;
        match r {
            Ok(r) if r.backend() == Some(backend) => streak += 1,
            _ => streak = 0,
        }
        if streak == n {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "traffic did not move to {backend} within {limit:?}\n{}",
        mesh.pilot.log_tail()
    );
}

async fn file_edits_reroute_a_running_envoy(api: AdsApi, sidecar: SidecarKind) {
    let mesh = start(api, sidecar).await;
    let envoy_pid = mesh.envoy.pid();
    let edited = Instant::now();
    mesh.pilot
        .write_config("virtual-services.yaml", REVIEWS_V2_ONLY)
        .unwrap();
    until_consistently(&mesh, "reviews-v2", 10, Duration::from_secs(10)).await;
    let first_v2 = edited.elapsed();
    assert!(
        first_v2 < Duration::from_secs(2) + Duration::from_millis(500),
        "re-routed after {first_v2:?}"
    );
    assert_eq!(mesh.envoy.pid(), envoy_pid, "the same Envoy process");

    // Without a VirtualService the default route spreads over every version.
    mesh.pilot.remove_config("virtual-services.yaml").unwrap();
    let addr = BookinfoMesh::service_addr("reviews");
    wait_until(
        "default route to reach every version",
        Duration::from_secs(10),
        || async {
            let tally = mesh.client.tally(addr, &reviews("/"), 60).await;
            Ok(["reviews-v1", "reviews-v2", "reviews-v3"]
                .iter()
                .all(|b| tally.count(b) > 0))
        },
    )
    .await
    .unwrap();
}

async fn new_endpoint_is_pushed_as_eds_only(api: AdsApi, sidecar: SidecarKind) {
    let mesh = start_with(MeshOptions {
        api,
        sidecar,
        without_virtual_services: true,
        ..Default::default()
    })
    .await;
    let addr = BookinfoMesh::service_addr("ratings");
    let before = mesh.pilot.metrics().await.unwrap();

    let ns = mesh.topology.add_workload("ratings-v2").unwrap();
    let _backend = Backend::start(&ns, mesh::APP_PORT, "ratings", "v2").unwrap();
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: ratings-v2, namespace: default, labels: {{app: ratings, version: v2}}}}\nstatus: {{podIP: {}}}\n",
        ns.ip()
    );
    mesh.pilot.write_config("pods-extra.yaml", &pod).unwrap();

    wait_until(
        "traffic to reach the new endpoint",
        Duration::from_secs(10),
        || async {
            let tally = mesh
                .client
                .tally(addr, &RequestSpec::get("ratings", "/"), 20)
                .await;
            Ok(tally.count("ratings-v2") > 0 && tally.count("ratings-v1") > 0)
        },
    )
    .await
    .unwrap();

    let after = mesh.pilot.metrics().await.unwrap();
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    assert!(
        delta("pilot_xds_pushes{type=\"eds\"}") >= 1.0,
        "an EDS push happened\n{after}"
    );
    assert_eq!(
        delta("pilot_xds_pushes{type=\"cds\"}"),
        0.0,
        "no CDS push\n{after}"
    );
    assert_eq!(
        delta("pilot_xds_pushes{type=\"lds\"}"),
        0.0,
        "no LDS push\n{after}"
    );
    assert_eq!(
        delta("pilot_xds_pushes{type=\"rds\"}"),
        0.0,
        "no RDS push\n{after}"
    );
    assert_eq!(
        delta("pilot_pushcontext_init_seconds_count"),
        0.0,
        "no PushContext rebuild\n{after}"
    );
    assert!(
        delta("pilot_push_triggers{type=\"endpoint\"}") >= 1.0,
        "{after}"
    );
}

fn vs(name: &str, host: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: [{host}]\n  http:\n{http}"
    )
}

async fn bad_input_keeps_the_rest_serving(api: AdsApi, sidecar: SidecarKind) {
    let mesh = start(api, sidecar).await;
    let p = &mesh.pilot;
    p.write_config("broken.yaml", "kind: [unclosed\n").unwrap();
    p.write_config(
        "unknown-field.yaml",
        &vs(
            "unknown-field",
            "details",
            "  - route: [{destination: {host: details}}]\n    colour: blue\n",
        ),
    )
    .unwrap();
    p.write_config(
        "wrong-type.yaml",
        &vs(
            "wrong-type",
            "details",
            "  - route: [{destination: {host: details}, weight: eighty}]\n",
        ),
    )
    .unwrap();
    p.write_config(
        "bad-regex.yaml",
        &vs(
            "bad-regex",
            "details",
            "  - match: [{uri: {regex: \"([a-z\"}}]\n    route: [{destination: {host: details}}]\n",
        ),
    )
    .unwrap();
    p.write_config(
        "no-endpoints.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: productpage, namespace: default}\nspec:\n  host: productpage\n  subsets:\n  - name: v9\n    labels: {version: v9}\n",
    )
    .unwrap();
    p.write_config(
        "duplicate-host.yaml",
        &vs(
            "reviews-2",
            "reviews",
            "  - route: [{destination: {host: reviews, subset: v2}}]\n",
        ),
    )
    .unwrap();
    // The example's reviews VirtualService turns invalid: its last good version stays.
    let broken_reviews =
        std::fs::read_to_string(mesh::examples_dir().join("virtual-services.yaml"))
            .unwrap()
            .replace("exact: jason", "regex: \"(jason\"");
    p.write_config("virtual-services.yaml", &broken_reviews)
        .unwrap();

    let expect: BTreeMap<&str, (&str, &str)> = BTreeMap::from([
        ("broken.yaml", ("pilot_invalid_config", "broken.yaml")),
        (
            "VirtualService/default/unknown-field",
            ("pilot_invalid_config", "colour"),
        ),
        (
            "VirtualService/default/wrong-type",
            ("pilot_invalid_config", "spec.http[0].route[0].weight"),
        ),
        (
            "VirtualService/default/bad-regex",
            ("pilot_invalid_config", "regex"),
        ),
        (
            "VirtualService/default/reviews",
            ("pilot_invalid_config", "last good"),
        ),
        (
            "VirtualService/default/reviews-2",
            ("pilot_vservice_host_conflict", "reviews"),
        ),
        (
            "outbound|9080|v9|productpage.default.svc.cluster.local",
            ("pilot_eds_no_instances", "v9"),
        ),
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status: Value = p.get_json("/debug/push_status").await.unwrap();
        let all_there = expect.iter().all(|(key, (metric, _))| {
            status[*metric]
                .as_object()
                .is_some_and(|m| m.keys().any(|k| k.ends_with(key)))
        });
        if all_there {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "push status should name every bad object: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (key, (metric, needle)) in &expect {
        let entries = status[*metric].as_object().unwrap();
        let (_, entry) = entries.iter().find(|(k, _)| k.ends_with(key)).unwrap();
        let message = entry["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{key}: {message:?} should mention {needle:?}"
        );
    }
    for file in [
        "unknown-field.yaml",
        "wrong-type.yaml",
        "bad-regex.yaml",
        "virtual-services.yaml",
    ] {
        assert!(
            status.to_string().contains(file),
            "push status names {file}: {status:#}"
        );
    }
    let logs = p.logs();
    for object in ["unknown-field", "wrong-type", "bad-regex", "broken.yaml"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("WARN") && l.contains(object)),
            "a warning names {object}"
        );
    }

    // Everything else keeps serving, the old reviews rules included.
    let addr = BookinfoMesh::service_addr("reviews");
    let tally = mesh
        .client
        .tally(addr, &reviews("/").header("end-user", "jason"), 20)
        .await;
    assert_eq!(
        tally.count("reviews-v2"),
        20,
        "last good reviews VirtualService: {tally:?}"
    );
    let tally = mesh.client.tally(addr, &reviews("/"), 100).await;
    assert_eq!(
        tally.count("reviews-v2"),
        0,
        "reviews-2 lost the host to the older reviews: {tally:?}"
    );
    let r = mesh
        .client
        .get(BookinfoMesh::service_addr("details"), "details", "/")
        .await
        .unwrap();
    assert_eq!(r.backend(), Some("details-v1"));
    for stat in [
        "cluster_manager.cds.update_rejected",
        "listener_manager.lds.update_rejected",
    ] {
        assert_eq!(envoy_stat(&mesh.envoy, stat).await, 0, "{stat}");
    }
    assert!(
        p.get("/ready").await.unwrap().status == 200,
        "pilot-discovery still running"
    );
}

async fn nacking_proxy_is_reported_and_others_keep_receiving(api: AdsApi, sidecar: SidecarKind) {
    let mesh = start(api, sidecar).await;
    // A second sidecar whose bootstrap already owns 0.0.0.0:15001: Envoy must reject the
    // virtualOutbound listener pilot sends it.
    let details = &mesh.pods["details-v1"];
    let squat = static_cluster("squat", &[mesh.backends["details-v1"].addr()]);
    let node = SidecarNode::new(details.ip(), "details-v1", "default").label("app", "details");
    let bootstrap = Bootstrap::new(node)
        .with_ads(mesh.pilot.grpc_addr(), api)
        .with_static_listener(static_http_listener("squatter", 15001, "squat"))
        .with_static_cluster(squat);
    let nacker = Envoy::start(details, &bootstrap).await.unwrap();

    let p = &mesh.pilot;
    wait_until(
        "the NACK to show in /debug/syncz",
        Duration::from_secs(15),
        || async {
            let syncz = p.get_json("/debug/syncz").await?;
            Ok(syncz.as_array().into_iter().flatten().any(|proxy| {
                proxy["proxy"].as_str() == Some("details-v1.default")
                    && proxy["resources"].to_string().contains("15001")
            }))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", nacker.log_tail()));
    let metrics = p.metrics().await.unwrap();
    assert!(
        metric(&metrics, "pilot_total_xds_rejects{type=\"lds\"}") >= 1.0,
        "{metrics}"
    );
    assert!(envoy_stat(&nacker, "listener_manager.lds.update_rejected").await >= 1);

    // Pushes to the healthy sidecar go on.
    p.write_config("virtual-services.yaml", REVIEWS_V2_ONLY)
        .unwrap();
    until_consistently(&mesh, "reviews-v2", 5, Duration::from_secs(10)).await;
}
