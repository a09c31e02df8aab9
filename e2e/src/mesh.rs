//! A whole test mesh from `examples/bookinfo`: every Pod gets a network namespace and a
//! backend answering with its app name and version, pilot-discovery serves the example
//! config (pod IPs rewritten to the namespaces' addresses), and a stock Envoy (or
//! strait-proxy) runs as the sidecar of `productpage`, as Istio's proxy user, with the
//! service VIP range redirected into its 15001 for every other user.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_yaml::Value;

use crate::backend::Backend;
use crate::capture;
use crate::client::HttpClient;
use crate::envoy::{AdsApi, Bootstrap, Envoy, SidecarNode};
use crate::netns::{Netns, Topology};
use crate::pilot::{Pilot, PilotOptions};
use crate::sidecar::PROXY_UID;

/// Service VIPs live here (`clusterIP`s in the example Services).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The pod that carries the sidecar and sends the test traffic.
pub const CLIENT_POD: &str = "productpage-v1";
/// Port every example workload serves on.
pub const APP_PORT: u16 = 9080;

/// The example directory in this repository.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo")
}

/// A Pod from the example: name, labels and the address the example gave it.
#[derive(Debug, Clone)]
pub struct ExamplePod {
    pub name: String,
    pub app: String,
    pub version: String,
    pub example_ip: String,
}

/// Reads the Pods out of the example manifests.
pub fn example_pods(dir: &Path) -> Result<Vec<ExamplePod>> {
    let mut pods = Vec::new();
    for (_, docs) in read_manifests(dir)? {
        for doc in docs {
            if doc["kind"].as_str() != Some("Pod") {
                continue;
            }
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            pods.push(ExamplePod {
                name: s(&doc["metadata"]["name"]),
                app: s(&doc["metadata"]["labels"]["app"]),
                version: s(&doc["metadata"]["labels"]["version"]),
                example_ip: s(&doc["status"]["podIP"]),
            });
        }
    }
    Ok(pods)
}

fn read_manifests(dir: &Path) -> Result<Vec<(String, Vec<Value>)>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path)?;
        let mut docs = Vec::new();
        for de in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(de)
                .with_context(|| format!("parsing {}", path.display()))?;
            if !v.is_null() {
                docs.push(v);
            }
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((name, docs));
    }
    Ok(out)
}

/// Rewrites the example's pod IPs to the given addresses, file by file.
fn rewrite_manifests(
    dir: &Path,
    ips: &BTreeMap<String, Ipv4Addr>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, docs) in read_manifests(dir)? {
        let mut texts = Vec::new();
        for mut doc in docs {
            if doc["kind"].as_str() == Some("Pod") {
                let pod = doc["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if let (Some(ip), Some(status)) = (ips.get(&pod), doc.get_mut("status")) {
                    status["podIP"] = Value::String(ip.to_string());
                }
            }
            texts.push(serde_yaml::to_string(&doc)?);
        }
        out.push((name, texts.join("---\n")));
    }
    Ok(out)
}

/// Replaces `${ip:<workload>}` with that workload's address.
fn substitute_ips(text: &str, ips: &BTreeMap<String, Ipv4Addr>) -> String {
    let mut text = text.to_string();
    for (name, ip) in ips {
        text = text.replace(&format!("${{ip:{name}}}"), &ip.to_string());
    }
    text
}

/// Which proxy runs as the sidecar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SidecarKind {
    /// A stock Envoy (the reference).
    #[default]
    Envoy,
    /// strait-proxy, started with the same bootstrap and flags.
    Strait,
}

/// A Service with one `<app>-v1` Pod behind it, for `MeshOptions::extra_configs` together
/// with `extra_workloads: vec!["<app>-v1"]` (the Pod's IP is that workload's address).
/// `port_name` decides the protocol pilot-discovery gives the port (`http`, `grpc`,
/// `tcp-...`).
pub fn single_pod_service(app: &str, cluster_ip: Ipv4Addr, port_name: &str, port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {app}, namespace: default, labels: {{app: {app}}}}}
spec:
  clusterIP: {cluster_ip}
  selector: {{app: {app}}}
  ports:
  - {{name: {port_name}, port: {port}, targetPort: {port}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: {app}-v1
  namespace: default
  labels: {{app: {app}, version: v1}}
spec:
  containers:
  - name: {app}
    image: example/{app}:v1
    ports: [{{containerPort: {port}}}]
status: {{phase: Running, podIP: "${{ip:{app}-v1}}"}}
"#
    )
}

