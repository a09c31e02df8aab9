//! The part of Istio's `MeshConfig` (and its `defaultConfig` `ProxyConfig`) that a control
//! plane acts on.
//!
//! A real mesh config (the `mesh` key of the `istio` ConfigMap) carries many more fields than
//! we model. Unlike the config kinds, it must still load: unknown keys are kept in `ignored`
//! maps so the caller can log them (see [`MeshConfig::ignored_fields`]). Missing keys take
//! Istio's defaults (`DefaultMeshConfig` / `DefaultProxyConfig` in `pkg/config/mesh`); as in
//! Istio, `defaultConfig` is merged over the default proxy config rather than replacing it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Duration;
use super::destination_rule::{LocalityLoadBalancerSetting, TcpKeepalive};
use super::parse::{SpecError, parse_at};
use super::virtual_service::HttpRetry;

/// Mesh-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshConfig {
    /// Connection timeout used by Envoy (default 10s).
    pub connect_timeout: Duration,
    /// How long to wait for the first bytes when sniffing the protocol (0s = disabled).
    pub protocol_detection_timeout: Duration,
    /// Default TCP keepalive for upstream connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Whether HTTP/1.1 upstream connections are upgraded to HTTP/2 by default.
    pub h2_upgrade_policy: MeshH2UpgradePolicy,
    /// File for Envoy access logs; empty disables them.
    pub access_log_file: String,
    /// Access log encoding.
    pub access_log_encoding: AccessLogEncoding,
    /// Access log format; empty means Envoy's default.
    pub access_log_format: String,
    /// Automatic mTLS to workloads that have sidecars (default true).
    pub enable_auto_mtls: bool,
    /// Merge application metrics into the agent's Prometheus endpoint (default true).
    pub enable_prometheus_merge: bool,
    /// What sidecars do with traffic to unknown destinations.
    pub outbound_traffic_policy: MeshOutboundTrafficPolicy,
    /// Retry policy for HTTP routes that set none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_http_retry_policy: Option<HttpRetry>,
    /// Namespace whose config applies mesh-wide (default `istio-system`).
    pub root_namespace: String,
    /// The SPIFFE trust domain (default `cluster.local`).
    pub trust_domain: String,
    /// Default `exportTo` of services.
    pub default_service_export_to: Vec<String>,
    /// Default `exportTo` of VirtualServices.
    pub default_virtual_service_export_to: Vec<String>,
    /// Default `exportTo` of DestinationRules.
    pub default_destination_rule_export_to: Vec<String>,
    /// Mesh-wide locality load balancing (default: enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Outbound capture port (default 15001).
    pub proxy_listen_port: i32,
    /// Inbound capture port (default 15006).
    pub proxy_inbound_listen_port: i32,
    /// Default proxy settings.
    pub default_config: ProxyConfig,
    /// Keys we do not model, kept so they can be reported.
    #[serde(flatten)]
    pub ignored: BTreeMap<String, Value>,
}

/// Mesh-wide HTTP/2 upgrade default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MeshH2UpgradePolicy {
    #[default]
    DoNotUpgrade,
    Upgrade,
}

/// Access log encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessLogEncoding {
    #[default]
    Text,
    Json,
}

/// Mesh outbound traffic policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshOutboundTrafficPolicy {
    /// Default `ALLOW_ANY`.
    pub mode: MeshOutboundMode,
    /// Keys we do not model.
    #[serde(flatten)]
    pub ignored: BTreeMap<String, Value>,
}

/// Mesh outbound traffic modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MeshOutboundMode {
    /// Only services in the registry are reachable.
    RegistryOnly,
    /// Unknown destinations are passed through (Istio's default).
    #[default]
    AllowAny,
    /// Unknown HTTP hosts go through a dynamic forward proxy (mesh-wide only).
    AllowAnyDynamicDns,
}

/// Proxy settings (`defaultConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyConfig {
    /// Address of the discovery service (default `istiod.istio-system.svc:15012`).
    pub discovery_address: String,
    /// Drain time when the proxy shuts down or hot-restarts (default 45s).
    pub drain_duration: Duration,
    /// Drain time on pod termination (default 5s).
    pub termination_drain_duration: Duration,
    /// Envoy admin port (default 15000).
    pub proxy_admin_port: i32,
    /// Agent status port (default 15020).
    pub status_port: i32,
    /// Worker threads; 0 means one per core. Unset (Istio's default) lets the agent decide
    /// from the CPU limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    /// Extra environment/metadata for the proxy.
    pub proxy_metadata: BTreeMap<String, String>,
    /// Start the application only once the proxy is ready.
    pub hold_application_until_proxy_starts: bool,
    /// How traffic is captured.
    pub interception_mode: InterceptionMode,
    /// Keys we do not model.
    #[serde(flatten)]
    pub ignored: BTreeMap<String, Value>,
}

