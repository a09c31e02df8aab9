//! The xDS client against the real pilot-discovery ADS server, in-process on loopback,
//! serving examples/bookinfo: readiness, ACKs, a NACK that keeps the last good config,
//! a push, and a control-plane restart. Each scenario runs over SotW and delta.

// The harness helpers are shared by the tests but are not `#[test]` functions
// themselves, so clippy.toml's allowance for tests does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::Stream;
use strait_pilot::config::file::FileSource;
use strait_pilot::environment::Environment;
use strait_pilot::metrics::Metrics;
use strait_pilot::model::PushContext;
use strait_pilot::push::request::{PushRequest, TriggerReason};
use strait_pilot::xds::ads::{XdsOptions, XdsServer};
use strait_pilot::xds::status::WatchStatus;
use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use strait_proto::envoy::config::core::v3::Node;
use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use strait_proto::envoy::config::listener::v3::{Listener, filter};
use strait_proto::envoy::config::route::v3::RouteConfiguration;
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use strait_proto::google::protobuf::{Struct, Value, value::Kind};
use strait_proto::istio::MeshConfig;
use strait_proto::xds::{any, type_url};
use strait_proxy::xds::{ApiType, Rejected, ResourceUpdate, XdsClient, XdsConfig, XdsHandler};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);
const TYPES: [&str; 4] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
];

fn bookinfo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/bookinfo"))
}

fn outbound(port: u16, name: &str) -> String {
    format!("outbound|{port}||{name}.default.svc.cluster.local")
}

/// A Service with one Pod behind it, as a manifest file for the config directory.
fn write_service(dir: &Path, name: &str, port: u16, ip: &str) {
    let yaml = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default, labels: {{app: {name}}}}}
spec:
  clusterIP: 10.96.0.{octet}
  selector: {{app: {name}}}
  ports:
  - name: http
    port: {port}
    targetPort: 9080
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}-v1, namespace: default, labels: {{app: {name}, version: v1}}}}
spec:
  containers:
  - name: {name}
    image: example/{name}:v1
    ports:
    - containerPort: 9080
status:
  phase: Running
  podIP: {ip}
",
        octet = ip.rsplit('.').next().unwrap(),
    );
    std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
}

// === Pilot ===

/// pilot-discovery's ADS server on loopback, fed from a config directory. Its
/// connections can be cut, which aborting the server task alone would not do.
struct Pilot {
    xds: Arc<XdsServer>,
    env: Environment,
    source: FileSource,
    push: Arc<ArcSwap<PushContext>>,
    addr: SocketAddr,
    serve: JoinHandle<()>,
    sockets: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

type Incoming = Pin<Box<dyn Stream<Item = std::io::Result<TcpStream>> + Send>>;

/// Accepted connections, each with a duplicate of its socket kept so `kill` can shut
/// it down under the server.
fn incoming(listener: TcpListener, sockets: Arc<Mutex<Vec<std::net::TcpStream>>>) -> Incoming {
    Box::pin(futures::stream::unfold(
        (listener, sockets),
        |(listener, sockets)| async move {
            let accepted = match listener.accept().await {
                Ok((stream, _)) => (|| {
                    let stream = stream.into_std()?;
                    sockets.lock().unwrap().push(stream.try_clone()?);
                    TcpStream::from_std(stream)
                })(),
                Err(e) => Err(e),
            };
            Some((accepted, (listener, sockets)))
        },
    ))
}

impl Pilot {
    async fn start(config_dir: &Path, addr: SocketAddr) -> Pilot {
        let mesh = Arc::new(MeshConfig::default());
        let env = Environment::new(mesh, "cluster.local");
        let mut source = FileSource::new(config_dir);
        let scan = source.scan();
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        env.apply_scan(scan);
        let push = Arc::new(ArcSwap::from_pointee(env.build_push_context()));
        let xds = XdsServer::new(
            push.clone(),
            Arc::new(Metrics::new()),
            XdsOptions::default(),
        );
        xds.set_ready();
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let server = tonic::transport::Server::builder()
            .add_service(xds.service())
            .serve_with_incoming(incoming(listener, sockets.clone()));
        let serve = tokio::spawn(async move {
            let _ = server.await;
        });
        Pilot {
            xds,
            env,
            source,
            push,
            addr,
            serve,
            sockets,
        }
    }

    /// Rescans the config directory and pushes the new context, as pilot's debouncer
    /// does after a file change.
    fn rescan_and_push(&mut self) {
        let scan = self.source.scan();
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        self.env.apply_scan(scan);
        let ctx = Arc::new(self.env.build_push_context());
        self.push.store(ctx.clone());
        let mut req = PushRequest::full(TriggerReason::Config, []);
        req.push = Some(ctx);
        self.xds.push(req);
    }

