//! `ClusterLoadAssignment` → [`ClusterLoadAssignment`], flattened over localities.

use std::collections::BTreeMap;

use strait_proto::envoy::config::core::v3::{
    Address, HealthStatus, Locality as PbLocality, Metadata,
};
use strait_proto::envoy::config::endpoint::v3::{
    ClusterLoadAssignment as PbCla, LbEndpoint as PbLbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier, locality_lb_endpoints::LbConfig,
};
use strait_proto::xds::json;

use super::address;
use crate::config::endpoint::{ClusterLoadAssignment, Health, LbEndpoint, Locality};
use crate::config::error::{ConfigError, Ctx, Result};

/// PGV bound of `LocalityLbEndpoints.priority`.
const MAX_PRIORITY: u32 = 128;

impl TryFrom<&PbCla> for ClusterLoadAssignment {
    type Error = ConfigError;

    fn try_from(cla: &PbCla) -> Result<ClusterLoadAssignment> {
        cluster_load_assignment(cla)
    }
}

/// An EDS resource.
pub fn cluster_load_assignment(cla: &PbCla) -> Result<ClusterLoadAssignment> {
    let ctx = Ctx::new("ClusterLoadAssignment", &cla.cluster_name);
    if cla.cluster_name.is_empty() {
        return Err(ctx
            .field("cluster_name")
            .error("cluster_name must not be empty"));
    }
    Ok(ClusterLoadAssignment {
        cluster_name: cla.cluster_name.clone(),
        endpoints: endpoints_in(cla, &ctx)?,
    })
}

/// The endpoints of an assignment, wherever it sits (EDS resource or a cluster's
/// `load_assignment`); addresses must be IPs.
pub fn endpoints_in(cla: &PbCla, ctx: &Ctx) -> Result<Vec<LbEndpoint>> {
    check_assignment(cla, ctx)?;
    let mut out = Vec::new();
    for (i, group) in cla.endpoints.iter().enumerate() {
        let gctx = ctx.field("endpoints").index(i);
        let locality_weight = locality_weight(group, &gctx)?;
        let locality = locality(group.locality.as_ref());
        for_each_endpoint(group, &gctx, |e, ectx| {
            let address = endpoint_of(e, ectx)?;
            let address =
                address::socket_addr(address, true, &ectx.field("endpoint").field("address"))?;
            out.push(LbEndpoint {
                address,
                weight: weight(e, ectx)?,
                health: health(e.health_status, &ectx.field("health_status"))?,
                locality: locality.clone(),
                priority: group.priority,
                locality_weight,
                metadata: std::sync::Arc::new(metadata(
                    e.metadata.as_ref(),
                    &ectx.field("metadata"),
                )?),
            });
            Ok(())
        })?;
    }
    Ok(out)
}

/// The host:port pairs of a DNS cluster's `load_assignment` (hosts may be names).
pub fn dns_hosts(cla: &PbCla, ctx: &Ctx) -> Result<Vec<(String, u16)>> {
    check_assignment(cla, ctx)?;
    let mut out = Vec::new();
    for (i, group) in cla.endpoints.iter().enumerate() {
        let gctx = ctx.field("endpoints").index(i);
        locality_weight(group, &gctx)?;
        for_each_endpoint(group, &gctx, |e, ectx| {
            let address = endpoint_of(e, ectx)?;
            out.push(address::host_port(
                address,
                &ectx.field("endpoint").field("address"),
            )?);
            Ok(())
        })?;
    }
    Ok(out)
}

fn check_assignment(cla: &PbCla, ctx: &Ctx) -> Result<()> {
    if !cla.named_endpoints.is_empty() {
        return Err(ctx
            .field("named_endpoints")
            .error("named endpoints are not supported"));
    }
    if cla
        .policy
        .as_ref()
        .is_some_and(|p| !p.drop_overloads.is_empty())
    {
        return Err(ctx
            .field("policy")
            .field("drop_overloads")
            .error("drop overloads are not supported"));
    }
    Ok(())
}

