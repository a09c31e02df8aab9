//! The embedded descriptor pool covers what sidecar resources and Envoy's admin carry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost::Name;
use serde_json::json;
use strait_proto::envoy;
use strait_proto::envoy::admin::v3::clusters_config_dump::DynamicCluster;
use strait_proto::envoy::admin::v3::{ClustersConfigDump, ConfigDump};
use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::google::protobuf::{Duration, Timestamp};
use strait_proto::xds::json::{self, FieldNames};
use strait_proto::xds::{any, descriptor_pool, type_url};

fn names() -> Vec<String> {
    use envoy::extensions::{access_loggers, filters, transport_sockets, upstreams};
    vec![
        envoy::config::bootstrap::v3::Bootstrap::full_name(),
        envoy::config::cluster::v3::Cluster::full_name(),
        envoy::config::endpoint::v3::ClusterLoadAssignment::full_name(),
        envoy::config::listener::v3::Listener::full_name(),
        envoy::config::route::v3::RouteConfiguration::full_name(),
        envoy::config::core::v3::TypedExtensionConfig::full_name(),
        envoy::service::discovery::v3::DiscoveryRequest::full_name(),
        envoy::service::discovery::v3::DeltaDiscoveryResponse::full_name(),
        envoy::admin::v3::ConfigDump::full_name(),
        envoy::admin::v3::BootstrapConfigDump::full_name(),
        envoy::admin::v3::ListenersConfigDump::full_name(),
        envoy::admin::v3::RoutesConfigDump::full_name(),
        envoy::admin::v3::EndpointsConfigDump::full_name(),
        envoy::admin::v3::SecretsConfigDump::full_name(),
        envoy::admin::v3::EcdsConfigDump::full_name(),
        filters::http::router::v3::Router::full_name(),
        filters::http::fault::v3::HttpFault::full_name(),
        filters::http::cors::v3::Cors::full_name(),
        filters::http::cors::v3::CorsPolicy::full_name(),
        filters::http::rbac::v3::Rbac::full_name(),
        filters::network::http_connection_manager::v3::HttpConnectionManager::full_name(),
        filters::network::tcp_proxy::v3::TcpProxy::full_name(),
        filters::listener::original_dst::v3::OriginalDst::full_name(),
        filters::listener::http_inspector::v3::HttpInspector::full_name(),
        filters::listener::tls_inspector::v3::TlsInspector::full_name(),
        upstreams::http::v3::HttpProtocolOptions::full_name(),
        transport_sockets::tls::v3::UpstreamTlsContext::full_name(),
        transport_sockets::tls::v3::DownstreamTlsContext::full_name(),
        transport_sockets::tls::v3::Secret::full_name(),
        transport_sockets::raw_buffer::v3::RawBuffer::full_name(),
        access_loggers::file::v3::FileAccessLog::full_name(),
        access_loggers::stream::v3::StdoutAccessLog::full_name(),
        envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate::full_name(),
        strait_proto::google::protobuf::Struct::full_name(),
        strait_proto::google::protobuf::UInt32Value::full_name(),
    ]
}

#[test]
fn the_pool_knows_every_type_a_sidecar_config_or_dump_uses() {
    let pool = descriptor_pool().unwrap();
    let missing: Vec<String> = names()
        .into_iter()
        .filter(|n| pool.get_message_by_name(n).is_none())
        .collect();
    assert!(missing.is_empty(), "missing from the pool: {missing:?}");
}

#[test]
fn config_dump_renders_three_levels_of_any_with_envoy_names() {
    let cluster = Cluster {
        name: "outbound|80||web.default.svc.cluster.local".to_string(),
        connect_timeout: Some(Duration {
            seconds: 10,
            nanos: 0,
        }),
        ..Default::default()
    };
    let clusters = ClustersConfigDump {
        version_info: "2024-01-01T00:00:00Z/7".to_string(),
        dynamic_active_clusters: vec![DynamicCluster {
            version_info: "2024-01-01T00:00:00Z/7".to_string(),
            cluster: Some(any::pack(&cluster)),
            last_updated: Some(Timestamp {
                seconds: 1_704_067_200,
                nanos: 0,
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let dump = ConfigDump {
        configs: vec![any::pack(&clusters)],
    };
    let got = json::to_json_with(&dump, FieldNames::Proto).unwrap();
    assert_eq!(
        got,
        json!({
            "configs": [{
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "version_info": "2024-01-01T00:00:00Z/7",
                "dynamic_active_clusters": [{
                    "version_info": "2024-01-01T00:00:00Z/7",
                    "cluster": {
                        "@type": type_url::CLUSTER,
                        "name": "outbound|80||web.default.svc.cluster.local",
                        "connect_timeout": "10s"
                    },
                    "last_updated": "2024-01-01T00:00:00Z"
                }]
            }]
        })
    );
}
