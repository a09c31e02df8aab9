//! The debug and monitoring HTTP servers, driven over real sockets with a fake
//! `DebugSource` built from a real PushContext.

// The fixtures and the HTTP helper are shared by the tests but are not `#[test]`
// functions themselves, so clippy.toml's allowance for tests does not reach them.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};
use strait_pilot::debug::{DebugSource, debug_router, monitoring_router};
use strait_pilot::metrics::Metrics;
use strait_pilot::model::{
    ConfigSnapshot, Endpoint, EndpointIndex, HealthStatus, IstioConfig, Locality, Protocol,
    Provider, Proxy, PushContext, PushContextInput, Resolution, Service, ServicePort, ShardKey,
    Visibility, metric,
};
use strait_pilot::xds::status::{ConnectionStatus, WatchStatus};
use strait_proto::istio;
use strait_proto::xds::type_url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REVIEWS: &str = "reviews.default.svc.cluster.local";
const REVIEWS_CLUSTER: &str = "outbound|9080||reviews.default.svc.cluster.local";
const NACK: &str = "Error adding/updating listener(s) 0.0.0.0_9080: duplicate listener";
const VERSION: &str = "2024-01-01T00:00:00Z/7";

struct FakeSource {
    ready: Mutex<Result<(), String>>,
    push: Arc<PushContext>,
    connections: Vec<ConnectionStatus>,
    pushes: AtomicUsize,
    metrics: Metrics,
}

impl DebugSource for FakeSource {
    fn ready(&self) -> Result<(), String> {
        self.ready.lock().clone()
    }
    fn push_context(&self) -> Arc<PushContext> {
        self.push.clone()
    }
    fn connections(&self) -> Vec<ConnectionStatus> {
        self.connections.clone()
    }
    fn trigger_push(&self) -> usize {
        self.pushes.fetch_add(1, Ordering::SeqCst);
        self.connections.len()
    }
    fn configs(&self) -> Vec<IstioConfig> {
        Vec::new()
    }
    fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
    fn mesh_config(&self) -> Value {
        json!({"rootNamespace": "istio-system"})
    }
}

fn reviews_service() -> Arc<Service> {
    Arc::new(Service {
        hostname: REVIEWS.into(),
        name: "reviews".into(),
        namespace: "default".into(),
        addresses: vec!["10.96.0.10".parse().unwrap()],
        ports: vec![ServicePort {
            name: "http".into(),
            port: 9080,
            protocol: Protocol::Http,
            target_port: Some(9080),
        }],
        resolution: Resolution::ClientSideLb,
        mesh_external: false,
        visibility: Visibility::Public,
        labels: BTreeMap::from([("app".to_string(), "reviews".to_string())]),
        provider: Provider::Kubernetes,
        external_name: None,
        creation_time: None,
        service_accounts: Vec::new(),
    })
}

fn reviews_endpoint() -> Endpoint {
    Endpoint {
        address: "10.1.0.7".parse().unwrap(),
        endpoint_port: 9080,
        service_port_name: "http".into(),
        labels: BTreeMap::from([("version".to_string(), "v1".to_string())]),
        locality: Locality::parse("us-east1/us-east1-b"),
        weight: 0,
        health: HealthStatus::Healthy,
        service_account: "spiffe://cluster.local/ns/default/sa/reviews".into(),
        namespace: "default".into(),
        workload_name: "reviews-v1".into(),
        tls_mode: "istio".into(),
    }
}

fn push_context() -> Arc<PushContext> {
    let endpoints = Arc::new(EndpointIndex::new());
    endpoints.update(
        &REVIEWS.into(),
        "default",
        ShardKey::kubernetes(),
        vec![reviews_endpoint()],
    );
    let push = PushContext::build(PushContextInput {
        version: VERSION.into(),
        services: vec![reviews_service()],
        configs: ConfigSnapshot::default(),
        config_errors: Vec::new(),
        mesh: Arc::new(istio::MeshConfig::default()),
        endpoints,
        domain_suffix: "cluster.local".into(),
    });
    push.status.add(
        metric::EDS_NO_INSTANCES,
        "outbound|80||empty.default.svc.cluster.local",
        "no endpoints",
    );
    Arc::new(push)
}

