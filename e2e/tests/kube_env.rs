//! The Kubernetes test environment proving itself: a real kube-apiserver on a
//! real etcd serves and validates our Istio CRDs, kube-controller-manager
//! turns ready Pods into EndpointSlices, the pinned kubectl and helm work, and
//! stopping a cluster leaves no process behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use strait_e2e::kube::{KubeCluster, KubeOptions, KubeTools};
use strait_e2e::workdir::WorkDir;
use strait_e2e::{Topology, wait_until};

const CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/base/files/crd-all.gen.yaml"
);
const KUBE_VERSION: &str = "v1.35.8";
const HELM_VERSION: &str = "v3.22.0";

const REVIEWS_V1: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 80
    - destination:
        host: reviews
        subset: v2
      weight: 20
"#;

const REVIEWS_BAD_WEIGHT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-bad
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
      weight: "eighty"
"#;

const SERVICE_AND_POD: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: default
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
    targetPort: 9080
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1-0
  namespace: default
  labels:
    app: reviews
    version: v1
spec:
  nodeName: node-1
  containers:
  - name: reviews
    image: example.invalid/reviews:v1
    ports:
    - containerPort: 9080
"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every pid is gone: not even a zombie of ours is left (all were reaped).
fn assert_all_gone(pids: &[(String, u32)]) {
    assert_eq!(pids.len(), 3, "{pids:?}");
    for (label, pid) in pids {
        let proc_dir = format!("/proc/{pid}");
        assert!(
            !Path::new(&proc_dir).exists(),
            "{label} (pid {pid}) still exists"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_serves_and_validates_the_istio_crds() {
    let cluster = KubeCluster::start(KubeOptions::default()).await.unwrap();

    let version = json(&cluster.kubectl(&["get", "--raw=/version"]).await.unwrap());
    assert_eq!(version["gitVersion"], KUBE_VERSION);

    cluster.apply_file(Path::new(CRDS)).await.unwrap();
    cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/virtualservices.networking.istio.io",
            "crd/destinationrules.networking.istio.io",
        ])
        .await
        .unwrap();
    let crd = json(
        &cluster
            .kubectl(&[
                "get",
                "crd",
                "virtualservices.networking.istio.io",
                "--output=json",
            ])
            .await
            .unwrap(),
    );
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Established")
        .unwrap();
    assert_eq!(established["status"], "True", "{crd:#}");
    let mut served: Vec<&str> = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["served"] == true)
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    served.sort_unstable();
    assert_eq!(served, ["v1", "v1alpha3", "v1beta1"]);

    // The structural schema refuses a string where an integer belongs, and
    // names the field.
    let refused = cluster.apply(REVIEWS_BAD_WEIGHT).await.unwrap_err();
    let message = format!("{refused:#}");
    assert!(
        message.contains("spec.http[0].route[0].weight") && message.contains("integer"),
        "unexpected refusal: {message}"
    );
    let missing = cluster
        .kubectl(&[
            "get",
            "virtualservice",
            "reviews-bad",
            "--namespace=default",
        ])
        .await
        .unwrap_err();
    assert!(format!("{missing:#}").contains("NotFound"), "{missing:#}");

    // Stored as v1, served as every version with the same spec.
    cluster.apply(REVIEWS_V1).await.unwrap();
    let v1 = json(
        &cluster
            .kubectl(&[
                "get",
                "virtualservices.v1.networking.istio.io",
                "reviews",
                "--namespace=default",
                "--output=json",
            ])
            .await
            .unwrap(),
    );
    assert_eq!(v1["spec"]["http"][0]["route"][0]["weight"], 80);
    for version in ["v1beta1", "v1alpha3"] {
        let resource = format!("virtualservices.{version}.networking.istio.io");
        let read = json(
            &cluster
                .kubectl(&[
                    "get",
                    &resource,
                    "reviews",
                    "--namespace=default",
                    "--output=json",
                ])
                .await
                .unwrap(),
        );
        assert_eq!(
            read["apiVersion"],
            format!("networking.istio.io/{version}"),
            "{read:#}"
        );
        assert_eq!(read["spec"], v1["spec"]);
    }

    // Helm reaches the same apiserver (an empty release list, not an error).
    let releases = cluster
        .helm(&["list", "--all-namespaces", "--output=json"])
        .await
        .unwrap();
    assert_eq!(json(&releases), serde_json::json!([]));

    let pids = cluster.pids();
    cluster.stop().unwrap();
    assert_all_gone(&pids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_manager_publishes_ready_pods_as_endpointslices() {
    let cluster = KubeCluster::start(KubeOptions::default()).await.unwrap();
    cluster.add_node("node-1").await.unwrap();
    cluster.apply(SERVICE_AND_POD).await.unwrap();
    let pod_ip = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 5));
    cluster
        .set_pod_status("default", "reviews-v1-0", pod_ip, true)
        .await
        .unwrap();
    let pod = json(
        &cluster
            .kubectl(&[
                "get",
                "pod",
                "reviews-v1-0",
                "--namespace=default",
                "--output=json",
            ])
            .await
            .unwrap(),
    );
    assert_eq!(pod["status"]["podIP"], "10.200.0.5");
    assert_eq!(pod["status"]["phase"], "Running");

    // (address, ready) of every endpoint in the Service's slices.
    let endpoints = || async {
        let slices = json(
            &cluster
                .kubectl(&[
                    "get",
                    "endpointslices",
                    "--namespace=default",
                    "--selector=kubernetes.io/service-name=reviews",
                    "--output=json",
                ])
                .await?,
        );
        let mut found = Vec::new();
        for slice in slices["items"].as_array().into_iter().flatten() {
            for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
                let ready = endpoint["conditions"]["ready"] == true;
                for address in endpoint["addresses"].as_array().into_iter().flatten() {
                    found.push((address.as_str().unwrap_or_default().to_owned(), ready));
                }
            }
        }
        anyhow::Ok(found)
    };
    let want_ready = vec![("10.200.0.5".to_owned(), true)];
    wait_until(
        "a ready endpoint 10.200.0.5",
        Duration::from_secs(60),
        || async { Ok(endpoints().await? == want_ready) },
    )
    .await
    .unwrap();

    // Readiness follows the Pod's status, as a kubelet's probes would drive it.
    cluster
        .set_pod_status("default", "reviews-v1-0", pod_ip, false)
        .await
        .unwrap();
    let want_not_ready = vec![("10.200.0.5".to_owned(), false)];
    wait_until(
        "endpoint 10.200.0.5 not ready",
        Duration::from_secs(60),
        || async { Ok(endpoints().await? == want_not_ready) },
    )
    .await
    .unwrap();

    let pids = cluster.pids();
    cluster.stop().unwrap();
    assert_all_gone(&pids);
}