    /// The one proxy's watches, type URL → status.
    fn watches(&self) -> Option<BTreeMap<String, WatchStatus>> {
        let connections = self.xds.connections();
        match connections.as_slice() {
            [conn] => Some(conn.watches.clone()),
            _ => None,
        }
    }

    /// Whether the proxy ACKed the last response of all four types, without errors.
    fn all_acked(&self) -> bool {
        self.watches().is_some_and(|w| {
            TYPES.iter().all(|t| {
                w.get(*t).is_some_and(|s| {
                    s.nonce_sent.is_some()
                        && s.nonce_acked == s.nonce_sent
                        && s.last_error.is_none()
                })
            })
        })
    }

    /// Stops accepting and cuts every connection, as a crashed pilot would.
    async fn kill(self) {
        self.serve.abort();
        let _ = self.serve.await;
        for socket in self.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

// === Handler double ===

/// The config the handler applied; what a snapshot would hold.
#[derive(Debug, Default)]
struct Applied {
    clusters: BTreeMap<String, Cluster>,
    endpoints: BTreeMap<String, ClusterLoadAssignment>,
    listeners: BTreeMap<String, Listener>,
    routes: BTreeMap<String, RouteConfiguration>,
    /// Clusters whose name contains `.0` are rejected with `.1` as the error.
    reject_cluster: Option<(String, String)>,
}

#[derive(Clone, Default)]
struct TestHandler(Arc<Mutex<Applied>>);

impl TestHandler {
    fn read<T>(&self, f: impl FnOnce(&Applied) -> T) -> T {
        f(&self.0.lock().unwrap())
    }
}

fn decode_all<M: prost::Message + prost::Name + Default>(
    updated: Vec<ResourceUpdate>,
) -> Result<Vec<(String, M)>, Vec<Rejected>> {
    let mut out = Vec::new();
    let mut rejected = Vec::new();
    for u in updated {
        match any::unpack::<M>(&u.resource) {
            Ok(m) => out.push((u.name, m)),
            Err(e) => rejected.push(Rejected::new(u.name, e.to_string())),
        }
    }
    if rejected.is_empty() {
        Ok(out)
    } else {
        Err(rejected)
    }
}

/// All-or-nothing: the new state is built aside and only swapped in when nothing failed.
fn merge<M: Clone>(
    current: &BTreeMap<String, M>,
    updated: Vec<(String, M)>,
    removed: &[String],
    replace: bool,
) -> BTreeMap<String, M> {
    let mut next = if replace {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for name in removed {
        next.remove(name);
    }
    next.extend(updated);
    next
}

impl XdsHandler for TestHandler {
    fn apply(
        &mut self,
        type_url: &str,
        updated: Vec<ResourceUpdate>,
        removed: Vec<String>,
        full_state: bool,
    ) -> Result<(), Vec<Rejected>> {
        let mut applied = self.0.lock().unwrap();
        match type_url {
            type_url::CLUSTER => {
                let clusters = decode_all::<Cluster>(updated)?;
                if let Some((pattern, error)) = &applied.reject_cluster {
                    let rejected: Vec<Rejected> = clusters
                        .iter()
                        .filter(|(name, _)| name.contains(pattern.as_str()))
                        .map(|(name, _)| Rejected::new(name, error))
                        .collect();
                    if !rejected.is_empty() {
                        return Err(rejected);
                    }
                }
                applied.clusters = merge(&applied.clusters, clusters, &removed, full_state);
            }
            type_url::LISTENER => {
                let listeners = decode_all::<Listener>(updated)?;
                applied.listeners = merge(&applied.listeners, listeners, &removed, full_state);
            }
            // SotW responses of named types carry only the requested names: merge.
            type_url::ENDPOINT => {
                let endpoints = decode_all::<ClusterLoadAssignment>(updated)?;
                applied.endpoints = merge(&applied.endpoints, endpoints, &removed, false);
            }
            type_url::ROUTE => {
                let routes = decode_all::<RouteConfiguration>(updated)?;
                applied.routes = merge(&applied.routes, routes, &removed, false);
            }
            other => return Err(vec![Rejected::new(other, "unexpected type")]),
        }
        Ok(())
    }

    fn wanted(&self, type_url: &str) -> Vec<String> {
        let applied = self.0.lock().unwrap();
        match type_url {
            type_url::ENDPOINT => applied.clusters.values().filter_map(eds_name).collect(),
            type_url::ROUTE => applied.listeners.values().flat_map(rds_names).collect(),
            _ => Vec::new(),
        }
    }
}

fn eds_name(c: &Cluster) -> Option<String> {
    let eds = DiscoveryType::Eds as i32;
    if c.cluster_discovery_type != Some(ClusterDiscoveryType::Type(eds)) {
        return None;
    }
    let service = c
        .eds_cluster_config
        .as_ref()
        .map(|e| e.service_name.clone());
    Some(
        service
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| c.name.clone()),
    )
}

fn rds_names(l: &Listener) -> Vec<String> {
    l.filter_chains
        .iter()
        .chain(l.default_filter_chain.iter())
        .flat_map(|chain| &chain.filters)
        .filter_map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(config)) => {
                any::unpack::<HttpConnectionManager>(config).ok()
            }
            _ => None,
        })
        .filter_map(|hcm| match hcm.route_specifier {
            Some(RouteSpecifier::Rds(rds)) => Some(rds.route_config_name),
            _ => None,
        })
        .collect()
}

