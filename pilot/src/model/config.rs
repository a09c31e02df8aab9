//! Istio config objects as the control plane holds them: metadata plus a validated spec.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use strait_proto::istio;

/// The kinds of object that trigger pushes: Istio config kinds, and the Kubernetes
/// kinds registries read (named as Istio's `kind` package names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ConfigKind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    Sidecar,
    Service,
    Endpoints,
    Pod,
    MeshConfig,
}

impl ConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::VirtualService => "VirtualService",
            ConfigKind::DestinationRule => "DestinationRule",
            ConfigKind::ServiceEntry => "ServiceEntry",
            ConfigKind::WorkloadEntry => "WorkloadEntry",
            ConfigKind::Sidecar => "Sidecar",
            ConfigKind::Service => "Service",
            ConfigKind::Endpoints => "Endpoints",
            ConfigKind::Pod => "Pod",
            ConfigKind::MeshConfig => "MeshConfig",
        }
    }

    /// Istio config kinds (stored in the config store, shown by `/debug/configz`).
    pub fn is_istio(self) -> bool {
        matches!(
            self,
            ConfigKind::VirtualService
                | ConfigKind::DestinationRule
                | ConfigKind::ServiceEntry
                | ConfigKind::WorkloadEntry
                | ConfigKind::Sidecar
        )
    }
}

impl fmt::Display for ConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of one object: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ConfigKey {
    pub kind: ConfigKind,
    pub namespace: String,
    pub name: String,
}

impl ConfigKey {
    pub fn new(kind: ConfigKind, namespace: &str, name: &str) -> ConfigKey {
        ConfigKey {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Kubernetes-style metadata of a config object.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMeta {
    pub name: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Where the object came from (a file path, or `kubernetes`), for error messages.
    #[serde(skip)]
    pub source: String,
}

/// A config object with a validated spec of type `S`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config<S> {
    pub meta: ConfigMeta,
    pub spec: Arc<S>,
}

impl<S> Config<S> {
    /// Istio orders conflicting objects by creation time, then by namespace/name.
    pub fn precedence_key(&self) -> (Option<&str>, &str, &str) {
        (
            self.meta.creation_timestamp.as_deref(),
            &self.meta.namespace,
            &self.meta.name,
        )
    }
}

/// Any Istio config object.
#[derive(Clone, Debug, PartialEq)]
pub enum IstioConfig {
    VirtualService(Config<istio::VirtualService>),
    DestinationRule(Config<istio::DestinationRule>),
    ServiceEntry(Config<istio::ServiceEntry>),
    WorkloadEntry(Config<istio::WorkloadEntry>),
    Sidecar(Config<istio::Sidecar>),
}

impl IstioConfig {
    pub fn kind(&self) -> ConfigKind {
        match self {
            IstioConfig::VirtualService(_) => ConfigKind::VirtualService,
            IstioConfig::DestinationRule(_) => ConfigKind::DestinationRule,
            IstioConfig::ServiceEntry(_) => ConfigKind::ServiceEntry,
            IstioConfig::WorkloadEntry(_) => ConfigKind::WorkloadEntry,
            IstioConfig::Sidecar(_) => ConfigKind::Sidecar,
        }
    }

    pub fn meta(&self) -> &ConfigMeta {
        match self {
            IstioConfig::VirtualService(c) => &c.meta,
            IstioConfig::DestinationRule(c) => &c.meta,
            IstioConfig::ServiceEntry(c) => &c.meta,
            IstioConfig::WorkloadEntry(c) => &c.meta,
            IstioConfig::Sidecar(c) => &c.meta,
        }
    }

    pub fn key(&self) -> ConfigKey {
        let meta = self.meta();
        ConfigKey::new(self.kind(), &meta.namespace, &meta.name)
    }

    /// The spec as JSON (Istio's camelCase shape), for `/debug/configz`.
    pub fn spec_json(&self) -> serde_json::Value {
        let spec = match self {
            IstioConfig::VirtualService(c) => serde_json::to_value(&*c.spec),
            IstioConfig::DestinationRule(c) => serde_json::to_value(&*c.spec),
            IstioConfig::ServiceEntry(c) => serde_json::to_value(&*c.spec),
            IstioConfig::WorkloadEntry(c) => serde_json::to_value(&*c.spec),
            IstioConfig::Sidecar(c) => serde_json::to_value(&*c.spec),
        };
        spec.unwrap_or(serde_json::Value::Null)
    }

    /// The object as Kubernetes would show it.
    pub fn to_kube_json(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": self.kind().as_str(),
            "metadata": self.meta(),
            "spec": self.spec_json(),
        })
    }
}
