//! Rejections name the resource, the proto field path and the reason: the text a NACK
//! carries back to the control plane.

// Helpers outside #[test] functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use strait_proto::envoy::config::cluster::v3::{Cluster, cluster};
use strait_proto::envoy::config::core::v3::{
    Address, SocketAddress, TransportSocket, address, socket_address, transport_socket,
};
use strait_proto::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use strait_proto::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use strait_proto::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use strait_proto::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use strait_proto::envoy::extensions::filters::http::router::v3::Router;
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager::RouteSpecifier, http_filter,
};
use strait_proto::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use strait_proto::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use strait_proto::envoy::r#type::matcher::v3::RegexMatcher;
use strait_proto::envoy::r#type::v3::FractionalPercent;
use strait_proto::google::protobuf::Any;
use strait_proto::xds::any;
use strait_proxy::config::ConfigError;
use strait_proxy::config::listener::{HttpFilter as Filt, NetworkFilter, RouteSource};
use strait_proxy::config::route::RouteConfig;

fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn listener(filters: Vec<Filter>) -> Listener {
    Listener {
        name: "0.0.0.0_9080".into(),
        address: Some(socket("0.0.0.0", 9080)),
        filter_chains: vec![FilterChain {
            filters,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn network_filter(name: &str, config: Any) -> Filter {
    Filter {
        name: name.into(),
        config_type: Some(filter::ConfigType::TypedConfig(config)),
    }
}

fn http_filter(name: &str, config: Any, is_optional: bool) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        is_optional,
        disabled: false,
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
    }
}

fn hcm(http_filters: Vec<HttpFilter>, routes: RouteConfiguration) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: "inbound_0.0.0.0_9080".into(),
        http_filters,
        route_specifier: Some(RouteSpecifier::RouteConfig(routes)),
        ..Default::default()
    };
    network_filter(
        "envoy.filters.network.http_connection_manager",
        any::pack(&hcm),
    )
}

fn router() -> HttpFilter {
    http_filter(
        "envoy.filters.http.router",
        any::pack(&Router::default()),
        false,
    )
}

fn foreign(type_url: &str) -> Any {
    Any {
        type_url: format!("type.googleapis.com/{type_url}"),
        value: vec![],
    }
}

