//! pilot-discovery watching a real kube-apiserver, serving a stock Envoy: the
//! acceptance test of the Kubernetes issue. One control plane, one pilot-discovery
//! and one sidecar go through the phases in order (starting the control plane is the
//! slow part, so it is shared):
//!
//! 1. readiness: started while the apiserver is down, pilot-discovery is not ready
//!    and its ADS port is closed until its caches have synced;
//! 2. Services and Pods (with status) become EndpointSlices, then EDS in Envoy, with
//!    the Node's locality; more Pods and deleted Pods are pushed as EDS only;
//! 3. Istio's documentation examples (request routing, traffic shifting, fault
//!    injection, timeouts), applied with kubectl, change Envoy's routes within 1 s;
//!    deleting them restores the default route;
//! 4. a VirtualService of the wrong shape is refused by the CRD schema; one the
//!    schema accepts but Istio's rules refuse is reported in push status and the log;
//! 5. the apiserver restarts under pilot-discovery: changes made around the restart
//!    arrive, and nothing is pushed that was not caused by a change.
//!
//! Needs root (network namespaces, iptables), Envoy 1.40 and the kube tools.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use strait_e2e::envoy::config_dump;
use strait_e2e::kube::{KubeCluster, KubeOptions, KubePilot, KubePilotOptions};
use strait_e2e::mesh::{APP_PORT, start_sidecar};
use strait_e2e::{
    AdsApi, Backend, Envoy, HttpClient, Netns, RequestSpec, Topology, capture, wait_until,
};

const CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/base/files/crd-all.gen.yaml"
);
const CONFIGURED: Duration = Duration::from_secs(30);
/// The issue's bound on "kubectl apply → Envoy's routes changed".
const ROUTE_CHANGE: Duration = Duration::from_secs(1);
const REVIEWS: &str = "reviews.default.svc.cluster.local";
const RATINGS: &str = "ratings.default.svc.cluster.local";
const NODE: &str = "node-1";

/// The example Services, with the VIPs the sidecar's capture covers.
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: productpage
  labels: {app: productpage, service: productpage}
spec:
  clusterIP: 10.96.0.10
  ports:
  - port: 9080
    name: http
  selector:
    app: productpage
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  labels: {app: reviews, service: reviews}
spec:
  clusterIP: 10.96.0.11
  ports:
  - port: 9080
    name: http
  selector:
    app: reviews
---
apiVersion: v1
kind: Service
metadata:
  name: ratings
  labels: {app: ratings, service: ratings}
spec:
  clusterIP: 10.96.0.12
  ports:
  - port: 9080
    name: http
  selector:
    app: ratings
---
apiVersion: v1
kind: Service
metadata:
  name: details
  labels: {app: details, service: details}
spec:
  clusterIP: 10.96.0.13
  ports:
  - port: 9080
    name: http
  selector:
    app: details
"#;

// Istio's documentation examples, as its tasks apply them.

/// samples/bookinfo/networking/destination-rule-all.yaml
const DESTINATION_RULE_ALL: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: productpage
spec:
  host: productpage
  subsets:
  - name: v1
    labels:
      version: v1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v2-mysql
    labels:
      version: v2-mysql
  - name: v2-mysql-vm
    labels:
      version: v2-mysql-vm
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: details
spec:
  host: details
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"#;

/// Request routing: samples/bookinfo/networking/virtual-service-all-v1.yaml
const VIRTUAL_SERVICE_ALL_V1: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productpage
spec:
  hosts:
  - productpage
  http:
  - route:
    - destination:
        host: productpage
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - route:
    - destination:
        host: ratings
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: details
spec:
  hosts:
  - details
  http:
  - route:
    - destination:
        host: details
        subset: v1
"#;

/// Request routing by user identity: virtual-service-reviews-test-v2.yaml
const REVIEWS_TEST_V2: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
"#;

/// Fault injection, delay: virtual-service-ratings-test-delay.yaml
const RATINGS_TEST_DELAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      delay:
        percentage:
          value: 100.0
        fixedDelay: 7s
    route:
    - destination:
        host: ratings
        subset: v1
  - route:
    - destination:
        host: ratings
        subset: v1
