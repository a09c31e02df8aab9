//! The Envoy v3 bootstrap for a sidecar, shaped like Istio's
//! (`tools/packaging/common/envoy_bootstrap.json`): the node identity, the admin
//! endpoint, ADS through the `xds-grpc` cluster, Istio's stats tags and inclusion
//! list, and the static `prometheus_stats` and `agent` clusters behind the 15090
//! (`/stats/prometheus`) and 15021 (`/healthz/ready`) listeners.
//!
//! One difference from Istio: Istio points `xds-grpc` at a Unix socket served by the
//! agent's xDS proxy, which forwards to istiod over mTLS. Strait's agent has no xDS
//! proxy; `xds-grpc` reaches the discovery address directly over plaintext TCP (a
//! STATIC cluster for an IP, STRICT_DNS for a name). There is no `sds-grpc` cluster
//! either, as there is no SDS server.

use std::net::IpAddr;
use std::path::Path;

use serde_json::{Value, json};
use strait_proto::envoy::config::bootstrap::v3::Bootstrap;

use crate::config::{AdsApi, AgentConfig, StatsInclusion};
use crate::node::NodeIdentity;

pub const XDS_CLUSTER: &str = "xds-grpc";
pub const PROMETHEUS_CLUSTER: &str = "prometheus_stats";
pub const AGENT_CLUSTER: &str = "agent";

/// Stats Istio's readiness and drain logic need, always kept.
const REQUIRED_PREFIXES: &[&str] = &[
    "cluster_manager",
    "listener_manager",
    "server",
    "cluster.xds-grpc",
    "wasm",
];
const RBAC_SUFFIXES: &[&str] = &[
    "rbac.allowed",
    "rbac.denied",
    "shadow_allowed",
    "shadow_denied",
];
/// Counted by the drain with `EXIT_ON_ZERO_ACTIVE_CONNECTIONS`.
const DRAIN_SUFFIX: &str = "downstream_cx_active";
const REQUIRED_REGEX: &str = r"vhost\..*\.route\..*";

/// Istio's tag extractors, which give the Prometheus output its label names.
const STATS_TAGS: &[(&str, &str)] = &[
    (
        "cluster_name",
        r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)",
    ),
    ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
    (
        "http_conn_manager_listener_prefix",
        r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    (
        "http_conn_manager_prefix",
        r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    (
        "listener_address",
        r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    ("cache", r"(cache\.(.+?)\.)"),
    ("component", r"(component\.(.+?)\.)"),
    ("tag", r"(tag\.(.+?);\.)"),
];

/// The inputs of the bootstrap, apart from the identity.
#[derive(Debug, Clone)]
pub struct BootstrapParams<'a> {
    pub node: &'a NodeIdentity,
    pub admin_port: u16,
    pub status_port: u16,
    pub envoy_status_port: u16,
    pub prometheus_port: u16,
    pub discovery_host: &'a str,
    pub discovery_port: u16,
    pub ads_api: AdsApi,
    pub stats: &'a StatsInclusion,
    pub exit_on_zero_active_connections: bool,
    pub outlier_log_path: Option<&'a str>,
    /// IPv6-only pods listen and call the admin on `::`/`::1`.
    pub ipv6: bool,
}

impl<'a> BootstrapParams<'a> {
    pub fn from_config(c: &'a AgentConfig) -> BootstrapParams<'a> {
        BootstrapParams {
            node: &c.node,
            admin_port: c.ports.admin,
            status_port: c.ports.status,
            envoy_status_port: c.ports.envoy_status,
            prometheus_port: c.ports.prometheus,
            discovery_host: &c.discovery_host,
            discovery_port: c.discovery_port,
            ads_api: c.ads_api,
            stats: &c.stats,
            exit_on_zero_active_connections: c.drain.exit_on_zero_active_connections,
            outlier_log_path: c.outlier_log_path.as_deref(),
            ipv6: c.ipv6_only(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the generated bootstrap is not a valid Envoy bootstrap: {0}")]
    Invalid(String),
    #[error("cannot write the bootstrap to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "protocol": "TCP", "address": address, "port_value": port } })
}

fn static_cluster(name: &str, address: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(address, port) } }] }],
        },
    })
}

fn xds_cluster(host: &str, port: u16) -> Value {
    let kind = if host.parse::<IpAddr>().is_ok() {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    let limits = |priority: &str| {
        json!({
            "priority": priority,
            "max_connections": 100000,
            "max_pending_requests": 100000,
            "max_requests": 100000,
        })
    };
    let mut cluster = json!({
        "name": XDS_CLUSTER,
        "type": kind,
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(host, port) } }] }],
        },
        "circuit_breakers": { "thresholds": [limits("DEFAULT"), limits("HIGH")] },
        "upstream_connection_options": { "tcp_keepalive": { "keepalive_time": 300 } },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
    });
    if kind == "STRICT_DNS" {
        cluster["dns_lookup_family"] = json!("V4_PREFERRED");
    }
    cluster
}

