//! The model of one connected proxy, built from its xDS node (inventory §5).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

use super::endpoint::Locality;
use super::service::{Service, ServicePort};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    Sidecar,
    Router,
    Waypoint,
    Ztunnel,
    Agentgateway,
}

impl NodeType {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Sidecar => "sidecar",
            NodeType::Router => "router",
            NodeType::Waypoint => "waypoint",
            NodeType::Ztunnel => "ztunnel",
            NodeType::Agentgateway => "agentgateway",
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NodeError {
    #[error("missing node information")]
    MissingNode,
    #[error("node id {id:?}: expected 4 parts separated by '~' (type~ip~id~domain), got {parts}")]
    WrongParts { id: String, parts: usize },
    #[error("node id {id:?}: unknown node type {node_type:?}")]
    UnknownType { id: String, node_type: String },
    #[error("node id {id:?}: invalid IP address {ip:?}")]
    BadIp { id: String, ip: String },
}

/// The parts of a node ID: `sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeId {
    pub node_type: NodeType,
    pub ip: IpAddr,
    /// `<pod>.<namespace>`.
    pub id: String,
    pub dns_domain: String,
}

impl NodeId {
    pub fn parse(raw: &str) -> Result<NodeId, NodeError> {
        if raw.is_empty() {
            return Err(NodeError::MissingNode);
        }
        let parts: Vec<&str> = raw.split('~').collect();
        if parts.len() != 4 {
            return Err(NodeError::WrongParts {
                id: raw.to_string(),
                parts: parts.len(),
            });
        }
        let node_type = match parts[0] {
            "sidecar" => NodeType::Sidecar,
            "router" => NodeType::Router,
            "waypoint" => NodeType::Waypoint,
            "ztunnel" => NodeType::Ztunnel,
            "agentgateway" => NodeType::Agentgateway,
            other => {
                return Err(NodeError::UnknownType {
                    id: raw.to_string(),
                    node_type: other.to_string(),
                });
            }
        };
        let ip = parts[1].parse().map_err(|_| NodeError::BadIp {
            id: raw.to_string(),
            ip: parts[1].to_string(),
        })?;
        Ok(NodeId {
            node_type,
            ip,
            id: parts[2].to_string(),
            dns_domain: parts[3].to_string(),
        })
    }

    /// The namespace: the part of the ID after the first dot, else from the domain.
    pub fn namespace_from_id(&self) -> Option<&str> {
        self.id
            .split_once('.')
            .map(|(_, ns)| ns)
            .or_else(|| self.dns_domain.split('.').next())
            .filter(|ns| !ns.is_empty())
    }
}

/// The node metadata fields the control plane acts on; the rest is kept raw.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeMetadata {
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub istio_version: Option<String>,
    pub cluster_id: Option<String>,
    pub interception_mode: Option<String>,
    pub instance_ips: Vec<IpAddr>,
    pub workload_name: Option<String>,
    pub service_account: Option<String>,
    /// All metadata as sent, for `/debug/adsz`.
    pub raw: serde_json::Map<String, serde_json::Value>,
}

