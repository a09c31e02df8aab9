//! Routing one request end to end: virtual host, route, fault filter, CORS filter, then
//! the route's action.

use bytes::Bytes;
use rand::Rng;

use crate::config::listener::{HttpConnectionManager, HttpFilter};
use crate::config::route::{
    DirectResponseAction, ForwardAction, PathMatch, RedirectAction, RedirectPath, RedirectScheme,
    Route, RouteAction, RouteConfig, VirtualHost,
};

use super::cluster_pick::pick_cluster;
use super::cors::{CorsOutcome, CorsPolicies, evaluate as evaluate_cors};
use super::decision::{DirectReason, ForwardDecision, Outcome, RoutingDecision};
use super::fault::{abort_reply, fault_decision};
use super::headers::{request_levels, response_levels};
use super::local_reply::{LocalReply, ReplyTo, local_reply};
use super::matching::{find_route, fraction_hit};
use super::redirect;
use super::request::RequestView;
use super::retry::RetryOverrides;
use super::rewrite;
use super::timeout::{TimeoutInputs, final_timeouts};
use super::vhost::{VirtualHostIndex, find_virtual_host};

/// Settings of the HCM's filter chain and router that shape routing.
#[derive(Clone, Copy, Debug)]
pub struct RouterOptions {
    /// The chain has `envoy.filters.http.fault`.
    pub fault_filter: bool,
    /// The chain has `envoy.filters.http.cors`.
    pub cors_filter: bool,
    /// Requests currently faulted by this HCM's fault filter (for `max_active_faults`).
    pub active_faults: u32,
    /// The router's `suppress_envoy_headers`.
    pub suppress_envoy_headers: bool,
    /// Read the `x-envoy-*` timeout and retry controls of the request. The HCM already
    /// strips them from external requests; this turns them off entirely.
    pub honour_envoy_request_headers: bool,
    /// The router's `respect_expected_rq_timeout`.
    pub respect_expected_rq_timeout: bool,
}

impl Default for RouterOptions {
    fn default() -> RouterOptions {
        RouterOptions {
            fault_filter: true,
            cors_filter: true,
            active_faults: 0,
            suppress_envoy_headers: false,
            honour_envoy_request_headers: true,
            respect_expected_rq_timeout: false,
        }
    }
}

impl RouterOptions {
    pub fn for_hcm(hcm: &HttpConnectionManager) -> RouterOptions {
        RouterOptions {
            fault_filter: hcm
                .http_filters
                .iter()
                .any(|f| matches!(f, HttpFilter::Fault)),
            cors_filter: hcm
                .http_filters
                .iter()
                .any(|f| matches!(f, HttpFilter::Cors)),
            ..RouterOptions::default()
        }
    }
}

/// A route configuration with its virtual-host lookup tables, built once per snapshot.
#[derive(Clone, Debug)]
pub struct RouteTable {
    pub config: std::sync::Arc<RouteConfig>,
    index: VirtualHostIndex,
}

impl RouteTable {
    pub fn new(config: std::sync::Arc<RouteConfig>) -> RouteTable {
        let index = VirtualHostIndex::new(&config);
        RouteTable { config, index }
    }

    pub fn route_request<'c>(
        &'c self,
        req: &RequestView<'_>,
        opts: &RouterOptions,
        rng: &mut impl Rng,
    ) -> RoutingDecision<'c> {
        let vhost = self.index.find(&self.config, req.authority);
        decide(&self.config, vhost.map(|v| &**v), req, opts, rng)
    }
}

/// Route a request against a configuration (virtual hosts found by scanning; use
/// [`RouteTable`] for big tables).
pub fn route_request<'c>(
    config: &'c RouteConfig,
    req: &RequestView<'_>,
    opts: &RouterOptions,
    rng: &mut impl Rng,
) -> RoutingDecision<'c> {
    let vhost = find_virtual_host(config, req.authority);
    decide(config, vhost.map(|v| &**v), req, opts, rng)
}