fn proxy(node_id: &str, namespace: &str, labels: Value) -> Arc<Proxy> {
    let meta = json!({
        "NAMESPACE": namespace,
        "LABELS": labels,
        "ISTIO_VERSION": "1.30.0",
        "CLUSTER_ID": "Kubernetes",
    });
    Arc::new(
        Proxy::from_node(
            node_id,
            meta.as_object().unwrap().clone(),
            Locality::parse("us-east1/us-east1-b"),
        )
        .unwrap(),
    )
}

fn acked(names: &[&str], nonce: &str) -> WatchStatus {
    WatchStatus {
        names: names.iter().map(|n| n.to_string()).collect(),
        wildcard: names.is_empty(),
        nonce_sent: Some(nonce.into()),
        nonce_acked: Some(nonce.into()),
        version_sent: Some(VERSION.into()),
        version_acked: Some(VERSION.into()),
        sent_time: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_100)),
        last_error: None,
    }
}

fn connections() -> Vec<ConnectionStatus> {
    let reviews = ConnectionStatus {
        connection_id: "reviews-v1-abc.default-1".into(),
        connected_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        address: "10.1.0.7:41234".into(),
        proxy: proxy(
            "sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local",
            "default",
            json!({"app": "reviews", "version": "v1"}),
        ),
        delta: false,
        watches: BTreeMap::from([
            (type_url::CLUSTER.to_string(), acked(&[], "c1")),
            (type_url::LISTENER.to_string(), acked(&[], "l1")),
            (type_url::ROUTE.to_string(), acked(&["9080"], "r1")),
            (
                type_url::ENDPOINT.to_string(),
                acked(&[REVIEWS_CLUSTER], "e1"),
            ),
        ]),
    };
    let mut nacked_lds = acked(&[], "l3");
    nacked_lds.nonce_acked = Some("l2".into());
    nacked_lds.last_error = Some(NACK.into());
    let productpage = ConnectionStatus {
        connection_id: "productpage-v1-xyz.shop-2".into(),
        connected_at: UNIX_EPOCH + Duration::from_secs(1_700_000_050),
        address: "10.1.0.9:51000".into(),
        proxy: proxy(
            "sidecar~10.1.0.9~productpage-v1-xyz.shop~shop.svc.cluster.local",
            "shop",
            json!({"app": "productpage"}),
        ),
        delta: false,
        watches: BTreeMap::from([
            (type_url::CLUSTER.to_string(), acked(&[], "c2")),
            (type_url::LISTENER.to_string(), nacked_lds),
        ]),
    };
    // Deliberately unsorted: listings are sorted by connection ID.
    vec![reviews, productpage]
}

fn fake_source() -> Arc<FakeSource> {
    let metrics = Metrics::new();
    metrics.inc_xds_push("cds");
    Arc::new(FakeSource {
        ready: Mutex::new(Err("discovery caches not synced".into())),
        push: push_context(),
        connections: connections(),
        pushes: AtomicUsize::new(0),
        metrics,
    })
}

