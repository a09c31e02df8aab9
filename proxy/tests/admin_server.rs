//! The admin interface over the resources pilot-discovery generates for a bookinfo
//! sidecar: `/config_dump` in Envoy's shape (proto field names, `@type`s, readable back
//! as `envoy.admin.v3.ConfigDump`), `/clusters`, `/listeners`, `/server_info`, the
//! state endpoints and callbacks, and the HTTP listener itself.

// The fixtures are shared by the tests but are not `#[test]` functions themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde_json::Value;
use strait_pilot::config::file::FileSource;
use strait_pilot::environment::Environment;
use strait_pilot::model::{Locality, Proxy, PushContext};
use strait_pilot::xds;
use strait_proto::envoy::admin::v3::{Clusters, ConfigDump, Listeners};
use strait_proto::envoy::config::bootstrap::v3::Bootstrap;
use strait_proto::envoy::config::core::v3::Node;
use strait_proto::istio::MeshConfig;
use strait_proto::xds::json::from_json;
use strait_proto::xds::type_url;
use strait_proxy::admin::{
    Admin, AdminServer, AdminSource, ClusterEntry, DrainOptions, DumpedResource, ListenerEntry,
    LoggingChange, ResourceDump, ServerDetails,
};
use strait_proxy::config::cluster::Discovery;
use strait_proxy::convert::{self, Resource};
use strait_proxy::stats::{ServerState, Store};
use strait_proxy::upstream::{ClusterManager, SeededRandom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PRODUCTPAGE: &str = "sidecar~10.77.0.10~productpage-v1.default~default.svc.cluster.local";
const REVIEWS: &str = "outbound|9080||reviews.default.svc.cluster.local";

fn push_context() -> (Proxy, Arc<PushContext>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo");
    let scan = FileSource::new(&dir).scan();
    assert!(scan.errors.is_empty());
    let env = Environment::new(Arc::new(MeshConfig::default()), "cluster.local");
    env.apply_scan(scan);
    let push = Arc::new(env.build_push_context());
    let meta = serde_json::json!({"NAMESPACE": "default", "LABELS": {"app": "productpage", "version": "v1"}});
    let mut proxy = Proxy::from_node(
        PRODUCTPAGE,
        meta.as_object().cloned().unwrap(),
        Locality::default(),
    )
    .unwrap();
    proxy.service_targets = push.service_targets(&proxy);
    (proxy, push)
}

#[derive(Default)]
struct Calls {
    quit: usize,
    drains: Vec<DrainOptions>,
    health_failed: Option<bool>,
    logging: Vec<LoggingChange>,
}

/// An [`AdminSource`] over pilot's bookinfo resources and a real cluster manager.
struct Bookinfo {
    state: Mutex<ServerState>,
    clusters: ResourceDump,
    endpoints: ResourceDump,
    listeners: ResourceDump,
    routes: ResourceDump,
    manager: Arc<ClusterManager>,
    listener_entries: Vec<ListenerEntry>,
    calls: Mutex<Calls>,
}

fn updated_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)
}

fn dump(resources: Vec<xds::Resource>, version: &str) -> ResourceDump {
    ResourceDump {
        version_info: version.to_string(),
        static_resources: Vec::new(),
        dynamic_resources: resources
            .into_iter()
            .map(|r| DumpedResource {
                name: r.name,
                version: version.to_string(),
                resource: r.body,
                last_updated: Some(updated_at()),
            })
            .collect(),
    }
}

