//! The harness proving itself without pilot-discovery: namespaces, backends,
//! the client, Envoy with static config and iptables capture, and clean-up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strait_e2e::capture::{nat_rules, redirect_outbound};
use strait_e2e::envoy::{config_dump, static_cluster, static_http_listener};
use strait_e2e::netns::{list_names, sweep_stale_namespaces};
use strait_e2e::workdir::WorkDir;
use strait_e2e::{
    AdsApi, Backend, Bootstrap, Envoy, HttpClient, RequestSpec, SidecarNode, Topology,
};
use strait_e2e::{Pilot, PilotOptions};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SERVICE_CIDR: &str = "10.96.0.0/12";

fn listed(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answers_a_client_in_another_namespace() {
    let topo = Topology::new().unwrap();
    let client_ns = topo.add_workload("client").unwrap();
    let server_ns = topo.add_workload("reviews-v1").unwrap();
    let backend = Backend::start(&server_ns, 9080, "reviews", "v1").unwrap();
    assert_eq!(backend.addr(), SocketAddr::from((server_ns.ip(), 9080)));

    let client = HttpClient::new(&client_ns);
    let response = client
        .get(
            backend.addr(),
            "reviews.default.svc.cluster.local",
            "/hello?x=1",
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.backend(), Some("reviews-v1"));
    let body = response.json().unwrap();
    assert_eq!(body["name"], "reviews");
    assert_eq!(body["version"], "v1");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/hello?x=1");
    assert_eq!(body["host"], "reviews.default.svc.cluster.local");
    assert_eq!(body["protocol"], "HTTP/1.1");
    assert_eq!(backend.request_count(), 1);

    // h2c with prior knowledge reaches the same server.
    let response = HttpClient::new(&client_ns)
        .h2c()
        .send(
            backend.addr(),
            &RequestSpec::get("reviews:9080", "/h2").header("x-test", "yes"),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let body = response.json().unwrap();
    assert_eq!(body["protocol"], "HTTP/2.0");
    assert_eq!(body["host"], "reviews:9080");
    assert_eq!(body["headers"]["x-test"], "yes");
    let received = backend.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].header("x-test"), Some("yes"));
}

// The default single-threaded test runtime works as well as the multi-threaded one.
#[tokio::test]
async fn backend_behaviours_follow_the_request() {
    let topo = Topology::new().unwrap();
    let client_ns = topo.add_workload("client").unwrap();
    let server_ns = topo.add_workload("ratings").unwrap();
    let backend = Backend::start(&server_ns, 0, "ratings", "v2").unwrap();
    assert_ne!(backend.port(), 0);
    let client = HttpClient::new(&client_ns);

    let teapot = client
        .get(backend.addr(), "ratings", "/status/418")
        .await
        .unwrap();
    assert_eq!(teapot.status, 418);
    assert_eq!(teapot.backend(), Some("ratings-v2"));

    let slow = client
        .get(backend.addr(), "ratings", "/delay/300")
        .await
        .unwrap();
    assert_eq!(slow.status, 200);
    assert!(
        slow.elapsed >= Duration::from_millis(300),
        "{:?}",
        slow.elapsed
    );

    let flaky = RequestSpec::get("ratings", "/").header("x-fail-first", "k1");
    assert_eq!(
        client.send(backend.addr(), &flaky).await.unwrap().status,
        503
    );
    assert_eq!(
        client.send(backend.addr(), &flaky).await.unwrap().status,
        200
    );
    let other_key = RequestSpec::get("ratings", "/").header("x-fail-first", "k2");
    assert_eq!(
        client
            .send(backend.addr(), &other_key)
            .await
            .unwrap()
            .status,
        503
    );

    let tally = client
        .tally(backend.addr(), &RequestSpec::get("ratings", "/"), 3)
        .await;
    assert_eq!(tally.count("ratings-v2"), 3);
    assert_eq!(tally.status(200), 3);
    assert!(tally.errors.is_empty(), "{:?}", tally.errors);
    assert_eq!(backend.request_count(), 8);

    backend.reset();
    assert_eq!(backend.request_count(), 0);
    assert_eq!(
        client.send(backend.addr(), &flaky).await.unwrap().status,
        503
    );

    // A client with a short timeout gives up on a slow answer.
    let impatient = HttpClient::new(&client_ns).with_timeout(Duration::from_millis(200));
    let err = impatient
        .get(backend.addr(), "ratings", "/delay/2000")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("timed out"), "{err:#}");
}

