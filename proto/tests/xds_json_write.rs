//! JSON output: the shapes istioctl (lowerCamelCase) and Envoy's admin (proto names) print.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use prost::Name;
use serde_json::json;
use strait_proto::envoy::config::cluster::v3::circuit_breakers::Thresholds;
use strait_proto::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy,
};
use strait_proto::envoy::config::cluster::v3::{CircuitBreakers, Cluster};
use strait_proto::envoy::config::core::v3::address::Address as AddressKind;
use strait_proto::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use strait_proto::envoy::config::core::v3::socket_address::PortSpecifier;
use strait_proto::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, Http2ProtocolOptions,
    HttpProtocolOptions as CommonHttpOptions, SocketAddress, TrafficDirection,
};
use strait_proto::envoy::config::listener::v3::{
    Filter, FilterChain, Listener, ListenerFilter, filter, listener_filter,
};
use strait_proto::envoy::extensions::filters::http::router::v3::Router;
use strait_proto::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
};
use strait_proto::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use strait_proto::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
};
use strait_proto::envoy::r#type::v3::Int64Range;
use strait_proto::google::protobuf::{Any, Duration, UInt32Value};
use strait_proto::xds::json::{self, FieldNames};
use strait_proto::xds::{XdsError, any, type_url};

const SERVICE: &str = "outbound|9080||reviews.default.svc.cluster.local";
const HTTP_OPTIONS_KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