struct Servers {
    debug: SocketAddr,
    monitoring: SocketAddr,
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

async fn start(source: Arc<FakeSource>) -> Servers {
    let source: Arc<dyn DebugSource> = source;
    Servers {
        debug: serve(debug_router(source.clone())).await,
        monitoring: serve(monitoring_router(source)).await,
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        assert_eq!(self.status, 200, "body: {}", self.body);
        assert_eq!(
            self.headers.get("content-type").map(String::as_str),
            Some("application/json"),
            "body: {}",
            self.body
        );
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection.
async fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

fn type_of(v: &Value) -> &str {
    v["@type"].as_str().unwrap()
}

#[tokio::test]
async fn ready_follows_the_source() {
    let source = fake_source();
    let servers = start(source.clone()).await;

    let reply = get(servers.debug, "/ready").await;
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("discovery caches not synced"));

    *source.ready.lock() = Ok(());
    let reply = get(servers.debug, "/ready").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "");

    // `/ready` belongs to the debug port only, as in Istio.
    assert_eq!(get(servers.monitoring, "/ready").await.status, 404);
}

#[tokio::test]
async fn adsz_lists_clients_filters_and_pushes() {
    let source = fake_source();
    let servers = start(source.clone()).await;

    let all = get(servers.debug, "/debug/adsz").await.json();
    assert_eq!(all["totalClients"], 2);
    let clients = all["clients"].as_array().unwrap();
    assert_eq!(clients[0]["connectionId"], "productpage-v1-xyz.shop-2");
    let reviews = &clients[1];
    assert_eq!(reviews["connectionId"], "reviews-v1-abc.default-1");
    assert_eq!(reviews["connectedAt"], "2023-11-14T22:13:20Z");
    assert_eq!(reviews["address"], "10.1.0.7:41234");
    assert_eq!(reviews["labels"]["version"], "v1");
    assert_eq!(reviews["metadata"]["ISTIO_VERSION"], "1.30.0");
    assert_eq!(
        reviews["locality"],
        json!({"region": "us-east1", "zone": "us-east1-b"})
    );
    assert_eq!(reviews["watches"][type_url::ROUTE], json!(["9080"]));
    assert_eq!(reviews["watches"][type_url::CLUSTER], json!([]));

    let one = get(servers.debug, "/debug/adsz?proxyID=reviews")
        .await
        .json();
    assert_eq!(one["totalClients"], 1);
    assert_eq!(
        one["clients"][0]["connectionId"],
        "reviews-v1-abc.default-1"
    );

    let missing = get(servers.debug, "/debug/adsz?proxyID=nothere").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing
            .body
            .starts_with("Proxy not connected to this Pilot instance")
    );

    let pushed = get(servers.debug, "/debug/adsz?push=true").await;
    assert_eq!(pushed.status, 200);
    assert_eq!(pushed.body, "Pushed to 2 servers\n");
    assert_eq!(source.pushes.load(Ordering::SeqCst), 1);

    let conns = get(servers.monitoring, "/debug/connections").await.json();
    assert_eq!(conns["totalClients"], 2);
    assert_eq!(
        conns["clients"][1],
        json!({
            "connectionId": "reviews-v1-abc.default-1",
            "connectedAt": "2023-11-14T22:13:20Z",
            "address": "10.1.0.7:41234",
        })
    );
}

#[tokio::test]
async fn syncz_shows_nonces_and_nacks() {
    let servers = start(fake_source()).await;

    let all = get(servers.debug, "/debug/syncz").await.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    let reviews = all
        .iter()
        .find(|s| s["proxy"] == "reviews-v1-abc.default")
        .unwrap();
    assert_eq!(reviews["cluster_id"], "Kubernetes");
    assert_eq!(reviews["proxy_type"], "sidecar");
    assert_eq!(reviews["istio_version"], "1.30.0");
    assert_eq!(reviews["cluster_sent"], "c1");
    assert_eq!(reviews["cluster_acked"], "c1");
    assert_eq!(reviews["listener_acked"], "l1");
    assert_eq!(reviews["route_sent"], "r1");
    assert_eq!(reviews["endpoint_acked"], "e1");
    let rds = &reviews["resources"][type_url::ROUTE];
    assert_eq!(rds["sent"], "r1");
    assert_eq!(rds["acked"], "r1");
    assert_eq!(rds["sentTime"], "2023-11-14T22:15:00Z");
    assert!(rds.get("lastError").is_none());

    let shop = get(servers.debug, "/debug/syncz?namespace=shop")
        .await
        .json();
    let shop = shop.as_array().unwrap();
    assert_eq!(shop.len(), 1);
    assert_eq!(shop[0]["proxy"], "productpage-v1-xyz.shop");
    assert_eq!(shop[0]["listener_sent"], "l3");
    assert_eq!(shop[0]["listener_acked"], "l2");
    assert!(shop[0].get("route_sent").is_none());
    assert_eq!(shop[0]["resources"][type_url::LISTENER]["lastError"], NACK);
}

