//! The sidecar bootstrap an Istio proxy would get, reduced to what Strait's
//! tests need: Istio's node identity and metadata, an admin endpoint, and ADS
//! to pilot-discovery over plaintext gRPC. Static listeners and clusters can be
//! added for tests that run Envoy without a control plane.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

/// The static cluster carrying ADS, named as in Istio's bootstrap.
pub const XDS_CLUSTER: &str = "xds-grpc";
pub const DEFAULT_ADMIN_PORT: u16 = 15000;

/// ADS flavour (`ads_config.api_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AdsApi {
    /// State of the world: `GRPC`.
    #[default]
    Sotw,
    /// Incremental: `DELTA_GRPC`.
    Delta,
}

impl AdsApi {
    pub fn api_type(self) -> &'static str {
        match self {
            AdsApi::Sotw => "GRPC",
            AdsApi::Delta => "DELTA_GRPC",
        }
    }
}

/// Who the sidecar says it is: Istio's node ID and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarNode {
    pub ip: Ipv4Addr,
    pub pod: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub istio_version: String,
    pub cluster_id: String,
    pub interception_mode: String,
    /// Further metadata fields, merged over the ones above.
    pub extra_metadata: Map<String, Value>,
}

impl SidecarNode {
    /// A sidecar for pod `pod` in `namespace` at `ip`, Istio 1.30 defaults.
    pub fn new(ip: Ipv4Addr, pod: &str, namespace: &str) -> Self {
        Self {
            ip,
            pod: pod.to_owned(),
            namespace: namespace.to_owned(),
            labels: BTreeMap::new(),
            istio_version: "1.30.0".to_owned(),
            cluster_id: "Kubernetes".to_owned(),
            interception_mode: "REDIRECT".to_owned(),
            extra_metadata: Map::new(),
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn metadata(mut self, key: &str, value: Value) -> Self {
        self.extra_metadata.insert(key.to_owned(), value);
        self
    }

    /// `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{}~{}.{}~{}.svc.cluster.local",
            self.ip, self.pod, self.namespace, self.namespace
        )
    }

    /// `node.cluster`: the `app` label (else the pod name) and the namespace,
    /// as Istio's service-cluster default reads.
    pub fn service_cluster(&self) -> String {
        let app = self.labels.get("app").unwrap_or(&self.pod);
        format!("{app}.{}", self.namespace)
    }

    fn metadata_json(&self) -> Value {
        let mut metadata = Map::new();
        metadata.insert("NAME".into(), json!(self.pod));
        metadata.insert("NAMESPACE".into(), json!(self.namespace));
        metadata.insert("LABELS".into(), json!(self.labels));
        metadata.insert("ISTIO_VERSION".into(), json!(self.istio_version));
        metadata.insert("CLUSTER_ID".into(), json!(self.cluster_id));
        metadata.insert("INTERCEPTION_MODE".into(), json!(self.interception_mode));
        metadata.insert("INSTANCE_IPS".into(), json!(self.ip.to_string()));
        for (k, v) in &self.extra_metadata {
            metadata.insert(k.clone(), v.clone());
        }
        Value::Object(metadata)
    }
}

/// An Envoy bootstrap for a sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    pub node: SidecarNode,
    pub admin_port: u16,
    /// pilot-discovery's plaintext gRPC address and the ADS flavour; `None`
    /// runs Envoy on static resources only.
    pub ads: Option<(SocketAddr, AdsApi)>,
    /// Extra `static_resources.listeners` entries (Envoy JSON form).
    pub static_listeners: Vec<Value>,
    /// Extra `static_resources.clusters` entries (Envoy JSON form).
    pub static_clusters: Vec<Value>,
}

impl Bootstrap {
    /// A bootstrap without a control plane; see [`Bootstrap::with_ads`].
    pub fn new(node: SidecarNode) -> Self {
        Self {
            node,
            admin_port: DEFAULT_ADMIN_PORT,
            ads: None,
            static_listeners: Vec::new(),
            static_clusters: Vec::new(),
        }
    }

    /// Fetches listeners and clusters over ADS from `pilot` (plaintext gRPC).
    pub fn with_ads(mut self, pilot: SocketAddr, api: AdsApi) -> Self {
        self.ads = Some((pilot, api));
        self
    }

    pub fn with_static_listener(mut self, listener: Value) -> Self {
        self.static_listeners.push(listener);
        self
    }

    pub fn with_static_cluster(mut self, cluster: Value) -> Self {
        self.static_clusters.push(cluster);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut clusters = self.static_clusters.clone();
        let mut bootstrap = json!({
            "node": {
                "id": self.node.node_id(),
                "cluster": self.node.service_cluster(),
                "metadata": self.node.metadata_json(),
            },
            "admin": {
                "address": socket_address(Ipv4Addr::LOCALHOST.into(), self.admin_port),
            },
        });
        if let Some((pilot, api)) = self.ads {
            clusters.push(xds_cluster(pilot));
            let source = json!({
                "ads": {},
                "initial_fetch_timeout": "0s",
                "resource_api_version": "V3",
            });
            bootstrap["dynamic_resources"] = json!({
                "ads_config": {
                    "api_type": api.api_type(),
                    "transport_api_version": "V3",
                    "grpc_services": [{ "envoy_grpc": { "cluster_name": XDS_CLUSTER } }],
                    "set_node_on_first_message_only": true,
                },
                "lds_config": source,
                "cds_config": source,
            });
        }
        bootstrap["static_resources"] = json!({
            "listeners": self.static_listeners,
            "clusters": clusters,
        });
        bootstrap
    }

    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml::to_string(&self.to_json()).context("rendering the bootstrap as YAML")
    }
}

pub(crate) fn socket_address(ip: std::net::IpAddr, port: u16) -> Value {
    json!({ "socket_address": { "address": ip.to_string(), "port_value": port } })
}

fn xds_cluster(pilot: SocketAddr) -> Value {
    json!({
        "name": XDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                "address": socket_address(pilot.ip(), pilot.port()),
            }}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
    })
}

/// A static cluster `name` with fixed endpoints (round robin).
pub fn static_cluster(name: &str, endpoints: &[SocketAddr]) -> Value {
    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .map(|e| json!({ "endpoint": { "address": socket_address(e.ip(), e.port()) } }))
        .collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": lb_endpoints }] },
    })
}

/// A static listener `name` on `0.0.0.0:<port>` whose HTTP connection manager
/// (stat prefix = `name`) routes every request to `cluster`.
pub fn static_http_listener(name: &str, port: u16, cluster: &str) -> Value {
    json!({
        "name": name,
        "address": socket_address(Ipv4Addr::UNSPECIFIED.into(), port),
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {
                    "name": name,
                    "virtual_hosts": [{
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": cluster } }],
                    }],
                },
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                    },
                }],
            },
        }]}],
    })
}
