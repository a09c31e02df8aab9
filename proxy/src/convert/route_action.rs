//! `route: {...}` actions: where to forward, with timeouts, rewrites, mirrors, hashing.

use std::time::Duration;

use regex::Regex;
use strait_proto::envoy::config::route::v3::{
    RouteAction as PbAction, WeightedCluster as PbWeighted,
    route_action::{
        ClusterSpecifier as PbSpecifier, HashPolicy as PbHash, HostRewriteSpecifier,
        RequestMirrorPolicy, hash_policy,
    },
};
use strait_proto::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;

use super::{headers, matcher, per_filter, wkt};
use crate::config::common::PartsPerMillion;
use crate::config::error::{Ctx, Result};
use crate::config::listener::{ClusterSpecifier, WeightedCluster};
use crate::config::route::{
    ForwardAction, HashPolicy, MirrorPolicy, RetryPolicy, WeightedClusterHeaders,
};

/// Envoy's default upstream timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The action; `retry_policy` is the route's own or else the virtual host's, which is how
/// Envoy picks it (the route's replaces the virtual host's entirely).
pub fn forward(
    a: &PbAction,
    vhost_retry: Option<&RetryPolicy>,
    ctx: &Ctx,
) -> Result<ForwardAction> {
    unsupported(a, ctx)?;
    let (cluster, cluster_headers) = cluster_specifier(a.cluster_specifier.as_ref(), ctx)?;
    if !a.prefix_rewrite.is_empty() && a.regex_rewrite.is_some() {
        return Err(ctx
            .field("regex_rewrite")
            .error("cannot specify both prefix_rewrite and regex_rewrite"));
    }
    let regex_rewrite = a
        .regex_rewrite
        .as_ref()
        .map(|r| regex_rewrite(r, &ctx.field("regex_rewrite")))
        .transpose()?;
    let (host_rewrite, auto_host_rewrite) = match &a.host_rewrite_specifier {
        None => (None, false),
        Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => {
            if http::HeaderValue::from_str(h).is_err() {
                return Err(ctx.field("host_rewrite_literal").error("invalid host"));
            }
            ((!h.is_empty()).then(|| h.clone()), false)
        }
        Some(HostRewriteSpecifier::AutoHostRewrite(b)) => (None, b.value),
        Some(HostRewriteSpecifier::HostRewriteHeader(_)) => {
            return Err(ctx
                .field("host_rewrite_header")
                .error("host rewrites from a header are not supported"));
        }
        Some(HostRewriteSpecifier::HostRewritePathRegex(_)) => {
            return Err(ctx
                .field("host_rewrite_path_regex")
                .error("host rewrites from the path are not supported"));
        }
        Some(HostRewriteSpecifier::HostRewrite(_)) => {
            return Err(ctx
                .field("host_rewrite")
                .error("formatted host rewrites are not supported"));
        }
    };
    let retry_policy = match &a.retry_policy {
        Some(r) => Some(super::retry::retry_policy(r, &ctx.field("retry_policy"))?),
        None => vhost_retry.cloned(),
    };
    Ok(ForwardAction {
        cluster,
        cluster_headers,
        timeout: wkt::timeout(
            a.timeout.as_ref(),
            Some(DEFAULT_TIMEOUT),
            &ctx.field("timeout"),
        )?,
        idle_timeout: wkt::timeout(a.idle_timeout.as_ref(), None, &ctx.field("idle_timeout"))?,
        retry_policy,
        prefix_rewrite: (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone()),
        regex_rewrite,
        host_rewrite,
        auto_host_rewrite,
        mirrors: mirrors(
            &a.request_mirror_policies,
            &ctx.field("request_mirror_policies"),
        )?,
        hash_policy: hash_policies(&a.hash_policy, &ctx.field("hash_policy"))?,
        max_grpc_timeout: max_grpc_timeout(a, ctx)?,
        upgrade_types: upgrade_types(a, ctx)?,
    })
}