// === Harness ===

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

/// The productpage sidecar, as pilot-agent would describe it.
fn node() -> Node {
    Node {
        id: "sidecar~10.77.0.10~productpage-v1.default~default.svc.cluster.local".into(),
        metadata: Some(Struct {
            fields: [
                ("ISTIO_VERSION".to_string(), string("1.30.0")),
                ("NAMESPACE".to_string(), string("default")),
                ("INSTANCE_IPS".to_string(), string("10.77.0.10")),
            ]
            .into(),
        }),
        ..Node::default()
    }
}

struct Setup {
    dir: tempfile::TempDir,
    pilot: Pilot,
    client: XdsClient,
    handler: TestHandler,
}

async fn setup(api: ApiType) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(bookinfo()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let pilot = Pilot::start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let handler = TestHandler::default();
    let mut config = XdsConfig::new(pilot.addr.to_string(), api, node());
    config.backoff_base = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(500);
    let client = XdsClient::spawn(config, handler.clone()).unwrap();
    tokio::time::timeout(WAIT, client.wait_ready())
        .await
        .expect("client never became ready");
    Setup {
        dir,
        pilot,
        client,
        handler,
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === Scenarios ===

async fn initial_config_is_applied_and_acked(api: ApiType) {
    let s = setup(api).await;
    eventually("all four types ACKed", || s.pilot.all_acked()).await;
    let connections = s.pilot.xds.connections();
    assert_eq!(connections[0].delta, api == ApiType::DeltaGrpc);

    let reviews = outbound(9080, "reviews");
    s.handler.read(|a| {
        assert!(a.clusters.contains_key(&reviews), "{:?}", a.clusters.keys());
        // Readiness waited for every EDS cluster's endpoints and every route.
        let wanted_eds: BTreeSet<String> = a.clusters.values().filter_map(eds_name).collect();
        let have_eds: BTreeSet<String> = a.endpoints.keys().cloned().collect();
        assert!(
            wanted_eds.is_subset(&have_eds),
            "{wanted_eds:?} vs {have_eds:?}"
        );
        let endpoints: usize = a.endpoints[&reviews]
            .endpoints
            .iter()
            .map(|l| l.lb_endpoints.len())
            .sum();
        assert_eq!(endpoints, 3, "reviews v1, v2, v3");
        assert!(a.routes.contains_key("9080"), "{:?}", a.routes.keys());
        assert!(!a.listeners.is_empty());
    });
    // Subscriptions follow the config: pilot sees exactly the EDS names the clusters need.
    let watches = s.pilot.watches().unwrap();
    let subscribed: BTreeSet<String> = watches[type_url::ENDPOINT].names.iter().cloned().collect();
    let wanted: BTreeSet<String> = s
        .handler
        .read(|a| a.clusters.values().filter_map(eds_name).collect());
    assert_eq!(subscribed, wanted);

    let stats = s.client.stats();
    assert!(stats.is_connected());
    assert!(stats.cds.successes() >= 1 && stats.lds.successes() >= 1);
    assert!(stats.eds.successes() >= 1 && stats.rds.successes() >= 1);
    assert_eq!(stats.cds.rejections(), 0);
    s.client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_initial_config_is_applied_and_acked() {
    initial_config_is_applied_and_acked(ApiType::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_initial_config_is_applied_and_acked() {
    initial_config_is_applied_and_acked(ApiType::DeltaGrpc).await;
}

async fn push_arrives_and_rejection_keeps_last_good(api: ApiType) {
    let mut s = setup(api).await;

    // A new service on a new port: new cluster, endpoints, listener and route.
    write_service(s.dir.path(), "extra", 7070, "10.77.0.50");
    s.pilot.rescan_and_push();
    let extra = outbound(7070, "extra");
    eventually("the pushed service reaches the client", || {
        s.handler.read(|a| {
            a.clusters.contains_key(&extra)
                && a.endpoints.contains_key(&extra)
                && a.routes.contains_key("7070")
        })
    })
    .await;
    eventually("the push is ACKed", || s.pilot.all_acked()).await;

    // The next push carries a cluster the handler refuses.
    let error = "connect_timeout: rejected by the test";
    s.handler.0.lock().unwrap().reject_cluster =
        Some(("||another.".to_string(), error.to_string()));
    write_service(s.dir.path(), "another", 7070, "10.77.0.51");
    s.pilot.rescan_and_push();
    let another = outbound(7070, "another");
    eventually("pilot records the NACK", || {
        s.pilot.watches().is_some_and(|w| {
            w[type_url::CLUSTER]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains(&another) && e.contains(error))
        })
    })
    .await;
    let cds = &s.pilot.watches().unwrap()[type_url::CLUSTER];
    assert_ne!(
        cds.nonce_acked, cds.nonce_sent,
        "the last CDS response was not ACKed"
    );
    s.handler.read(|a| {
        assert!(
            a.clusters.contains_key(&extra),
            "the last good clusters stay"
        );
        assert!(!a.clusters.contains_key(&another));
        assert!(a.clusters.contains_key(&outbound(9080, "reviews")));
    });
    assert!(s.client.stats().cds.rejections() >= 1);
    assert!(s.client.is_ready());

    // Once the handler accepts it again, the next push goes through.
    s.handler.0.lock().unwrap().reject_cluster = None;
    write_service(s.dir.path(), "third", 7070, "10.77.0.52");
    s.pilot.rescan_and_push();
    let third = outbound(7070, "third");
    eventually("the fixed config is applied", || {
        s.handler.read(|a| a.clusters.contains_key(&third))
    })
    .await;
    if api == ApiType::Grpc {
        // SotW resends everything; delta only what changed since pilot last sent it,
        // and the refused cluster has not changed.
        s.handler
            .read(|a| assert!(a.clusters.contains_key(&another)));
    }
    eventually("everything ACKed again", || s.pilot.all_acked()).await;
    s.client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_push_arrives_and_rejection_keeps_last_good() {
    push_arrives_and_rejection_keeps_last_good(ApiType::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_push_arrives_and_rejection_keeps_last_good() {
    push_arrives_and_rejection_keeps_last_good(ApiType::DeltaGrpc).await;
}

async fn reconnects_after_the_control_plane_restarts(api: ApiType) {
    let s = setup(api).await;
    eventually("all four types ACKed", || s.pilot.all_acked()).await;
    let stats = s.client.stats();
    let before = s
        .handler
        .read(|a| a.clusters.keys().cloned().collect::<BTreeSet<_>>());
    let addr = s.pilot.addr;

    s.pilot.kill().await;
    eventually("the client notices", || !stats.is_connected()).await;
    assert!(stats.cds.failures() >= 1);
    let during = s
        .handler
        .read(|a| a.clusters.keys().cloned().collect::<BTreeSet<_>>());
    assert_eq!(during, before, "the last good config keeps serving");
    assert!(s.client.is_ready());

    // The restarted control plane has one more service than the client holds.
    write_service(s.dir.path(), "newcomer", 9080, "10.77.0.60");
    let pilot = Pilot::start(s.dir.path(), addr).await;
    let newcomer = outbound(9080, "newcomer");
    eventually("the client reconnects and catches up", || {
        s.handler
            .read(|a| a.clusters.contains_key(&newcomer) && a.endpoints.contains_key(&newcomer))
    })
    .await;
    eventually("the new server sees every type ACKed", || pilot.all_acked()).await;
    assert!(stats.is_connected());
    s.handler.read(|a| {
        let now: BTreeSet<String> = a.clusters.keys().cloned().collect();
        assert!(
            before.is_subset(&now),
            "nothing was lost across the restart"
        );
    });
    s.client.abort();
    pilot.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_reconnects_after_the_control_plane_restarts() {
    reconnects_after_the_control_plane_restarts(ApiType::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_reconnects_after_the_control_plane_restarts() {
    reconnects_after_the_control_plane_restarts(ApiType::DeltaGrpc).await;
}
