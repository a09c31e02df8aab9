//! `Cluster` → [`Cluster`]: discovery type, load balancing, limits and health.

use std::time::Duration;

use strait_proto::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster as PbCluster, OutlierDetection as PbOutlier,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy as PbLbPolicy},
};
use strait_proto::envoy::config::core::v3::RoutingPriority;

use super::{address, cluster_http, endpoint, transport_socket, wkt};
use crate::config::cluster::{Cluster, Discovery, LbPolicy, OutlierDetection, Thresholds};
use crate::config::error::{ConfigError, Ctx, Result};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);
const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_PANIC_THRESHOLD: f64 = 50.0;
const DEFAULT_MIN_RING: u64 = 1024;
const DEFAULT_MAX_RING: u64 = 8 * 1024 * 1024;
const DEFAULT_MAGLEV_TABLE: u64 = 65537;

impl TryFrom<&PbCluster> for Cluster {
    type Error = ConfigError;

    fn try_from(c: &PbCluster) -> Result<Cluster> {
        cluster(c)
    }
}

pub fn cluster(c: &PbCluster) -> Result<Cluster> {
    let ctx = Ctx::new("Cluster", &c.name);
    if c.name.is_empty() {
        return Err(ctx.field("name").error("name must not be empty"));
    }
    unsupported(c, &ctx)?;
    let dtype = discovery_type(c, &ctx)?;
    let lb_policy = lb_policy(c, dtype, &ctx)?;
    let discovery = discovery(c, dtype, &ctx)?;
    let connect_timeout = match &c.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(d) => wkt::positive_duration(d, &ctx.field("connect_timeout"))?,
    };
    let upstream_bind = c
        .upstream_bind_config
        .as_ref()
        .and_then(|b| b.source_address.as_ref())
        .map(|sa| {
            address::bare_socket_addr(
                sa,
                &ctx.field("upstream_bind_config").field("source_address"),
            )
        })
        .transpose()?;
    let healthy_panic_threshold = match c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.healthy_panic_threshold.as_ref())
    {
        None => DEFAULT_PANIC_THRESHOLD,
        Some(p) => wkt::percent(
            p,
            &ctx.field("common_lb_config")
                .field("healthy_panic_threshold"),
        )?,
    };
    let has_transport_socket = transport_socket::is_secure(c.transport_socket.as_ref())
        || c.transport_socket_matches
            .iter()
            .any(|m| transport_socket::is_secure(m.transport_socket.as_ref()));
    let cleanup_interval = if dtype == DiscoveryType::OriginalDst {
        Some(match &c.cleanup_interval {
            None => DEFAULT_CLEANUP_INTERVAL,
            Some(d) => wkt::positive_duration(d, &ctx.field("cleanup_interval"))?,
        })
    } else {
        None
    };
    Ok(Cluster {
        name: c.name.clone(),
        discovery,
        lb_policy,
        connect_timeout,
        thresholds: thresholds(c.circuit_breakers.as_ref(), &ctx.field("circuit_breakers"))?,
        http: cluster_http::http_options(c, &ctx)?,
        upstream_bind,
        outlier_detection: c
            .outlier_detection
            .as_ref()
            .map(|o| outlier_detection(o, &ctx.field("outlier_detection")))
            .transpose()?,
        healthy_panic_threshold,
        stat_name: (!c.alt_stat_name.is_empty()).then(|| c.alt_stat_name.clone()),
        has_transport_socket,
        cleanup_interval,
        source_ip: upstream_bind.map(|a| a.ip()),
    })
}

fn unsupported(c: &PbCluster, ctx: &Ctx) -> Result<()> {
    if c.load_balancing_policy.is_some() {
        return Err(ctx
            .field("load_balancing_policy")
            .error("load_balancing_policy extensions are not supported; use lb_policy"));
    }
    if !c.filters.is_empty() {
        return Err(ctx
            .field("filters")
            .error("upstream network filters are not supported"));
    }
    if c.transport_socket_matcher.is_some() {
        return Err(ctx
            .field("transport_socket_matcher")
            .error("the matcher API for transport sockets is not supported"));
    }
    if c.upstream_config.is_some() {
        return Err(ctx
            .field("upstream_config")
            .error("custom upstream configs are not supported"));
    }
    Ok(())
}

fn discovery_type(c: &PbCluster, ctx: &Ctx) -> Result<DiscoveryType> {
    match &c.cluster_discovery_type {
        None => Ok(DiscoveryType::Static),
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(*t)
            .map_err(|_| ctx.field("type").error(format!("unknown cluster discovery type {t}"))),
        Some(ClusterDiscoveryType::ClusterType(ct)) => Err(ctx.field("cluster_type").error(format!(
            "custom cluster type '{}' is not supported; strait-proxy supports STATIC, STRICT_DNS, LOGICAL_DNS, EDS and ORIGINAL_DST",
            ct.name
        ))),
    }
}

