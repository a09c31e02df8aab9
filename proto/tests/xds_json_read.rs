//! Reading Envoy bootstraps (and other messages) from proto3 JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost::Name;
use serde_json::{Value, json};
use strait_proto::envoy::config::bootstrap::v3::Bootstrap;
use strait_proto::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use strait_proto::envoy::config::core::v3::address::Address as AddressKind;
use strait_proto::envoy::config::core::v3::api_config_source::ApiType;
use strait_proto::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use strait_proto::envoy::config::core::v3::grpc_service::TargetSpecifier;
use strait_proto::envoy::config::core::v3::socket_address::PortSpecifier;
use strait_proto::envoy::config::core::v3::{Address, ApiVersion};
use strait_proto::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use strait_proto::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
};
use strait_proto::google::protobuf::Duration;
use strait_proto::google::protobuf::value::Kind;
use strait_proto::xds::json;
use strait_proto::xds::{XdsError, any};

const NODE_ID: &str = "sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local";

/// A cut-down sidecar bootstrap mixing proto names and lowerCamelCase, as hand-written and
/// generated bootstraps do.
fn bootstrap_json() -> Value {
    json!({
        "node": {
            "id": NODE_ID,
            "cluster": "reviews.default",
            "metadata": { "NAMESPACE": "default", "LABELS": { "app": "reviews" } }
        },
        "admin": {
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": 15000 } }
        },
        "dynamic_resources": {
            "lds_config": { "ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3" },
            "cdsConfig": { "ads": {}, "initialFetchTimeout": "0s", "resourceApiVersion": "V3" },
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "set_node_on_first_message_only": true,
                "transport_api_version": "V3",
                "grpc_services": [{ "envoy_grpc": { "cluster_name": "xds-grpc" } }]
            }
        },
        "static_resources": {
            "clusters": [{
                "name": "xds-grpc",
                "type": "STATIC",
                "connect_timeout": "1.500s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                },
                "load_assignment": {
                    "cluster_name": "xds-grpc",
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 15010 } }
                    } }] }]
                }
            }]
        }
    })
}

fn port(address: &Option<Address>) -> u32 {
    match address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(AddressKind::SocketAddress(socket)) => match socket.port_specifier {
            Some(PortSpecifier::PortValue(port)) => port,
            ref other => panic!("no port value: {other:?}"),
        },
        other => panic!("no socket address: {other:?}"),
    }
}

#[test]
fn reads_a_sidecar_bootstrap() {
    let bootstrap: Bootstrap = json::from_json(bootstrap_json()).unwrap();

    let node = bootstrap.node.as_ref().unwrap();
    assert_eq!(node.id, NODE_ID);
    assert_eq!(node.cluster, "reviews.default");
    let metadata = &node.metadata.as_ref().unwrap().fields;
    assert_eq!(
        metadata["NAMESPACE"].kind,
        Some(Kind::StringValue("default".to_string()))
    );
    match &metadata["LABELS"].kind {
        Some(Kind::StructValue(labels)) => {
            assert_eq!(
                labels.fields["app"].kind,
                Some(Kind::StringValue("reviews".to_string()))
            );
        }
        other => panic!("LABELS is not a struct: {other:?}"),
    }

    assert_eq!(port(&bootstrap.admin.as_ref().unwrap().address), 15000);

    let dynamic = bootstrap.dynamic_resources.as_ref().unwrap();
    for source in [&dynamic.lds_config, &dynamic.cds_config] {
        let source = source.as_ref().unwrap();
        assert!(matches!(
            source.config_source_specifier,
            Some(ConfigSourceSpecifier::Ads(_))
        ));
        assert_eq!(
            source.initial_fetch_timeout,
            Some(Duration {
                seconds: 0,
                nanos: 0
            })
        );
        assert_eq!(source.resource_api_version, ApiVersion::V3 as i32);
    }
    let ads = dynamic.ads_config.as_ref().unwrap();
    assert_eq!(ads.api_type, ApiType::DeltaGrpc as i32);
    assert_eq!(ads.transport_api_version, ApiVersion::V3 as i32);
    assert!(ads.set_node_on_first_message_only);
    match &ads.grpc_services[0].target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(grpc)) => assert_eq!(grpc.cluster_name, "xds-grpc"),
        other => panic!("not an envoy_grpc service: {other:?}"),
    }

    let clusters = &bootstrap.static_resources.as_ref().unwrap().clusters;
    assert_eq!(clusters.len(), 1);
    let cluster = &clusters[0];
    assert_eq!(cluster.name, "xds-grpc");
    assert_eq!(
        cluster.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32))
    );
    assert_eq!(
        cluster.connect_timeout,
        Some(Duration {
            seconds: 1,
            nanos: 500_000_000
        })
    );
    let options: HttpProtocolOptions =
        any::unpack(&cluster.typed_extension_protocol_options[&HttpProtocolOptions::full_name()])
            .unwrap();
    match options.upstream_protocol_options {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => assert!(matches!(
            explicit.protocol_config,
            Some(ProtocolConfig::Http2ProtocolOptions(_))
        )),
        other => panic!("not explicit HTTP/2: {other:?}"),
    }
    let endpoint = &cluster.load_assignment.as_ref().unwrap().endpoints[0].lb_endpoints[0];
    let endpoint = match &endpoint.host_identifier {
        Some(strait_proto::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(
            e,
        )) => e,
        other => panic!("no endpoint: {other:?}"),
    };
    assert_eq!(port(&endpoint.address), 15010);
}

fn json_error(value: Value) -> String {
    match json::from_json::<Bootstrap>(value) {
        Err(err @ XdsError::Json { .. }) => err.to_string(),
        other => panic!("expected a JSON error, got {other:?}"),
    }
}

#[test]
fn an_unknown_field_is_an_error_naming_it_and_its_place() {
    let mut value = bootstrap_json();
    value["admin"]["adress"] = json!("127.0.0.1");
    let err = json_error(value);
    assert!(err.contains("'adress'"), "{err}");
    assert!(err.contains("admin"), "{err}");
    assert!(err.contains("envoy.config.bootstrap.v3.Bootstrap"), "{err}");

    let mut value = bootstrap_json();
    value["static_resources"]["clusters"][0]["conect_timeout"] = json!("1s");
    let err = json_error(value);
    assert!(err.contains("'conect_timeout'"), "{err}");
    assert!(err.contains("clusters[0]"), "{err}");
}

#[test]
fn an_unknown_field_at_the_top_is_an_error() {
    let mut value = bootstrap_json();
    value["nodes"] = json!({});
    let err = json_error(value);
    assert!(err.contains("'nodes'"), "{err}");
}

#[test]
fn an_unknown_field_inside_a_typed_any_is_an_error() {
    let mut value = bootstrap_json();
    value["static_resources"]["clusters"][0]["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        ["explicit_http_cfg"] = json!({});
    let err = json_error(value);
    assert!(err.contains("'explicit_http_cfg'"), "{err}");
}

#[test]
fn an_unknown_enum_value_is_an_error_naming_it() {
    let mut value = bootstrap_json();
    value["dynamic_resources"]["ads_config"]["api_type"] = json!("DELTA_GRCP");
    let err = json_error(value);
    assert!(err.contains("DELTA_GRCP"), "{err}");
    assert!(err.contains("ads_config"), "{err}");
}

#[test]
fn a_wrongly_typed_value_is_an_error() {
    let mut value = bootstrap_json();
    value["admin"]["address"]["socket_address"]["port_value"] = json!("not a port");
    let err = json_error(value);
    assert!(err.contains("port_value"), "{err}");
}