/// Runs `kube-env down` if the test fails after `up`, so no cluster outlives it.
struct DownOnDrop<'a>(&'a Path);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_kube-env"))
            .arg("down")
            .arg(self.0)
            .output();
    }
}

/// `scripts/kube-env`'s binary: `up` leaves a control plane running after it
/// exits, `down` stops it from another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_env_up_and_down() {
    let work = WorkDir::new("kube-env-test").unwrap();
    let dir = work.path().join("cluster");
    let kube_env = env!("CARGO_BIN_EXE_kube-env");
    let _down = DownOnDrop(&dir);
    let up = Command::new(kube_env).arg("up").arg(&dir).output().unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let stdout = String::from_utf8(up.stdout).unwrap();
    let kubeconfig = dir.canonicalize().unwrap().join("kubeconfig");
    assert!(
        stdout.contains(&format!("export KUBECONFIG='{}'", kubeconfig.display())),
        "{stdout}"
    );

    let pids: Vec<u32> = std::fs::read_to_string(dir.join("pids"))
        .unwrap()
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3);
    let kubectl = KubeTools::get().unwrap().kubectl();
    let namespaces = Command::new(&kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["get", "namespace", "default", "--output=name"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&namespaces.stdout).trim(),
        "namespace/default",
        "{}",
        String::from_utf8_lossy(&namespaces.stderr)
    );

    let down = Command::new(kube_env)
        .arg("down")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    for pid in pids {
        // Not our children: once dead they are reaped by init, or linger as
        // zombies until then.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        assert!(stat.is_empty() || zombie, "pid {pid} still runs: {stat}");
    }
    // A second `down` finds nothing to stop and says so.
    let again = Command::new(kube_env)
        .arg("down")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing running"));
}

/// In a network namespace the control plane listens on that namespace's
/// loopback, where pilot-discovery (started in the same namespace) finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_runs_inside_a_network_namespace() {
    let topology = Topology::new().unwrap();
    let hub = topology.hub().clone();
    let cluster = KubeCluster::start(KubeOptions {
        netns: Some(hub.clone()),
        ..KubeOptions::default()
    })
    .await
    .unwrap();
    let name = cluster
        .kubectl(&["get", "namespace", "default", "--output=name"])
        .await
        .unwrap();
    assert_eq!(name.trim(), "namespace/default");

    let in_hub: Vec<u32> = hub
        .pids()
        .unwrap()
        .iter()
        .map(|p| p.as_raw().unsigned_abs())
        .collect();
    let pids = cluster.pids();
    for (label, pid) in &pids {
        assert!(
            in_hub.contains(pid),
            "{label} ({pid}) is not in {}",
            hub.name()
        );
    }
    cluster.stop().unwrap();
    assert_all_gone(&pids);
}

#[test]
fn pinned_kubectl_and_helm_report_their_versions() {
    let tools = KubeTools::get().unwrap();
    let helm = Command::new(tools.helm())
        .args(["version", "--short"])
        .output()
        .unwrap();
    assert!(
        helm.status.success(),
        "{}",
        String::from_utf8_lossy(&helm.stderr)
    );
    assert!(
        String::from_utf8_lossy(&helm.stdout).starts_with(HELM_VERSION),
        "{}",
        String::from_utf8_lossy(&helm.stdout)
    );
    let kubectl = Command::new(tools.kubectl())
        .args(["version", "--client", "--output=json"])
        .output()
        .unwrap();
    let version = json(&String::from_utf8_lossy(&kubectl.stdout));
    assert_eq!(version["clientVersion"]["gitVersion"], KUBE_VERSION);
    let etcd = Command::new(tools.etcd())
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&etcd.stdout).contains("etcd Version: 3.6."),
        "{}",
        String::from_utf8_lossy(&etcd.stdout)
    );
}