fn for_each_endpoint(
    group: &LocalityLbEndpoints,
    ctx: &Ctx,
    mut f: impl FnMut(&PbLbEndpoint, &Ctx) -> Result<()>,
) -> Result<()> {
    if group.priority > MAX_PRIORITY {
        return Err(ctx
            .field("priority")
            .error(format!("priority must be at most {MAX_PRIORITY}")));
    }
    for (j, e) in group.lb_endpoints.iter().enumerate() {
        f(e, &ctx.field("lb_endpoints").index(j))?;
    }
    match &group.lb_config {
        None => Ok(()),
        Some(LbConfig::LoadBalancerEndpoints(list)) => {
            for (j, e) in list.lb_endpoints.iter().enumerate() {
                f(
                    e,
                    &ctx.field("load_balancer_endpoints")
                        .field("lb_endpoints")
                        .index(j),
                )?;
            }
            Ok(())
        }
        Some(LbConfig::LedsClusterLocalityConfig(_)) => Err(ctx
            .field("leds_cluster_locality_config")
            .error("locality endpoint discovery (LEDS) is not supported")),
    }
}

/// The endpoint's address (its `hostname`, health-check and additional addresses are
/// not used).
fn endpoint_of<'a>(e: &'a PbLbEndpoint, ctx: &Ctx) -> Result<&'a Address> {
    match &e.host_identifier {
        Some(HostIdentifier::Endpoint(ep)) => ep.address.as_ref().ok_or_else(|| {
            ctx.field("endpoint")
                .field("address")
                .error("address is required")
        }),
        Some(HostIdentifier::EndpointName(n)) => Err(ctx
            .field("endpoint_name")
            .error(format!("named endpoints ('{n}') are not supported"))),
        None => Err(ctx.field("endpoint").error("endpoint is required")),
    }
}

fn locality_weight(group: &LocalityLbEndpoints, ctx: &Ctx) -> Result<Option<u32>> {
    match &group.load_balancing_weight {
        None => Ok(None),
        Some(w) if w.value == 0 => Err(ctx
            .field("load_balancing_weight")
            .error("load_balancing_weight must be at least 1")),
        Some(w) => Ok(Some(w.value)),
    }
}

fn locality(l: Option<&PbLocality>) -> Locality {
    l.map_or_else(Locality::default, |l| Locality {
        region: l.region.clone(),
        zone: l.zone.clone(),
        sub_zone: l.sub_zone.clone(),
    })
}

fn weight(e: &PbLbEndpoint, ctx: &Ctx) -> Result<u32> {
    match &e.load_balancing_weight {
        None => Ok(1),
        Some(w) if w.value == 0 => Err(ctx
            .field("load_balancing_weight")
            .error("load_balancing_weight must be at least 1")),
        Some(w) => Ok(w.value),
    }
}

fn health(status: i32, ctx: &Ctx) -> Result<Health> {
    Ok(match HealthStatus::try_from(status) {
        Ok(HealthStatus::Unknown) => Health::Unknown,
        Ok(HealthStatus::Healthy) => Health::Healthy,
        Ok(HealthStatus::Unhealthy | HealthStatus::Timeout) => Health::Unhealthy,
        Ok(HealthStatus::Draining) => Health::Draining,
        Ok(HealthStatus::Degraded) => Health::Degraded,
        Err(_) => return Err(ctx.error(format!("unknown health status {status}"))),
    })
}

/// `filter_metadata` as proto3 JSON, one entry per filter namespace.
pub fn metadata(m: Option<&Metadata>, ctx: &Ctx) -> Result<BTreeMap<String, serde_json::Value>> {
    let Some(m) = m else {
        return Ok(BTreeMap::new());
    };
    m.filter_metadata
        .iter()
        .map(|(k, v)| {
            let value = json::to_json(v)
                .map_err(|e| ctx.field("filter_metadata").field(k).error(e.to_string()))?;
            Ok((k.clone(), value))
        })
        .collect()
}