fn unsupported(a: &PbAction, ctx: &Ctx) -> Result<()> {
    if a.retry_policy_typed_config.is_some() {
        return Err(ctx
            .field("retry_policy_typed_config")
            .error("typed retry policies are not supported"));
    }
    if a.path_rewrite_policy.is_some() || !a.path_rewrite.is_empty() {
        return Err(ctx
            .field("path_rewrite_policy")
            .error("URI template rewrites are not supported"));
    }
    if a.internal_redirect_policy.is_some() || a.internal_redirect_action != 0 {
        return Err(ctx
            .field("internal_redirect_policy")
            .error("internal redirects are not supported"));
    }
    if let Some(h) = &a.hedge_policy {
        super::route_config::check_hedge(h, &ctx.field("hedge_policy"))?;
    }
    if let Some(m) = &a.max_stream_duration
        && let Some(d) = &m.max_stream_duration
        && !wkt::duration(
            d,
            &ctx.field("max_stream_duration")
                .field("max_stream_duration"),
        )?
        .is_zero()
    {
        return Err(ctx
            .field("max_stream_duration")
            .field("max_stream_duration")
            .error("a maximum stream duration is not supported"));
    }
    Ok(())
}

fn cluster_specifier(
    spec: Option<&PbSpecifier>,
    ctx: &Ctx,
) -> Result<(ClusterSpecifier, Vec<WeightedClusterHeaders>)> {
    match spec {
        Some(PbSpecifier::Cluster(c)) => {
            if c.is_empty() {
                return Err(ctx.field("cluster").error("cluster must not be empty"));
            }
            Ok((ClusterSpecifier::Cluster(c.clone()), Vec::new()))
        }
        Some(PbSpecifier::WeightedClusters(w)) => weighted(w, &ctx.field("weighted_clusters")),
        Some(PbSpecifier::ClusterHeader(_)) => Err(ctx
            .field("cluster_header")
            .error("choosing the cluster from a header is not supported")),
        Some(PbSpecifier::ClusterSpecifierPlugin(_))
        | Some(PbSpecifier::InlineClusterSpecifierPlugin(_)) => Err(ctx
            .field("cluster_specifier_plugin")
            .error("cluster specifier plugins are not supported")),
        None => Err(ctx.error("cluster or weighted_clusters is required")),
    }
}

fn weighted(w: &PbWeighted, ctx: &Ctx) -> Result<(ClusterSpecifier, Vec<WeightedClusterHeaders>)> {
    if w.clusters.is_empty() {
        return Err(ctx
            .field("clusters")
            .error("at least one cluster is required"));
    }
    let mut clusters = Vec::with_capacity(w.clusters.len());
    let mut cluster_headers = Vec::new();
    let mut sum: u64 = 0;
    for (i, c) in w.clusters.iter().enumerate() {
        let ctx = ctx.field("clusters").index(i);
        if !c.cluster_header.is_empty() {
            return Err(ctx
                .field("cluster_header")
                .error("choosing the cluster from a header is not supported"));
        }
        if c.name.is_empty() {
            return Err(ctx.field("name").error("name must not be empty"));
        }
        if c.host_rewrite_specifier.is_some() {
            return Err(ctx
                .field("host_rewrite_literal")
                .error("per-cluster host rewrites are not supported"));
        }
        let pf = per_filter::per_filter(&c.typed_per_filter_config, &ctx)?;
        if pf.fault.is_set() || pf.cors.is_set() {
            return Err(ctx
                .field("typed_per_filter_config")
                .error("fault and CORS configs on weighted clusters are not supported"));
        }
        let weight = wkt::u32_or(c.weight.as_ref(), 0);
        sum += u64::from(weight);
        let request = headers::request(
            &c.request_headers_to_add,
            &c.request_headers_to_remove,
            &ctx,
        )?;
        let response = headers::response(
            &c.response_headers_to_add,
            &c.response_headers_to_remove,
            &ctx,
        )?;
        if !request.is_empty() || !response.is_empty() {
            cluster_headers.push(WeightedClusterHeaders {
                cluster: c.name.clone(),
                headers: request,
                response_headers: response,
            });
        }
        clusters.push(WeightedCluster {
            name: c.name.clone(),
            weight,
        });
    }
    if sum == 0 {
        return Err(ctx.error("sum of weights in the weighted_cluster must be greater than 0"));
    }
    if sum > u64::from(u32::MAX) {
        return Err(ctx.error("sum of weights in the weighted_cluster must not exceed 4294967295"));
    }
    if let Some(total) = &w.total_weight
        && u64::from(total.value) != sum
    {
        return Err(ctx.field("total_weight").error(format!(
            "sum of weights ({sum}) does not add up to total_weight ({})",
            total.value
        )));
    }
    Ok((ClusterSpecifier::Weighted(clusters), cluster_headers))
}

