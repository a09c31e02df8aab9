//! The forwarding part of a VirtualService route: destinations (one cluster or weighted
//! clusters), timeouts, retries, rewrites, mirrors and per-destination header changes.

use std::sync::Arc;

use strait_proto::envoy::config::core::v3::RuntimeFractionalPercent;
use strait_proto::envoy::config::route::v3::{
    Route, RouteAction, WeightedCluster,
    route_action::{ClusterSpecifier, HostRewriteSpecifier, RequestMirrorPolicy},
    weighted_cluster::{ClusterWeight, cluster_weight},
};
use strait_proto::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use strait_proto::istio::{Destination, HttpRoute, HttpRouteDestination, Percent};

use super::fault::{hundredths, percent_per_million};
use super::headers::translate_headers;
use super::matcher::regex_matcher;
use super::{RouteContext, hash, retry, wkt};
use crate::model::{Service, outbound_cluster_name};

/// `outbound|<port>|<subset>|<host>` for a destination: the port named by the destination,
/// else the service's only port, else the listener's port. ExternalName services route to
/// the name they alias.
pub fn destination_cluster(
    host: &str,
    dest: &Destination,
    service: Option<&Service>,
    listener_port: u16,
) -> String {
    let host = service
        .and_then(|s| s.external_name.as_deref())
        .unwrap_or(host);
    let port = match (&dest.port, service) {
        (Some(p), _) => p.number,
        (None, Some(s)) if s.ports.len() == 1 => u32::from(s.ports[0].port),
        _ => u32::from(listener_port),
    };
    format!("outbound|{port}|{}|{host}", dest.subset)
}

/// Builds the action and folds single-destination header changes into `route`.
// Istio still sets the deprecated max_grpc_timeout: its replacement regressed.
#[allow(deprecated)]
pub fn route_action(
    ctx: &RouteContext<'_>,
    http: &HttpRoute,
    authority: Option<String>,
    route: &mut Route,
) -> Result<RouteAction, String> {
    let timeout = http
        .timeout
        .as_ref()
        .map_or_else(wkt::zero_duration, wkt::istio_duration);
    let mut action = RouteAction {
        max_grpc_timeout: Some(timeout),
        timeout: Some(timeout),
        ..Default::default()
    };
    let mut authority = authority;
    if let Some(rewrite) = &http.rewrite {
        if let Some(regex) = &rewrite.uri_regex_rewrite {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(
                    regex_matcher(&regex.pattern)
                        .map_err(|e| format!("rewrite.uriRegexRewrite: {e}"))?,
                ),
                substitution: regex.rewrite.clone(),
            });
        } else if !rewrite.uri.is_empty() {
            action.prefix_rewrite = rewrite.uri.clone();
        }
        if !rewrite.authority.is_empty() {
            authority = Some(rewrite.authority.clone());
        }
    }
    if let Some(authority) = authority {
        action.host_rewrite_specifier = Some(HostRewriteSpecifier::HostRewriteLiteral(authority));
    }
    action.request_mirror_policies = mirror_policies(ctx, http);
    let consistent_hash = apply_destinations(ctx, http, route, &mut action)?;
    let retries = http
        .retries
        .as_ref()
        .or(ctx.push.mesh.default_http_retry_policy.as_ref());
    action.retry_policy = retry::convert_policy(retries, consistent_hash);
    Ok(action)
}

/// Sets the cluster specifier and hash policies; returns whether a single destination is
/// consistently hashed (retries then stay on the same host).
fn apply_destinations(
    ctx: &RouteContext<'_>,
    http: &HttpRoute,
    route: &mut Route,
    action: &mut RouteAction,
) -> Result<bool, String> {
    match http.route.as_slice() {
        [] => Err("route has no destinations".to_string()),
        [only] => {
            let target = ctx.target(&only.destination);
            action.cluster_specifier = Some(ClusterSpecifier::Cluster(target.cluster.clone()));
            if let Some(headers) = &only.headers {
                let ops = translate_headers(headers);
                route.request_headers_to_add.extend(ops.request_to_add);
                route
                    .request_headers_to_remove
                    .extend(ops.request_to_remove);
                route.response_headers_to_add.extend(ops.response_to_add);
                route
                    .response_headers_to_remove
                    .extend(ops.response_to_remove);
                // A route-level rewrite wins over a destination's, as in Istio.
                if let (Some(a), None) = (ops.authority, &action.host_rewrite_specifier) {
                    action.host_rewrite_specifier =
                        Some(HostRewriteSpecifier::HostRewriteLiteral(a));
                }
            }
            let hashed = target.hash_policy(ctx, &only.destination);
            let consistent = hashed.is_some();
            action.hash_policy.extend(hashed);
            Ok(consistent)
        }
        many => {
            let mut clusters = Vec::new();
            for dest in many {
                let Ok(weight) = u32::try_from(dest.weight) else {
                    continue;
                };
                if weight == 0 {
                    continue;
                }
                let target = ctx.target(&dest.destination);
                action
                    .hash_policy
                    .extend(target.hash_policy(ctx, &dest.destination));
                clusters.push(cluster_weight(target.cluster, weight, dest));
            }
            if clusters.is_empty() {
                return Err("all weighted destinations have weight 0".to_string());
            }
            action.cluster_specifier = Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters,
                ..Default::default()
            }));
            Ok(false)
        }
    }
}

