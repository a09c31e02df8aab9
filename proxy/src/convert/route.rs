//! A `Route`: its match, its action and its per-route extras.

use strait_proto::envoy::config::route::v3::{
    Route as PbRoute, RouteMatch as PbMatch, route, route_match::PathSpecifier,
};

use super::per_filter::{PerFilter, Setting};
use super::{cors, headers, matcher, per_filter, redirect, route_action, wkt};
use crate::config::error::{Ctx, Result};
use crate::config::route::{
    CorsPolicy, FaultConfig, PathMatch, RetryPolicy, Route, RouteAction, RouteMatch,
};

/// What a route inherits from its virtual host and route configuration.
pub struct Enclosing<'a> {
    pub vhost_retry: Option<&'a RetryPolicy>,
    /// Per-filter settings, virtual host first, then route configuration.
    pub per_filter: [&'a PerFilter; 2],
    /// The virtual host's deprecated `cors` field.
    pub legacy_vhost_cors: Option<&'a CorsPolicy>,
    pub max_direct_response_body: u32,
}

pub fn route(r: &PbRoute, enclosing: &Enclosing<'_>, ctx: &Ctx) -> Result<Route> {
    let m = r
        .r#match
        .as_ref()
        .ok_or_else(|| ctx.field("match").error("match is required"))?;
    let route_match = route_match(m, &ctx.field("match"))?;
    let mut legacy_cors = None;
    let action = match &r.action {
        Some(route::Action::Route(a)) => {
            let actx = ctx.field("route");
            if let Some(c) = &a.cors {
                legacy_cors = cors::route_cors(c, &actx.field("cors"))?;
            }
            RouteAction::Forward(Box::new(route_action::forward(
                a,
                enclosing.vhost_retry,
                &actx,
            )?))
        }
        Some(route::Action::Redirect(rd)) => {
            RouteAction::Redirect(redirect::redirect(rd, &ctx.field("redirect"))?)
        }
        Some(route::Action::DirectResponse(d)) => {
            RouteAction::DirectResponse(redirect::direct_response(
                d,
                enclosing.max_direct_response_body,
                &ctx.field("direct_response"),
            )?)
        }
        Some(route::Action::NonForwardingAction(_)) => RouteAction::NonForwarding,
        Some(route::Action::FilterAction(_)) => {
            return Err(ctx
                .field("filter_action")
                .error("filter actions are not supported"));
        }
        None => return Err(ctx.error("an action (route, redirect, direct_response) is required")),
    };
    let own = per_filter::per_filter(&r.typed_per_filter_config, ctx)?;
    let [vhost_pf, rc_pf] = enclosing.per_filter;
    let fault: Option<FaultConfig> =
        Setting::resolve(&[&own.fault, &vhost_pf.fault, &rc_pf.fault]).flatten();
    // Typed per-filter CORS configs win; otherwise the deprecated route, then virtual host fields.
    let cors = Setting::resolve(&[&own.cors, &vhost_pf.cors, &rc_pf.cors])
        .unwrap_or_else(|| legacy_cors.or_else(|| enclosing.legacy_vhost_cors.cloned()));
    let operation = match &r.decorator {
        None => None,
        Some(d) if d.operation.is_empty() => {
            return Err(ctx
                .field("decorator")
                .field("operation")
                .error("operation must not be empty"));
        }
        Some(d) => Some(d.operation.clone()),
    };
    Ok(Route {
        name: r.name.as_str().into(),
        route_match,
        action,
        headers: headers::request(&r.request_headers_to_add, &r.request_headers_to_remove, ctx)?,
        response_headers: headers::response(
            &r.response_headers_to_add,
            &r.response_headers_to_remove,
            ctx,
        )?,
        fault,
        cors,
        operation,
    })
}

pub fn route_match(m: &PbMatch, ctx: &Ctx) -> Result<RouteMatch> {
    let path = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(PathSpecifier::SafeRegex(r)) => {
            PathMatch::Regex(matcher::regex_matcher(r, &ctx.field("safe_regex"))?)
        }
        Some(PathSpecifier::PathSeparatedPrefix(p)) => {
            if p.is_empty() || p.ends_with('/') || p.contains(['?', '#']) {
                return Err(ctx.field("path_separated_prefix").error(format!(
                    "'{p}' must be non-empty, contain no '?' or '#' and not end in '/'"
                )));
            }
            PathMatch::PathSeparatedPrefix(p.clone())
        }
        Some(PathSpecifier::ConnectMatcher(_)) => {
            return Err(ctx
                .field("connect_matcher")
                .error("CONNECT matching is not supported"));
        }
        Some(PathSpecifier::PathMatchPolicy(_)) => {
            return Err(ctx
                .field("path_match_policy")
                .error("URI template matching is not supported"));
        }
        None => {
            return Err(ctx.error(
                "path_specifier (prefix, path, safe_regex, path_separated_prefix) is required",
            ));
        }
    };
    if !m.cookies.is_empty() {
        return Err(ctx
            .field("cookies")
            .error("cookie matching is not supported"));
    }
    if m.tls_context.is_some() {
        return Err(ctx
            .field("tls_context")
            .error("TLS context matching is not supported"));
    }
    if !m.dynamic_metadata.is_empty() {
        return Err(ctx
            .field("dynamic_metadata")
            .error("dynamic metadata matching is not supported"));
    }
    if !m.filter_state.is_empty() {
        return Err(ctx
            .field("filter_state")
            .error("filter state matching is not supported"));
    }
    let fraction = match &m.runtime_fraction {
        None => None,
        Some(rf) => {
            let fctx = ctx.field("runtime_fraction").field("default_value");
            let dv = rf
                .default_value
                .as_ref()
                .ok_or_else(|| fctx.error("default_value is required"))?;
            Some(wkt::fraction(dv, &fctx)?)
        }
    };
    Ok(RouteMatch {
        path,
        case_sensitive: wkt::bool_or(m.case_sensitive.as_ref(), true),
        headers: matcher::header_matchers(&m.headers, &ctx.field("headers"))?,
        query_parameters: m
            .query_parameters
            .iter()
            .enumerate()
            .map(|(i, q)| {
                matcher::query_parameter_matcher(q, &ctx.field("query_parameters").index(i))
            })
            .collect::<Result<Vec<_>>>()?,
        fraction,
        grpc: m.grpc.is_some(),
    })
}
