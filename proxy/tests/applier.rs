//! The applier: pilot-discovery's resources for the bookinfo example go in, converted
//! config comes out; bad updates are rejected whole and the last good snapshot stays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use strait_pilot::config::file::FileSource;
use strait_pilot::environment::Environment;
use strait_pilot::model::{Locality, Proxy};
use strait_proto::envoy::config::cluster::v3::Cluster as PbCluster;
use strait_proto::envoy::config::core::v3::{SocketAddress, address, socket_address};
use strait_proto::envoy::config::listener::v3::Listener as PbListener;
use strait_proto::envoy::config::listener::v3::{Filter, FilterChain, filter};
use strait_proto::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use strait_proto::istio::MeshConfig;
use strait_proto::xds::{any, type_url};
use strait_proxy::applier::{Applier, Routes};
use strait_proxy::listener::connection::Dispatcher;
use strait_proxy::listener::manager::ListenerManager;
use strait_proxy::snapshot::Snapshot;
use strait_proxy::upstream::manager::ClusterManager;
use strait_proxy::upstream::random::ThreadRandom;
use strait_proxy::worker::Workers;
use strait_proxy::xds::{ResourceUpdate, XdsHandler};

/// pilot-discovery's resources of one type for the productpage sidecar.
fn generated(url: &str, names: &[String]) -> Vec<ResourceUpdate> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo");
    let env = Environment::new(Arc::new(MeshConfig::default()), "cluster.local");
    env.apply_scan(FileSource::new(dir).scan());
    let push = env.build_push_context();
    let meta = serde_json::json!({"NAMESPACE": "default"});
    let mut proxy = Proxy::from_node(
        "sidecar~10.77.0.10~productpage-v1.default~default.svc.cluster.local",
        meta.as_object().unwrap().clone(),
        Locality::default(),
    )
    .unwrap();
    proxy.service_targets = push.service_targets(&proxy);
    strait_pilot::xds::generate(url, &proxy, &push, names)
        .into_iter()
        .map(|r| ResourceUpdate {
            name: r.name,
            version: "v1".into(),
            resource: r.body,
        })
        .collect()
}

fn applier() -> (Applier, Arc<ArcSwap<Snapshot>>, Arc<ClusterManager>, Routes) {
    let clusters = Arc::new(ClusterManager::new(ThreadRandom::shared()));
    let workers = Arc::new(Workers::start(1).unwrap());
    let listeners = Arc::new(ListenerManager::new(
        workers,
        Arc::new(Dispatcher {
            clusters: clusters.clone(),
            http: None,
        }),
    ));
    let published = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let routes: Routes = Arc::new(ArcSwap::from_pointee(Default::default()));
    let applier = Applier::new(
        Snapshot::default(),
        published.clone(),
        clusters.clone(),
        listeners,
        routes.clone(),
    )
    .unwrap();
    (applier, published, clusters, routes)
}

#[test]
fn bookinfo_clusters_endpoints_and_routes_apply() {
    let (mut applier, published, clusters, routes) = applier();
    applier
        .apply(
            type_url::CLUSTER,
            generated(type_url::CLUSTER, &[]),
            vec![],
            true,
        )
        .unwrap();
    let wanted = applier.wanted(type_url::ENDPOINT);
    assert!(wanted.contains(&"outbound|9080|v1|reviews.default.svc.cluster.local".to_string()));
    assert!(clusters.get("PassthroughCluster").is_some());

    applier
        .apply(
            type_url::ENDPOINT,
            generated(type_url::ENDPOINT, &wanted),
            vec![],
            true,
        )
        .unwrap();
    let reviews_v1 = clusters
        .get("outbound|9080|v1|reviews.default.svc.cluster.local")
        .unwrap();
    assert_eq!(reviews_v1.hosts().hosts().len(), 1, "one v1 pod");

    applier
        .apply(
            type_url::ROUTE,
            generated(type_url::ROUTE, &["9080".into()]),
            vec![],
            true,
        )
        .unwrap();
    assert!(routes.load().contains_key("9080"));
    let snapshot = published.load();
    assert_eq!(snapshot.versions[type_url::ROUTE], "v1");
    assert_eq!(snapshot.routes["9080"].raw.type_url, type_url::ROUTE);
}

fn listener(name: &str, port: u16) -> ResourceUpdate {
    let pb = PbListener {
        name: name.into(),
        address: Some(strait_proto::envoy::config::core::v3::Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.tcp_proxy".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any::pack(&TcpProxy {
                    stat_prefix: name.into(),
                    cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(
                        "PassthroughCluster".into(),
                    )),
                    ..Default::default()
                }))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    ResourceUpdate {
        name: name.into(),
        version: "v1".into(),
        resource: any::pack(&pb),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bad_updates_are_rejected_whole_and_the_last_good_state_stays() {
    let (mut applier, published, clusters, _) = applier();
    applier
        .apply(
            type_url::CLUSTER,
            generated(type_url::CLUSTER, &[]),
            vec![],
            true,
        )
        .unwrap();
    let before = clusters.snapshot().len();

    // One invalid cluster among good ones: nothing of the update is applied.
    let mut update = generated(type_url::CLUSTER, &[]);
    update.truncate(2);
    let bad = PbCluster {
        name: "bad".into(),
        lb_policy: 99,
        ..Default::default()
    };
    update.push(ResourceUpdate {
        name: "bad".into(),
        version: "v2".into(),
        resource: any::pack(&bad),
    });
    let rejected = applier
        .apply(type_url::CLUSTER, update, vec![], true)
        .unwrap_err();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].name, "bad");
    assert!(
        rejected[0].error.contains("Cluster bad"),
        "{}",
        rejected[0].error
    );
    assert_eq!(
        clusters.snapshot().len(),
        before,
        "the previous clusters stay"
    );
    assert_eq!(published.load().versions[type_url::CLUSTER], "v1");

    // Two listeners on one address cannot both be in place: rejected, none applied.
    let port = free_port();
    let rejected = applier
        .apply(
            type_url::LISTENER,
            vec![listener("a", port), listener("b", port)],
            vec![],
            true,
        )
        .unwrap_err();
    assert!(
        rejected[0].error.contains("duplicate address"),
        "{rejected:?}"
    );
    assert!(published.load().listeners.is_empty());

    // A good listener set applies, and a later removal takes it away.
    applier
        .apply(type_url::LISTENER, vec![listener("a", port)], vec![], true)
        .unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    applier
        .apply(type_url::LISTENER, vec![], vec![], true)
        .unwrap();
    assert!(published.load().listeners.is_empty());
}
