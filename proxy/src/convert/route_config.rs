//! `RouteConfiguration` → [`RouteConfig`], with its virtual hosts.

use std::collections::BTreeSet;
use std::sync::Arc;

use strait_proto::envoy::config::route::v3::{
    HedgePolicy, RouteConfiguration as PbRouteConfig, VirtualHost as PbVirtualHost,
    virtual_host::TlsRequirementType,
};

use super::per_filter::{PerFilter, Setting};
use super::route::Enclosing;
use super::{cors, headers, per_filter, retry, route, wkt};
use crate::config::error::{ConfigError, Ctx, Result};
use crate::config::route::{RouteConfig, VirtualHost};

/// Envoy's default cap on direct response bodies.
const DEFAULT_MAX_DIRECT_RESPONSE_BODY: u32 = 4096;

impl TryFrom<&PbRouteConfig> for RouteConfig {
    type Error = ConfigError;

    fn try_from(rc: &PbRouteConfig) -> Result<RouteConfig> {
        route_config(rc)
    }
}

/// An RDS resource.
pub fn route_config(rc: &PbRouteConfig) -> Result<RouteConfig> {
    route_config_in(rc, &Ctx::new("RouteConfiguration", &rc.name))
}

/// A route configuration inside another resource (an HCM's inline `route_config`):
/// errors name the enclosing resource and the path to here.
pub fn route_config_in(rc: &PbRouteConfig, ctx: &Ctx) -> Result<RouteConfig> {
    if rc.vhds.is_some() {
        return Err(ctx
            .field("vhds")
            .error("virtual host discovery is not supported"));
    }
    if !rc.vhost_header.is_empty() {
        return Err(ctx
            .field("vhost_header")
            .error("matching virtual hosts on another header is not supported"));
    }
    if !rc.request_mirror_policies.is_empty() {
        return Err(ctx.field("request_mirror_policies").error(
            "mirror policies on route configurations are not supported; set them on routes",
        ));
    }
    if !rc.route_specifiers.is_empty() {
        return Err(ctx
            .field("route_specifiers")
            .error("route specifier extensions are not supported"));
    }
    let max_direct_response_body_size_bytes = wkt::u32_or(
        rc.max_direct_response_body_size_bytes.as_ref(),
        DEFAULT_MAX_DIRECT_RESPONSE_BODY,
    );
    let rc_pf = per_filter::per_filter(&rc.typed_per_filter_config, ctx)?;
    let vctx = ctx.field("virtual_hosts");
    let mut seen_domains = BTreeSet::new();
    let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        let vh = virtual_host(
            vh,
            &rc_pf,
            max_direct_response_body_size_bytes,
            &vctx.index(i),
        )?;
        for (j, d) in vh.domains.iter().enumerate() {
            if !seen_domains.insert(d.clone()) {
                return Err(vctx.index(i).field("domains").index(j).error(format!(
                    "only unique values for domains are permitted; duplicate entry of domain {d}"
                )));
            }
        }
        virtual_hosts.push(Arc::new(vh));
    }
    Ok(RouteConfig {
        name: rc.name.clone(),
        virtual_hosts,
        ignore_port_in_host_matching: rc.ignore_port_in_host_matching,
        headers: headers::request(
            &rc.request_headers_to_add,
            &rc.request_headers_to_remove,
            ctx,
        )?,
        response_headers: headers::response(
            &rc.response_headers_to_add,
            &rc.response_headers_to_remove,
            ctx,
        )?,
        max_direct_response_body_size_bytes,
        most_specific_header_mutations_wins: rc.most_specific_header_mutations_wins,
    })
}

fn virtual_host(
    vh: &PbVirtualHost,
    rc_pf: &PerFilter,
    max_body: u32,
    ctx: &Ctx,
) -> Result<VirtualHost> {
    if vh.name.is_empty() {
        return Err(ctx.field("name").error("name must not be empty"));
    }
    if vh.domains.is_empty() {
        return Err(ctx
            .field("domains")
            .error("at least one domain is required"));
    }
    if vh.require_tls != TlsRequirementType::None as i32 {
        return Err(ctx
            .field("require_tls")
            .error("requiring TLS is not supported"));
    }
    if vh.matcher.is_some() {
        return Err(ctx
            .field("matcher")
            .error("the matcher API for routes is not supported"));
    }
    if vh.retry_policy_typed_config.is_some() {
        return Err(ctx
            .field("retry_policy_typed_config")
            .error("typed retry policies are not supported"));
    }
    if !vh.request_mirror_policies.is_empty() {
        return Err(ctx
            .field("request_mirror_policies")
            .error("mirror policies on virtual hosts are not supported; set them on routes"));
    }
    if !vh.route_specifiers.is_empty() {
        return Err(ctx
            .field("route_specifiers")
            .error("route specifier extensions are not supported"));
    }
    if let Some(h) = &vh.hedge_policy {
        check_hedge(h, &ctx.field("hedge_policy"))?;
    }
    let domains = vh
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if d.is_empty() {
                Err(ctx
                    .field("domains")
                    .index(i)
                    .error("domain must not be empty"))
            } else {
                Ok(d.to_ascii_lowercase())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let retry_policy = vh
        .retry_policy
        .as_ref()
        .map(|r| retry::retry_policy(r, &ctx.field("retry_policy")))
        .transpose()?;
    let legacy_cors = vh
        .cors
        .as_ref()
        .map(|c| cors::route_cors(c, &ctx.field("cors")))
        .transpose()?
        .flatten();
    let own_pf = per_filter::per_filter(&vh.typed_per_filter_config, ctx)?;
    let enclosing = Enclosing {
        vhost_retry: retry_policy.as_ref(),
        per_filter: [&own_pf, rc_pf],
        legacy_vhost_cors: legacy_cors.as_ref(),
        max_direct_response_body: max_body,
    };
    let rctx = ctx.field("routes");
    let routes = vh
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route::route(r, &enclosing, &rctx.index(i)).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    let cors =
        Setting::resolve(&[&own_pf.cors, &rc_pf.cors]).unwrap_or_else(|| legacy_cors.clone());
    Ok(VirtualHost {
        name: vh.name.clone(),
        domains,
        routes,
        headers: headers::request(
            &vh.request_headers_to_add,
            &vh.request_headers_to_remove,
            ctx,
        )?,
        response_headers: headers::response(
            &vh.response_headers_to_add,
            &vh.response_headers_to_remove,
            ctx,
        )?,
        retry_policy,
        cors,
        include_request_attempt_count: vh.include_request_attempt_count,
    })
}

/// Hedging sends extra requests; a policy that would actually hedge is rejected.
pub fn check_hedge(h: &HedgePolicy, ctx: &Ctx) -> Result<()> {
    let initial = wkt::u32_or(h.initial_requests.as_ref(), 1);
    let extra = h
        .additional_request_chance
        .as_ref()
        .is_some_and(|f| f.numerator > 0);
    if initial > 1 || extra || h.hedge_on_per_try_timeout {
        return Err(ctx.error("request hedging is not supported"));
    }
    Ok(())
}