/// A regex rewrite: the pattern as written (every match is replaced) and the substitution
/// translated from RE2's syntax (`\1`) to the regex crate's (`${1}`), for
/// `Regex::replace_all`.
pub fn regex_rewrite(r: &RegexMatchAndSubstitute, ctx: &Ctx) -> Result<(Regex, String)> {
    let pattern = r
        .pattern
        .as_ref()
        .ok_or_else(|| ctx.field("pattern").error("pattern is required"))?;
    let re = matcher::regex(&pattern.regex, &ctx.field("pattern").field("regex"))?;
    let sub = substitution(
        &r.substitution,
        re.captures_len(),
        &ctx.field("substitution"),
    )?;
    Ok((re, sub))
}

fn substitution(s: &str, groups: usize, ctx: &Ctx) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(d @ '0'..='9') => {
                    let n = d as usize - '0' as usize;
                    if n >= groups {
                        return Err(ctx.error(format!(
                            "substitution references group \\{n} but the pattern has {} groups",
                            groups.saturating_sub(1)
                        )));
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                _ => {
                    return Err(ctx.error(
                        "invalid rewrite pattern: '\\' must be followed by a digit or '\\'",
                    ));
                }
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

fn mirrors(list: &[RequestMirrorPolicy], ctx: &Ctx) -> Result<Vec<MirrorPolicy>> {
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let ctx = ctx.index(i);
            if !m.cluster_header.is_empty() {
                return Err(ctx
                    .field("cluster_header")
                    .error("mirroring to a cluster from a header is not supported"));
            }
            if m.cluster.is_empty() {
                return Err(ctx.field("cluster").error("cluster must not be empty"));
            }
            if !m.request_headers_mutations.is_empty() {
                return Err(ctx
                    .field("request_headers_mutations")
                    .error("header mutations on mirrored requests are not supported"));
            }
            if !m.host_rewrite_literal.is_empty() {
                return Err(ctx
                    .field("host_rewrite_literal")
                    .error("host rewrites on mirrored requests are not supported"));
            }
            let fraction = match &m.runtime_fraction {
                None => PartsPerMillion::ALL,
                Some(rf) => {
                    let dv = rf.default_value.as_ref().ok_or_else(|| {
                        ctx.field("runtime_fraction")
                            .field("default_value")
                            .error("default_value is required")
                    })?;
                    wkt::fraction(dv, &ctx.field("runtime_fraction").field("default_value"))?
                }
            };
            Ok(MirrorPolicy {
                cluster: m.cluster.clone(),
                fraction,
            })
        })
        .collect()
}