impl Bookinfo {
    fn new() -> Arc<Bookinfo> {
        let (proxy, push) = push_context();
        let clusters = xds::generate(type_url::CLUSTER, &proxy, &push, &[]);
        let manager = Arc::new(ClusterManager::new(SeededRandom::shared(7)));
        let mut eds_names = Vec::new();
        let mut configs = Vec::new();
        for c in &clusters {
            if let Resource::Cluster(c) = convert::decode(type_url::CLUSTER, &c.body.value).unwrap()
            {
                if let Discovery::Eds { service_name } = &c.discovery {
                    eds_names.push(if service_name.is_empty() {
                        c.name.clone()
                    } else {
                        service_name.clone()
                    });
                }
                configs.push(Arc::new(c));
            }
        }
        manager.update_clusters(configs);
        let endpoints = xds::generate(type_url::ENDPOINT, &proxy, &push, &eds_names);
        for e in &endpoints {
            if let Resource::ClusterLoadAssignment(cla) =
                convert::decode(type_url::ENDPOINT, &e.body.value).unwrap()
            {
                manager.update_assignment(cla);
            }
        }
        let listeners = xds::generate(type_url::LISTENER, &proxy, &push, &[]);
        let mut listener_entries = Vec::new();
        let mut rds_names = Vec::new();
        for l in &listeners {
            if let Resource::Listener(l) =
                convert::decode(type_url::LISTENER, &l.body.value).unwrap()
            {
                listener_entries.push(ListenerEntry {
                    name: l.name.clone(),
                    address: l.address,
                });
                for chain in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
                    if let strait_proxy::config::listener::NetworkFilter::HttpConnectionManager(h) =
                        &chain.filter
                        && let strait_proxy::config::listener::RouteSource::Rds(name) =
                            &h.route_source
                    {
                        rds_names.push(name.clone());
                    }
                }
            }
        }
        rds_names.sort();
        rds_names.dedup();
        let routes = xds::generate(type_url::ROUTE, &proxy, &push, &rds_names);
        Arc::new(Bookinfo {
            state: Mutex::new(ServerState::PreInitializing),
            clusters: dump(clusters, "2024-01-01T00:00:00Z/1"),
            endpoints: dump(endpoints, "2024-01-01T00:00:00Z/1"),
            listeners: dump(listeners, "2024-01-01T00:00:00Z/2"),
            routes: dump(routes, "2024-01-01T00:00:00Z/3"),
            manager,
            listener_entries,
            calls: Mutex::new(Calls::default()),
        })
    }

    fn set_state(&self, state: ServerState) {
        *self.state.lock().unwrap() = state;
    }
}

impl AdminSource for Bookinfo {
    fn server_state(&self) -> ServerState {
        *self.state.lock().unwrap()
    }

    fn server_details(&self) -> ServerDetails {
        ServerDetails {
            version: "strait-proxy/0.1.0".into(),
            node: Node {
                id: PRODUCTPAGE.into(),
                cluster: "productpage.default".into(),
                ..Node::default()
            },
            command_line_options: Default::default(),
            start_time: Some(SystemTime::now() - Duration::from_secs(42)),
        }
    }

    fn bootstrap(&self) -> Option<(Bootstrap, SystemTime)> {
        Some((
            Bootstrap {
                node: Some(Node {
                    id: PRODUCTPAGE.into(),
                    ..Node::default()
                }),
                ..Bootstrap::default()
            },
            updated_at(),
        ))
    }

    fn clusters_dump(&self) -> ResourceDump {
        self.clusters.clone()
    }

    fn listeners_dump(&self) -> ResourceDump {
        self.listeners.clone()
    }

    fn routes_dump(&self) -> ResourceDump {
        self.routes.clone()
    }

    fn endpoints_dump(&self) -> ResourceDump {
        self.endpoints.clone()
    }

    fn clusters(&self) -> Vec<ClusterEntry> {
        let mut all: Vec<ClusterEntry> = self
            .manager
            .snapshot()
            .values()
            .map(|s| ClusterEntry {
                state: s.clone(),
                added_via_api: true,
            })
            .collect();
        all.sort_by(|a, b| a.state.name().cmp(b.state.name()));
        all
    }

    fn listeners(&self) -> Vec<ListenerEntry> {
        self.listener_entries.clone()
    }

    fn quit(&self) {
        self.calls.lock().unwrap().quit += 1;
    }

    fn drain_listeners(&self, options: DrainOptions) {
        self.calls.lock().unwrap().drains.push(options);
    }

    fn set_health_check_failed(&self, failed: bool) {
        self.calls.lock().unwrap().health_failed = Some(failed);
        self.set_state(if failed {
            ServerState::Draining
        } else {
            ServerState::Live
        });
    }

    fn change_logging(&self, change: &LoggingChange) -> Result<(), String> {
        self.calls.lock().unwrap().logging.push(change.clone());
        Ok(())
    }

    fn log_levels(&self) -> Vec<(String, String)> {
        vec![
            ("admin".into(), "info".into()),
            ("upstream".into(), "debug".into()),
        ]
    }
}

fn admin() -> (Arc<Bookinfo>, Admin) {
    let source = Bookinfo::new();
    let admin = Admin::new(source.clone(), Arc::new(Store::default()));
    (source, admin)
}

fn get_json(admin: &Admin, path: &str) -> Value {
    let r = admin.handle(&Method::GET, path);
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    assert_eq!(r.content_type, "application/json");
    serde_json::from_str(&r.body).unwrap()
}

fn types(dump: &Value) -> Vec<String> {
    dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["@type"].as_str().unwrap().to_string())
        .collect()
}

