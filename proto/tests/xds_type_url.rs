#![allow(clippy::unwrap_used, clippy::expect_used)]
use prost::Name;
use strait_proto::envoy::config::bootstrap::v3::Bootstrap;
use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::core::v3::TypedExtensionConfig;
use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use strait_proto::envoy::config::listener::v3::Listener;
use strait_proto::envoy::config::route::v3::RouteConfiguration;
use strait_proto::envoy::extensions::transport_sockets::tls::v3::Secret;
use strait_proto::xds::type_url::{self, *};

#[test]
fn envoy_urls_are_the_well_known_strings_and_match_envoy_types() {
    let cases = [
        (
            CLUSTER,
            "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Cluster::type_url(),
        ),
        (
            ENDPOINT,
            "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            ClusterLoadAssignment::type_url(),
        ),
        (
            LISTENER,
            "type.googleapis.com/envoy.config.listener.v3.Listener",
            Listener::type_url(),
        ),
        (
            ROUTE,
            "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            RouteConfiguration::type_url(),
        ),
        (
            SECRET,
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            Secret::type_url(),
        ),
        (
            EXTENSION_CONFIG,
            "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            TypedExtensionConfig::type_url(),
        ),
        (
            BOOTSTRAP,
            "type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap",
            Bootstrap::type_url(),
        ),
    ];
    for (constant, literal, derived) in cases {
        assert_eq!(constant, literal);
        assert_eq!(constant, derived);
    }
    assert_eq!(
        NAME_TABLE,
        "type.googleapis.com/istio.networking.nds.v1.NameTable"
    );
}

#[test]
fn metric_types_follow_istio() {
    let expected = [
        (CLUSTER, "cds"),
        (ENDPOINT, "eds"),
        (LISTENER, "lds"),
        (ROUTE, "rds"),
        (SECRET, "sds"),
        (EXTENSION_CONFIG, "ecds"),
        (NAME_TABLE, "nds"),
        (PROXY_CONFIG, "pcds"),
        (ADDRESS, "wds"),
        (WORKLOAD, "wds"),
        (WORKLOAD_AUTHORIZATION, "wads"),
    ];
    for (url, short) in expected {
        assert_eq!(metric_type(url), short, "{url}");
        assert_eq!(short_type(url), short.to_uppercase(), "{url}");
    }
    // Bootstrap has a metric label but, as in Istio, no log name.
    assert_eq!(metric_type(BOOTSTRAP), "bds");
    assert_eq!(short_type(BOOTSTRAP), BOOTSTRAP);
    assert_eq!(
        metric_type("type.googleapis.com/foo.Bar"),
        "type.googleapis.com/foo.Bar"
    );
    assert_eq!(short_type(HEALTH_INFO), HEALTH_INFO);
}

#[test]
fn short_names_map_back_case_insensitively() {
    for url in [
        CLUSTER,
        ENDPOINT,
        LISTENER,
        ROUTE,
        SECRET,
        EXTENSION_CONFIG,
        NAME_TABLE,
    ] {
        assert_eq!(from_short(metric_type(url)), Some(url));
        assert_eq!(from_short(short_type(url)), Some(url));
    }
    assert_eq!(from_short("Cds"), Some(CLUSTER));
    assert_eq!(from_short("wds"), Some(ADDRESS));
    assert_eq!(from_short("bds"), None);
    assert_eq!(from_short("xyz"), None);
}

#[test]
fn wildcard_types_follow_the_xds_spec_and_istio() {
    for url in [
        CLUSTER,
        LISTENER,
        NAME_TABLE,
        PROXY_CONFIG,
        ADDRESS,
        WORKLOAD,
        DEBUG,
    ] {
        assert!(is_wildcard(url), "{url} should be wildcard");
    }
    assert!(is_wildcard("type.googleapis.com/istio.something.New"));
    for url in [ENDPOINT, ROUTE, SECRET, EXTENSION_CONFIG] {
        assert!(!is_wildcard(url), "{url} should be named");
    }
}

#[test]
fn envoy_types_are_told_apart_from_istio_types() {
    assert!(type_url::is_envoy_type(CLUSTER));
    assert!(type_url::is_envoy_type(SECRET));
    assert!(!type_url::is_envoy_type(NAME_TABLE));
    assert!(!type_url::is_envoy_type(DEBUG));
}
