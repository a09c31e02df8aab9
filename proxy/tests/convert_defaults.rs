//! Envoy's defaults are applied where fields are unset, and explicit values win.

// Helpers outside #[test] functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use strait_proto::envoy::config::cluster::v3::{Cluster, OutlierDetection, cluster};
use strait_proto::envoy::config::core::v3::{
    Address, Http2ProtocolOptions, RuntimeFractionalPercent, SocketAddress, address, socket_address,
};
use strait_proto::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use strait_proto::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use strait_proto::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use strait_proto::envoy::extensions::filters::http::cors::v3::CorsPolicy as FilterCors;
use strait_proto::envoy::extensions::filters::http::router::v3::Router;
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
};
use strait_proto::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config},
};
use strait_proto::envoy::r#type::v3::FractionalPercent;
use strait_proto::google::protobuf::{Duration as PbDuration, UInt32Value};
use strait_proto::xds::any;
use strait_proxy::config::cluster::{Discovery, LbPolicy, Thresholds, UpstreamProtocol};
use strait_proxy::config::listener::{CodecType, NetworkFilter};
use strait_proxy::config::route::RouteAction as Action;
use strait_proxy::convert;

fn socket(host: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn eds_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(strait_proto::envoy::config::core::v3::ConfigSource {
                config_source_specifier: Some(
                    strait_proto::envoy::config::core::v3::config_source::ConfigSourceSpecifier::Ads(Default::default()),
                ),
                ..Default::default()
            }),
            service_name: String::new(),
        }),
        ..Default::default()
    }
}

#[test]
fn cluster_defaults() {
    let c = convert::cluster(&eds_cluster("outbound|80||a")).unwrap();
    assert_eq!(
        c.discovery,
        Discovery::Eds {
            service_name: "outbound|80||a".into()
        }
    );
    assert_eq!(c.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.thresholds, Thresholds::default());
    assert_eq!(c.http.protocol, UpstreamProtocol::Http1);
    assert_eq!(c.http.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(c.healthy_panic_threshold, 50.0);
    assert!(c.outlier_detection.is_none());
    assert_eq!(c.cleanup_interval, None);
}

#[test]
// The legacy (deprecated) HTTP/2 field is set on purpose below.
#[allow(deprecated)]
fn cluster_explicit_settings() {
    let mut pb = eds_cluster("outbound|80||a");
    pb.lb_policy = cluster::LbPolicy::LeastRequest as i32;
    pb.connect_timeout = Some(PbDuration {
        seconds: 1,
        nanos: 0,
    });
    pb.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: Some(UInt32Value { value: 7 }),
        enforcing_consecutive_5xx: Some(UInt32Value { value: 0 }),
        consecutive_gateway_failure: Some(UInt32Value { value: 3 }),
        enforcing_consecutive_gateway_failure: Some(UInt32Value { value: 100 }),
        ..Default::default()
    });
    let h2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions {
                        max_concurrent_streams: Some(UInt32Value { value: 100 }),
                        ..Default::default()
                    },
                )),
            },
        )),
        ..Default::default()
    };
    pb.typed_extension_protocol_options = HashMap::from([(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        any::pack(&h2),
    )]);
    let c = convert::cluster(&pb).unwrap();
    assert_eq!(c.lb_policy, LbPolicy::LeastRequest { choice_count: 2 });
    assert_eq!(c.connect_timeout, Duration::from_secs(1));
    assert_eq!(c.http.protocol, UpstreamProtocol::Http2);
    assert_eq!(c.http.max_concurrent_streams, Some(100));
    let od = c.outlier_detection.unwrap();
    assert_eq!(od.consecutive_5xx, 0, "not enforced: off");
    assert_eq!(od.consecutive_gateway_failure, 3);
    assert_eq!(
        (od.interval, od.base_ejection_time, od.max_ejection_percent),
        (Duration::from_secs(10), Duration::from_secs(30), 10)
    );

    // The legacy field next to the typed options is an error, as in Envoy.
    pb.http2_protocol_options = Some(Http2ProtocolOptions::default());
    let e = convert::cluster(&pb).unwrap_err();
    assert_eq!(e.field, "typed_extension_protocol_options");
}