"#;

/// Fault injection, abort: virtual-service-ratings-test-abort.yaml
const RATINGS_TEST_ABORT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      abort:
        percentage:
          value: 100.0
        httpStatus: 500
    route:
    - destination:
        host: ratings
        subset: v1
  - route:
    - destination:
        host: ratings
        subset: v1
"#;

/// Traffic shifting: virtual-service-reviews-50-v3.yaml
const REVIEWS_50_V3: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 50
"#;

/// Traffic shifting, done: virtual-service-reviews-v3.yaml
const REVIEWS_V3: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v3
"#;

/// Request timeouts, as the task applies them inline: reviews to v2 ...
const TIMEOUTS_REVIEWS_V2: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
"#;

/// ... a 2 second delay on ratings ...
const TIMEOUTS_RATINGS_DELAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - fault:
      delay:
        percentage:
          value: 100
        fixedDelay: 2s
    route:
    - destination:
        host: ratings
        subset: v1
"#;

/// ... and a half second timeout on reviews.
const TIMEOUTS_REVIEWS_TIMEOUT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
    timeout: 0.5s
"#;

/// Refused by the CRD's structural schema: a string where an integer belongs.
const WRONG_TYPE: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: wrong-type
spec:
  hosts:
  - details
  http:
  - route:
    - destination:
        host: details
      weight: "eighty"
"#;

/// Accepted by the schema, refused by Istio's validation: the regex does not compile.
const BAD_REGEX: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bad-regex
spec:
  hosts:
  - details
  http:
  - match:
    - uri:
        regex: "(jason"
    route:
    - destination:
        host: details
"#;

fn pod_yaml(name: &str, app: &str, version: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {app}
    version: {version}
spec:
  nodeName: {NODE}
  containers:
  - name: {app}
    image: docker.io/istio/examples-bookinfo-{app}-{version}:1.20.3
    ports:
    - containerPort: {APP_PORT}
"#
    )
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

/// The push counters that say whether, and what, pilot-discovery pushed.
#[derive(Debug, Clone, PartialEq)]
struct Pushes {
    cds: f64,
    eds: f64,
    lds: f64,
    rds: f64,
    contexts: f64,
}

async fn pushes(pilot: &KubePilot) -> Pushes {
    let text = pilot.metrics().await.unwrap();
    Pushes {
        cds: metric(&text, "pilot_xds_pushes{type=\"cds\"}"),
        eds: metric(&text, "pilot_xds_pushes{type=\"eds\"}"),
        lds: metric(&text, "pilot_xds_pushes{type=\"lds\"}"),
        rds: metric(&text, "pilot_xds_pushes{type=\"rds\"}"),
        contexts: metric(&text, "pilot_pushcontext_init_seconds_count"),
    }
}

/// `pilot_k8s_reg_events{type="Pods",event}`.
async fn pod_events(pilot: &KubePilot, event: &str) -> f64 {
    let text = pilot.metrics().await.unwrap();
    metric(
        &text,
        &format!("pilot_k8s_reg_events{{type=\"Pods\",event=\"{event}\"}}"),
    )
}