fn cluster_weight(name: String, weight: u32, dest: &HttpRouteDestination) -> ClusterWeight {
    let mut out = ClusterWeight {
        name,
        weight: Some(wkt::u32_value(weight)),
        ..Default::default()
    };
    if let Some(headers) = &dest.headers {
        let ops = translate_headers(headers);
        out.request_headers_to_add = ops.request_to_add;
        out.request_headers_to_remove = ops.request_to_remove;
        out.response_headers_to_add = ops.response_to_add;
        out.response_headers_to_remove = ops.response_to_remove;
        out.host_rewrite_specifier = ops
            .authority
            .map(cluster_weight::HostRewriteSpecifier::HostRewriteLiteral);
    }
    out
}

/// Where a destination goes: its resolved host, its service (if known) and cluster name.
pub struct Target {
    pub host: String,
    pub service: Option<Arc<Service>>,
    pub cluster: String,
}

impl Target {
    fn hash_policy(
        &self,
        ctx: &RouteContext<'_>,
        dest: &Destination,
    ) -> Option<strait_proto::envoy::config::route::v3::route_action::HashPolicy> {
        let service = self
            .service
            .clone()
            .or_else(|| ctx.push.service_for_host(&self.host, &ctx.proxy.namespace))?;
        let dr = ctx.push.destination_rule(ctx.proxy, &service)?;
        let ch = hash::for_destination(&dr.spec, &dest.subset, dest.port.map(|p| p.number))?;
        hash::hash_policy(ch)
    }
}

impl RouteContext<'_> {
    pub fn target(&self, dest: &Destination) -> Target {
        let host = self.push.resolve_host(&dest.host, self.config_namespace);
        let service = self.registry.get(&host).cloned();
        let cluster = destination_cluster(&host, dest, service.as_deref(), self.listener_port);
        Target {
            host,
            service,
            cluster,
        }
    }
}

fn mirror_policies(ctx: &RouteContext<'_>, http: &HttpRoute) -> Vec<RequestMirrorPolicy> {
    let mut out = Vec::new();
    if let Some(mirror) = &http.mirror
        && let Some(fraction) = legacy_mirror_fraction(http)
    {
        out.push(mirror_policy(ctx.target(mirror).cluster, fraction));
    }
    for m in &http.mirrors {
        if let Some(fraction) = mirror_fraction(m.percentage.as_ref(), None) {
            out.push(mirror_policy(ctx.target(&m.destination).cluster, fraction));
        }
    }
    out
}

/// `mirrorPercentage` wins over the deprecated `mirrorPercent`; unset means 100 %.
fn legacy_mirror_fraction(http: &HttpRoute) -> Option<RuntimeFractionalPercent> {
    mirror_fraction(
        http.mirror_percentage.as_ref(),
        http.deprecated_mirror_percent(),
    )
}

/// An explicit 0 % turns mirroring off.
fn mirror_fraction(
    percentage: Option<&Percent>,
    percent: Option<u32>,
) -> Option<RuntimeFractionalPercent> {
    let value = match (percentage, percent) {
        (Some(p), _) if p.value > 0.0 => percent_per_million(p),
        (Some(_), _) => return None,
        (None, Some(p)) if p > 0 => hundredths(p),
        (None, Some(_)) => return None,
        (None, None) => hundredths(100),
    };
    Some(RuntimeFractionalPercent {
        default_value: Some(value),
        runtime_key: String::new(),
    })
}

fn mirror_policy(cluster: String, fraction: RuntimeFractionalPercent) -> RequestMirrorPolicy {
    RequestMirrorPolicy {
        cluster,
        runtime_fraction: Some(fraction),
        trace_sampled: Some(wkt::bool_value(false)),
        ..Default::default()
    }
}

/// The default route of a service with no VirtualService (the cluster carries no subset).
pub fn default_cluster(service: &Service, port: u16) -> String {
    outbound_cluster_name(port, "", &service.hostname)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::istio::PortSelector;

    #[test]
    fn destination_port_resolution() {
        let dest = Destination {
            host: "reviews.default.svc.cluster.local".into(),
            subset: "v1".into(),
            port: None,
        };
        assert_eq!(
            destination_cluster(&dest.host, &dest, None, 9080),
            "outbound|9080|v1|reviews.default.svc.cluster.local"
        );
        let with_port = Destination {
            port: Some(PortSelector { number: 8080 }),
            ..dest.clone()
        };
        assert_eq!(
            destination_cluster(&dest.host, &with_port, None, 9080),
            "outbound|8080|v1|reviews.default.svc.cluster.local"
        );
    }

    #[test]
    fn mirror_fractions() {
        assert_eq!(
            mirror_fraction(None, None)
                .unwrap()
                .default_value
                .unwrap()
                .numerator,
            100
        );
        assert!(mirror_fraction(Some(&Percent { value: 0.0 }), None).is_none());
        assert!(mirror_fraction(None, Some(0)).is_none());
        let half = mirror_fraction(Some(&Percent { value: 50.0 }), Some(10)).unwrap();
        assert_eq!(half.default_value.unwrap().numerator, 500_000);
    }
}