fn discovery(c: &PbCluster, dtype: DiscoveryType, ctx: &Ctx) -> Result<Discovery> {
    let la_ctx = ctx.field("load_assignment");
    match dtype {
        DiscoveryType::Eds => {
            let eds = c.eds_cluster_config.as_ref().ok_or_else(|| {
                ctx.field("eds_cluster_config")
                    .error("EDS clusters need eds_cluster_config")
            })?;
            let ectx = ctx.field("eds_cluster_config");
            let source = eds
                .eds_config
                .as_ref()
                .ok_or_else(|| ectx.field("eds_config").error("eds_config is required"))?;
            if source.config_source_specifier.is_none() {
                return Err(ectx
                    .field("eds_config")
                    .error("config source specifier is required"));
            }
            let service_name = if eds.service_name.is_empty() {
                c.name.clone()
            } else {
                eds.service_name.clone()
            };
            Ok(Discovery::Eds { service_name })
        }
        DiscoveryType::Static => Ok(Discovery::Static(match &c.load_assignment {
            Some(la) => endpoint::endpoints_in(la, &la_ctx)?,
            None => Vec::new(),
        })),
        DiscoveryType::StrictDns | DiscoveryType::LogicalDns => {
            let logical = dtype == DiscoveryType::LogicalDns;
            let hosts = match &c.load_assignment {
                Some(la) => endpoint::dns_hosts(la, &la_ctx)?,
                None => Vec::new(),
            };
            if logical && hosts.len() != 1 {
                return Err(la_ctx.error(
                    "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
                ));
            }
            let refresh = match &c.dns_refresh_rate {
                None => DEFAULT_DNS_REFRESH,
                Some(d) => {
                    let r = wkt::duration(d, &ctx.field("dns_refresh_rate"))?;
                    if r < Duration::from_millis(1) {
                        return Err(ctx
                            .field("dns_refresh_rate")
                            .error("dns_refresh_rate must be at least 1ms"));
                    }
                    r
                }
            };
            Ok(Discovery::Dns {
                hosts,
                logical,
                refresh,
            })
        }
        DiscoveryType::OriginalDst => {
            if c.load_assignment
                .as_ref()
                .is_some_and(|la| !la.endpoints.is_empty())
            {
                return Err(
                    la_ctx.error("ORIGINAL_DST clusters must have no load assignment configured")
                );
            }
            if let Some(LbConfig::OriginalDstLbConfig(o)) = &c.lb_config {
                let octx = ctx.field("original_dst_lb_config");
                if o.use_http_header {
                    return Err(octx
                        .field("use_http_header")
                        .error("taking the destination from a header is not supported"));
                }
                if o.upstream_port_override.is_some() {
                    return Err(octx
                        .field("upstream_port_override")
                        .error("upstream port overrides are not supported"));
                }
                if o.metadata_key.is_some() {
                    return Err(octx
                        .field("metadata_key")
                        .error("taking the destination from metadata is not supported"));
                }
            }
            Ok(Discovery::OriginalDst)
        }
    }
}