/// (address, locality) of each endpoint Envoy holds for `cluster`.
fn eds_endpoints(dump: &Value, cluster: &str) -> Vec<(String, Value)> {
    let Some(section) = config_dump::section(
        dump,
        "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for config in section["dynamic_endpoint_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let assignment = &config["endpoint_config"];
        if assignment["cluster_name"] != cluster {
            continue;
        }
        for locality in assignment["endpoints"].as_array().into_iter().flatten() {
            for lb in locality["lb_endpoints"].as_array().into_iter().flatten() {
                let address = lb
                    .pointer("/endpoint/address/socket_address/address")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.push((address.to_owned(), locality["locality"].clone()));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The routes of the virtual host for `host`:9080 in Envoy's route configuration "9080".
fn vhost_routes(dump: &Value, host: &str) -> Option<Value> {
    let name = format!("{host}:{APP_PORT}");
    config_dump::route_config(dump, &APP_PORT.to_string())?["virtual_hosts"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name.as_str())
        .map(|v| v["routes"].clone())
}

struct Mesh {
    // Drop order: processes first, then the namespaces they live in.
    envoy: Envoy,
    backends: BTreeMap<String, Backend>,
    pilot: KubePilot,
    cluster: KubeCluster,
    client: HttpClient,
    pods: BTreeMap<String, Netns>,
    topology: Topology,
}

impl Mesh {
    /// Creates Pod `name` in the API, a namespace and backend for it, and reports
    /// it running and ready at the namespace's address, as its kubelet would.
    async fn add_pod(&mut self, name: &str, app: &str, version: &str) {
        let ns = self.topology.add_workload(name).unwrap();
        if app != "productpage" {
            let backend = Backend::start(&ns, APP_PORT, app, version).unwrap();
            self.backends.insert(name.to_owned(), backend);
        }
        self.cluster
            .apply(&pod_yaml(name, app, version))
            .await
            .unwrap();
        self.cluster
            .set_pod_status("default", name, IpAddr::V4(ns.ip()), true)
            .await
            .unwrap();
        self.pods.insert(name.to_owned(), ns);
    }

    async fn delete_pod(&mut self, name: &str) {
        // No kubelet finishes a graceful deletion.
        self.cluster
            .kubectl(&["delete", "pod", name, "--grace-period=0", "--force"])
            .await
            .unwrap();
        self.backends.remove(name);
    }

    fn ip(&self, pod: &str) -> String {
        self.pods[pod].ip().to_string()
    }

    /// Waits until Envoy holds exactly the endpoints of `pods` for `cluster`.
    async fn wait_endpoints(&self, cluster: &str, pods: &[&str]) -> Vec<(String, Value)> {
        let mut want: Vec<String> = pods.iter().map(|p| self.ip(p)).collect();
        want.sort();
        let mut seen = Vec::new();
        let deadline = Instant::now() + CONFIGURED;
        while Instant::now() < deadline {
            let dump = self.envoy.config_dump_with_eds().await.unwrap();
            seen = eds_endpoints(&dump, cluster);
            if seen.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>() == want {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "Envoy's endpoints for {cluster}: {seen:?}, want {want:?}\n{}",
            self.pilot.log_tail()
        );
    }

    /// `kubectl apply` (or `kubectl delete -f` when `delete`) and the time from
    /// the command's return until Envoy's routes for `host` satisfy `changed`.
    async fn route_change(
        &self,
        what: &str,
        yaml: &str,
        delete: bool,
        host: &str,
        changed: impl Fn(&str) -> bool,
    ) -> Duration {
        if delete {
            self.cluster
                .kubectl_stdin(&["delete", "-f", "-"], yaml)
                .await
                .unwrap();
        } else {
            self.cluster.apply(yaml).await.unwrap();
        }
        let written = Instant::now();
        let mut last = String::new();
        while written.elapsed() < CONFIGURED {
            let dump = self.envoy.config_dump().await.unwrap();
            last = vhost_routes(&dump, host)
                .map(|r| r.to_string())
                .unwrap_or_default();
            if changed(&last) {
                let took = written.elapsed();
                eprintln!("{what}: Envoy's routes changed {took:?} after kubectl returned");
                assert!(
                    took < ROUTE_CHANGE,
                    "{what}: Envoy's routes changed only after {took:?}"
                );
                return took;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{what}: Envoy's routes for {host} never changed; last: {last}\n{}",
            self.pilot.log_tail()
        );
    }

    async fn tally(&self, service: &str, spec: &RequestSpec, n: usize) -> strait_e2e::Tally {
        let last = match service {
            "productpage" => 10,
            "reviews" => 11,
            "ratings" => 12,
            _ => 13,
        };
        let addr = SocketAddr::from(([10, 96, 0, last], APP_PORT));
        self.client.tally(addr, spec, n).await
    }
}

fn reviews(path: &str) -> RequestSpec {
    RequestSpec::get("reviews:9080", path)
}

fn cluster_of(subset: &str, host: &str) -> String {
    format!("outbound|9080|{subset}|{host}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pilot_discovery_watches_the_api_server() {
    let topology = Topology::new().unwrap();
    let hub = topology.hub().clone();
    let mut cluster = KubeCluster::start(KubeOptions {
        netns: Some(hub.clone()),
        ..KubeOptions::default()
    })
    .await
    .unwrap();
    cluster.apply_file(Path::new(CRDS)).await.unwrap();
    cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ])
        .await
        .unwrap();
    cluster.add_node(NODE).await.unwrap();
    cluster
        .kubectl(&[
            "label",
            "node",
            NODE,
            "topology.kubernetes.io/region=us-east1",
            "topology.kubernetes.io/zone=us-east1-b",
        ])
        .await
        .unwrap();

    // 1. Readiness: not before the caches have synced.
    cluster.stop_apiserver(Duration::from_secs(5)).unwrap();
    let pilot = cluster
        .start_pilot(KubePilotOptions {
            no_wait: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let hub_client = HttpClient::new(&hub);
    let grpc = pilot.grpc_addr();
    wait_until("pilot's HTTP server", CONFIGURED, || async {
        Ok(pilot.get("/ready").await.is_ok())
    })
    .await
    .unwrap();
    for _ in 0..3 {
        let ready = pilot.get("/ready").await.unwrap();
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert!(ready.text().contains("not ready"), "{}", ready.text());
        assert!(
            hub_client.connect(grpc).await.is_err(),
            "the ADS port is closed before sync"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    cluster.start_apiserver().await.unwrap();
    pilot.wait_ready(CONFIGURED).await.unwrap();
    hub_client
        .connect(grpc)
        .await
        .expect("the ADS port is open once synced");
    assert!(pilot.logs().contains("Kubernetes caches synced"));

    // 2. Services and Pods become EndpointSlices and EDS.
    cluster.apply(SERVICES).await.unwrap();
    let client_ns = topology.add_workload("productpage-v1").unwrap();
    capture::redirect_outbound(&client_ns, "10.96.0.0/16", 15001).unwrap();
    let envoy = start_sidecar(
        &client_ns,
        "productpage-v1",
        "productpage",
        grpc,
        AdsApi::Sotw,
    )
    .await
    .unwrap();
    let mut mesh = Mesh {
        envoy,
        backends: BTreeMap::new(),
        pilot,
        cluster,
        client: HttpClient::new(&client_ns),
        pods: BTreeMap::new(),
        topology,
    };
    mesh.cluster
        .apply(&pod_yaml("productpage-v1", "productpage", "v1"))
        .await
        .unwrap();
    mesh.cluster
        .set_pod_status(
            "default",
            "productpage-v1",
            IpAddr::V4(client_ns.ip()),
            true,
        )
        .await
        .unwrap();
    mesh.pods.insert("productpage-v1".into(), client_ns);
    for (name, app, version) in [
        ("reviews-v1", "reviews", "v1"),
        ("reviews-v2", "reviews", "v2"),
        ("ratings-v1", "ratings", "v1"),
        ("details-v1", "details", "v1"),
    ] {
        mesh.add_pod(name, app, version).await;
    }
    workloads_become_endpoints(&mut mesh).await;
    istio_examples_change_routes(&mesh).await;
    invalid_config_is_refused_or_reported(&mesh).await;
    apiserver_restart_loses_nothing(&mut mesh).await;
}

async fn workloads_become_endpoints(mesh: &mut Mesh) {
    let outbound_reviews = cluster_of("", REVIEWS);
    let endpoints = mesh
        .wait_endpoints(&outbound_reviews, &["reviews-v1", "reviews-v2"])
        .await;
    for (address, locality) in &endpoints {
        assert_eq!(locality["region"], "us-east1", "{address}: {locality}");
        assert_eq!(locality["zone"], "us-east1-b", "{address}: {locality}");
    }
    // The endpoints came by way of the EndpointSlice controller.
    let slices: Value = serde_json::from_str(
        &mesh
            .cluster
            .kubectl(&[
                "get",
                "endpointslices",
                "--selector=kubernetes.io/service-name=reviews",
                "--output=json",
            ])
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        slices["items"].as_array().is_some_and(|i| !i.is_empty()),
        "{slices:#}"
    );
    let tally = mesh.tally("reviews", &reviews("/"), 40).await;
    assert!(tally.errors.is_empty(), "{:?}", tally.errors);
    assert!(
        tally.count("reviews-v1") > 0 && tally.count("reviews-v2") > 0,
        "{tally:?}"
    );

    // More Pods: pushed as EDS alone, and counted as Istio's informers count them.
    let before = pushes(&mesh.pilot).await;
    let adds_before = pod_events(&mesh.pilot, "add").await;
    let deletes_before = pod_events(&mesh.pilot, "delete").await;
    assert!(adds_before >= 2.0, "the first Pods were added");
    mesh.add_pod("reviews-v3", "reviews", "v3").await;
    mesh.add_pod("reviews-v1-1", "reviews", "v1").await;
    mesh.wait_endpoints(
        &outbound_reviews,
        &["reviews-v1", "reviews-v1-1", "reviews-v2", "reviews-v3"],
    )
    .await;
    // Fewer Pods, likewise.
    mesh.delete_pod("reviews-v1-1").await;
    mesh.wait_endpoints(
        &outbound_reviews,
        &["reviews-v1", "reviews-v2", "reviews-v3"],
    )
    .await;
    let after = pushes(&mesh.pilot).await;
    assert!(after.eds >= before.eds + 2.0, "{before:?} -> {after:?}");
    assert_eq!(pod_events(&mesh.pilot, "add").await, adds_before + 2.0);
    assert_eq!(
        pod_events(&mesh.pilot, "delete").await,
        deletes_before + 1.0
    );
    assert_eq!(
        (after.cds, after.lds, after.rds, after.contexts),
        (before.cds, before.lds, before.rds, before.contexts),
        "Pods coming and going push endpoints only"
    );
    let tally = mesh.tally("reviews", &reviews("/"), 60).await;
    assert!(tally.count("reviews-v3") > 0, "{tally:?}");
}

async fn istio_examples_change_routes(mesh: &Mesh) {
    let v = |subset: &str| cluster_of(subset, REVIEWS);
    mesh.cluster.apply(DESTINATION_RULE_ALL).await.unwrap();
    mesh.envoy
        .wait_for("the DestinationRule subsets", CONFIGURED, |dump| {
            config_dump::cluster(dump, &v("v3")).is_some()
        })
        .await
        .unwrap();

    // Request routing: everything to v1, then jason to v2.
    mesh.route_change(
        "virtual-service-all-v1",
        VIRTUAL_SERVICE_ALL_V1,
        false,
        REVIEWS,
        |r| r.contains(&v("v1")) && !r.contains(&v("")),
    )
    .await;
    let tally = mesh.tally("reviews", &reviews("/"), 30).await;
    assert_eq!(tally.count("reviews-v1"), 30, "{tally:?}");
    mesh.route_change(
        "virtual-service-reviews-test-v2",
        REVIEWS_TEST_V2,
        false,
        REVIEWS,
        |r| r.contains("end-user") && r.contains(&v("v2")),
    )
    .await;
    let jason = reviews("/").header("end-user", "jason");
    assert_eq!(
        mesh.tally("reviews", &jason, 20).await.count("reviews-v2"),
        20
    );
    assert_eq!(
        mesh.tally("reviews", &reviews("/"), 20)
            .await
            .count("reviews-v1"),
        20
    );

    // Fault injection: a 7 s delay for jason (seen in the route), then an abort.
    mesh.route_change(
        "virtual-service-ratings-test-delay",
        RATINGS_TEST_DELAY,
        false,
        RATINGS,
        |r| r.contains("fixed_delay") && r.contains("7s"),
    )
    .await;
    mesh.route_change(
        "virtual-service-ratings-test-abort",
        RATINGS_TEST_ABORT,
        false,
        RATINGS,
        |r| r.contains("abort") && !r.contains("fixed_delay"),
    )
    .await;
    let ratings_jason = RequestSpec::get("ratings:9080", "/").header("end-user", "jason");
    let tally = mesh.tally("ratings", &ratings_jason, 10).await;
    assert_eq!(tally.status(500), 10, "{tally:?}");
    let tally = mesh
        .tally("ratings", &RequestSpec::get("ratings:9080", "/"), 10)
        .await;
    assert_eq!(tally.count("ratings-v1"), 10, "{tally:?}");

    // Traffic shifting: 50/50 between v1 and v3, then all to v3.
    mesh.route_change(
        "virtual-service-reviews-50-v3",
        REVIEWS_50_V3,
        false,
        REVIEWS,
        |r| r.contains("weighted_clusters") && r.contains(&v("v3")) && !r.contains("end-user"),
    )
    .await;
    let tally = mesh.tally("reviews", &reviews("/"), 200).await;
    let (v1, v3) = (tally.count("reviews-v1"), tally.count("reviews-v3"));
    assert_eq!(v1 + v3, 200, "{tally:?}");
    assert!((60..=140).contains(&v1), "about half each: {tally:?}");
    mesh.route_change(
        "virtual-service-reviews-v3",
        REVIEWS_V3,
        false,
        REVIEWS,
        |r| r.contains(&v("v3")) && !r.contains("weighted_clusters"),
    )
    .await;
    assert_eq!(
        mesh.tally("reviews", &reviews("/"), 20)
            .await
            .count("reviews-v3"),
        20
    );

    // Request timeouts: reviews to v2, ratings delayed 2 s, reviews timing out at 0.5 s.
    mesh.route_change(
        "timeouts: reviews v2",
        TIMEOUTS_REVIEWS_V2,
        false,
        REVIEWS,
        |r| r.contains(&v("v2")) && !r.contains(&v("v3")),
    )
    .await;
    mesh.route_change(
        "timeouts: ratings delay",
        TIMEOUTS_RATINGS_DELAY,
        false,
        RATINGS,
        |r| r.contains("2s") && !r.contains("end-user"),
    )
    .await;
    let slow = mesh
        .client
        .send(
            SocketAddr::from(([10, 96, 0, 12], APP_PORT)),
            &RequestSpec::get("ratings:9080", "/"),
        )
        .await
        .unwrap();
    assert_eq!(slow.status, 200);
    assert!(
        slow.elapsed >= Duration::from_millis(1900),
        "{:?}",
        slow.elapsed
    );
    mesh.route_change(
        "timeouts: reviews 0.5s",
        TIMEOUTS_REVIEWS_TIMEOUT,
        false,
        REVIEWS,
        |r| r.contains("\"timeout\":\"0.500s\""),
    )
    .await;
    let timed_out = mesh
        .client
        .send(
            SocketAddr::from(([10, 96, 0, 11], APP_PORT)),
            &reviews("/delay/3000"),
        )
        .await
        .unwrap();
    assert_eq!(timed_out.status, 504, "{}", timed_out.text());
    assert!(
        timed_out.elapsed < Duration::from_millis(2500),
        "{:?}",
        timed_out.elapsed
    );

    // The tasks' cleanup: without VirtualServices the default route is back.
    mesh.route_change(
        "delete virtual-service-all-v1",
        VIRTUAL_SERVICE_ALL_V1,
        true,
        REVIEWS,
        |r| r.contains(&v("")) && !r.contains(&v("v2")),
    )
    .await;
    let tally = mesh.tally("reviews", &reviews("/"), 60).await;
    for version in ["reviews-v1", "reviews-v2", "reviews-v3"] {
        assert!(tally.count(version) > 0, "{version}: {tally:?}");
    }
    let routes = vhost_routes(&mesh.envoy.config_dump().await.unwrap(), RATINGS).unwrap();
    assert!(!routes.to_string().contains("fixed_delay"), "{routes}");
}

async fn invalid_config_is_refused_or_reported(mesh: &Mesh) {
    let refused = mesh.cluster.apply(WRONG_TYPE).await.unwrap_err();
    let message = format!("{refused:#}");
    assert!(
        message.contains("spec.http[0].route[0].weight") && message.contains("integer"),
        "the CRD schema's message: {message}"
    );

    mesh.cluster.apply(BAD_REGEX).await.unwrap();
    let key = "VirtualService/default/bad-regex";
    let mut status = Value::Null;
    let deadline = Instant::now() + CONFIGURED;
    while Instant::now() < deadline {
        status = mesh.pilot.get_json("/debug/push_status").await.unwrap();
        if status["pilot_invalid_config"].get(key).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entry = &status["pilot_invalid_config"][key];
    let message = entry["message"].as_str().unwrap_or_default();
    assert!(message.contains("regex"), "{status:#}");
    assert!(
        status
            .to_string()
            .contains("/apis/networking.istio.io/v1/namespaces/default/virtualservices/bad-regex"),
        "push status names the object's API path: {status:#}"
    );
    assert!(
        mesh.pilot
            .logs()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(key)),
        "a warning names {key}"
    );
    // Fixing it clears the report.
    mesh.cluster
        .kubectl(&["delete", "virtualservice", "bad-regex"])
        .await
        .unwrap();
    wait_until("the report to clear", CONFIGURED, || async {
        let status = mesh.pilot.get_json("/debug/push_status").await?;
        Ok(status["pilot_invalid_config"].get(key).is_none())
    })
    .await
    .unwrap();
    // Istio's config-event counters saw the VirtualServices come and go.
    let text = mesh.pilot.metrics().await.unwrap();
    let vs_events = |event: &str| {
        metric(
            &text,
            &format!("pilot_k8s_cfg_events{{type=\"VirtualService\",event=\"{event}\"}}"),
        )
    };
    assert!(vs_events("add") >= 1.0, "{text}");
    assert!(vs_events("delete") >= 1.0, "{text}");
}

async fn apiserver_restart_loses_nothing(mesh: &mut Mesh) {
    let v = |subset: &str| cluster_of(subset, REVIEWS);
    let settled = pushes(&mesh.pilot).await;
    let log_before = mesh.pilot.logs().len();

    // A change just before the apiserver dies, and one right after it is back
    // (while pilot-discovery's watches are still reconnecting).
    mesh.cluster.apply(REVIEWS_V3).await.unwrap();
    mesh.cluster.stop_apiserver(Duration::ZERO).unwrap();
    mesh.cluster.start_apiserver().await.unwrap();
    mesh.cluster
        .kubectl_stdin(&["apply", "-f", "-"], TIMEOUTS_RATINGS_DELAY)
        .await
        .unwrap();
    mesh.envoy
        .wait_for("both changes", CONFIGURED, |dump| {
            let reviews = vhost_routes(dump, REVIEWS).unwrap_or_default().to_string();
            let ratings = vhost_routes(dump, RATINGS).unwrap_or_default().to_string();
            reviews.contains(&v("v3")) && ratings.contains("fixed_delay")
        })
        .await
        .unwrap();
    assert!(
        mesh.pilot.logs()[log_before..].contains("Kubernetes watch failed"),
        "pilot-discovery saw its watches break"
    );

    // Every watch is back within its longest backoff (4 s); none of them pushes
    // anything once back: what they see again is what they had.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = pushes(&mesh.pilot).await;
    assert!(
        (1.0..=2.0).contains(&(after.cds - settled.cds)),
        "one full push per change (or one for both): {settled:?} -> {after:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pushes(&mesh.pilot).await, after, "no push without a change");

    // The watches work: one change, one full push.
    mesh.route_change(
        "after the restart",
        TIMEOUTS_REVIEWS_V2,
        false,
        REVIEWS,
        |r| r.contains(&v("v2")) && !r.contains(&v("v3")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let last = pushes(&mesh.pilot).await;
    assert_eq!(last.cds - after.cds, 1.0, "{after:?} -> {last:?}");
}
