//! The parts of an Envoy `Bootstrap` strait-proxy acts on: who it is (node), where its
//! admin server listens, its static listeners and clusters (converted exactly like xDS
//! ones) and how to reach the control plane (ADS).

use std::net::SocketAddr;

use strait_proto::envoy::config::bootstrap::v3::Bootstrap;
use strait_proto::envoy::config::core::v3::{
    ApiConfigSource, Node, api_config_source::ApiType, grpc_service,
};
use strait_proto::xds::json;

use super::{address, cluster, hcm, listener};
use crate::config::cluster::Cluster;
use crate::config::endpoint::Locality;
use crate::config::error::{ConfigError, Ctx, Result};
use crate::config::listener::Listener;

#[derive(Clone, Debug)]
pub struct BootstrapConfig {
    pub node: NodeInfo,
    /// `admin.address`; no admin server when unset.
    pub admin_address: Option<SocketAddr>,
    pub static_listeners: Vec<Listener>,
    pub static_clusters: Vec<Cluster>,
    /// `dynamic_resources.ads_config`; no xDS when unset.
    pub ads: Option<AdsConfig>,
    /// Bootstrap sections accepted but not acted on, for the startup log.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    pub cluster: String,
    /// `node.metadata` as JSON (Istio's NAMESPACE, LABELS, ...).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub locality: Locality,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdsApiType {
    /// State of the world.
    Grpc,
    /// Incremental.
    DeltaGrpc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdsConfig {
    pub api_type: AdsApiType,
    /// The static cluster of the `envoy_grpc` service that reaches the control plane.
    pub cluster: String,
    pub set_node_on_first_message_only: bool,
}

impl TryFrom<&Bootstrap> for BootstrapConfig {
    type Error = ConfigError;

    fn try_from(b: &Bootstrap) -> Result<BootstrapConfig> {
        bootstrap(b)
    }
}

pub fn bootstrap(b: &Bootstrap) -> Result<BootstrapConfig> {
    let id = b.node.as_ref().map_or("", |n| n.id.as_str());
    let ctx = Ctx::new("Bootstrap", if id.is_empty() { "-" } else { id });
    let mut notes = Vec::new();
    let node = node(b.node.as_ref(), &ctx.field("node"))?;
    let admin_address = b
        .admin
        .as_ref()
        .and_then(|a| a.address.as_ref())
        .map(|a| address::socket_addr(a, true, &ctx.field("admin").field("address")))
        .transpose()?;
    let (static_listeners, static_clusters) = match &b.static_resources {
        None => (Vec::new(), Vec::new()),
        Some(sr) => {
            if !sr.secrets.is_empty() {
                notes.push(format!(
                    "{} static secrets ignored (TLS is not implemented)",
                    sr.secrets.len()
                ));
            }
            (
                sr.listeners
                    .iter()
                    .map(listener::listener)
                    .collect::<Result<Vec<_>>>()?,
                sr.clusters
                    .iter()
                    .map(cluster::cluster)
                    .collect::<Result<Vec<_>>>()?,
            )
        }
    };
    let mut ads = None;
    if let Some(dr) = &b.dynamic_resources {
        let dctx = ctx.field("dynamic_resources");
        if let Some(lds) = &dr.lds_config {
            hcm::check_ads(lds, &dctx.field("lds_config"))?;
        }
        if let Some(cds) = &dr.cds_config {
            hcm::check_ads(cds, &dctx.field("cds_config"))?;
        }
        if let Some(a) = &dr.ads_config {
            let cfg = ads_config(a, &dctx.field("ads_config"))?;
            if !static_clusters.iter().any(|c| c.name == cfg.cluster) {
                return Err(dctx
                    .field("ads_config")
                    .field("grpc_services")
                    .index(0)
                    .error(format!(
                        "the ADS cluster '{}' is not a static cluster",
                        cfg.cluster
                    )));
            }
            ads = Some(cfg);
        } else if dr.lds_config.is_some() || dr.cds_config.is_some() {
            return Err(dctx
                .field("ads_config")
                .error("lds_config/cds_config use ADS but ads_config is unset"));
        }
    }
    if b.layered_runtime.is_some() {
        notes.push("layered_runtime ignored: runtime overrides are not implemented".to_string());
    }
    if b.tracing.is_some() {
        notes.push("tracing ignored".to_string());
    }
    if !b.stats_sinks.is_empty() || b.stats_config.is_some() {
        notes.push("stats_sinks/stats_config ignored".to_string());
    }
    Ok(BootstrapConfig {
        node,
        admin_address,
        static_listeners,
        static_clusters,
        ads,
        notes,
    })
}

fn node(n: Option<&Node>, ctx: &Ctx) -> Result<NodeInfo> {
    let Some(n) = n else {
        return Ok(NodeInfo::default());
    };
    let metadata = match &n.metadata {
        None => serde_json::Map::new(),
        Some(s) => {
            match json::to_json(s).map_err(|e| ctx.field("metadata").error(e.to_string()))? {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            }
        }
    };
    Ok(NodeInfo {
        id: n.id.clone(),
        cluster: n.cluster.clone(),
        metadata,
        locality: n
            .locality
            .as_ref()
            .map_or_else(Locality::default, |l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            }),
    })
}

fn ads_config(a: &ApiConfigSource, ctx: &Ctx) -> Result<AdsConfig> {
    let api_type = match ApiType::try_from(a.api_type) {
        Ok(ApiType::Grpc | ApiType::AggregatedGrpc) => AdsApiType::Grpc,
        Ok(ApiType::DeltaGrpc | ApiType::AggregatedDeltaGrpc) => AdsApiType::DeltaGrpc,
        Ok(other) => {
            return Err(ctx.field("api_type").error(format!(
                "api_type {} is not supported for ADS; use GRPC or DELTA_GRPC",
                other.as_str_name()
            )));
        }
        Err(_) => {
            return Err(ctx
                .field("api_type")
                .error(format!("unknown api_type {}", a.api_type)));
        }
    };
    let [service] = a.grpc_services.as_slice() else {
        return Err(ctx
            .field("grpc_services")
            .error("exactly one gRPC service is required"));
    };
    let sctx = ctx.field("grpc_services").index(0);
    let cluster = match &service.target_specifier {
        Some(grpc_service::TargetSpecifier::EnvoyGrpc(g)) if !g.cluster_name.is_empty() => {
            g.cluster_name.clone()
        }
        Some(grpc_service::TargetSpecifier::EnvoyGrpc(_)) => {
            return Err(sctx
                .field("envoy_grpc")
                .field("cluster_name")
                .error("cluster_name must not be empty"));
        }
        Some(grpc_service::TargetSpecifier::GoogleGrpc(_)) => {
            return Err(sctx
                .field("google_grpc")
                .error("google_grpc is not supported; use envoy_grpc"));
        }
        None => return Err(sctx.error("envoy_grpc is required")),
    };
    Ok(AdsConfig {
        api_type,
        cluster,
        set_node_on_first_message_only: a.set_node_on_first_message_only,
    })
}
