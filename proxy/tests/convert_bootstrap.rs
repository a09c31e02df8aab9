//! The bootstrap pieces strait-proxy needs: node, admin, static resources, ADS.

// Helpers outside #[test] functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use strait_proto::envoy::config::bootstrap::v3::{Admin, Bootstrap, LayeredRuntime, bootstrap};
use strait_proto::envoy::config::cluster::v3::{Cluster, cluster};
use strait_proto::envoy::config::core::v3::Address;
use strait_proto::envoy::config::core::v3::{
    AggregatedConfigSource, ApiConfigSource, ConfigSource, GrpcService, Locality, Node, Pipe,
    SocketAddress, address, api_config_source::ApiType, config_source::ConfigSourceSpecifier,
    grpc_service, socket_address,
};
use strait_proto::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use strait_proto::google::protobuf::{Struct, Value, value::Kind};
use strait_proxy::config::cluster::Discovery;
use strait_proxy::convert::{AdsApiType, BootstrapConfig};

fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn static_cluster(name: &str, addr: Address) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(addr),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn istio_like(api_type: ApiType) -> Bootstrap {
    let metadata = Struct {
        fields: HashMap::from([
            (
                "NAMESPACE".to_string(),
                Value {
                    kind: Some(Kind::StringValue("default".into())),
                },
            ),
            (
                "LABELS".to_string(),
                Value {
                    kind: Some(Kind::StructValue(Struct {
                        fields: HashMap::from([(
                            "app".to_string(),
                            Value {
                                kind: Some(Kind::StringValue("productpage".into())),
                            },
                        )]),
                    })),
                },
            ),
        ]),
    };
    Bootstrap {
        node: Some(Node {
            id: "sidecar~10.77.0.10~productpage-v1.default~default.svc.cluster.local".into(),
            cluster: "productpage.default".into(),
            metadata: Some(metadata),
            locality: Some(Locality {
                region: "r1".into(),
                zone: "z1".into(),
                sub_zone: String::new(),
            }),
            ..Default::default()
        }),
        admin: Some(Admin {
            address: Some(socket("127.0.0.1", 15000)),
            ..Default::default()
        }),
        static_resources: Some(bootstrap::StaticResources {
            clusters: vec![
                static_cluster("xds-grpc", socket("10.96.0.1", 15010)),
                static_cluster("prometheus_stats", socket("127.0.0.1", 15000)),
            ],
            ..Default::default()
        }),
        dynamic_resources: Some(bootstrap::DynamicResources {
            lds_config: Some(ads()),
            cds_config: Some(ads()),
            ads_config: Some(ApiConfigSource {
                api_type: api_type as i32,
                set_node_on_first_message_only: true,
                grpc_services: vec![GrpcService {
                    target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                        grpc_service::EnvoyGrpc {
                            cluster_name: "xds-grpc".into(),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        layered_runtime: Some(LayeredRuntime::default()),
        ..Default::default()
    }
}

#[test]
fn istio_style_bootstrap() {
    let b = BootstrapConfig::try_from(&istio_like(ApiType::Grpc)).unwrap();
    assert_eq!(
        b.node.id,
        "sidecar~10.77.0.10~productpage-v1.default~default.svc.cluster.local"
    );
    assert_eq!(b.node.cluster, "productpage.default");
    assert_eq!(b.node.metadata["NAMESPACE"], "default");
    assert_eq!(b.node.metadata["LABELS"]["app"], "productpage");
    assert_eq!(b.node.locality.zone, "z1");
    assert_eq!(b.admin_address, Some("127.0.0.1:15000".parse().unwrap()));
    let ads = b.ads.as_ref().unwrap();
    assert_eq!(ads.api_type, AdsApiType::Grpc);
    assert_eq!(ads.cluster, "xds-grpc");
    assert!(ads.set_node_on_first_message_only);
    assert_eq!(b.static_clusters.len(), 2);
    match &b.static_clusters[0].discovery {
        Discovery::Static(eps) => assert_eq!(eps[0].address, "10.96.0.1:15010".parse().unwrap()),
        other => panic!("{other:?}"),
    }
    assert!(
        b.notes.iter().any(|n| n.contains("layered_runtime")),
        "{:?}",
        b.notes
    );

    let delta = BootstrapConfig::try_from(&istio_like(ApiType::DeltaGrpc)).unwrap();
    assert_eq!(delta.ads.unwrap().api_type, AdsApiType::DeltaGrpc);
}

#[test]
fn bootstrap_rejections_name_the_field() {
    let rest = BootstrapConfig::try_from(&istio_like(ApiType::Rest)).unwrap_err();
    assert_eq!(rest.field, "dynamic_resources.ads_config.api_type");

    let mut missing = istio_like(ApiType::Grpc);
    if let Some(sr) = missing.static_resources.as_mut() {
        sr.clusters.remove(0);
    }
    let e = BootstrapConfig::try_from(&missing).unwrap_err();
    assert!(
        e.reason.contains("'xds-grpc' is not a static cluster"),
        "{e}"
    );

    // Istio's own bootstrap reaches the agent over a unix socket: not supported yet.
    let mut pipe = istio_like(ApiType::Grpc);
    if let Some(sr) = pipe.static_resources.as_mut() {
        sr.clusters[0] = static_cluster(
            "xds-grpc",
            Address {
                address: Some(address::Address::Pipe(Pipe {
                    path: "./etc/istio/proxy/XDS".into(),
                    mode: 0,
                })),
            },
        );
    }
    let e = BootstrapConfig::try_from(&pipe).unwrap_err();
    assert_eq!(e.resource, "Cluster xds-grpc");
    assert_eq!(
        e.field,
        "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe"
    );
}