/// A static listener whose only route sends `prefix` to `cluster`.
fn forwarding_listener(
    name: &str,
    wildcard: &str,
    port: u16,
    stat_prefix: &str,
    prefix: &str,
    cluster: &str,
) -> Value {
    json!({
        "name": name,
        "address": socket_address(wildcard, port),
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "codec_type": "AUTO",
                "stat_prefix": stat_prefix,
                "route_config": {
                    "virtual_hosts": [{
                        "name": "backend",
                        "domains": ["*"],
                        "routes": [{ "match": { "prefix": prefix }, "route": { "cluster": cluster } }],
                    }],
                },
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                }],
            },
        }]}],
    })
}

fn stats_config(stats: &StatsInclusion, exit_on_zero: bool) -> Value {
    let mut patterns = vec![json!({ "prefix": "reporter=" })];
    let prefixes = stats
        .prefixes
        .iter()
        .map(String::as_str)
        .chain(REQUIRED_PREFIXES.iter().copied())
        .chain(["component", "istio"]);
    patterns.extend(prefixes.map(|p| json!({ "prefix": p })));
    let drain = exit_on_zero.then_some(DRAIN_SUFFIX);
    let suffixes = stats
        .suffixes
        .iter()
        .map(String::as_str)
        .chain(RBAC_SUFFIXES.iter().copied())
        .chain(drain);
    patterns.extend(suffixes.map(|s| json!({ "suffix": s })));
    let regexps = stats
        .regexps
        .iter()
        .map(String::as_str)
        .chain([REQUIRED_REGEX]);
    patterns.extend(regexps.map(|r| json!({ "safe_regex": { "regex": r } })));
    let tags: Vec<Value> = STATS_TAGS
        .iter()
        .map(|(name, regex)| json!({ "tag_name": name, "regex": regex }))
        .collect();
    json!({
        "use_all_default_tags": false,
        "stats_tags": tags,
        "stats_matcher": { "inclusion_list": { "patterns": patterns } },
    })
}

/// The bootstrap as Envoy JSON (proto field names).
pub fn render(p: &BootstrapParams<'_>) -> Value {
    let (localhost, wildcard) = if p.ipv6 {
        ("::1", "::")
    } else {
        ("127.0.0.1", "0.0.0.0")
    };
    let mut node = json!({
        "id": p.node.id,
        "cluster": p.node.cluster,
        "metadata": p.node.metadata,
    });
    let l = &p.node.locality;
    let mut locality = serde_json::Map::new();
    for (key, value) in [
        ("region", &l.region),
        ("zone", &l.zone),
        ("sub_zone", &l.sub_zone),
    ] {
        if !value.is_empty() {
            locality.insert(key.into(), json!(value));
        }
    }
    if !locality.is_empty() {
        node["locality"] = Value::Object(locality);
    }
    let api_type = match p.ads_api {
        AdsApi::Sotw => "GRPC",
        AdsApi::Delta => "DELTA_GRPC",
    };
    let ads_source =
        json!({ "ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3" });
    let mut bootstrap = json!({
        "node": node,
        "layered_runtime": {
            "layers": [
                { "name": "global config", "static_layer": {
                    "overload.global_downstream_max_connections": "2147483647",
                    "re2.max_program_size.error_level": "32768",
                } },
                { "name": "admin", "admin_layer": {} },
            ],
        },
        "stats_config": stats_config(p.stats, p.exit_on_zero_active_connections),
        "admin": {
            "access_log": [{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": "/dev/null",
                },
            }],
            "address": socket_address(localhost, p.admin_port),
        },
        "dynamic_resources": {
            "lds_config": ads_source,
            "cds_config": ads_source,
            "ads_config": {
                "api_type": api_type,
                "set_node_on_first_message_only": true,
                "transport_api_version": "V3",
                "grpc_services": [{ "envoy_grpc": { "cluster_name": XDS_CLUSTER } }],
            },
        },
        "static_resources": {
            "clusters": [
                static_cluster(PROMETHEUS_CLUSTER, localhost, p.admin_port),
                static_cluster(AGENT_CLUSTER, localhost, p.status_port),
                xds_cluster(p.discovery_host, p.discovery_port),
            ],
            "listeners": [
                forwarding_listener(
                    &format!("{wildcard}_{}", p.prometheus_port),
                    wildcard,
                    p.prometheus_port,
                    "stats",
                    "/stats/prometheus",
                    PROMETHEUS_CLUSTER,
                ),
                forwarding_listener(
                    &format!("{wildcard}_{}", p.envoy_status_port),
                    wildcard,
                    p.envoy_status_port,
                    "agent",
                    "/healthz/ready",
                    AGENT_CLUSTER,
                ),
            ],
        },
    });
    if let Some(path) = p.outlier_log_path {
        bootstrap["cluster_manager"] = json!({ "outlier_detection": { "event_log_path": path } });
    }
    bootstrap
}