fn dns_cluster(kind: cluster::DiscoveryType, hosts: &[(&str, u32)]) -> Cluster {
    Cluster {
        name: "ext".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: "ext".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: hosts
                    .iter()
                    .map(|(h, p)| LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(socket(h, *p)),
                            ..Default::default()
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn dns_clusters() {
    let c = convert::cluster(&dns_cluster(
        cluster::DiscoveryType::StrictDns,
        &[("example.com", 443), ("10.0.0.1", 80)],
    ))
    .unwrap();
    assert_eq!(
        c.discovery,
        Discovery::Dns {
            hosts: vec![("example.com".into(), 443), ("10.0.0.1".into(), 80)],
            logical: false,
            refresh: Duration::from_secs(5)
        }
    );
    let e = convert::cluster(&dns_cluster(
        cluster::DiscoveryType::LogicalDns,
        &[("a", 1), ("b", 2)],
    ))
    .unwrap_err();
    assert_eq!(e.field, "load_assignment");
    // STATIC clusters need IP addresses.
    let e = convert::cluster(&dns_cluster(
        cluster::DiscoveryType::Static,
        &[("example.com", 443)],
    ))
    .unwrap_err();
    assert_eq!(
        e.field,
        "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address"
    );
}

fn hcm_listener(hcm: HttpConnectionManager) -> Listener {
    Listener {
        name: "l".into(),
        address: Some(socket("0.0.0.0", 8080)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any::pack(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn hcm_defaults() {
    let hcm = HttpConnectionManager {
        stat_prefix: "s".into(),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any::pack(&Router::default()))),
            ..Default::default()
        }],
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(strait_proto::envoy::config::core::v3::ConfigSource {
                config_source_specifier: Some(
                    strait_proto::envoy::config::core::v3::config_source::ConfigSourceSpecifier::Ads(Default::default()),
                ),
                ..Default::default()
            }),
            route_config_name: "8080".into(),
        })),
        ..Default::default()
    };
    let l = convert::listener(&hcm_listener(hcm)).unwrap();
    assert!(l.bind_to_port, "bind_to_port defaults to true");
    let NetworkFilter::HttpConnectionManager(h) = &l.filter_chains[0].filter else {
        panic!()
    };
    assert_eq!(h.codec_type, CodecType::Auto);
    assert_eq!(h.stream_idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(h.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(h.request_timeout, None);
    assert_eq!(h.max_request_headers_kb, 60);
    assert!(h.generate_request_id);
    assert!(!h.use_remote_address);
}

fn one_route(r: Route) -> RouteConfiguration {
    RouteConfiguration {
        name: "r".into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![r],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn route_defaults_and_cors_switched_off() {
    let off = FilterCors {
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 0,
                denominator: 0,
            }),
            runtime_key: String::new(),
        }),
        ..Default::default()
    };
    let r = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(FractionalPercent {
                    numerator: 5,
                    denominator: 1,
                }),
                runtime_key: "k".into(),
            }),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster("c".into())),
            request_mirror_policies: vec![route_action::RequestMirrorPolicy {
                cluster: "shadow".into(),
                ..Default::default()
            }],
            ..Default::default()
        })),
        typed_per_filter_config: HashMap::from([(
            "envoy.filters.http.cors".to_string(),
            any::pack(&off),
        )]),
        ..Default::default()
    };
    let rc = convert::route_config(&one_route(r)).unwrap();
    let route = &rc.virtual_hosts[0].routes[0];
    assert!(route.route_match.case_sensitive);
    assert_eq!(route.route_match.fraction.map(|f| f.0), Some(500));
    assert!(route.cors.is_none(), "filter_enabled 0% switches CORS off");
    let Action::Forward(f) = &route.action else {
        panic!()
    };
    assert_eq!(f.timeout, Some(Duration::from_secs(15)));
    assert_eq!(f.mirrors[0].fraction.0, 1_000_000);
    assert_eq!(rc.max_direct_response_body_size_bytes, 4096);
}
