//! The HTTP connection manager as Istio builds it for sidecar listeners, with the HTTP
//! filters a stock Envoy has (Istio's own `istio.*` filters are left out).

use strait_proto::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, Http2ProtocolOptions, HttpProtocolOptions,
    config_source::ConfigSourceSpecifier,
};
use strait_proto::envoy::config::route::v3::RouteConfiguration;
use strait_proto::envoy::extensions::filters::http::cors::v3::Cors;
use strait_proto::envoy::extensions::filters::http::fault::v3::HttpFault;
use strait_proto::envoy::extensions::filters::http::grpc_stats::v3::{
    FilterConfig as GrpcStatsConfig, filter_config::PerMethodStatSpecifier,
};
use strait_proto::envoy::extensions::filters::http::router::v3::Router;
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, RequestIdExtension,
    http_connection_manager::{
        CodecType, ForwardClientCertDetails, PathWithEscapedSlashesAction, RouteSpecifier,
        SetCurrentClientCertDetails, UpgradeConfig,
    },
    http_filter::ConfigType,
};
use strait_proto::envoy::extensions::request_id::uuid::v3::UuidRequestIdConfig;
use strait_proto::google::protobuf::Any;
use strait_proto::xds::any;

use super::names;
use crate::model::Proxy;
use crate::xds::route::wkt;

/// Where the HCM gets its routes.
#[derive(Clone, Debug)]
pub enum RouteSource {
    /// RDS over ADS, by route configuration name.
    Rds(String),
    /// A route configuration carried inside the listener (inbound chains).
    Inline(Box<RouteConfiguration>),
}

/// What differs between the HCMs of one proxy.
#[derive(Clone, Debug)]
pub struct HcmOptions {
    pub stat_prefix: String,
    pub route: RouteSource,
    pub inbound: bool,
    /// The port speaks HTTP/2 or gRPC (inbound only: enables HTTP/2 options).
    pub http2: bool,
}

/// The server name Istio's inbound HCMs announce; outbound keeps Envoy's default.
const INBOUND_SERVER_NAME: &str = "istio-envoy";

pub fn build_hcm(opts: HcmOptions, proxy: &Proxy) -> HttpConnectionManager {
    let mut hcm = HttpConnectionManager {
        codec_type: CodecType::Auto as i32,
        stat_prefix: opts.stat_prefix,
        http_filters: http_filters(),
        path_with_escaped_slashes_action: PathWithEscapedSlashesAction::KeepUnchanged as i32,
        // Mesh pathNormalization defaults to BASE.
        normalize_path: Some(wkt::bool_value(true)),
        use_remote_address: Some(wkt::bool_value(false)),
        upgrade_configs: vec![UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        stream_idle_timeout: Some(wkt::zero_duration()),
        common_http_protocol_options: idle_timeout(proxy).map(|t| HttpProtocolOptions {
            idle_timeout: Some(t),
            ..Default::default()
        }),
        request_id_extension: Some(uuid_request_id()),
        proxy_100_continue: true,
        route_specifier: Some(route_specifier(opts.route)),
        ..Default::default()
    };
    if opts.inbound {
        hcm.server_name = INBOUND_SERVER_NAME.to_string();
        hcm.forward_client_cert_details = ForwardClientCertDetails::AppendForward as i32;
        hcm.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
            subject: Some(wkt::bool_value(true)),
            uri: true,
            dns: true,
            ..Default::default()
        });
        if opts.http2 {
            hcm.http2_protocol_options = Some(Http2ProtocolOptions::default());
        }
    }
    hcm
}

fn route_specifier(route: RouteSource) -> RouteSpecifier {
    match route {
        RouteSource::Rds(name) => RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: name,
        }),
        RouteSource::Inline(config) => RouteSpecifier::RouteConfig(*config),
    }
}