#[tokio::test]
async fn config_dump_requires_a_connected_proxy() {
    let servers = start(fake_source()).await;

    let reply = get(servers.debug, "/debug/config_dump").await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.body,
        "You must provide a proxyID in the query string\n"
    );

    let reply = get(servers.debug, "/debug/config_dump?proxyID=ratings").await;
    assert_eq!(reply.status, 404);
    assert!(
        reply
            .body
            .starts_with("Proxy not connected to this Pilot instance")
    );
}

#[tokio::test]
async fn config_dump_has_envoy_admin_layout() {
    let servers = start(fake_source()).await;

    let dump = get(servers.debug, "/debug/config_dump?proxyID=reviews-v1")
        .await
        .json();
    let configs = dump["configs"].as_array().unwrap();
    let types: Vec<&str> = configs.iter().map(type_of).collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
            "type.googleapis.com/envoy.admin.v3.EcdsConfigDump",
        ]
    );

    let clusters = &configs[1];
    assert_eq!(clusters["versionInfo"], VERSION);
    let active = clusters["dynamicActiveClusters"].as_array().unwrap();
    let reviews = active
        .iter()
        .find(|c| c["cluster"]["name"] == REVIEWS_CLUSTER)
        .unwrap_or_else(|| panic!("no {REVIEWS_CLUSTER} in {clusters}"));
    assert_eq!(reviews["versionInfo"], VERSION);
    assert_eq!(
        type_of(&reviews["cluster"]),
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    );

    let listeners = configs[2]["dynamicListeners"].as_array().unwrap();
    assert!(!listeners.is_empty());
    for l in listeners {
        assert_eq!(l["activeState"]["listener"]["name"], l["name"]);
        assert_eq!(l["activeState"]["versionInfo"], VERSION);
    }

    let routes = configs[4]["dynamicRouteConfigs"].as_array().unwrap();
    assert!(
        routes.iter().any(|r| r["routeConfig"]["name"] == "9080"),
        "no route 9080 in {}",
        configs[4]
    );

    // EDS only on request, right after the clusters.
    let with_eds = get(
        servers.debug,
        "/debug/config_dump?proxyID=reviews-v1&include_eds",
    )
    .await
    .json();
    let configs = with_eds["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 8);
    assert_eq!(
        type_of(&configs[2]),
        "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
    );
    let eds = configs[2]["dynamicEndpointConfigs"].as_array().unwrap();
    assert!(
        eds.iter()
            .any(|e| e["endpointConfig"]["clusterName"] == REVIEWS_CLUSTER),
        "no {REVIEWS_CLUSTER} in {}",
        configs[2]
    );
}

#[tokio::test]
async fn config_dump_types_returns_raw_resources() {
    let servers = start(fake_source()).await;

    let dump = get(
        servers.debug,
        "/debug/config_dump?proxyID=reviews&types=cds",
    )
    .await
    .json();
    let configs = dump["configs"].as_array().unwrap();
    assert!(!configs.is_empty());
    assert!(
        configs
            .iter()
            .all(|c| type_of(c) == "type.googleapis.com/envoy.config.cluster.v3.Cluster")
    );
    assert!(configs.iter().any(|c| c["name"] == REVIEWS_CLUSTER));

    let edsz = get(servers.monitoring, "/debug/edsz?proxyID=reviews")
        .await
        .json();
    let configs = edsz["configs"].as_array().unwrap();
    assert!(configs.iter().any(|c| c["clusterName"] == REVIEWS_CLUSTER
        && type_of(c) == "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"));
}