/// Options for [`BookinfoMesh::start`].
#[derive(Debug, Clone, Default)]
pub struct MeshOptions {
    pub api: AdsApi,
    pub sidecar: SidecarKind,
    /// The example directory to serve; [`examples_dir`] when `None`.
    pub examples: Option<PathBuf>,
    /// Extra files for the config directory, written after the example's.
    pub extra_configs: Vec<(String, String)>,
    /// Leave out the example's VirtualServices (tests that bring their own).
    pub without_virtual_services: bool,
    pub pilot_env: Vec<(String, String)>,
    /// Extra pilot-discovery flags (e.g. `--meshConfig=FILE`).
    pub pilot_args: Vec<String>,
    /// Further namespaces, made before pilot-discovery starts so that `extra_configs`
    /// can give their addresses to Pods: `${ip:<name>}` in a config becomes the
    /// address of workload `<name>`. The test runs whatever serves in them.
    pub extra_workloads: Vec<String>,
    /// Node metadata of the sidecar (e.g. `IDLE_TIMEOUT`), as strings.
    pub sidecar_metadata: Vec<(String, String)>,
}

pub struct BookinfoMesh {
    // Drop order: processes first, then the namespaces they live in.
    pub envoy: Envoy,
    pub sidecar: SidecarKind,
    pub pilot: Pilot,
    pub backends: BTreeMap<String, Backend>,
    pub client: HttpClient,
    pub pods: BTreeMap<String, Netns>,
    pub topology: Topology,
}

impl BookinfoMesh {
    pub async fn start(options: MeshOptions) -> Result<BookinfoMesh> {
        let dir = options.examples.clone().unwrap_or_else(examples_dir);
        let topology = Topology::new()?;
        let mut pods = BTreeMap::new();
        let mut backends = BTreeMap::new();
        let mut ips = BTreeMap::new();
        for pod in example_pods(&dir)? {
            let ns = topology.add_workload(&pod.name)?;
            ips.insert(pod.name.clone(), ns.ip());
            if pod.name != CLIENT_POD {
                let backend = Backend::start(&ns, APP_PORT, &pod.app, &pod.version)?;
                backends.insert(pod.name.clone(), backend);
            }
            pods.insert(pod.name.clone(), ns);
        }
        for name in &options.extra_workloads {
            let ns = topology.add_workload(name)?;
            ips.insert(name.clone(), ns.ip());
            pods.insert(name.clone(), ns);
        }
        let Some(client_ns) = pods.get(CLIENT_POD).cloned() else {
            bail!("the example has no pod {CLIENT_POD}");
        };

        let mut pilot_options = PilotOptions::default();
        for (name, text) in rewrite_manifests(&dir, &ips)? {
            if options.without_virtual_services && name.contains("virtual-service") {
                continue;
            }
            pilot_options = pilot_options.config(&name, &text);
        }
        for (name, text) in &options.extra_configs {
            pilot_options = pilot_options.config(name, &substitute_ips(text, &ips));
        }
        for arg in &options.pilot_args {
            pilot_options = pilot_options.arg(arg);
        }
        for (k, v) in &options.pilot_env {
            pilot_options = pilot_options.env(k, v);
        }
        let pilot = Pilot::start(topology.hub(), pilot_options).await?;

        capture_outbound(&client_ns)?;
        let envoy = start_sidecar_with(
            &client_ns,
            CLIENT_POD,
            "productpage",
            pilot.grpc_addr(),
            (options.api, options.sidecar),
            &options.sidecar_metadata,
        )
        .await?;
        let client = HttpClient::new(&client_ns);
        Ok(BookinfoMesh {
            envoy,
            sidecar: options.sidecar,
            pilot,
            backends,
            client,
            pods,
            topology,
        })
    }

    /// The VIP:port of an example service.
    pub fn service_addr(name: &str) -> SocketAddr {
        let last = match name {
            "productpage" => 10,
            "reviews" => 11,
            "ratings" => 12,
            _ => 13,
        };
        SocketAddr::from(([10, 96, 0, last], APP_PORT))
    }