fn reply_to(req: &RequestView<'_>) -> ReplyTo {
    ReplyTo {
        grpc: req.is_grpc(),
        head: req.is_head(),
    }
}

fn decide<'c>(
    config: &'c RouteConfig,
    vhost: Option<&'c VirtualHost>,
    req: &RequestView<'_>,
    opts: &RouterOptions,
    rng: &mut impl Rng,
) -> RoutingDecision<'c> {
    // One random value per request (Envoy's stream id) drives runtime fractions, the
    // weighted pick and mirroring alike.
    let random: u64 = rng.random();
    let route = vhost.and_then(|vh| find_route(vh, req, random).map(|r| (vh, &**r)));
    let Some((vhost, route)) = route else {
        return RoutingDecision {
            vhost,
            route: None,
            delay: None,
            fault_active: false,
            outcome: no_route(req),
        };
    };
    let mut delay = None;
    let mut fault_active = false;
    let outcome = 'outcome: {
        // Filter order as Istio configures it: fault, then CORS, then the router.
        if opts.fault_filter
            && let Some(fault) = &route.fault
        {
            let f = fault_decision(fault, rng.random(), rng.random(), opts.active_faults);
            delay = f.delay;
            fault_active = f.is_active();
            if let Some(abort) = &f.abort {
                break 'outcome Outcome::Direct {
                    reason: DirectReason::FaultAbort,
                    reply: abort_reply(abort, reply_to(req)),
                };
            }
        }

        let cors = if opts.cors_filter {
            evaluate_cors(
                CorsPolicies::new(route.cors.as_ref(), vhost.cors.as_ref()),
                req,
            )
        } else {
            CorsOutcome::None
        };
        let cors_headers = match cors {
            CorsOutcome::Preflight(headers) => {
                break 'outcome Outcome::Direct {
                    reason: DirectReason::CorsPreflight,
                    reply: LocalReply {
                        status: 200,
                        headers,
                        body: Bytes::new(),
                        details: "cors_response",
                    },
                };
            }
            CorsOutcome::Response(h) => Some(h),
            CorsOutcome::None => None,
        };

        let m = Matched {
            config,
            vhost,
            route,
            req: *req,
        };
        match &route.action {
            RouteAction::Forward(action) => forward(m, action, opts, random, cors_headers),
            RouteAction::Redirect(action) => redirect_outcome(m, action, cors_headers),
            RouteAction::DirectResponse(action) => direct_outcome(m, action, cors_headers),
            // Only meaningful to proxyless clients; a proxy has nothing to forward to.
            RouteAction::NonForwarding => no_route(req),
        }
    };
    RoutingDecision {
        vhost: Some(vhost),
        route: Some(route),
        delay,
        fault_active,
        outcome,
    }
}

fn no_route<'c>(req: &RequestView<'_>) -> Outcome<'c> {
    Outcome::Direct {
        reason: DirectReason::NoRoute,
        reply: local_reply(
            404,
            Bytes::new(),
            None,
            reply_to(req),
            "route_not_found",
            |_| {},
        ),
    }
}

/// The request and where it matched.
#[derive(Clone, Copy)]
struct Matched<'c, 'r> {
    config: &'c RouteConfig,
    vhost: &'c VirtualHost,
    route: &'c Route,
    req: RequestView<'r>,
}

