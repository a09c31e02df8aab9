//! pilot-agent end to end: a mesh of three workloads (frontend, backend v1 and v2),
//! each a network namespace with strait-init's capture rules and pilot-agent running
//! the sidecar proxy, driven by pilot-discovery with `--configDir`. The same scenario
//! runs with strait-proxy (the agent's default) and with a stock Envoy
//! (`--proxy-binary`), which proves the bootstrap is Envoy's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use strait_e2e::sidecar::{
    AgentOptions, Curl, HostsFile, INJECTOR_INIT_ARGS, PilotAgent, ProxyKind, TinyHttp, shell_code,
    strait_init,
};
use strait_e2e::{
    Backend, HttpClient, Netns, Pilot, PilotOptions, RequestSpec, Topology, bins, wait_until,
};

const BACKEND_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const FRONTEND_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 21);
const BACKEND_HOST: &str = "backend.default.svc.cluster.local";
const APP_PORT: u16 = 8080;
/// A port no Service uses: traffic to it passes the sidecars untouched by routes.
const WHOAMI_PORT: u16 = 9090;
/// Excluded from the frontend's outbound capture (`-o`).
const EXCLUDED_PORT: u16 = 9091;
const METRICS_PORT: u16 = 9100;
const PILOT_GRPC_PORT: u16 = 15010;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Istio's default `terminationDrainDuration`.
const TERMINATION_DRAIN: Duration = Duration::from_secs(5);
const STATS_PREFIXES: &str = "cluster.outbound,cluster.inbound,cluster.PassthroughCluster,listener";

fn services() -> String {
    let svc = |name: &str, vip: Ipv4Addr| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  \
             labels: {{app: {name}}}\nspec:\n  clusterIP: {vip}\n  selector: {{app: {name}}}\n  \
             ports:\n  - name: http\n    port: {APP_PORT}\n    targetPort: {APP_PORT}\n"
        )
    };
    format!(
        "{}---\n{}",
        svc("backend", BACKEND_VIP),
        svc("frontend", FRONTEND_VIP)
    )
}