fn lb_policy(c: &PbCluster, dtype: DiscoveryType, ctx: &Ctx) -> Result<LbPolicy> {
    let lctx = ctx.field("lb_policy");
    let policy = PbLbPolicy::try_from(c.lb_policy)
        .map_err(|_| lctx.error(format!("unknown lb_policy {}", c.lb_policy)))?;
    let original_dst = dtype == DiscoveryType::OriginalDst;
    if original_dst && policy != PbLbPolicy::ClusterProvided {
        return Err(lctx.error(format!(
            "LB policy {} is not valid for cluster type ORIGINAL_DST; only CLUSTER_PROVIDED is allowed",
            policy.as_str_name()
        )));
    }
    if !original_dst && policy == PbLbPolicy::ClusterProvided {
        return Err(lctx.error(format!(
            "LB policy CLUSTER_PROVIDED is not valid for cluster type {}",
            dtype.as_str_name()
        )));
    }
    Ok(match policy {
        PbLbPolicy::RoundRobin => LbPolicy::RoundRobin,
        PbLbPolicy::LeastRequest => {
            let choice_count = match &c.lb_config {
                Some(LbConfig::LeastRequestLbConfig(l)) => wkt::u32_or(l.choice_count.as_ref(), 2),
                _ => 2,
            };
            if choice_count < 2 {
                return Err(ctx
                    .field("least_request_lb_config")
                    .field("choice_count")
                    .error("choice_count must be at least 2"));
            }
            LbPolicy::LeastRequest { choice_count }
        }
        PbLbPolicy::Random => LbPolicy::Random,
        PbLbPolicy::RingHash => {
            let (min, max) = match &c.lb_config {
                Some(LbConfig::RingHashLbConfig(r)) => (
                    wkt::u64_or(r.minimum_ring_size.as_ref(), DEFAULT_MIN_RING),
                    wkt::u64_or(r.maximum_ring_size.as_ref(), DEFAULT_MAX_RING),
                ),
                _ => (DEFAULT_MIN_RING, DEFAULT_MAX_RING),
            };
            let rctx = ctx.field("ring_hash_lb_config");
            if min == 0 || min > DEFAULT_MAX_RING || max > DEFAULT_MAX_RING {
                return Err(rctx.error(format!(
                    "ring sizes must be between 1 and {DEFAULT_MAX_RING}"
                )));
            }
            if min > max {
                return Err(rctx.error(format!(
                    "minimum_ring_size ({min}) > maximum_ring_size ({max})"
                )));
            }
            LbPolicy::RingHash {
                minimum_ring_size: min,
                maximum_ring_size: max,
            }
        }
        PbLbPolicy::Maglev => {
            let table_size = match &c.lb_config {
                Some(LbConfig::MaglevLbConfig(m)) => {
                    wkt::u64_or(m.table_size.as_ref(), DEFAULT_MAGLEV_TABLE)
                }
                _ => DEFAULT_MAGLEV_TABLE,
            };
            if table_size > 5_000_011 || !is_prime(table_size) {
                return Err(ctx
                    .field("maglev_lb_config")
                    .field("table_size")
                    .error(format!("the table size of maglev must be a prime number up to 5000011, got {table_size}")));
            }
            LbPolicy::Maglev { table_size }
        }
        PbLbPolicy::ClusterProvided => LbPolicy::ClusterProvided,
        PbLbPolicy::LoadBalancingPolicyConfig => {
            return Err(lctx.error("LOAD_BALANCING_POLICY_CONFIG requires load_balancing_policy, which is not supported"));
        }
    })
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// The DEFAULT-priority thresholds (HIGH-priority routing is not implemented).
fn thresholds(cb: Option<&CircuitBreakers>, ctx: &Ctx) -> Result<Thresholds> {
    let mut out = Thresholds::default();
    let Some(cb) = cb else { return Ok(out) };
    for (i, t) in cb.thresholds.iter().enumerate() {
        if RoutingPriority::try_from(t.priority).is_err() {
            return Err(ctx
                .field("thresholds")
                .index(i)
                .field("priority")
                .error(format!("unknown priority {}", t.priority)));
        }
        if t.priority != RoutingPriority::Default as i32 {
            continue;
        }
        let d = Thresholds::default();
        out = Thresholds {
            max_connections: wkt::u32_or(t.max_connections.as_ref(), d.max_connections),
            max_pending_requests: wkt::u32_or(
                t.max_pending_requests.as_ref(),
                d.max_pending_requests,
            ),
            max_requests: wkt::u32_or(t.max_requests.as_ref(), d.max_requests),
            max_retries: wkt::u32_or(t.max_retries.as_ref(), d.max_retries),
        };
    }
    Ok(out)
}

/// Envoy's detectors only eject when enforced: `enforcing_consecutive_5xx` defaults to
/// 100 % and `enforcing_consecutive_gateway_failure` to 0 %, so an unenforced detector
/// comes out with threshold 0 (off).
fn outlier_detection(o: &PbOutlier, ctx: &Ctx) -> Result<OutlierDetection> {
    let enforced = |threshold: u32, enforcing: u32| if enforcing == 0 { 0 } else { threshold };
    let max_ejection_percent = wkt::u32_or(o.max_ejection_percent.as_ref(), 10);
    if max_ejection_percent > 100 {
        return Err(ctx
            .field("max_ejection_percent")
            .error("max_ejection_percent must be at most 100"));
    }
    Ok(OutlierDetection {
        consecutive_5xx: enforced(
            wkt::u32_or(o.consecutive_5xx.as_ref(), 5),
            wkt::u32_or(o.enforcing_consecutive_5xx.as_ref(), 100),
        ),
        consecutive_gateway_failure: enforced(
            wkt::u32_or(o.consecutive_gateway_failure.as_ref(), 5),
            wkt::u32_or(o.enforcing_consecutive_gateway_failure.as_ref(), 0),
        ),
        interval: match &o.interval {
            None => Duration::from_secs(10),
            Some(d) => wkt::positive_duration(d, &ctx.field("interval"))?,
        },
        base_ejection_time: match &o.base_ejection_time {
            None => Duration::from_secs(30),
            Some(d) => wkt::positive_duration(d, &ctx.field("base_ejection_time"))?,
        },
        max_ejection_percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(5_000_011));
        assert!(!is_prime(65536));
        assert!(!is_prime(1));
    }
}