/// `ads: {}` with no initial fetch timeout, as Istio sends for every dynamic resource.
pub fn ads_config_source() -> ConfigSource {
    ConfigSource {
        initial_fetch_timeout: Some(wkt::zero_duration()),
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

/// Istio's sidecar filter order minus its own extensions: gRPC stats, fault and CORS (routes
/// configure the last two per route), then the router.
fn http_filters() -> Vec<HttpFilter> {
    let grpc_stats = GrpcStatsConfig {
        emit_filter_state: true,
        per_method_stat_specifier: Some(PerMethodStatSpecifier::StatsForAllMethods(
            wkt::bool_value(false),
        )),
        ..Default::default()
    };
    vec![
        http_filter(names::GRPC_STATS_HTTP_FILTER, any::pack(&grpc_stats)),
        http_filter(names::FAULT_HTTP_FILTER, any::pack(&HttpFault::default())),
        http_filter(names::CORS_HTTP_FILTER, any::pack(&Cors::default())),
        http_filter(names::ROUTER_HTTP_FILTER, any::pack(&Router::default())),
    ]
}

fn http_filter(name: &str, config: Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

fn uuid_request_id() -> RequestIdExtension {
    let config = UuidRequestIdConfig {
        use_request_id_for_trace_sampling: Some(wkt::bool_value(true)),
        ..Default::default()
    };
    RequestIdExtension {
        typed_config: Some(any::pack(&config)),
    }
}

/// The proxy's `IDLE_TIMEOUT` metadata (a Go duration), applied to HCMs and TCP proxies.
pub fn idle_timeout(proxy: &Proxy) -> Option<strait_proto::google::protobuf::Duration> {
    let raw = proxy.metadata.raw.get("IDLE_TIMEOUT")?.as_str()?;
    strait_proto::istio::Duration::parse(raw)
        .ok()
        .map(|d| wkt::istio_duration(&d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> Proxy {
        Proxy::from_node(
            "sidecar~10.0.0.1~a.default~default.svc.cluster.local",
            Default::default(),
            Default::default(),
        )
        .unwrap()
    }

    #[test]
    fn outbound_hcm_uses_rds_over_ads() {
        let hcm = build_hcm(
            HcmOptions {
                stat_prefix: "outbound_0.0.0.0_9080;".into(),
                route: RouteSource::Rds("9080".into()),
                inbound: false,
                http2: false,
            },
            &proxy(),
        );
        match hcm.route_specifier {
            Some(RouteSpecifier::Rds(rds)) => {
                assert_eq!(rds.route_config_name, "9080");
                let source = rds.config_source.unwrap();
                assert!(matches!(
                    source.config_source_specifier,
                    Some(ConfigSourceSpecifier::Ads(_))
                ));
                assert_eq!(source.initial_fetch_timeout, Some(wkt::zero_duration()));
            }
            other => panic!("expected RDS, got {other:?}"),
        }
        let filters: Vec<_> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            filters,
            [
                "envoy.filters.http.grpc_stats",
                "envoy.filters.http.fault",
                "envoy.filters.http.cors",
                "envoy.filters.http.router"
            ]
        );
        assert!(hcm.server_name.is_empty());
        assert_eq!(hcm.stream_idle_timeout, Some(wkt::zero_duration()));
        assert_eq!(hcm.upgrade_configs[0].upgrade_type, "websocket");
    }

    #[test]
    fn inbound_hcm_sets_server_name_and_client_cert_forwarding() {
        let hcm = build_hcm(
            HcmOptions {
                stat_prefix: "inbound_0.0.0.0_9080;".into(),
                route: RouteSource::Inline(Box::default()),
                inbound: true,
                http2: true,
            },
            &proxy(),
        );
        assert_eq!(hcm.server_name, "istio-envoy");
        assert_eq!(
            hcm.forward_client_cert_details,
            ForwardClientCertDetails::AppendForward as i32
        );
        assert!(hcm.http2_protocol_options.is_some());
        assert!(matches!(
            hcm.route_specifier,
            Some(RouteSpecifier::RouteConfig(_))
        ));
    }

    #[test]
    fn idle_timeout_from_metadata() {
        let mut p = proxy();
        assert!(idle_timeout(&p).is_none());
        p.metadata
            .raw
            .insert("IDLE_TIMEOUT".into(), serde_json::json!("1h"));
        assert_eq!(idle_timeout(&p).unwrap().seconds, 3600);
    }
}