/// Every object key in the tree.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[test]
fn config_dump_has_envoys_shape_and_proto_field_names() {
    let (_, admin) = admin();
    let dump = get_json(&admin, "/config_dump");
    let admin_type = |t: &str| format!("type.googleapis.com/envoy.admin.v3.{t}");
    assert_eq!(
        types(&dump),
        [
            admin_type("BootstrapConfigDump"),
            admin_type("ClustersConfigDump"),
            admin_type("ListenersConfigDump"),
            admin_type("ScopedRoutesConfigDump"),
            admin_type("RoutesConfigDump"),
            admin_type("SecretsConfigDump"),
        ]
    );
    let configs = dump["configs"].as_array().unwrap();
    assert_eq!(configs[0]["bootstrap"]["node"]["id"], PRODUCTPAGE);
    assert_eq!(configs[0]["last_updated"], "2023-11-14T22:13:20.250Z");

    let clusters = &configs[1];
    assert_eq!(clusters["version_info"], "2024-01-01T00:00:00Z/1");
    let reviews = clusters["dynamic_active_clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"]["name"] == REVIEWS)
        .expect("reviews cluster");
    assert_eq!(reviews["version_info"], "2024-01-01T00:00:00Z/1");
    assert_eq!(reviews["last_updated"], "2023-11-14T22:13:20.250Z");
    assert_eq!(
        reviews["cluster"]["@type"],
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    );
    assert_eq!(reviews["cluster"]["type"], "EDS");
    assert!(reviews["cluster"]["connect_timeout"].is_string());

    let listeners = &configs[2];
    let outbound = listeners["dynamic_listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "virtualOutbound")
        .expect("virtualOutbound");
    let active = &outbound["active_state"];
    assert_eq!(active["version_info"], "2024-01-01T00:00:00Z/2");
    assert_eq!(
        active["listener"]["@type"],
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    assert_eq!(
        active["listener"]["address"]["socket_address"]["port_value"],
        15001
    );
    let routes = &configs[4]["dynamic_route_configs"];
    assert!(!routes.as_array().unwrap().is_empty());
    assert_eq!(
        routes[0]["route_config"]["@type"],
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    );

    // Proto field names throughout, never lowerCamelCase.
    let mut all = Vec::new();
    keys(&dump, &mut all);
    for camel in [
        "connectTimeout",
        "lastUpdated",
        "versionInfo",
        "dynamicActiveClusters",
        "filterChains",
    ] {
        assert!(!all.iter().any(|k| k == camel), "{camel} in the dump");
    }
    assert!(all.iter().any(|k| k == "filter_chains"));

    // The dump reads back as the admin proto it claims to be.
    let parsed: ConfigDump = from_json(dump).unwrap();
    assert_eq!(parsed.configs.len(), 6);
}

#[test]
fn config_dump_parameters() {
    let (_, admin) = admin();
    let with_eds = get_json(&admin, "/config_dump?include_eds");
    assert!(
        types(&with_eds)
            .contains(&"type.googleapis.com/envoy.admin.v3.EndpointsConfigDump".to_string())
    );
    let eds = with_eds["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump")
        .unwrap();
    assert_eq!(
        eds["dynamic_endpoint_configs"][0]["endpoint_config"]["@type"],
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    );
    from_json::<ConfigDump>(with_eds.clone()).unwrap();

    let picked = get_json(&admin, "/config_dump?resource=dynamic_active_clusters");
    let items = picked["configs"].as_array().unwrap();
    assert!(items.len() > 3);
    assert!(
        items.iter().all(|c| c["@type"]
            == "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster")
    );
    from_json::<ConfigDump>(picked.clone()).unwrap();

    let named = get_json(
        &admin,
        "/config_dump?resource=dynamic_active_clusters&name_regex=outbound%5C%7C9080%5C%7C%5C%7Creviews.*",
    );
    let names: Vec<&str> = named["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"]["name"].as_str().unwrap())
        .collect();
    assert!(!names.is_empty());
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("outbound|9080||reviews")),
        "{names:?}"
    );

    let missing = admin.handle(&Method::GET, "/config_dump?resource=nonsense");
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad = admin.handle(&Method::GET, "/config_dump?name_regex=(");
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[test]
fn clusters_and_listeners() {
    let (_, admin) = admin();
    let text = admin.handle(&Method::GET, "/clusters").body;
    assert!(text.contains(&format!("{REVIEWS}::added_via_api::true\n")));
    assert!(text.contains(&format!("{REVIEWS}::default_priority::max_connections::")));
    assert!(text.contains(&format!("{REVIEWS}::eds_service_name::{REVIEWS}\n")));
    let host_line = text
        .lines()
        .find(|l| l.starts_with(&format!("{REVIEWS}::")) && l.ends_with("::health_flags::healthy"))
        .expect("a healthy reviews host");
    let host = host_line.split("::").nth(1).unwrap();
    assert!(text.contains(&format!("{REVIEWS}::{host}::cx_active::0\n")));
    assert!(text.contains(&format!("{REVIEWS}::{host}::rq_total::0\n")));

    let json = get_json(&admin, "/clusters?format=json");
    let parsed: Clusters = from_json(json.clone()).unwrap();
    let reviews = parsed
        .cluster_statuses
        .iter()
        .find(|c| c.name == REVIEWS)
        .unwrap();
    assert!(reviews.added_via_api);
    assert!(!reviews.host_statuses.is_empty());

    let listeners = admin.handle(&Method::GET, "/listeners").body;
    assert!(
        listeners.contains("virtualOutbound::0.0.0.0:15001\n"),
        "{listeners}"
    );
    let json = get_json(&admin, "/listeners?format=json");
    let parsed: Listeners = from_json(json).unwrap();
    assert!(
        parsed
            .listener_statuses
            .iter()
            .any(|l| l.name == "virtualInbound")
    );
}