fn forward<'c>(
    m: Matched<'c, '_>,
    action: &'c ForwardAction,
    opts: &RouterOptions,
    random: u64,
    cors_response_headers: Option<http::HeaderMap>,
) -> Outcome<'c> {
    let Matched {
        config,
        vhost,
        route,
        req,
    } = m;
    let req = &req;
    let Some(picked) = pick_cluster(&action.cluster, &action.cluster_headers, random) else {
        return Outcome::Direct {
            reason: DirectReason::NoCluster,
            reply: local_reply(
                503,
                Bytes::new(),
                None,
                reply_to(req),
                "cluster_not_found",
                |_| {},
            ),
        };
    };
    let retry_policy = action.retry_policy.as_ref().or(vhost.retry_policy.as_ref());
    let retry_overrides = if opts.honour_envoy_request_headers {
        RetryOverrides::from_headers(req.headers)
    } else {
        RetryOverrides::default()
    };
    let timeouts = final_timeouts(
        action,
        retry_policy,
        req,
        TimeoutInputs {
            envoy_headers: opts.honour_envoy_request_headers,
            respect_expected_rq_timeout: opts.respect_expected_rq_timeout,
        },
    );
    let path = rewrite::rewrite_path(&route.route_match.path, action, req.path);
    let original_path = path
        .as_ref()
        .filter(|_| !opts.suppress_envoy_headers)
        .map(|_| req.path.to_string());
    let mirrors = action
        .mirrors
        .iter()
        .filter(|m| fraction_hit(m.fraction, random))
        .map(|m| m.cluster.as_str())
        .collect();
    Outcome::Forward(Box::new(ForwardDecision {
        route,
        vhost,
        action,
        cluster: picked.name,
        timeouts,
        retry_policy,
        retry_overrides,
        path,
        original_path,
        authority: rewrite::rewrite_host(action).map(str::to_string),
        auto_host_rewrite: action.auto_host_rewrite,
        request_headers: request_levels(config, vhost, route, picked.request_headers),
        response_headers: response_levels(config, vhost, route, picked.response_headers),
        mirrors,
        cors_response_headers,
        include_attempt_count: vhost.include_request_attempt_count,
        set_grpc_timeout: req.is_grpc() && action.max_grpc_timeout.is_some(),
        suppress_envoy_headers: opts.suppress_envoy_headers,
    }))
}

/// A local reply carrying the route's response headers (and CORS headers), as Envoy's
/// router finalizes direct responses.
fn route_reply(
    m: Matched<'_, '_>,
    status: u16,
    body: Bytes,
    location: Option<&str>,
    cors: Option<http::HeaderMap>,
) -> LocalReply {
    let levels = response_levels(m.config, m.vhost, m.route, None);
    let to = reply_to(&m.req);
    let mut reply = local_reply(status, body, None, to, "direct_response", |h| {
        if let Some(l) = location
            && let Ok(v) = http::HeaderValue::from_str(l)
        {
            h.insert(http::header::LOCATION, v);
        }
        super::headers::apply_all(h, &levels);
    });
    if let Some(cors) = cors {
        for (name, value) in &cors {
            reply.headers.insert(name.clone(), value.clone());
        }
    }
    reply
}

fn redirect_outcome<'c>(
    m: Matched<'_, '_>,
    action: &RedirectAction,
    cors: Option<http::HeaderMap>,
) -> Outcome<'c> {
    let location = redirect::location(action, &m.route.route_match.path, &m.req);
    let reply = route_reply(m, action.status, Bytes::new(), Some(&location), cors);
    Outcome::Redirect {
        status: action.status,
        location,
        reply,
    }
}

fn direct_outcome<'c>(
    m: Matched<'_, '_>,
    action: &DirectResponseAction,
    cors: Option<http::HeaderMap>,
) -> Outcome<'c> {
    // Envoy adds a `location` (the request's own URI) to 201 and 3xx direct responses.
    let location = (action.status == 201 || (300..400).contains(&action.status)).then(|| {
        let same = RedirectAction {
            scheme: RedirectScheme::Keep,
            host: None,
            port: None,
            path: RedirectPath::Keep,
            status: action.status,
            strip_query: false,
        };
        redirect::location(&same, &PathMatch::Prefix(String::new()), &m.req)
    });
    let body = action.body.clone().unwrap_or_default();
    let reply = route_reply(m, action.status, body, location.as_deref(), cors);
    Outcome::Direct {
        reason: DirectReason::DirectResponse,
        reply,
    }
}