fn routes(r: Route) -> RouteConfiguration {
    RouteConfiguration {
        name: "9080".into(),
        virtual_hosts: vec![VirtualHost {
            name: "ratings.default.svc.cluster.local:9080".into(),
            domains: vec!["ratings".into()],
            routes: vec![r],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn to_cluster(m: RouteMatch) -> Route {
    Route {
        r#match: Some(m),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                "outbound|9080||ratings".into(),
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn prefix(p: &str) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix(p.into())),
        ..Default::default()
    }
}

#[track_caller]
fn assert_names(e: &ConfigError, resource: &str, field: &str, reason: &str) {
    assert_eq!(e.resource, resource, "{e}");
    assert_eq!(e.field, field, "{e}");
    assert!(
        e.reason.contains(reason),
        "reason {:?} lacks {reason:?}",
        e.reason
    );
    assert_eq!(e.to_string(), format!("{resource}: {field}: {}", e.reason));
}

#[test]
fn listener_with_an_unknown_network_filter() {
    let tcp = TcpProxy {
        stat_prefix: "tcp".into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster("c".into())),
        ..Default::default()
    };
    let l = listener(vec![
        network_filter(
            "envoy.filters.network.mongo_proxy",
            foreign("envoy.extensions.filters.network.mongo_proxy.v3.MongoProxy"),
        ),
        network_filter("envoy.filters.network.tcp_proxy", any::pack(&tcp)),
    ]);
    let e = strait_proxy::config::listener::Listener::try_from(&l).unwrap_err();
    assert_names(
        &e,
        "Listener 0.0.0.0_9080",
        "filter_chains[0].filters[0]",
        "unsupported network filter 'envoy.filters.network.mongo_proxy'",
    );

    let only_unknown = listener(vec![network_filter("acme", foreign("acme.Filter"))]);
    let e = strait_proxy::config::listener::Listener::try_from(&only_unknown).unwrap_err();
    assert_names(
        &e,
        "Listener 0.0.0.0_9080",
        "filter_chains[0].filters[0]",
        "type URL 'type.googleapis.com/acme.Filter'",
    );

    // The same chain with just the TCP proxy is fine.
    let ok = listener(vec![network_filter(
        "envoy.filters.network.tcp_proxy",
        any::pack(&tcp),
    )]);
    let l = strait_proxy::config::listener::Listener::try_from(&ok).unwrap();
    assert!(
        matches!(&l.filter_chains[0].filter, NetworkFilter::TcpProxy(t) if t.idle_timeout == Some(std::time::Duration::from_secs(3600)))
    );
}

#[test]
fn hcm_with_an_unknown_http_filter_unless_optional() {
    let rc = routes(to_cluster(prefix("/")));
    let l = listener(vec![hcm(
        vec![
            http_filter("istio.stats", foreign("stats.PluginConfig"), false),
            router(),
        ],
        rc.clone(),
    )]);
    let e = convert_listener(&l).unwrap_err();
    assert_names(
        &e,
        "Listener 0.0.0.0_9080",
        "filter_chains[0].filters[0].typed_config.http_filters[0]",
        "unsupported HTTP filter 'istio.stats'",
    );

    let optional = listener(vec![hcm(
        vec![
            http_filter("istio.stats", foreign("stats.PluginConfig"), true),
            router(),
        ],
        rc.clone(),
    )]);
    let l = convert_listener(&optional).unwrap();
    let NetworkFilter::HttpConnectionManager(h) = &l.filter_chains[0].filter else {
        panic!()
    };
    assert!(matches!(h.http_filters.as_slice(), [Filt::Router]));
    assert!(matches!(&h.route_source, RouteSource::Inline(r) if r.virtual_hosts.len() == 1));

    let router_not_last = listener(vec![hcm(
        vec![
            router(),
            http_filter(
                "envoy.filters.http.fault",
                any::pack(&HttpFault::default()),
                false,
            ),
        ],
        rc,
    )]);
    let e = convert_listener(&router_not_last).unwrap_err();
    assert_names(
        &e,
        "Listener 0.0.0.0_9080",
        "filter_chains[0].filters[0].typed_config.http_filters[0]",
        "must be the last",
    );
}

fn convert_listener(l: &Listener) -> Result<strait_proxy::config::listener::Listener, ConfigError> {
    strait_proxy::convert::listener(l)
}

#[test]
fn listener_with_tls_is_kept_not_rejected() {
    let tcp = TcpProxy {
        stat_prefix: "tcp".into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster("c".into())),
        ..Default::default()
    };
    let mut l = listener(vec![network_filter(
        "envoy.filters.network.tcp_proxy",
        any::pack(&tcp),
    )]);
    l.filter_chains[0].transport_socket = Some(TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any::pack(
            &DownstreamTlsContext::default(),
        ))),
    });
    let out = convert_listener(&l).unwrap();
    assert!(out.filter_chains[0].has_transport_socket);
}

#[test]
fn route_with_an_invalid_regex() {
    let m = RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::SafeRegex(RegexMatcher {
            regex: "/api/(v1|v2".into(),
            engine_type: None,
        })),
        ..Default::default()
    };
    let e = RouteConfig::try_from(&routes(to_cluster(m.clone()))).unwrap_err();
    assert_names(
        &e,
        "RouteConfiguration 9080",
        "virtual_hosts[0].routes[0].match.safe_regex.regex",
        "invalid regex '/api/(v1|v2'",
    );

    // Inside a listener's inline route config the listener is named, with the full path.
    let l = listener(vec![hcm(vec![router()], routes(to_cluster(m)))]);
    let e = convert_listener(&l).unwrap_err();
    assert_names(
        &e,
        "Listener 0.0.0.0_9080",
        "filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].match.safe_regex.regex",
        "invalid regex",
    );
}