#[test]
fn state_endpoints_and_callbacks() {
    let (source, admin) = admin();
    let ready = admin.handle(&Method::GET, "/ready");
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body, "PRE_INITIALIZING\n");
    source.set_state(ServerState::Initializing);
    assert_eq!(admin.handle(&Method::GET, "/ready").body, "INITIALIZING\n");
    source.set_state(ServerState::Live);
    let ready = admin.handle(&Method::GET, "/ready");
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::OK, "LIVE\n")
    );

    let info = get_json(&admin, "/server_info");
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["version"], "strait-proxy/0.1.0");
    assert_eq!(info["node"]["id"], PRODUCTPAGE);
    assert!(
        info["uptime_current_epoch"]
            .as_str()
            .unwrap()
            .ends_with('s')
    );
    assert!(info.get("command_line_options").is_some());

    // Mutations need POST, as in Envoy.
    let get = admin.handle(&Method::GET, "/quitquitquit");
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.body, "Method GET not allowed, POST required.");
    assert_eq!(source.calls.lock().unwrap().quit, 0);
    let post = admin.handle(&Method::POST, "/quitquitquit");
    assert_eq!((post.status, post.body.as_str()), (StatusCode::OK, "OK\n"));
    assert_eq!(source.calls.lock().unwrap().quit, 1);

    admin.handle(&Method::POST, "/drain_listeners?inboundonly&graceful");
    admin.handle(&Method::POST, "/drain_listeners");
    assert_eq!(
        source.calls.lock().unwrap().drains,
        [
            DrainOptions {
                inbound_only: true,
                graceful: true,
                skip_exit: false
            },
            DrainOptions::default()
        ]
    );

    admin.handle(&Method::POST, "/healthcheck/fail");
    let ready = admin.handle(&Method::GET, "/ready");
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n")
    );
    admin.handle(&Method::POST, "/healthcheck/ok");
    assert_eq!(admin.handle(&Method::GET, "/ready").status, StatusCode::OK);

    assert_eq!(
        admin.handle(&Method::GET, "/logging").status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let listed = admin.handle(&Method::POST, "/logging");
    assert_eq!(
        listed.body,
        "active loggers:\n  admin: info\n  upstream: debug\n"
    );
    assert_eq!(
        admin.handle(&Method::POST, "/logging?level=debug").status,
        StatusCode::OK
    );
    assert_eq!(
        admin
            .handle(
                &Method::POST,
                "/logging?paths=upstream:trace,router:warning"
            )
            .status,
        StatusCode::OK
    );
    assert_eq!(
        admin.handle(&Method::POST, "/logging?level=loud").status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        source.calls.lock().unwrap().logging,
        [
            LoggingChange::Level("debug".into()),
            LoggingChange::Paths(vec![
                ("upstream".into(), "trace".into()),
                ("router".into(), "warning".into())
            ])
        ]
    );

    let unknown = admin.handle(&Method::GET, "/nope");
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown
            .body
            .starts_with("invalid path. admin commands are:\n")
    );
    let memory = get_json(&admin, "/memory");
    assert!(
        memory["allocated"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
}

/// A raw HTTP/1.1 exchange, so the test depends on nothing but the socket.
async fn exchange(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

#[tokio::test]
async fn served_over_http() {
    let (source, admin) = admin();
    let server = AdminServer::start(Arc::new(admin), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (status, head, body) = exchange(addr, "GET", "/ready").await;
    assert_eq!((status, body.as_str()), (503, "PRE_INITIALIZING\n"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain")
    );
    source.set_state(ServerState::Live);
    assert_eq!(exchange(addr, "GET", "/ready").await.0, 200);
    let (status, head, body) = exchange(addr, "GET", "/config_dump").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let dump: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dump["configs"].as_array().unwrap().len(), 6);
    assert_eq!(exchange(addr, "POST", "/quitquitquit").await.0, 200);
    assert_eq!(source.calls.lock().unwrap().quit, 1);
    assert_eq!(exchange(addr, "GET", "/stats/prometheus").await.0, 200);
    server.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