#[test]
fn run_executes_inside_the_namespace() {
    let topo = Topology::new().unwrap();
    let ns = topo.add_workload("probe").unwrap();
    // The workload's address exists only inside its namespace.
    let bound = ns
        .run(|| TcpListener::bind((ns.ip(), 0)).map(|_| ()))
        .unwrap();
    assert!(bound.is_ok(), "{bound:?}");
    assert!(TcpListener::bind((ns.ip(), 0)).is_err());

    let addrs = ns
        .exec("ip", &["-4", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(addrs.contains(&format!("{}/24", ns.ip())), "{addrs}");
    let routes = ns.exec("ip", &["route", "show", "default"]).unwrap();
    assert!(
        routes.contains(&format!("via {}", topo.hub().ip())),
        "{routes}"
    );
    assert_eq!(ns.gateway(), topo.hub().ip());
    assert!(
        topo.add_workload("probe").is_err(),
        "duplicate names are refused"
    );
    assert!(topo.add_workload("Bad_Name").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_serves_captured_vip_traffic_from_static_config() {
    let topo = Topology::new().unwrap();
    let client_ns = topo.add_workload("client").unwrap();
    let v1_ns = topo.add_workload("reviews-v1").unwrap();
    let v2_ns = topo.add_workload("reviews-v2").unwrap();
    let v1 = Backend::start(&v1_ns, 9080, "reviews", "v1").unwrap();
    let v2 = Backend::start(&v2_ns, 9080, "reviews", "v2").unwrap();

    let node = SidecarNode::new(client_ns.ip(), "client-abc", "default").label("app", "client");
    let bootstrap = Bootstrap::new(node)
        .with_static_listener(static_http_listener("virtualOutbound", 15001, "reviews"))
        .with_static_cluster(static_cluster("reviews", &[v1.addr(), v2.addr()]));
    let envoy = Envoy::start(&client_ns, &bootstrap).await.unwrap();
    envoy.wait_live(Duration::from_secs(20)).await.unwrap();
    redirect_outbound(&client_ns, SERVICE_CIDR, 15001).unwrap();
    let rules = nat_rules(&client_ns).unwrap();
    assert!(rules.contains("--to-ports 15001"), "{rules}");

    assert_eq!(envoy.listener_names().await.unwrap(), ["virtualOutbound"]);
    assert_eq!(envoy.cluster_names().await.unwrap(), ["reviews"]);
    assert_eq!(
        envoy.route_config_names().await.unwrap(),
        ["virtualOutbound"]
    );

    let client = HttpClient::new(&client_ns);
    let vip = SocketAddr::from((VIP, 80));
    let response = client
        .get(vip, "reviews.default.svc.cluster.local", "/via-envoy")
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", envoy.log_tail());
    assert_eq!(response.header("server"), Some("envoy"));
    let body = response.json().unwrap();
    assert_eq!(body["path"], "/via-envoy");
    // Only Envoy's router adds this header upstream.
    assert!(
        body["headers"]["x-envoy-expected-rq-timeout-ms"].is_string(),
        "{body}"
    );

    let tally = client
        .tally(vip, &RequestSpec::get("reviews", "/"), 10)
        .await;
    assert!(tally.errors.is_empty(), "{:?}", tally.errors);
    assert_eq!(tally.count("reviews-v1") + tally.count("reviews-v2"), 10);
    assert!(
        tally.count("reviews-v1") >= 1 && tally.count("reviews-v2") >= 1,
        "{tally:?}"
    );
    assert_eq!(v1.request_count() + v2.request_count(), 11);

    assert_eq!(
        envoy.stat("cluster.reviews.upstream_rq_200").await.unwrap(),
        Some(11)
    );
    assert_eq!(
        envoy
            .stat("http.virtualOutbound.downstream_rq_2xx")
            .await
            .unwrap(),
        Some(11)
    );
    let dump = envoy
        .wait_for("the static cluster", Duration::from_secs(5), |d| {
            config_dump::cluster(d, "reviews").is_some()
        })
        .await
        .unwrap();
    assert!(config_dump::route_config(&dump, "virtualOutbound").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_accepts_the_sidecar_ads_bootstrap() {
    let node = SidecarNode::new(Ipv4Addr::new(10, 1, 0, 7), "reviews-v1-abc", "default")
        .label("app", "reviews")
        .label("version", "v1");
    let pilot = SocketAddr::from((Ipv4Addr::new(10, 1, 0, 1), 15010));
    for api in [AdsApi::Sotw, AdsApi::Delta] {
        Envoy::validate(&Bootstrap::new(node.clone()).with_ads(pilot, api)).unwrap();
    }
    // A broken bootstrap is rejected, so the check above means something.
    let broken = Bootstrap::new(node.clone()).with_static_cluster(serde_json::json!({"name": 1}));
    assert!(Envoy::validate(&broken).is_err());

    // A real run: no control plane answers, yet the bootstrap is loaded.
    let topo = Topology::new().unwrap();
    let ns = topo.add_workload("sidecar").unwrap();
    let node = SidecarNode::new(ns.ip(), "reviews-v1-abc", "default").label("app", "reviews");
    let bootstrap = Bootstrap::new(node.clone())
        .with_ads(SocketAddr::from((topo.hub().ip(), 15010)), AdsApi::Delta);
    let envoy = Envoy::start(&ns, &bootstrap).await.unwrap();
    let dump = envoy.config_dump().await.unwrap();
    let boot = config_dump::section(
        &dump,
        "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
    )
    .unwrap();
    assert_eq!(boot["bootstrap"]["node"]["id"], node.node_id());
    assert_eq!(
        node.node_id(),
        format!(
            "sidecar~{}~reviews-v1-abc.default~default.svc.cluster.local",
            ns.ip()
        )
    );
    let metadata = &boot["bootstrap"]["node"]["metadata"];
    assert_eq!(metadata["NAMESPACE"], "default");
    assert_eq!(metadata["ISTIO_VERSION"], "1.30.0");
    assert_eq!(metadata["LABELS"]["app"], "reviews");
    assert_eq!(
        boot["bootstrap"]["dynamic_resources"]["ads_config"]["api_type"],
        "DELTA_GRPC"
    );
    assert_eq!(envoy.cluster_names().await.unwrap(), ["xds-grpc"]);
    // Without pilot, Envoy never leaves initialisation (initial_fetch_timeout 0s).
    let ready = HttpClient::new(&ns)
        .get(envoy.admin_addr(), "localhost", "/ready")
        .await
        .unwrap();
    assert_eq!(ready.status, 503, "{}", ready.text());
}

#[test]
fn dropping_a_topology_removes_its_namespaces_and_processes() {
    let topo = Topology::new().unwrap();
    let a = topo.add_workload("a").unwrap();
    topo.add_workload("b").unwrap();
    let names = topo.netns_names();
    assert_eq!(names.len(), 3);
    let before = list_names().unwrap();
    for name in &names {
        assert!(listed(&before, name), "{name} not in {before:?}");
    }
    let mut sleeper = a.command("sleep").arg("600").spawn().unwrap();
    let sleeper_pid = i32::try_from(sleeper.id()).unwrap();
    // `ip netns exec` execs in place: wait until that pid runs in the namespace.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.pids().unwrap().iter().any(|p| p.as_raw() == sleeper_pid) {
        assert!(
            Instant::now() < deadline,
            "sleep never appeared in {}",
            a.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    drop(topo);

    let after = list_names().unwrap();
    for name in &names {
        assert!(!listed(&after, name), "{name} still in {after:?}");
    }
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "sleep should have been killed: {status}");
    assert!(
        a.run(|| ()).is_err(),
        "a deleted namespace cannot be entered"
    );
}

#[test]
fn stale_namespaces_of_dead_processes_are_swept() {
    // A pid that certainly belonged to a process that has exited.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = format!("strait-e2e-{}-0-hub", gone.id());
    let alive = format!("strait-e2e-{}-999999-hub", std::process::id());
    for name in [&dead, &alive] {
        strait_e2e::netns::ip(&["netns", "add", name]).unwrap();
    }

    sweep_stale_namespaces();

    let names = list_names().unwrap();
    // Clean up before asserting, so a failure leaves nothing behind.
    strait_e2e::netns::ip(&["netns", "del", &alive]).unwrap();
    let _ = strait_e2e::netns::ip(&["netns", "del", &dead]);
    assert!(!listed(&names, &dead), "{dead} survived the sweep");
    assert!(listed(&names, &alive), "{alive} belongs to a live process");
}

#[test]
fn parallel_topologies_get_distinct_names_and_subnets() {
    let topologies: Vec<Topology> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| Topology::new().unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut hubs: Vec<String> = topologies
        .iter()
        .map(|t| t.hub().name().to_owned())
        .collect();
    let mut subnets: Vec<String> = topologies.iter().map(Topology::subnet).collect();
    hubs.sort();
    hubs.dedup();
    subnets.sort();
    subnets.dedup();
    assert_eq!(hubs.len(), 4);
    assert_eq!(subnets.len(), 4);
    // The same workload name and port in each topology do not interfere.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (i, topo) in topologies.iter().enumerate() {
        let server = topo.add_workload("server").unwrap();
        let client = topo.add_workload("client").unwrap();
        let backend = Backend::start(&server, 8080, "svc", &format!("v{i}")).unwrap();
        let response = rt
            .block_on(HttpClient::new(&client).get(backend.addr(), "svc", "/"))
            .unwrap();
        assert_eq!(response.backend(), Some(format!("svc-v{i}").as_str()));
        for name in topo.netns_names() {
            assert!(name.len() < 64, "{name}");
        }
    }
}

/// Installs the stand-in pilot (a Python script taking pilot-discovery's flags)
/// as an executable in `dir`.
fn fake_pilot(dir: &WorkDir) -> anyhow::Result<PathBuf> {
    let path = dir.write("fake-pilot", include_str!("fake_pilot.py"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pilot_runs_in_the_hub_with_its_flags_and_config_dir() {
    let topo = Topology::new().unwrap();
    let client_ns = topo.add_workload("client").unwrap();
    let bin_dir = WorkDir::new("fake-pilot-bin").unwrap();
    let options = PilotOptions {
        binary: Some(fake_pilot(&bin_dir).unwrap()),
        ..PilotOptions::default()
    }
    .config("services.yaml", "kind: Service\n");
    let pilot = Pilot::start(topo.hub(), options).await.unwrap();
    assert_eq!(
        pilot.grpc_addr(),
        SocketAddr::from((topo.hub().ip(), 15010))
    );

    let args = pilot.get_json("/debug/args").await.unwrap();
    let hub = topo.hub().ip();
    let expected = serde_json::json!([
        "discovery",
        "--configDir",
        pilot.config_dir().to_str().unwrap(),
        "--grpcAddr",
        format!("{hub}:15010"),
        "--httpAddr",
        format!("{hub}:8080"),
        "--monitoringAddr",
        format!("{hub}:15014"),
    ]);
    assert_eq!(args, expected);

    pilot
        .write_config("rules.yaml", "kind: VirtualService\n")
        .unwrap();
    let configs = pilot.get_json("/debug/configs").await.unwrap();
    assert_eq!(configs, serde_json::json!(["rules.yaml", "services.yaml"]));
    pilot.remove_config("services.yaml").unwrap();
    assert_eq!(
        pilot.get_json("/debug/configs").await.unwrap(),
        serde_json::json!(["rules.yaml"])
    );
    assert!(pilot.metrics().await.unwrap().contains("fake_pilot_up 1"));
    assert_eq!(pilot.get("/nope").await.unwrap().status, 404);
    assert!(pilot.get_text("/nope").await.is_err());

    // Workloads reach the hub across the bridge, as sidecars will for ADS.
    let from_workload = HttpClient::new(&client_ns)
        .get(pilot.http_addr(), "pilot", "/ready")
        .await
        .unwrap();
    assert_eq!(from_workload.status, 200);

    let pid = nix::unistd::Pid::from_raw(i32::try_from(pilot.pid()).unwrap());
    drop(pilot);
    assert!(
        nix::sys::signal::kill(pid, None).is_err(),
        "pilot process survived its handle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_to_start_are_reported_with_the_log() {
    let topo = Topology::new().unwrap();
    let bin_dir = WorkDir::new("fake-pilot-bin").unwrap();
    let options = PilotOptions {
        binary: Some(fake_pilot(&bin_dir).unwrap()),
        ready_timeout: Some(Duration::from_secs(20)),
        ..PilotOptions::default()
    }
    .env("FAKE_PILOT_EXIT", "3");
    let started = Instant::now();
    let err = Pilot::start(topo.hub(), options).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up only at the timeout"
    );
    assert!(message.contains("pilot-discovery exited"), "{message}");
    assert!(message.contains("fake pilot exiting as asked"), "{message}");

    let ns = topo.add_workload("sidecar").unwrap();
    let node = SidecarNode::new(ns.ip(), "bad", "default");
    let bad = Bootstrap::new(node)
        .with_static_cluster(serde_json::json!({"name": "c", "type": "NO_SUCH_TYPE"}));
    let err = Envoy::start(&ns, &bad).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("envoy exited"), "{message}");
    assert!(message.contains("NO_SUCH_TYPE"), "{message}");

    let err = strait_e2e::bins::strait("no-such-binary").unwrap_err();
    assert!(format!("{err}").contains("cargo build --bins"), "{err}");
}