impl NodeMetadata {
    /// Reads Istio's metadata keys out of the node's `metadata` struct (as JSON).
    pub fn from_json(raw: serde_json::Map<String, serde_json::Value>) -> NodeMetadata {
        let string = |key: &str| {
            raw.get(key)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let labels = raw
            .get("LABELS")
            .and_then(|v| v.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let instance_ips = string("INSTANCE_IPS")
            .map(|s| {
                s.split(',')
                    .filter_map(|ip| ip.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        NodeMetadata {
            namespace: string("NAMESPACE"),
            labels,
            istio_version: string("ISTIO_VERSION"),
            cluster_id: string("CLUSTER_ID"),
            interception_mode: string("INTERCEPTION_MODE"),
            instance_ips,
            workload_name: string("WORKLOAD_NAME"),
            service_account: string("SERVICE_ACCOUNT"),
            raw,
        }
    }
}

/// A service port this proxy's workload serves: the basis of its inbound config.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceTarget {
    pub service: Arc<Service>,
    pub port: ServicePort,
    /// The workload port the inbound listener chain and cluster are keyed by.
    pub target_port: u16,
}

/// One connected proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct Proxy {
    pub node_type: NodeType,
    /// `<pod>.<namespace>`.
    pub id: String,
    pub ip_addresses: Vec<IpAddr>,
    pub dns_domain: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub metadata: NodeMetadata,
    pub locality: Locality,
    /// The raw node ID, as sent.
    pub node_id: String,
    /// Filled in from the registry before each full push.
    pub service_targets: Vec<ServiceTarget>,
}

impl Proxy {
    /// Builds a proxy from the node ID and metadata of its first request.
    pub fn from_node(
        node_id: &str,
        metadata: serde_json::Map<String, serde_json::Value>,
        locality: Locality,
    ) -> Result<Proxy, NodeError> {
        let id = NodeId::parse(node_id)?;
        let metadata = NodeMetadata::from_json(metadata);
        let namespace = metadata
            .namespace
            .clone()
            .or_else(|| id.namespace_from_id().map(str::to_string))
            .unwrap_or_else(|| "default".to_string());
        let ip_addresses = if metadata.instance_ips.is_empty() {
            vec![id.ip]
        } else {
            metadata.instance_ips.clone()
        };
        Ok(Proxy {
            node_type: id.node_type,
            id: id.id,
            ip_addresses,
            dns_domain: id.dns_domain,
            namespace,
            labels: metadata.labels.clone(),
            metadata,
            locality,
            node_id: node_id.to_string(),
            service_targets: Vec::new(),
        })
    }

    pub fn primary_ip(&self) -> Option<IpAddr> {
        self.ip_addresses.first().copied()
    }

    /// Whether traffic is captured by iptables (anything but `NONE`).
    pub fn captures_traffic(&self) -> bool {
        self.metadata.interception_mode.as_deref() != Some("NONE")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sidecar_node() {
        let meta = serde_json::json!({
            "NAMESPACE": "default",
            "LABELS": {"app": "reviews", "version": "v1"},
            "ISTIO_VERSION": "1.30.0",
            "INSTANCE_IPS": "10.1.0.7,fd00::7",
        });
        let proxy = Proxy::from_node(
            "sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local",
            meta.as_object().unwrap().clone(),
            Locality::default(),
        )
        .unwrap();
        assert_eq!(proxy.node_type, NodeType::Sidecar);
        assert_eq!(proxy.id, "reviews-v1-abc.default");
        assert_eq!(proxy.namespace, "default");
        assert_eq!(proxy.labels["version"], "v1");
        assert_eq!(proxy.ip_addresses.len(), 2);
        assert_eq!(proxy.metadata.istio_version.as_deref(), Some("1.30.0"));
    }

    #[test]
    fn namespace_falls_back_to_id() {
        let proxy = Proxy::from_node(
            "sidecar~10.1.0.7~a.shop~shop.svc.cluster.local",
            Default::default(),
            Locality::default(),
        )
        .unwrap();
        assert_eq!(proxy.namespace, "shop");
    }

    #[test]
    fn rejects_bad_nodes() {
        assert_eq!(NodeId::parse(""), Err(NodeError::MissingNode));
        assert!(matches!(
            NodeId::parse("sidecar~10.0.0.1~a.b"),
            Err(NodeError::WrongParts { parts: 3, .. })
        ));
        assert!(matches!(
            NodeId::parse("gateway~10.0.0.1~a.b~d"),
            Err(NodeError::UnknownType { .. })
        ));
        assert!(matches!(
            NodeId::parse("sidecar~ten~a.b~d"),
            Err(NodeError::BadIp { .. })
        ));
    }
}