fn hash_policies(list: &[PbHash], ctx: &Ctx) -> Result<Vec<HashPolicy>> {
    use hash_policy::PolicySpecifier as P;
    let mut out = Vec::with_capacity(list.len());
    for (i, h) in list.iter().enumerate() {
        let ctx = ctx.index(i);
        match &h.policy_specifier {
            Some(P::Header(hd)) => {
                if hd.header_name.is_empty() {
                    return Err(ctx
                        .field("header")
                        .field("header_name")
                        .error("header_name must not be empty"));
                }
                if hd.regex_rewrite.is_some() {
                    return Err(ctx
                        .field("header")
                        .field("regex_rewrite")
                        .error("rewriting hashed headers is not supported"));
                }
                out.push(HashPolicy::Header(hd.header_name.to_ascii_lowercase()));
            }
            Some(P::Cookie(c)) => {
                if c.name.is_empty() {
                    return Err(ctx
                        .field("cookie")
                        .field("name")
                        .error("name must not be empty"));
                }
                out.push(HashPolicy::Cookie {
                    name: c.name.clone(),
                    ttl: wkt::opt_duration(c.ttl.as_ref(), &ctx.field("cookie").field("ttl"))?,
                    path: c.path.clone(),
                });
            }
            Some(P::ConnectionProperties(cp)) => {
                // `source_ip: false` hashes nothing: Envoy skips it.
                if cp.source_ip {
                    out.push(HashPolicy::SourceIp);
                }
            }
            Some(P::QueryParameter(q)) => {
                if q.name.is_empty() {
                    return Err(ctx
                        .field("query_parameter")
                        .field("name")
                        .error("name must not be empty"));
                }
                out.push(HashPolicy::QueryParameter(q.name.clone()));
            }
            Some(P::FilterState(_)) => {
                return Err(ctx
                    .field("filter_state")
                    .error("hashing on filter state is not supported"));
            }
            None => return Err(ctx.error("policy_specifier is required")),
        }
    }
    Ok(out)
}

/// `max_stream_duration.grpc_timeout_header_max` wins over the deprecated
/// `max_grpc_timeout`, as in Envoy's router. Zero means "no cap" and stays zero.
#[allow(deprecated)]
fn max_grpc_timeout(a: &PbAction, ctx: &Ctx) -> Result<Option<Duration>> {
    if let Some(m) = &a.max_stream_duration
        && let Some(d) = &m.grpc_timeout_header_max
    {
        return Ok(Some(wkt::duration(
            d,
            &ctx.field("max_stream_duration")
                .field("grpc_timeout_header_max"),
        )?));
    }
    wkt::opt_duration(a.max_grpc_timeout.as_ref(), &ctx.field("max_grpc_timeout"))
}

/// Upgrades the route allows. Entries disabling an upgrade are not representable and are
/// left out (the HCM's list still applies).
fn upgrade_types(a: &PbAction, ctx: &Ctx) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, u) in a.upgrade_configs.iter().enumerate() {
        let ctx = ctx.field("upgrade_configs").index(i);
        if u.upgrade_type.is_empty() {
            return Err(ctx
                .field("upgrade_type")
                .error("upgrade_type must not be empty"));
        }
        if u.connect_config.is_some() {
            return Err(ctx
                .field("connect_config")
                .error("CONNECT termination is not supported"));
        }
        if wkt::bool_or(u.enabled.as_ref(), true) {
            out.push(u.upgrade_type.to_ascii_lowercase());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::envoy::r#type::matcher::v3::RegexMatcher;

    #[test]
    fn re2_substitutions_become_regex_crate_ones() {
        let ctx = Ctx::new("RouteConfiguration", "r");
        let rr = |p: &str, s: &str| RegexMatchAndSubstitute {
            pattern: Some(RegexMatcher {
                regex: p.into(),
                engine_type: None,
            }),
            substitution: s.into(),
        };
        let (re, sub) = regex_rewrite(
            &rr("^/service/([^/]+)(/.*)$", "\\2/instance/\\1$x\\\\"),
            &ctx,
        )
        .unwrap();
        assert_eq!(sub, "${2}/instance/${1}$$x\\");
        assert_eq!(
            re.replace_all("/service/foo/v1/api", sub.as_str()),
            "/v1/api/instance/foo$x\\"
        );
        let e = regex_rewrite(&rr("(a)", "\\2"), &ctx).unwrap_err();
        assert_eq!(e.field, "substitution");
        assert!(regex_rewrite(&rr("(a)", "\\q"), &ctx).is_err());
        let e = regex_rewrite(&rr("(a", "x"), &ctx).unwrap_err();
        assert_eq!(e.field, "pattern.regex");
    }
}