#[tokio::test]
async fn registry_and_endpoint_shards() {
    let servers = start(fake_source()).await;

    let services = get(servers.debug, "/debug/registryz").await.json();
    let services = services.as_array().unwrap();
    assert_eq!(services.len(), 1);
    let svc = &services[0];
    assert_eq!(svc["hostname"], REVIEWS);
    assert_eq!(svc["Attributes"]["Namespace"], "default");
    assert_eq!(svc["Attributes"]["Name"], "reviews");
    assert_eq!(svc["Attributes"]["ServiceRegistry"], "Kubernetes");
    assert_eq!(
        svc["ports"],
        json!([{"name": "http", "port": 9080, "protocol": "HTTP"}])
    );
    assert_eq!(
        svc["clusterVIPs"]["Addresses"]["Kubernetes"],
        json!(["10.96.0.10"])
    );
    assert_eq!(svc["defaultAddress"], "10.96.0.10");
    assert_eq!(svc["Resolution"], 0);
    assert_eq!(svc["MeshExternal"], false);

    for path in ["/debug/endpointShardz", "/debug/endpointz"] {
        let shards = get(servers.debug, path).await.json();
        let by_ns = &shards[REVIEWS]["default"];
        let eps = by_ns["Shards"]["Kubernetes/Kubernetes"].as_array().unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0]["Addresses"], json!(["10.1.0.7"]));
        assert_eq!(eps[0]["EndpointPort"], 9080);
        assert_eq!(eps[0]["ServicePortName"], "http");
        assert_eq!(eps[0]["TLSMode"], "istio");
        assert_eq!(eps[0]["HealthStatus"], 1);
        assert_eq!(eps[0]["Locality"]["Label"], "us-east1/us-east1-b");
        assert_eq!(
            by_ns["ServiceAccounts"],
            json!({"spiffe://cluster.local/ns/default/sa/reviews": {}})
        );
    }

    let instances = get(servers.debug, "/debug/instancesz").await.json();
    let targets = instances["reviews-v1-abc.default"].as_array().unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["Service"]["hostname"], REVIEWS);
    assert_eq!(targets[0]["Port"]["port"], 9080);
    assert_eq!(targets[0]["Port"]["TargetPort"], 9080);
    assert_eq!(instances["productpage-v1-xyz.shop"], json!([]));
}

#[tokio::test]
async fn push_status_and_config_views() {
    let servers = start(fake_source()).await;

    let reply = get(servers.debug, "/debug/push_status").await;
    assert_eq!(
        reply.json()[metric::EDS_NO_INSTANCES]["outbound|80||empty.default.svc.cluster.local"],
        json!({"message": "no endpoints"})
    );

    assert_eq!(get(servers.debug, "/debug/configz").await.json(), json!([]));
    let kinds = get(servers.debug, "/debug/resourcesz").await.json();
    assert!(kinds.as_array().unwrap().contains(
        &json!({"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"})
    ));
    assert_eq!(
        get(servers.debug, "/debug/mesh").await.json(),
        json!({"rootNamespace": "istio-system"})
    );

    let pretty = get(servers.debug, "/debug/mesh?pretty").await;
    assert_eq!(pretty.body, "{\n    \"rootNamespace\": \"istio-system\"\n}");
}

#[tokio::test]
async fn command_list_and_index() {
    let servers = start(fake_source()).await;

    let names = get(servers.debug, "/debug/list").await.json();
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&"syncz"));
    assert!(names.contains(&"config_dump"));
    assert!(names.contains(&"adsz?push=true"));
    assert!(!names.contains(&"list"));
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);

    let index = get(servers.debug, "/debug").await;
    assert_eq!(index.status, 200);
    assert!(index.headers["content-type"].starts_with("text/html"));
    assert!(
        index
            .body
            .contains("<a href='/debug/syncz'>/debug/syncz</a>")
    );
}

#[tokio::test]
async fn monitoring_serves_metrics_and_version() {
    let servers = start(fake_source()).await;

    let metrics = get(servers.monitoring, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        metrics.body.contains("pilot_xds_pushes"),
        "{}",
        metrics.body
    );

    let version = get(servers.monitoring, "/version").await;
    assert_eq!(version.status, 200);
    assert!(version.body.starts_with(env!("CARGO_PKG_VERSION")));

    // The debug handlers are on both ports; metrics only on monitoring.
    assert_eq!(get(servers.monitoring, "/debug/syncz").await.status, 200);
    assert_eq!(get(servers.debug, "/metrics").await.status, 404);
}