fn pods(pods: &[(&str, &str, &str, IpAddr)]) -> String {
    pods.iter()
        .map(|(name, app, version, ip)| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  \
                 labels: {{app: {app}, version: {version}}}\nspec:\n  containers:\n  - name: {app}\n    \
                 image: example/{app}\n    ports:\n    - containerPort: {APP_PORT}\nstatus:\n  \
                 phase: Running\n  podIP: {ip}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

const DESTINATION_RULE: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: backend
  namespace: default
spec:
  host: backend
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
";

fn virtual_service(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: backend
  namespace: default
spec:
  hosts:
  - backend
  http:
  - route:
    - destination:
        host: backend
        subset: v1
      weight: {v1}
    - destination:
        host: backend
        subset: v2
      weight: {v2}
"
    )
}

/// The sum of the stats named `<prefix>...<suffix>` (cluster stats may carry
/// Istio's `alt_stat_name` spelling, `<cluster>;`).
fn stat_sum(stats: &str, prefix: &str, suffix: &str) -> u64 {
    stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

fn outbound_requests(stats: &str, subset: &str) -> u64 {
    stat_sum(
        stats,
        &format!("cluster.outbound|{APP_PORT}|{subset}|{BACKEND_HOST}"),
        ".upstream_rq_total",
    )
}

fn inbound_requests(stats: &str) -> u64 {
    stat_sum(
        stats,
        &format!("cluster.inbound|{APP_PORT}||"),
        ".upstream_rq_total",
    )
}

/// Requests the inbound capture listener's HTTP connection managers answered.
fn inbound_listener_requests(stats: &str) -> u64 {
    stat_sum(stats, "listener.0.0.0.0_15006.http.", ".downstream_rq_2xx")
}

fn listener_connections(stats: &str, port: u16) -> u64 {
    stat_sum(
        stats,
        &format!("listener.0.0.0.0_{port}."),
        "downstream_cx_total",
    )
}

/// `whoami` answers with the peer address it saw.
fn peer(body: &str) -> SocketAddr {
    body.trim()
        .parse()
        .unwrap_or_else(|e| panic!("whoami answered {body:?}: {e}"))
}

fn sidecar_options(
    pod: &str,
    app: &str,
    version: &str,
    kind: ProxyKind,
    pilot: SocketAddr,
) -> AgentOptions {
    let mut o = AgentOptions::new(pod, app, version)
        .annotation("sidecar.istio.io/statsInclusionPrefixes", STATS_PREFIXES)
        .annotation("kubectl.kubernetes.io/default-container", app);
    o.proxy = kind;
    o.discovery = Some(pilot);
    o
}

/// Waits (briefly: stats may trail the responses) until `count(stats)` has grown by
/// `by` since `before`.
async fn stat_grows(what: &str, agent: &PilotAgent, before: &str, count: fn(&str) -> u64, by: u64) {
    let from = count(before);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stats = agent.stats().await.unwrap();
        let now = count(&stats);
        if now >= from + by {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what}: {from} -> {now}, expected at least +{by}\n{stats}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When a request finished, and which backend answered it (or why it failed).
type Outcome = (Instant, Result<String, String>);

struct Stream {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<Outcome>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Sends requests from the frontend to the backend service one after another.
fn start_stream(frontend: &Netns) -> Stream {
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::new()));
    let client = HttpClient::new(frontend).with_timeout(Duration::from_secs(5));
    let (s, r) = (stop.clone(), results.clone());
    let task = tokio::spawn(async move {
        let spec = RequestSpec::get(BACKEND_HOST, "/stream");
        while !s.load(Ordering::SeqCst) {
            let outcome = match client
                .send(SocketAddr::from((BACKEND_VIP, APP_PORT)), &spec)
                .await
            {
                Ok(resp) if resp.status == 200 => Ok(resp.backend().unwrap_or_default().to_owned()),
                Ok(resp) => Err(format!("status {}: {}", resp.status, resp.text())),
                Err(e) => Err(format!("{e:#}")),
            };
            r.lock().unwrap().push((Instant::now(), outcome));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Stream {
        stop,
        results,
        task,
    }
}

async fn mesh(kind: ProxyKind) {
    let topo = Topology::new().unwrap();
    let frontend = topo.add_workload("frontend").unwrap();
    let v1 = topo.add_workload("backend-v1").unwrap();
    let v2 = topo.add_workload("backend-v2").unwrap();
    let outside = topo.add_workload("outside").unwrap();
    let pilot_addr = SocketAddr::new(topo.hub().ip().into(), PILOT_GRPC_PORT);

    let names = |svc: &str| {
        vec![
            format!("{svc}.default.svc.cluster.local"),
            format!("{svc}.default.svc"),
            format!("{svc}.default"),
        ]
    };
    let entries = vec![
        (IpAddr::V4(BACKEND_VIP), names("backend")),
        (IpAddr::V4(FRONTEND_VIP), names("frontend")),
    ];
    let _hosts: Vec<HostsFile> = [&frontend, &v1, &v2]
        .iter()
        .map(|ns| HostsFile::write(ns, &entries).unwrap())
        .collect();

    // Capture as the injector's init container would: everything outbound except the
    // `outside` workload and port 9091 on the frontend; inbound only the app port on
    // the backends.
    let outside_cidr = format!("{}/32", outside.ip());
    let excluded_port = EXCLUDED_PORT.to_string();
    let mut fe_init: Vec<&str> = INJECTOR_INIT_ARGS.to_vec();
    fe_init.extend([
        "-i",
        "*",
        "-x",
        &outside_cidr,
        "-b",
        "*",
        "-o",
        &excluded_port,
    ]);
    strait_init(&frontend, &fe_init).unwrap();
    let mut be_init: Vec<&str> = INJECTOR_INIT_ARGS.to_vec();
    be_init.extend(["-i", "*", "-x", "", "-b", "8080"]);
    strait_init(&v1, &be_init).unwrap();
    strait_init(&v2, &be_init).unwrap();

    let app_v1 = Backend::start(&v1, APP_PORT, "backend", "v1").unwrap();
    let _app_v2 = Backend::start(&v2, APP_PORT, "backend", "v2").unwrap();
    let _whoami_v1 = TinyHttp::whoami(&v1, WHOAMI_PORT).unwrap();
    let _whoami_v1_excluded = TinyHttp::whoami(&v1, EXCLUDED_PORT).unwrap();
    let _whoami_outside = TinyHttp::whoami(&outside, WHOAMI_PORT).unwrap();
    let _app_metrics = TinyHttp::fixed(
        &v1,
        METRICS_PORT,
        "text/plain; version=0.0.4",
        "# TYPE strait_test_app_requests counter\nstrait_test_app_requests 7\n",
    )
    .unwrap();

    // The frontend's sidecar starts before the control plane: it must say so, keep
    // retrying, and not be ready.
    let fe = PilotAgent::start(
        &frontend,
        &sidecar_options("frontend", "frontend", "v1", kind, pilot_addr),
    )
    .unwrap();
    wait_until(
        "the frontend's agent to report the missing config",
        READY_TIMEOUT,
        || async {
            let r = fe.status_get("/healthz/ready").await?;
            Ok(r.status == 503
                && r.text()
                    .contains("config not received from the control plane"))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", fe.log_tail()));
    // strait-proxy serves 15021 at once (503 until configured); Envoy opens its
    // listeners only once initialized. Either way: not ready.
    if let Ok(status) = fe.readiness().await {
        assert_eq!(status, 503, "15021 before any config");
    }
    fe.wait_log(
        &format!("discovery address {pilot_addr} does not answer"),
        1,
        READY_TIMEOUT,
    )
    .await
    .unwrap();
    assert!(
        fe.exited().is_none(),
        "the agent must wait for the control plane, not exit"
    );

    let configs = PilotOptions::default()
        .config("services.yaml", &services())
        .config(
            "pods.yaml",
            &pods(&[
                ("frontend", "frontend", "v1", frontend.ip().into()),
                ("backend-v1", "backend", "v1", v1.ip().into()),
                ("backend-v2", "backend", "v2", v2.ip().into()),
            ]),
        )
        .config("destination-rule.yaml", DESTINATION_RULE)
        .config("virtual-service.yaml", &virtual_service(75, 25));
    let pilot = Pilot::start(topo.hub(), configs).await.unwrap();

    // 15021 turns 200 once the config is in place.
    fe.wait_ready(READY_TIMEOUT).await.unwrap();
    let dump = fe.admin_get("/config_dump").await.unwrap().text();
    assert!(
        dump.contains("virtualOutbound") && dump.contains("virtualInbound"),
        "ready without listeners"
    );
    fe.wait_log(
        &format!("discovery address {pilot_addr} answers"),
        1,
        READY_TIMEOUT,
    )
    .await
    .unwrap();

    if kind == ProxyKind::Envoy {
        // Envoy's own verdict on the bootstrap the agent wrote.
        let out = std::process::Command::new(bins::envoy().unwrap())
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(fe.bootstrap_path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "envoy --mode validate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let probers = json!({
        "/app-health/backend/readyz": {"httpGet": {"path": "/status/200", "port": APP_PORT}},
        "/app-health/backend/livez": {"httpGet": {"path": "/status/418", "port": APP_PORT, "scheme": "HTTP"}, "timeoutSeconds": 2},
        "/app-health/backend/startupz": {"tcpSocket": {"port": APP_PORT}},
        "/app-health/sidecar-check/readyz": {"tcpSocket": {"port": 1}},
    });
    let v1_agent = PilotAgent::start(
        &v1,
        &sidecar_options("backend-v1", "backend", "v1", kind, pilot_addr)
            .env("ISTIO_KUBE_APP_PROBERS", &probers.to_string())
            .env(
                "ISTIO_PROMETHEUS_ANNOTATIONS",
                &json!({"scrape": "true", "port": METRICS_PORT.to_string(), "path": "/metrics"})
                    .to_string(),
            ),
    )
    .unwrap();
    let v2_agent = PilotAgent::start(
        &v2,
        &sidecar_options("backend-v2", "backend", "v2", kind, pilot_addr),
    )
    .unwrap();
    v1_agent.wait_ready(READY_TIMEOUT).await.unwrap();
    v2_agent.wait_ready(READY_TIMEOUT).await.unwrap();

    // The frontend's app calls the backend by name (resolved through
    // /etc/netns/<ns>/hosts) and is answered through both sidecars.
    let client = HttpClient::new(&frontend);
    let vip = SocketAddr::from((BACKEND_VIP, APP_PORT));
    wait_until(
        "the frontend to reach the backend through the mesh",
        READY_TIMEOUT,
        || async { Ok(client.get(vip, BACKEND_HOST, "/").await?.status == 200) },
    )
    .await
    .unwrap();
    let by_name = Curl::new(&format!("http://{BACKEND_HOST}:{APP_PORT}/by-name"))
        .run(&frontend)
        .unwrap();
    assert_eq!(by_name.status, 200, "{by_name:?}");
    let body: serde_json::Value = serde_json::from_str(&by_name.body).unwrap();
    assert_eq!(body["name"], "backend");
    assert_eq!(body["path"], "/by-name");

    // The split holds, and every request passed the frontend's outbound listener and a
    // backend's inbound listener.
    let fe_before = fe.stats().await.unwrap();
    let v1_before = v1_agent.stats().await.unwrap();
    let v2_before = v2_agent.stats().await.unwrap();
    const N: usize = 80;
    let tally = client
        .tally(vip, &RequestSpec::get(BACKEND_HOST, "/split"), N)
        .await;
    assert!(tally.errors.is_empty(), "{:?}", tally.errors);
    assert_eq!(tally.status(200), N, "{tally:?}");
    let (n1, n2) = (tally.count("backend-v1"), tally.count("backend-v2"));
    assert_eq!(n1 + n2, N, "{tally:?}");
    // 75/25 over 80 requests: v2 expects 20, sd ~3.9; this is more than 3 sd wide.
    assert!((8..=32).contains(&n2), "75/25 split gave v1 {n1}, v2 {n2}");
    let n1 = n1 as u64;
    let n2 = n2 as u64;
    // Connections accepted on 15001 are handed to the (unbound) `0.0.0.0_8080`
    // listener by their original destination; either may count them.
    let outbound_cx = |s: &str| listener_connections(s, 15001) + listener_connections(s, APP_PORT);
    stat_grows(
        "frontend's outbound v1 requests",
        &fe,
        &fe_before,
        |s| outbound_requests(s, "v1"),
        n1,
    )
    .await;
    stat_grows(
        "frontend's outbound v2 requests",
        &fe,
        &fe_before,
        |s| outbound_requests(s, "v2"),
        n2,
    )
    .await;
    stat_grows(
        "frontend's 15001 connections",
        &fe,
        &fe_before,
        outbound_cx,
        N as u64,
    )
    .await;
    stat_grows(
        "backend-v1's inbound requests",
        &v1_agent,
        &v1_before,
        inbound_requests,
        n1,
    )
    .await;
    stat_grows(
        "backend-v2's inbound requests",
        &v2_agent,
        &v2_before,
        inbound_requests,
        n2,
    )
    .await;
    stat_grows(
        "backend-v1's 15006 requests",
        &v1_agent,
        &v1_before,
        inbound_listener_requests,
        n1,
    )
    .await;
    stat_grows(
        "backend-v2's 15006 requests",
        &v2_agent,
        &v2_before,
        inbound_listener_requests,
        n2,
    )
    .await;

    // What is captured and what is not, seen from the server: a captured connection
    // is re-made by the sidecar (another source port); an uncaptured one arrives as
    // the client made it.
    let whoami = |ip: Ipv4Addr, port: u16| format!("http://{ip}:{port}/");
    let captured = Curl::new(&whoami(v1.ip(), WHOAMI_PORT))
        .run(&frontend)
        .unwrap();
    let seen = peer(&captured.body);
    assert_ne!(
        seen.port(),
        captured.local_port,
        "the app's outbound traffic must go through the sidecar"
    );
    assert_eq!(
        seen.ip(),
        IpAddr::from(frontend.ip()),
        "port {WHOAMI_PORT} is not an inbound port of backend-v1: no inbound capture"
    );
    let as_proxy = Curl::new(&whoami(v1.ip(), WHOAMI_PORT))
        .as_proxy_user()
        .run(&frontend)
        .unwrap();
    assert_eq!(
        peer(&as_proxy.body).port(),
        as_proxy.local_port,
        "UID 1337 must not be captured"
    );
    let by_port = Curl::new(&whoami(v1.ip(), EXCLUDED_PORT))
        .run(&frontend)
        .unwrap();
    assert_eq!(
        peer(&by_port.body).port(),
        by_port.local_port,
        "-o {EXCLUDED_PORT} must bypass the sidecar"
    );
    let excluded_cidr = Curl::new(&whoami(outside.ip(), WHOAMI_PORT))
        .run(&frontend)
        .unwrap();
    assert_eq!(
        peer(&excluded_cidr.body).port(),
        excluded_cidr.local_port,
        "-x {outside_cidr} must bypass the sidecar"
    );
    // From outside the mesh: the app port goes through backend-v1's sidecar, 9090 does not.
    let before = inbound_requests(&v1_agent.stats().await.unwrap());
    let direct = Curl::new(&format!("http://{}:{APP_PORT}/from-outside", v1.ip()))
        .run(&outside)
        .unwrap();
    assert_eq!(direct.status, 200);
    wait_until(
        "backend-v1's inbound stats to count the outside request",
        Duration::from_secs(5),
        || async { Ok(inbound_requests(&v1_agent.stats().await?) > before) },
    )
    .await
    .unwrap();
    let not_included = Curl::new(&whoami(v1.ip(), WHOAMI_PORT))
        .run(&outside)
        .unwrap();
    assert_eq!(
        peer(&not_included.body),
        SocketAddr::new(outside.ip().into(), not_included.local_port),
        "inbound port {WHOAMI_PORT} is not in -b 8080 and must not be captured"
    );

    // Merged metrics: agent, proxy and the application's own.
    let merged = v1_agent.status_get("/stats/prometheus").await.unwrap();
    assert_eq!(merged.status, 200);
    let text = merged.text();
    assert!(text.contains("istio_agent_scrapes_total"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("envoy_server_")),
        "no proxy metrics in:\n{text}"
    );
    assert!(
        text.trim_end().ends_with("strait_test_app_requests 7"),
        "app metrics must come last:\n{text}"
    );
    assert!(
        text.contains("istio_agent_scrape_failures_total{type=\"application\"} 0"),
        "{text}"
    );

    // Rewritten application probes.
    let probe = |path: &'static str| {
        let agent = &v1_agent;
        async move {
            let addr = SocketAddr::from((agent.netns().ip(), 15020));
            HttpClient::new(agent.netns())
                .get(addr, "kubelet", path)
                .await
                .unwrap()
                .status
        }
    };
    assert_eq!(probe("/app-health/backend/readyz").await, 200);
    assert_eq!(probe("/app-health/backend/livez").await, 418);
    assert_eq!(probe("/app-health/backend/startupz").await, 200);
    assert_eq!(probe("/app-health/sidecar-check/readyz").await, 500);
    assert_eq!(probe("/app-health/nobody/readyz").await, 400);
    assert!(
        app_v1.received().iter().any(|r| r.path == "/status/418"),
        "the probe must reach the app"
    );

    // /quitquitquit is for localhost only.
    let remote_quit = Curl::new(&format!("http://{}:15020/quitquitquit", v1.ip()))
        .method("POST")
        .run(&frontend)
        .unwrap();
    assert_eq!(remote_quit.status, 403);
    assert!(v1_agent.exited().is_none());

    // SIGTERM to backend-v2's agent under steady traffic, while the VirtualService
    // moves traffic away from v2: no request fails, and the agent exits within the
    // drain window.
    let stream = start_stream(&frontend);
    // Shift only once the stream has been answered by v2 (a busy machine sends few
    // requests in any fixed time).
    wait_until(
        "the stream to reach backend-v2",
        Duration::from_secs(15),
        || async {
            Ok(stream
                .results
                .lock()
                .unwrap()
                .iter()
                .any(|(_, r)| r.as_deref() == Ok("backend-v2")))
        },
    )
    .await
    .unwrap();
    pilot
        .write_config("virtual-service.yaml", &virtual_service(100, 0))
        .unwrap();
    let sigterm = Instant::now();
    v2_agent.signal(Signal::SIGTERM).unwrap();
    let status = v2_agent
        .wait_exit(TERMINATION_DRAIN + Duration::from_secs(10))
        .await
        .unwrap();
    let took = sigterm.elapsed();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stream.stop.store(true, Ordering::SeqCst);
    stream.task.await.unwrap();
    let results = stream.results.lock().unwrap().clone();
    let failures: Vec<_> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}\n{}",
        failures.len(),
        results.len(),
        v2_agent.log_tail()
    );
    assert_eq!(shell_code(status), Some(0), "{}", v2_agent.log_tail());
    assert!(
        took >= TERMINATION_DRAIN - Duration::from_millis(500)
            && took <= TERMINATION_DRAIN + Duration::from_secs(3),
        "backend-v2's agent exited {took:?} after SIGTERM; the drain window is {TERMINATION_DRAIN:?}"
    );
    assert!(
        results
            .iter()
            .any(|(t, r)| *t < sigterm && r.as_deref() == Ok("backend-v2")),
        "no traffic reached v2 before the shift"
    );
    let late: Vec<_> = results
        .iter()
        .filter(|(t, r)| *t > sigterm + Duration::from_secs(3) && r.as_deref() != Ok("backend-v1"))
        .collect();
    assert!(
        late.is_empty(),
        "traffic after the shift did not all go to v1: {late:?}"
    );
    let v2_log = v2_agent.logs();
    assert!(
        v2_log.contains("draining the proxy's inbound listeners"),
        "{v2_log}"
    );
    assert!(
        !v2_log.contains("asking the proxy to drain"),
        "drain_listeners failed:\n{v2_log}"
    );

    // Signals other than SIGTERM/SIGINT go to the proxy, which survives them as Envoy
    // does; killing the proxy ends its agent with a failure status.
    let proxy_pid = v1_agent.proxy_pid().expect("backend-v1's proxy process");
    v1_agent.signal(Signal::SIGHUP).unwrap();
    v1_agent
        .wait_log("passing SIGHUP to the proxy", 1, Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        v1_agent.exited().is_none(),
        "SIGHUP ended the agent: {}",
        v1_agent.log_tail()
    );
    assert_eq!(
        v1_agent.proxy_pid(),
        Some(proxy_pid),
        "SIGHUP ended the proxy"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proxy_pid as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    let status = v1_agent.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert_eq!(shell_code(status), Some(137), "{}", v1_agent.log_tail());

    // /drain (a native sidecar's preStop), then SIGTERM: no second wait.
    let drain = fe.status_post("/drain").await.unwrap();
    assert_eq!(drain.status, 200, "{}", drain.text());
    let sigterm = Instant::now();
    fe.signal(Signal::SIGTERM).unwrap();
    let status = fe.wait_exit(Duration::from_secs(5)).await.unwrap();
    assert_eq!(shell_code(status), Some(0), "{}", fe.log_tail());
    assert!(
        sigterm.elapsed() < Duration::from_secs(2),
        "after /drain, SIGTERM must not wait again: {:?}",
        sigterm.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_with_strait_proxy() {
    mesh(ProxyKind::Strait).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_with_stock_envoy() {
    mesh(ProxyKind::Envoy).await;
}

fn run_agent(args: &[&str]) -> std::process::Output {
    std::process::Command::new(bins::strait("pilot-agent").unwrap())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_clearly_or_waits_without_losing_logs() {
    // Flags: unknown, repeated, out of range or unsupported ones name the flag.
    for (args, flag) in [
        (&["proxy", "sidecar", "--bogus"][..], "--bogus"),
        (
            &[
                "proxy",
                "sidecar",
                "--concurrency",
                "1",
                "--concurrency",
                "2",
            ][..],
            "--concurrency",
        ),
        (
            &["proxy", "sidecar", "--concurrency=-2"][..],
            "--concurrency",
        ),
        (
            &["proxy", "sidecar", "--proxyLogLevel", "chatty"][..],
            "--proxyLogLevel",
        ),
        (
            &[
                "proxy",
                "sidecar",
                "--templateFile",
                "/etc/istio/custom.json",
            ][..],
            "--templateFile",
        ),
        (&["proxy", "router"][..], "router"),
    ] {
        let out = run_agent(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?} must name {flag}: {stderr}");
    }

    // A bootstrap that cannot be written: the agent says why, retries with backoff,
    // reports not-ready with the reason, and stays up until told to stop.
    let topo = Topology::new().unwrap();
    let ns = topo.add_workload("bad-bootstrap").unwrap();
    let blocker = std::env::temp_dir().join(format!("strait-agent-blocker-{}", std::process::id()));
    std::fs::write(&blocker, "not a directory").unwrap();
    let mut options = AgentOptions::new("bad", "bad", "v1");
    options.discovery = Some(SocketAddr::new(topo.hub().ip().into(), PILOT_GRPC_PORT));
    options.as_root = true;
    let options = options.proxy_config("configPath", json!(blocker.join("proxy")));
    let agent = PilotAgent::start(&ns, &options).unwrap();
    agent
        .wait_log("cannot write the bootstrap", 2, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(agent.logs().contains("retrying in"), "{}", agent.logs());
    let ready = agent.status_get("/healthz/ready").await.unwrap();
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().contains("cannot write the bootstrap"),
        "{}",
        ready.text()
    );
    assert!(
        agent.exited().is_none(),
        "no crash loop: the agent must stay up"
    );
    assert_eq!(
        agent.status_get("/quitquitquit").await.unwrap().status,
        405,
        "POST only"
    );
    let quit = agent.status_post("/quitquitquit").await.unwrap();
    assert_eq!(quit.status, 200);
    let status = agent.wait_exit(Duration::from_secs(5)).await.unwrap();
    assert_eq!(shell_code(status), Some(0), "{}", agent.log_tail());
    std::fs::remove_file(&blocker).unwrap();
}