fn seconds(seconds: i64) -> Option<Duration> {
    Some(Duration { seconds, nanos: 0 })
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        initial_fetch_timeout: seconds(0),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn eds_cluster() -> Cluster {
    let http_options = HttpProtocolOptions {
        common_http_protocol_options: Some(CommonHttpOptions {
            idle_timeout: seconds(3600),
            ..Default::default()
        }),
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions {
                    max_concurrent_streams: Some(UInt32Value {
                        value: 1_073_741_824,
                    }),
                    ..Default::default()
                })),
            },
        )),
        ..Default::default()
    };
    Cluster {
        name: SERVICE.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: SERVICE.to_string(),
        }),
        connect_timeout: seconds(10),
        lb_policy: LbPolicy::LeastRequest as i32,
        circuit_breakers: Some(CircuitBreakers {
            thresholds: vec![Thresholds {
                max_connections: Some(UInt32Value {
                    value: 4_294_967_295,
                }),
                max_retries: Some(UInt32Value {
                    value: 4_294_967_295,
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        typed_extension_protocol_options: HashMap::from([(
            HTTP_OPTIONS_KEY.to_string(),
            any::pack(&http_options),
        )]),
        ..Default::default()
    }
}

fn http_listener() -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: "outbound_0.0.0.0_9080".to_string(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "9080".to_string(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any::pack(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: "0.0.0.0_9080".to_string(),
        address: Some(Address {
            address: Some(AddressKind::SocketAddress(SocketAddress {
                address: "0.0.0.0".to_string(),
                port_specifier: Some(PortSpecifier::PortValue(9080)),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(any::pack(&hcm))),
            }],
            ..Default::default()
        }],
        listener_filters: vec![ListenerFilter {
            name: "envoy.filters.listener.tls_inspector".to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(any::pack(
                &TlsInspector::default(),
            ))),
            ..Default::default()
        }],
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

#[test]
fn cluster_json_has_camel_case_fields_durations_enums_and_typed_options() {
    let got = json::to_json(&eds_cluster()).unwrap();
    let want = json!({
        "name": SERVICE,
        "type": "EDS",
        "edsClusterConfig": {
            "edsConfig": { "ads": {}, "initialFetchTimeout": "0s", "resourceApiVersion": "V3" },
            "serviceName": SERVICE
        },
        "connectTimeout": "10s",
        "lbPolicy": "LEAST_REQUEST",
        "circuitBreakers": {
            "thresholds": [{ "maxConnections": 4_294_967_295u32, "maxRetries": 4_294_967_295u32 }]
        },
        "typedExtensionProtocolOptions": {
            HTTP_OPTIONS_KEY: {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "commonHttpProtocolOptions": { "idleTimeout": "3600s" },
                "explicitHttpConfig": {
                    "http2ProtocolOptions": { "maxConcurrentStreams": 1_073_741_824 }
                }
            }
        }
    });
    assert_eq!(got, want);
}

#[test]
fn packed_cluster_json_starts_with_its_type() {
    let got = json::to_json_any(&any::pack(&eds_cluster())).unwrap();
    assert_eq!(got["@type"], type_url::CLUSTER);
    assert_eq!(got["connectTimeout"], "10s");
    assert_eq!(got["name"], SERVICE);
}

#[test]
fn proto_field_names_are_what_envoy_admin_prints() {
    let got = json::to_json_with(&eds_cluster(), FieldNames::Proto).unwrap();
    assert_eq!(got["connect_timeout"], "10s");
    assert_eq!(
        got["eds_cluster_config"]["eds_config"]["resource_api_version"],
        "V3"
    );
    let options = &got["typed_extension_protocol_options"][HTTP_OPTIONS_KEY];
    assert_eq!(
        options["explicit_http_config"]["http2_protocol_options"]["max_concurrent_streams"],
        1_073_741_824
    );
    assert!(got.get("connectTimeout").is_none());
}

#[test]
fn listener_json_resolves_anys_nested_in_anys() {
    let got = json::to_json(&http_listener()).unwrap();
    assert_eq!(got["name"], "0.0.0.0_9080");
    assert_eq!(
        got["address"],
        json!({ "socketAddress": { "address": "0.0.0.0", "portValue": 9080 } })
    );
    assert_eq!(got["trafficDirection"], "OUTBOUND");
    assert_eq!(
        got["listenerFilters"][0]["typedConfig"],
        json!({ "@type": TlsInspector::type_url() })
    );
    let hcm = &got["filterChains"][0]["filters"][0]["typedConfig"];
    assert_eq!(hcm["@type"], HttpConnectionManager::type_url());
    assert_eq!(hcm["statPrefix"], "outbound_0.0.0.0_9080");
    assert_eq!(hcm["rds"]["routeConfigName"], "9080");
    assert_eq!(hcm["rds"]["configSource"]["ads"], json!({}));
    assert_eq!(
        hcm["httpFilters"],
        json!([{
            "name": "envoy.filters.http.router",
            "typedConfig": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        }])
    );
}

#[test]
fn default_values_are_left_out() {
    let got = json::to_json(&Cluster {
        name: "c".to_string(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(got, json!({ "name": "c" }));
}

#[test]
fn sixty_four_bit_integers_are_strings() {
    let got = json::to_json(&Int64Range { start: -5, end: 10 }).unwrap();
    assert_eq!(got, json!({ "start": "-5", "end": "10" }));
}

#[test]
fn an_any_of_a_type_outside_the_pool_is_an_error_naming_it() {
    let unknown = Any {
        type_url: type_url::NAME_TABLE.to_string(),
        value: Vec::new(),
    };
    let err = json::to_json_any(&unknown).unwrap_err();
    assert!(matches!(err, XdsError::UnknownType { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("istio.networking.nds.v1.NameTable"),
        "{err}"
    );

    let mut listener = http_listener();
    listener.filter_chains[0].filters[0].config_type =
        Some(filter::ConfigType::TypedConfig(unknown));
    let err = json::to_json(&listener).unwrap_err();
    assert!(
        err.to_string()
            .contains("istio.networking.nds.v1.NameTable"),
        "{err}"
    );
}

#[test]
fn json_round_trips_back_to_the_same_messages() {
    let cluster = eds_cluster();
    let back: Cluster = json::from_json(json::to_json(&cluster).unwrap()).unwrap();
    assert_eq!(back, cluster);

    let listener = http_listener();
    let back: Listener =
        json::from_json(json::to_json_with(&listener, FieldNames::Proto).unwrap()).unwrap();
    assert_eq!(back, listener);

    let packed = any::pack(&listener);
    let back: Any = json::from_json_any(json::to_json_any(&packed).unwrap()).unwrap();
    assert_eq!(any::unpack::<Listener>(&back).unwrap(), listener);
}