    /// Waits until the sidecar has the listeners, clusters and routes the example needs,
    /// and none of them is still warming (a warming listener does not take traffic yet).
    pub async fn wait_configured(&self, timeout: Duration) -> Result<()> {
        self.envoy
            .wait_for("sidecar configured by pilot-discovery", timeout, |dump| {
                let text = dump.to_string();
                text.contains("virtualOutbound")
                    && text.contains("outbound|9080|v1|reviews.default.svc.cluster.local")
                    && text.contains("\"9080\"")
            })
            .await?;
        crate::wait_until("sidecar ready", timeout, || async {
            let ready = self.envoy.admin_get("/ready").await?;
            if ready.status != 200 {
                return Ok(false);
            }
            if self.sidecar == SidecarKind::Strait {
                return Ok(true);
            }
            // Envoy's /ready goes LIVE before RDS-dependent listeners finish warming.
            let stats = self.envoy.stats().await?;
            let stat = |name: &str| crate::envoy::parse_stat(&stats, name).unwrap_or(0);
            Ok(stat("listener_manager.total_listeners_warming") == 0
                && stat("listener_manager.total_listeners_active") >= 3
                && stat("cluster_manager.warming_clusters") == 0
                && stat("http.outbound_0.0.0.0_9080;.rds.9080.update_success") > 0)
        })
        .await
    }
}

/// Starts a stock Envoy as the sidecar of `pod` with Istio's node identity.
pub async fn start_sidecar(
    ns: &Netns,
    pod: &str,
    app: &str,
    pilot: SocketAddr,
    api: AdsApi,
) -> Result<Envoy> {
    start_sidecar_kind(ns, pod, app, pilot, api, SidecarKind::Envoy).await
}

/// Starts the chosen proxy as the sidecar of `pod`, with the same bootstrap either way.
pub async fn start_sidecar_kind(
    ns: &Netns,
    pod: &str,
    app: &str,
    pilot: SocketAddr,
    api: AdsApi,
    kind: SidecarKind,
) -> Result<Envoy> {
    start_sidecar_with(ns, pod, app, pilot, (api, kind), &[]).await
}

/// [`start_sidecar_kind`] with extra node metadata (string values).
pub async fn start_sidecar_with(
    ns: &Netns,
    pod: &str,
    app: &str,
    pilot: SocketAddr,
    (api, kind): (AdsApi, SidecarKind),
    metadata: &[(String, String)],
) -> Result<Envoy> {
    let mut node = SidecarNode::new(ns.ip(), pod, "default")
        .label("app", app)
        .label("version", "v1");
    for (k, v) in metadata {
        node = node.metadata(k, serde_json::Value::String(v.clone()));
    }
    let bootstrap = Bootstrap::new(node).with_ads(pilot, api);
    let binary = match kind {
        SidecarKind::Envoy => crate::bins::envoy()?,
        SidecarKind::Strait => crate::bins::strait("strait-proxy")?,
    };
    let (_dir, wrapper) = as_proxy_user(&binary)?;
    Envoy::start_binary(ns, &bootstrap, &wrapper, &[]).await
}

/// Redirects the pod's outbound TCP to the service range into the sidecar's 15001, except
/// the sidecar's own (UID 1337), as `istio-iptables` does. Without that exception a
/// connection the sidecar passes through to a service address (PassthroughCluster, for
/// bytes that are not HTTP) would be captured again, and again.
fn capture_outbound(ns: &Netns) -> Result<()> {
    let uid = PROXY_UID.to_string();
    let port = capture::OUTBOUND_CAPTURE_PORT.to_string();
    capture::iptables(
        ns,
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            SERVICE_CIDR,
            "-m",
            "owner",
            "!",
            "--uid-owner",
            &uid,
            "-j",
            "REDIRECT",
            "--to-ports",
            &port,
        ],
    )
    .map(|_| ())
}

/// A script that runs `binary` with its arguments as Istio's proxy user ([`PROXY_UID`]),
/// exec'd in place, so the process id is the proxy's own. The directory holding it is
/// removed on drop.
fn as_proxy_user(binary: &Path) -> Result<(crate::workdir::WorkDir, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::workdir::WorkDir::new("sidecar-user")?;
    let binary = binary
        .to_str()
        .filter(|b| !b.contains('\''))
        .with_context(|| format!("{} cannot be quoted for sh", binary.display()))?;
    let script = dir.write(
        "proxy",
        &format!(
            "#!/bin/sh\nexec setpriv --reuid={PROXY_UID} --regid={PROXY_UID} --clear-groups '{binary}' \"$@\"\n"
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok((dir, script))
}