/// Reads the JSON back as Envoy's `Bootstrap` message: every field name, enum value
/// and `@type` must be one Envoy knows.
pub fn check(bootstrap: &Value) -> Result<Bootstrap, BootstrapError> {
    strait_proto::xds::json::from_json::<Bootstrap>(bootstrap.clone())
        .map_err(|e| BootstrapError::Invalid(e.to_string()))
}

/// Writes the bootstrap atomically (a temporary file renamed into place), creating
/// the directory.
pub fn write(path: &Path, bootstrap: &Value) -> Result<(), BootstrapError> {
    let err = |source| BootstrapError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let text = serde_json::to_string_pretty(bootstrap)
        .map_err(|e| BootstrapError::Invalid(e.to_string()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use serde_json::Map;
    use strait_proto::envoy::config::core::v3::api_config_source::ApiType;

    use super::*;
    use crate::node::Locality;

    fn node() -> NodeIdentity {
        let mut metadata = Map::new();
        metadata.insert("NAMESPACE".into(), json!("default"));
        metadata.insert("LABELS".into(), json!({"app": "reviews", "version": "v1"}));
        metadata.insert("INSTANCE_IPS".into(), json!("10.1.0.7"));
        metadata.insert("ENVOY_STATUS_PORT".into(), json!(15021));
        NodeIdentity {
            id: "sidecar~10.1.0.7~reviews-v1.default~default.svc.cluster.local".into(),
            cluster: "reviews.default".into(),
            locality: Locality {
                region: "r".into(),
                zone: String::new(),
                sub_zone: String::new(),
            },
            metadata,
        }
    }

    fn params<'a>(
        node: &'a NodeIdentity,
        stats: &'a StatsInclusion,
        host: &'a str,
    ) -> BootstrapParams<'a> {
        BootstrapParams {
            node,
            admin_port: 15000,
            status_port: 15020,
            envoy_status_port: 15021,
            prometheus_port: 15090,
            discovery_host: host,
            discovery_port: 15010,
            ads_api: AdsApi::Delta,
            stats,
            exit_on_zero_active_connections: true,
            outlier_log_path: Some("/dev/stdout"),
            ipv6: false,
        }
    }

    fn static_named<'a>(
        b: &'a Bootstrap,
        name: &str,
    ) -> &'a strait_proto::envoy::config::cluster::v3::Cluster {
        b.static_resources
            .as_ref()
            .unwrap()
            .clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no static cluster {name}"))
    }

    #[test]
    fn what_envoy_and_pilot_rely_on() {
        let n = node();
        let stats = StatsInclusion {
            prefixes: vec!["cluster.outbound".into()],
            ..StatsInclusion::default()
        };
        let value = render(&params(&n, &stats, "10.0.0.1"));
        let b = check(&value).unwrap();

        let node = b.node.as_ref().unwrap();
        assert_eq!(
            node.id,
            "sidecar~10.1.0.7~reviews-v1.default~default.svc.cluster.local"
        );
        assert_eq!(node.cluster, "reviews.default");
        assert_eq!(node.locality.as_ref().unwrap().region, "r");
        let meta = strait_proto::xds::json::to_json(node.metadata.as_ref().unwrap()).unwrap();
        assert_eq!(meta["LABELS"]["app"], "reviews");
        assert_eq!(meta["NAMESPACE"], "default");

        let admin = b.admin.as_ref().unwrap().address.as_ref().unwrap();
        let admin = strait_proto::xds::json::to_json(admin).unwrap();
        assert_eq!(admin["socketAddress"]["address"], "127.0.0.1");
        assert_eq!(admin["socketAddress"]["portValue"], 15000);

        let dynamic = b.dynamic_resources.as_ref().unwrap();
        let ads = dynamic.ads_config.as_ref().unwrap();
        assert_eq!(ads.api_type, ApiType::DeltaGrpc as i32);
        assert!(ads.set_node_on_first_message_only);
        assert!(dynamic.lds_config.is_some() && dynamic.cds_config.is_some());

        let xds = static_named(&b, XDS_CLUSTER);
        assert_eq!(
            xds.typed_extension_protocol_options.len(),
            1,
            "HTTP/2 to the control plane"
        );
        let xds = strait_proto::xds::json::to_json(xds).unwrap();
        assert_eq!(xds["type"], "STATIC");
        let ep = &xds["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"];
        assert_eq!(
            (ep["address"].as_str(), ep["portValue"].as_u64()),
            (Some("10.0.0.1"), Some(15010))
        );
        for (cluster, port) in [(PROMETHEUS_CLUSTER, 15000), (AGENT_CLUSTER, 15020)] {
            let c = strait_proto::xds::json::to_json(static_named(&b, cluster)).unwrap();
            let ep = &c["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]
                ["socketAddress"];
            assert_eq!(
                (ep["address"].as_str(), ep["portValue"].as_u64()),
                (Some("127.0.0.1"), Some(port))
            );
        }

        let listeners = &value["static_resources"]["listeners"];
        for (port, path, cluster) in [
            (15090, "/stats/prometheus", PROMETHEUS_CLUSTER),
            (15021, "/healthz/ready", AGENT_CLUSTER),
        ] {
            let l = listeners
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["address"]["socket_address"]["port_value"] == port)
                .unwrap_or_else(|| panic!("no listener on {port}"));
            assert_eq!(l["address"]["socket_address"]["address"], "0.0.0.0");
            let route = &l["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
                [0]["routes"][0];
            assert_eq!(route["match"]["prefix"], path);
            assert_eq!(route["route"]["cluster"], cluster);
        }

        let patterns =
            value["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"].to_string();
        for needed in [
            "cluster.outbound",
            "cluster_manager",
            "listener_manager",
            "server",
            "downstream_cx_active",
            "reporter=",
        ] {
            assert!(
                patterns.contains(needed),
                "{needed} missing from {patterns}"
            );
        }
        assert_eq!(
            value["cluster_manager"]["outlier_detection"]["event_log_path"],
            "/dev/stdout"
        );
    }

    #[test]
    fn a_discovery_name_is_resolved_by_dns_and_sotw_is_grpc() {
        let n = node();
        let stats = StatsInclusion::default();
        let mut p = params(&n, &stats, "istiod.istio-system.svc");
        p.ads_api = AdsApi::Sotw;
        p.exit_on_zero_active_connections = false;
        let value = render(&p);
        let b = check(&value).unwrap();
        let xds = strait_proto::xds::json::to_json(static_named(&b, XDS_CLUSTER)).unwrap();
        assert_eq!(xds["type"], "STRICT_DNS");
        assert_eq!(
            b.dynamic_resources.unwrap().ads_config.unwrap().api_type,
            ApiType::Grpc as i32
        );
        assert!(
            !value["stats_config"]
                .to_string()
                .contains("downstream_cx_active")
        );
    }

    #[test]
    fn ipv6_pods_use_ipv6_loopback_and_wildcard() {
        let n = node();
        let stats = StatsInclusion::default();
        let mut p = params(&n, &stats, "fd00::1");
        p.ipv6 = true;
        let value = render(&p);
        check(&value).unwrap();
        assert_eq!(
            value["admin"]["address"]["socket_address"]["address"],
            "::1"
        );
        assert_eq!(
            value["static_resources"]["listeners"][0]["address"]["socket_address"]["address"],
            "::"
        );
    }

    #[test]
    fn strait_proxy_accepts_it() {
        let n = node();
        let stats = StatsInclusion::default();
        let value = render(&params(&n, &stats, "10.0.0.1"));
        let b = check(&value).unwrap();
        let cfg = strait_proxy::convert::BootstrapConfig::try_from(&b).unwrap();
        assert_eq!(cfg.static_listeners.len(), 2);
        assert_eq!(cfg.static_clusters.len(), 3);
        assert_eq!(cfg.ads.unwrap().cluster, XDS_CLUSTER);
        strait_proxy::stats::config::StatsConfig::from_proto(b.stats_config.as_ref()).unwrap();
    }

    #[test]
    fn writes_atomically_and_reports_unwritable_paths() {
        let dir =
            std::env::temp_dir().join(format!("strait-agent-bootstrap-{}", std::process::id()));
        let path = dir.join("sub").join("envoy-rev.json");
        write(&path, &json!({"a": 1})).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, json!({"a": 1}));
        let blocker = dir.join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = write(&blocker.join("envoy-rev.json"), &json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot write the bootstrap to") && err.contains("file/envoy-rev.json"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