/// Traffic interception modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InterceptionMode {
    /// iptables REDIRECT.
    #[default]
    Redirect,
    /// iptables TPROXY.
    Tproxy,
    /// No interception.
    None,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            discovery_address: "istiod.istio-system.svc:15012".into(),
            drain_duration: Duration::from_secs(45),
            termination_drain_duration: Duration::from_secs(5),
            proxy_admin_port: 15000,
            status_port: 15020,
            concurrency: None,
            proxy_metadata: BTreeMap::new(),
            hold_application_until_proxy_starts: false,
            interception_mode: InterceptionMode::Redirect,
            ignored: BTreeMap::new(),
        }
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            connect_timeout: Duration::from_secs(10),
            protocol_detection_timeout: Duration::ZERO,
            tcp_keepalive: None,
            h2_upgrade_policy: MeshH2UpgradePolicy::DoNotUpgrade,
            access_log_file: String::new(),
            access_log_encoding: AccessLogEncoding::Text,
            access_log_format: String::new(),
            enable_auto_mtls: true,
            enable_prometheus_merge: true,
            outbound_traffic_policy: MeshOutboundTrafficPolicy::default(),
            default_http_retry_policy: None,
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            default_service_export_to: vec!["*".into()],
            default_virtual_service_export_to: vec!["*".into()],
            default_destination_rule_export_to: vec!["*".into()],
            locality_lb_setting: Some(LocalityLoadBalancerSetting {
                enabled: Some(true),
                ..LocalityLoadBalancerSetting::default()
            }),
            proxy_listen_port: 15001,
            proxy_inbound_listen_port: 15006,
            default_config: ProxyConfig::default(),
            ignored: BTreeMap::new(),
        }
    }
}

impl MeshConfig {
    /// Parses a mesh config given as JSON; missing keys take Istio's defaults.
    pub fn from_value(value: Value) -> Result<Self, SpecError> {
        // An empty ConfigMap key parses as YAML null: all defaults.
        if value.is_null() {
            return Ok(MeshConfig::default());
        }
        parse_at("mesh", value)
    }

    /// Parses a mesh config given as YAML (the `mesh` key of the `istio` ConfigMap).
    pub fn from_yaml(yaml: &str) -> Result<Self, SpecError> {
        let value: Value = serde_yaml::from_str(yaml).map_err(|e| SpecError::new("mesh", e))?;
        Self::from_value(value)
    }

    /// Dotted paths of the keys that were present but are not modelled (sorted).
    pub fn ignored_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = self.ignored.keys().cloned().collect();
        out.extend(
            self.outbound_traffic_policy
                .ignored
                .keys()
                .map(|k| format!("outboundTrafficPolicy.{k}")),
        );
        out.extend(
            self.default_config
                .ignored
                .keys()
                .map(|k| format!("defaultConfig.{k}")),
        );
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_istio() {
        let m = MeshConfig::from_yaml("").unwrap();
        assert_eq!(m, MeshConfig::default());
        assert_eq!(m.connect_timeout.as_std().as_secs(), 10);
        assert_eq!(m.outbound_traffic_policy.mode, MeshOutboundMode::AllowAny);
        assert_eq!(m.root_namespace, "istio-system");
        assert_eq!(m.trust_domain, "cluster.local");
        assert_eq!(m.proxy_listen_port, 15001);
        assert_eq!(m.proxy_inbound_listen_port, 15006);
        assert!(m.enable_auto_mtls && m.enable_prometheus_merge);
        assert_eq!(m.default_config.proxy_admin_port, 15000);
        assert_eq!(m.default_config.status_port, 15020);
        assert_eq!(m.default_config.drain_duration.as_std().as_secs(), 45);
    }

    #[test]
    fn real_istio_mesh_config_loads_and_reports_unknown_keys() {
        let yaml = r#"
accessLogFile: /dev/stdout
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  proxyMetadata:
    ISTIO_META_DNS_CAPTURE: "true"
  tracing:
    zipkin:
      address: zipkin.istio-system:9411
  holdApplicationUntilProxyStarts: true
defaultProviders:
  metrics:
  - prometheus
enablePrometheusMerge: true
enableTracing: true
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
rootNamespace: istio-system
trustDomain: example.org
connectTimeout: 250ms
extensionProviders:
- name: otel
  opentelemetry:
    port: 4317
    service: otel.observability.svc.cluster.local
"#;
        let m = MeshConfig::from_yaml(yaml).unwrap();
        assert_eq!(m.access_log_file, "/dev/stdout");
        assert_eq!(m.trust_domain, "example.org");
        assert_eq!(m.connect_timeout, Duration::from_millis(250));
        assert_eq!(
            m.outbound_traffic_policy.mode,
            MeshOutboundMode::RegistryOnly
        );
        assert!(m.default_config.hold_application_until_proxy_starts);
        // Unset proxy fields keep their defaults: defaultConfig is merged, not replaced.
        assert_eq!(m.default_config.drain_duration.as_std().as_secs(), 45);
        assert_eq!(
            m.default_config
                .proxy_metadata
                .get("ISTIO_META_DNS_CAPTURE")
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(
            m.ignored_fields(),
            vec![
                "defaultConfig.tracing",
                "defaultProviders",
                "enableTracing",
                "extensionProviders"
            ]
        );
    }

    #[test]
    fn bad_known_field_names_its_path() {
        let err = MeshConfig::from_yaml("defaultConfig:\n  drainDuration: forever\n").unwrap_err();
        assert_eq!(err.path(), "mesh.defaultConfig.drainDuration");
        let err = MeshConfig::from_yaml("outboundTrafficPolicy:\n  mode: SOMETIMES\n").unwrap_err();
        assert_eq!(err.path(), "mesh.outboundTrafficPolicy.mode");
    }
}
