//! VirtualService `http` rules → Envoy routes for one listener port (Istio's
//! `BuildHTTPRoutesForVirtualService` / `translateRoute`).

use std::collections::HashMap;

use strait_proto::envoy::config::route::v3::{
    Decorator, Route, route, route_action::ClusterSpecifier, route_match::PathSpecifier,
};
use strait_proto::istio::{HttpMatchRequest, HttpRoute, VirtualService};
use strait_proto::xds::any;

use super::action::route_action;
use super::cors::translate_cors;
use super::fault::translate_fault;
use super::headers::translate_headers;
use super::matcher::route_match;
use super::redirect::{translate_direct_response, translate_redirect};
use super::{Problems, RouteContext, wkt};
use crate::model::Config;
use crate::model::service::parse_cluster_name;
use crate::xds::listener::names;

/// The routes of a VirtualService for `ctx.listener_port`, in order, stopping after the
/// first catch-all. Rules Envoy would reject are skipped and reported.
pub fn virtual_service_routes(ctx: &RouteContext<'_>, vs: &Config<VirtualService>) -> Vec<Route> {
    let mut problems = Problems::default();
    let mut out = Vec::new();
    'rules: for (i, http) in vs.spec.http.iter().enumerate() {
        if http.matches.is_empty() {
            let scope = problems.in_scope(format!("http[{i}]"));
            out.extend(translate_route(ctx, vs, http, None, scope));
            break;
        }
        for (j, m) in http.matches.iter().enumerate() {
            let scope = problems.in_scope(format!("http[{i}].match[{j}]"));
            if let Some(r) = translate_route(ctx, vs, http, Some(m), scope) {
                let catch_all = is_catch_all(&r);
                out.push(r);
                if catch_all {
                    break 'rules;
                }
            }
        }
    }
    problems.report(ctx.push, "VirtualService", &vs.meta);
    out
}

fn translate_route(
    ctx: &RouteContext<'_>,
    vs: &Config<VirtualService>,
    http: &HttpRoute,
    m: Option<&HttpMatchRequest>,
    problems: &mut Problems,
) -> Option<Route> {
    if !applies_to_proxy(ctx, m) {
        return None;
    }
    let route_match = match route_match(m) {
        Ok(rm) => rm,
        Err(e) => {
            problems.push(format!("{e}; route skipped"));
            return None;
        }
    };
    let mut out = Route {
        name: route_name(http, m),
        r#match: Some(route_match),
        metadata: Some(wkt::virtual_service_metadata(&vs.meta)),
        stat_prefix: m.map(|m| m.stat_prefix.clone()).unwrap_or_default(),
        ..Default::default()
    };
    let mut authority = None;
    if let Some(headers) = &http.headers {
        let ops = translate_headers(headers);
        out.request_headers_to_add = ops.request_to_add;
        out.request_headers_to_remove = ops.request_to_remove;
        out.response_headers_to_add = ops.response_to_add;
        out.response_headers_to_remove = ops.response_to_remove;
        authority = ops.authority;
    }
    let action = if let Some(redirect) = &http.redirect {
        translate_redirect(redirect, ctx.listener_port).map(route::Action::Redirect)
    } else if let Some(direct) = &http.direct_response {
        translate_direct_response(direct).map(route::Action::DirectResponse)
    } else {
        route_action(ctx, http, authority, &mut out).map(route::Action::Route)
    };
    match action {
        Ok(action) => out.action = Some(action),
        Err(e) => {
            problems.push(format!("{e}; route skipped"));
            return None;
        }
    }
    out.decorator = Some(Decorator {
        operation: operation(&out, &vs.meta.name, ctx.listener_port),
        propagate: None,
    });
    out.typed_per_filter_config = per_filter_config(http, problems);
    Some(out)
}

/// `match.port`, `sourceLabels`, `sourceNamespace` and `gateways` are decided here, for the
/// proxy being configured, rather than by Envoy.
fn applies_to_proxy(ctx: &RouteContext<'_>, m: Option<&HttpMatchRequest>) -> bool {
    let Some(m) = m else {
        return true;
    };
    if m.port != 0 && m.port != u32::from(ctx.listener_port) {
        return false;
    }
    if !m.gateways.is_empty() {
        return m.gateways.iter().any(|g| g == "mesh");
    }
    let labels_match = m
        .source_labels
        .iter()
        .all(|(k, v)| ctx.proxy.labels.get(k) == Some(v));
    labels_match && (m.source_namespace.is_empty() || m.source_namespace == ctx.proxy.namespace)
}

/// `<http.name>` or `<http.name>.<match.name>`.
fn route_name(http: &HttpRoute, m: Option<&HttpMatchRequest>) -> String {
    match m {
        Some(m) if !m.name.is_empty() => format!("{}.{}", http.name, m.name),
        _ => http.name.clone(),
    }
}

fn per_filter_config(
    http: &HttpRoute,
    problems: &mut Problems,
) -> HashMap<String, strait_proto::google::protobuf::Any> {
    let mut out = HashMap::new();
    if let Some(fault) = http
        .fault
        .as_ref()
        .and_then(|f| translate_fault(f, problems))
    {
        out.insert(names::FAULT_HTTP_FILTER.to_string(), any::pack(&fault));
    }
    if let Some(cors) = &http.cors_policy {
        out.insert(
            names::CORS_HTTP_FILTER.to_string(),
            any::pack(&translate_cors(cors, problems)),
        );
    }
    out
}

/// The tracing operation: `<host>:<port><path>` for a single outbound cluster, else
/// `<vsName>:<listenerPort><path>`.
pub fn operation(route: &Route, vs_name: &str, listener_port: u16) -> String {
    let path = match route
        .r#match
        .as_ref()
        .and_then(|m| m.path_specifier.as_ref())
    {
        Some(PathSpecifier::Prefix(p)) => format!("{p}*"),
        Some(PathSpecifier::Path(p)) => p.clone(),
        Some(PathSpecifier::SafeRegex(r)) => r.regex.clone(),
        _ => "/*".to_string(),
    };
    let cluster = match &route.action {
        Some(route::Action::Route(a)) => match &a.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => {
                parse_cluster_name(c).map(|k| (k.host.to_string(), k.port))
            }
            _ => None,
        },
        _ => None,
    };
    match cluster {
        Some((host, port)) => format!("{host}:{port}{path}"),
        None => format!("{vs_name}:{listener_port}{path}"),
    }
}

/// A route matching every request: prefix `/` (or regex `.*`) and no header/query match.
pub fn is_catch_all(r: &Route) -> bool {
    let Some(m) = &r.r#match else {
        return false;
    };
    let path_all = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) | Some(PathSpecifier::PathSeparatedPrefix(p)) => p == "/",
        Some(PathSpecifier::SafeRegex(r)) => r.regex == ".*",
        _ => false,
    };
    path_all
        && m.headers.is_empty()
        && m.query_parameters.is_empty()
        && m.dynamic_metadata.is_empty()
}
