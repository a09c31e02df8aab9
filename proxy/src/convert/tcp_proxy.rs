//! `envoy.filters.network.tcp_proxy`.

use std::time::Duration;

use strait_proto::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy as PbTcpProxy, tcp_proxy,
};

use super::{access_log, wkt};
use crate::config::error::{Ctx, Result};
use crate::config::listener::{ClusterSpecifier, TcpProxy, WeightedCluster};

/// Envoy's default idle timeout for TCP proxies.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn tcp_proxy(t: &PbTcpProxy, ctx: &Ctx) -> Result<TcpProxy> {
    if t.stat_prefix.is_empty() {
        return Err(ctx
            .field("stat_prefix")
            .error("stat_prefix must not be empty"));
    }
    if t.tunneling_config.is_some() {
        return Err(ctx
            .field("tunneling_config")
            .error("tunneling over HTTP is not supported"));
    }
    if t.on_demand.is_some() {
        return Err(ctx
            .field("on_demand")
            .error("on-demand cluster discovery is not supported"));
    }
    let cluster = match &t.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => {
            if c.is_empty() {
                return Err(ctx.field("cluster").error("cluster must not be empty"));
            }
            ClusterSpecifier::Cluster(c.clone())
        }
        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => weighted(
            &w.clusters,
            &ctx.field("weighted_clusters").field("clusters"),
        )?,
        None => return Err(ctx.error("cluster or weighted_clusters is required")),
    };
    Ok(TcpProxy {
        stat_prefix: t.stat_prefix.clone(),
        cluster,
        idle_timeout: wkt::timeout(
            t.idle_timeout.as_ref(),
            Some(DEFAULT_IDLE_TIMEOUT),
            &ctx.field("idle_timeout"),
        )?,
        access_log: access_log::access_logs(&t.access_log, &ctx.field("access_log"))?,
    })
}

fn weighted(
    clusters: &[tcp_proxy::weighted_cluster::ClusterWeight],
    ctx: &Ctx,
) -> Result<ClusterSpecifier> {
    if clusters.is_empty() {
        return Err(ctx.error("at least one cluster is required"));
    }
    let out = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ctx = ctx.index(i);
            if c.name.is_empty() {
                return Err(ctx.field("name").error("name must not be empty"));
            }
            if c.weight == 0 {
                return Err(ctx.field("weight").error("weight must be at least 1"));
            }
            Ok(WeightedCluster {
                name: c.name.clone(),
                weight: c.weight,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ClusterSpecifier::Weighted(out))
}