#[test]
fn cluster_with_an_unsupported_type() {
    let custom = Cluster {
        name: "aggregate".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::ClusterType(
            cluster::CustomClusterType {
                name: "envoy.clusters.aggregate".into(),
                typed_config: None,
            },
        )),
        ..Default::default()
    };
    let e = strait_proxy::config::cluster::Cluster::try_from(&custom).unwrap_err();
    assert_names(
        &e,
        "Cluster aggregate",
        "cluster_type",
        "custom cluster type 'envoy.clusters.aggregate' is not supported",
    );

    let unknown = Cluster {
        name: "weird".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(42)),
        ..Default::default()
    };
    let e = strait_proxy::convert::cluster(&unknown).unwrap_err();
    assert_names(
        &e,
        "Cluster weird",
        "type",
        "unknown cluster discovery type 42",
    );

    let bad_lb = Cluster {
        name: "passthrough".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::RoundRobin as i32,
        ..Default::default()
    };
    let e = strait_proxy::convert::cluster(&bad_lb).unwrap_err();
    assert_names(
        &e,
        "Cluster passthrough",
        "lb_policy",
        "only CLUSTER_PROVIDED",
    );
}

fn cla(ip: &str) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: "outbound|9080||reviews.default.svc.cluster.local".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(ip, 9080)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn cla_with_a_bad_address() {
    let e = strait_proxy::config::endpoint::ClusterLoadAssignment::try_from(&cla("10.0.0.300"))
        .unwrap_err();
    assert_names(
        &e,
        "ClusterLoadAssignment outbound|9080||reviews.default.svc.cluster.local",
        "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address",
        "'10.0.0.300' is not an IP address",
    );
    let ok = strait_proxy::convert::cluster_load_assignment(&cla("10.0.0.3")).unwrap();
    assert_eq!(ok.endpoints[0].address, "10.0.0.3:9080".parse().unwrap());
    assert_eq!(ok.endpoints[0].weight, 1);

    let mut named = cla("10.0.0.3");
    named.endpoints[0].lb_endpoints[0].host_identifier =
        Some(lb_endpoint::HostIdentifier::EndpointName("ep1".into()));
    let e = strait_proxy::convert::cluster_load_assignment(&named).unwrap_err();
    assert_names(
        &e,
        &e.resource.clone(),
        "endpoints[0].lb_endpoints[0].endpoint_name",
        "named endpoints",
    );
}

#[test]
fn fractional_percent_with_an_unknown_denominator() {
    let fault = HttpFault {
        abort: Some(FaultAbort {
            percentage: Some(FractionalPercent {
                numerator: 50,
                denominator: 7,
            }),
            error_type: Some(fault_abort::ErrorType::HttpStatus(503)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut r = to_cluster(prefix("/"));
    r.typed_per_filter_config =
        HashMap::from([("envoy.filters.http.fault".to_string(), any::pack(&fault))]);
    let e = RouteConfig::try_from(&routes(r)).unwrap_err();
    assert_names(
        &e,
        "RouteConfiguration 9080",
        "virtual_hosts[0].routes[0].typed_per_filter_config[\"envoy.filters.http.fault\"].abort.percentage.denominator",
        "unknown denominator 7",
    );

    // The same fault with a known denominator converts to parts per million.
    let mut ok = fault.clone();
    if let Some(a) = ok.abort.as_mut() {
        a.percentage = Some(FractionalPercent {
            numerator: 25,
            denominator: 1,
        });
    }
    let mut r = to_cluster(prefix("/"));
    r.typed_per_filter_config =
        HashMap::from([("envoy.filters.http.fault".to_string(), any::pack(&ok))]);
    let rc = RouteConfig::try_from(&routes(r)).unwrap();
    let f = rc.virtual_hosts[0].routes[0].fault.as_ref().unwrap();
    assert_eq!(f.abort.as_ref().map(|(_, p)| p.0), Some(2_500));
}
