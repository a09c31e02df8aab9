//! End-to-end routing of requests against Istio-shaped route configurations.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use rand::SeedableRng;
use rand::rngs::StdRng;
use regex::Regex;

use crate::config::common::{
    HeaderMatch, HeaderMatcher, PartsPerMillion, StringMatch, StringMatcher,
};
use crate::config::route::{
    CorsPolicy, DirectResponseAction, FaultAbort, FaultConfig, MirrorPolicy, PathMatch,
    RedirectAction, RedirectPath, RedirectScheme, RouteAction, RouteConfig, WeightedClusterHeaders,
};

use super::decide::{RouteTable, RouterOptions, route_request};
use super::decision::{DirectReason, ForwardDecision, Outcome, RoutingDecision};
use super::request::RequestView;
use super::testutil::*;

const V1: &str = "outbound|9080|v1|reviews.default.svc.cluster.local";
const V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local";
const V3: &str = "outbound|9080|v3|reviews.default.svc.cluster.local";
const REVIEWS: &str = "outbound|9080||reviews.default.svc.cluster.local";

fn rng() -> StdRng {
    StdRng::seed_from_u64(2024)
}

fn decide_with<'c>(
    cfg: &'c RouteConfig,
    parts: &http::request::Parts,
    opts: &RouterOptions,
    rng: &mut StdRng,
) -> RoutingDecision<'c> {
    let view = RequestView::from_parts(parts, false, "10.1.0.5:40000".parse().ok());
    route_request(cfg, &view, opts, rng)
}

fn decide<'c>(cfg: &'c RouteConfig, parts: &http::request::Parts) -> RoutingDecision<'c> {
    decide_with(cfg, parts, &RouterOptions::default(), &mut rng())
}

fn forwarded<'a, 'c>(d: &'a RoutingDecision<'c>) -> &'a ForwardDecision<'c> {
    match &d.outcome {
        Outcome::Forward(f) => f,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn end_user(user: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: "end-user".into(),
        matcher: HeaderMatch::String(StringMatcher {
            pattern: StringMatch::Exact(user.into()),
            ignore_case: false,
        }),
        invert: false,
        treat_missing_as_empty: false,
    }
}

/// The bookinfo `reviews` VirtualService: jason to v2, everyone else 80/20 v1/v3.
fn bookinfo_reviews() -> RouteConfig {
    let mut jason = route(
        "jason",
        PathMatch::Prefix("/".into()),
        RouteAction::Forward(Box::new(forward(V2))),
    );
    jason.route_match.headers.push(end_user("jason"));
    let mut split = weighted(&[(V1, 80), (V3, 20)]);
    split.retry_policy = Some(istio_default_retry());
    let rest = route(
        "rest",
        PathMatch::Prefix("/".into()),
        RouteAction::Forward(Box::new(split)),
    );
    outbound_9080(vec![jason, rest])
}

#[test]
fn default_route_forwards_with_istio_retries() {
    let cfg = outbound_9080(vec![istio_default_route(REVIEWS)]);
    let p = parts("GET", "/reviews/0", &[("host", "reviews:9080")]);
    let d = decide(&cfg, &p);
    assert_eq!(
        d.vhost.unwrap().name,
        "reviews.default.svc.cluster.local:9080"
    );
    assert_eq!(&*d.route.unwrap().name, "default");
    assert!(d.delay.is_none() && !d.fault_active);
    let f = forwarded(&d);
    assert_eq!(f.cluster, REVIEWS);
    assert_eq!(
        f.timeouts.global, None,
        "Istio's default route has no timeout"
    );
    let retry = f.retry_policy.unwrap();
    assert_eq!(retry.num_retries, 2);
    assert_eq!(retry.retriable_status_codes, [503]);
    assert!(f.path.is_none() && f.authority.is_none());

    let mut upstream = p.clone();
    f.apply_to_parts(&mut upstream).unwrap();
    assert_eq!(upstream.headers["x-envoy-attempt-count"], "1");
    assert!(
        !upstream
            .headers
            .contains_key("x-envoy-expected-rq-timeout-ms")
    );
    assert_eq!(upstream.uri, "/reviews/0");
}

#[test]
fn unknown_hosts_pass_through_or_get_404() {
    let cfg = outbound_9080(vec![istio_default_route(REVIEWS)]);
    let p = parts("GET", "/", &[("host", "httpbin.org")]);
    let d = decide(&cfg, &p);
    assert_eq!(forwarded(&d).cluster, "PassthroughCluster");

    let mut no_default = cfg.clone();
    no_default.virtual_hosts.truncate(1);
    let d = decide(&no_default, &p);
    assert!(d.vhost.is_none() && d.route.is_none());
    match &d.outcome {
        Outcome::Direct { reason, reply } => {
            assert_eq!(*reason, DirectReason::NoRoute);
            assert_eq!(reason.response_flag(), Some("NR"));
            assert_eq!(reply.status, 404);
            assert!(reply.body.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // A virtual host without a matching route is a 404 too.
    let mut narrow = cfg.clone();
    narrow.virtual_hosts = vec![Arc::new(vhost(
        "only-api",
        &["*"],
        vec![route(
            "api",
            PathMatch::Prefix("/api".into()),
            RouteAction::Forward(Box::new(forward("c"))),
        )],
    ))];
    let d = decide(&narrow, &parts("GET", "/web", &[("host", "x")]));
    assert!(d.vhost.is_some() && d.route.is_none());
    assert!(matches!(
        d.outcome,
        Outcome::Direct {
            reason: DirectReason::NoRoute,
            ..
        }
    ));
}

#[test]
fn jason_goes_to_v2_and_the_rest_splits_80_20() {
    let cfg = bookinfo_reviews();
    let jason = parts(
        "GET",
        "/reviews/0",
        &[
            ("host", "reviews.default.svc.cluster.local:9080"),
            ("end-user", "jason"),
        ],
    );
    let mut r = rng();
    for _ in 0..100 {
        let d = decide_with(&cfg, &jason, &RouterOptions::default(), &mut r);
        assert_eq!(forwarded(&d).cluster, V2);
    }

    let anon = parts("GET", "/reviews/0", &[("host", "reviews")]);
    let n = 20_000;
    let v3 = (0..n)
        .filter(|_| {
            let d = decide_with(&cfg, &anon, &RouterOptions::default(), &mut r);
            let f = forwarded(&d);
            assert!(f.cluster == V1 || f.cluster == V3, "{}", f.cluster);
            f.cluster == V3
        })
        .count();
    let share = v3 as f64 / n as f64;
    assert!((0.18..0.22).contains(&share), "v3 share {share}");
}

#[test]
fn prefix_rewrite_sets_original_path() {
    let mut a = forward(REVIEWS);
    a.prefix_rewrite = Some("/new/".into());
    let cfg = outbound_9080(vec![route(
        "rewrite",
        PathMatch::Prefix("/old/".into()),
        RouteAction::Forward(Box::new(a)),
    )]);
    let p = parts("GET", "http://reviews:9080/old/page?x=1", &[]);
    let d = decide(&cfg, &p);
    let f = forwarded(&d);
    assert_eq!(f.path.as_deref(), Some("/new/page?x=1"));
    assert_eq!(f.original_path.as_deref(), Some("/old/page?x=1"));
    let mut upstream = p.clone();
    f.apply_to_parts(&mut upstream).unwrap();
    assert_eq!(upstream.uri, "http://reviews:9080/new/page?x=1");
    assert_eq!(upstream.headers["x-envoy-original-path"], "/old/page?x=1");

    let quiet = RouterOptions {
        suppress_envoy_headers: true,
        ..RouterOptions::default()
    };
    let d = decide_with(&cfg, &p, &quiet, &mut rng());
    let f = forwarded(&d);
    assert!(f.original_path.is_none());
    let mut upstream = p.clone();
    f.apply_to_parts(&mut upstream).unwrap();
    assert!(!upstream.headers.contains_key("x-envoy-original-path"));
    assert!(
        !upstream
            .headers
            .contains_key("x-envoy-expected-rq-timeout-ms")
    );
}

#[test]
fn regex_and_host_rewrites() {
    let mut a = forward(REVIEWS);
    a.regex_rewrite = Some((Regex::new("^/api/v([0-9]+)/").unwrap(), "/v${1}/".into()));
    a.host_rewrite = Some("reviews.prod.svc.cluster.local".into());
    let cfg = outbound_9080(vec![route(
        "re",
        PathMatch::Regex(Regex::new("^(?:/api/v[0-9]+/.*)$").unwrap()),
        RouteAction::Forward(Box::new(a)),
    )]);
    let p = parts("GET", "/api/v2/reviews?page=3", &[("host", "reviews:9080")]);
    let d = decide(&cfg, &p);
    let f = forwarded(&d);
    assert_eq!(f.path.as_deref(), Some("/v2/reviews?page=3"));
    let mut upstream = p.clone();
    f.apply_to_parts(&mut upstream).unwrap();
    assert_eq!(upstream.uri, "/v2/reviews?page=3");
    assert_eq!(upstream.headers["host"], "reviews.prod.svc.cluster.local");

    let d = decide(
        &cfg,
        &parts("GET", "/web/index.html", &[("host", "reviews")]),
    );
    assert!(matches!(
        d.outcome,
        Outcome::Direct {
            reason: DirectReason::NoRoute,
            ..
        }
    ));
}

#[test]
fn header_operations_in_envoy_order() {
    let mut split = weighted(&[(V1, 100)]);
    split.cluster_headers = vec![WeightedClusterHeaders {
        cluster: V1.into(),
        headers: set_header("x-level", "cluster"),
        response_headers: set_header("x-resp", "cluster"),
    }];
    let mut r = route(
        "r",
        PathMatch::Prefix("/".into()),
        RouteAction::Forward(Box::new(split)),
    );
    r.headers = set_header("x-level", "route");
    r.response_headers = set_header("x-resp", "route");
    let mut cfg = outbound_9080(vec![r]);
    cfg.headers = set_header("x-level", "config");
    cfg.response_headers = set_header("x-resp", "config");

    let p = parts("GET", "/", &[("host", "reviews"), ("x-level", "client")]);
    let d = decide(&cfg, &p);
    let f = forwarded(&d);
    let mut up = p.clone();
    f.apply_to_parts(&mut up).unwrap();
    assert_eq!(
        up.headers["x-level"], "config",
        "least specific wins by default"
    );
    let mut resp = HeaderMap::new();
    f.apply_to_response(&mut resp, Some(Duration::from_millis(7)));
    assert_eq!(resp["x-resp"], "config");
    assert_eq!(resp["x-envoy-upstream-service-time"], "7");

    cfg.most_specific_header_mutations_wins = true;
    let d = decide(&cfg, &p);
    let mut up = p.clone();
    forwarded(&d).apply_to_parts(&mut up).unwrap();
    assert_eq!(up.headers["x-level"], "route");
}

#[test]
fn timeouts_and_envoy_controls() {
    let mut a = forward(REVIEWS);
    a.timeout = Some(Duration::from_secs(10));
    let mut policy = istio_default_retry();
    policy.per_try_timeout = Some(Duration::from_secs(3));
    a.retry_policy = Some(policy);
    let cfg = outbound_9080(vec![route(
        "t",
        PathMatch::Prefix("/".into()),
        RouteAction::Forward(Box::new(a)),
    )]);
    let p = parts(
        "GET",
        "/",
        &[
            ("host", "reviews"),
            ("x-envoy-upstream-rq-timeout-ms", "2000"),
            ("x-envoy-max-retries", "5"),
            ("x-envoy-retry-on", "5xx"),
        ],
    );
    let d = decide(&cfg, &p);
    let f = forwarded(&d);
    assert_eq!(f.timeouts.global, Some(Duration::from_secs(2)));
    assert_eq!(
        f.timeouts.per_try, None,
        "per-try no shorter than the whole"
    );
    assert_eq!(f.retry_overrides.max_retries, Some(5));
    let state = f.retry_state(rng()).unwrap();
    assert_eq!(state.retries_remaining(), 5);
    assert!(state.retry_on().five_xx && state.retry_on().connect_failure);

    let mut up = p.clone();
    f.apply_to_parts(&mut up).unwrap();
    assert_eq!(up.headers["x-envoy-expected-rq-timeout-ms"], "2000");
    for consumed in [
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-max-retries",
        "x-envoy-retry-on",
    ] {
        assert!(
            !up.headers.contains_key(consumed),
            "{consumed} travelled upstream"
        );
    }
    let mut retry_headers = up.headers.clone();
    f.apply_attempt_headers(&mut retry_headers, 2, Duration::from_millis(1500));
    assert_eq!(retry_headers["x-envoy-attempt-count"], "2");
    assert_eq!(retry_headers["x-envoy-expected-rq-timeout-ms"], "500");

    let strict = RouterOptions {
        honour_envoy_request_headers: false,
        ..RouterOptions::default()
    };
    let d = decide_with(&cfg, &p, &strict, &mut rng());
    let f = forwarded(&d);
    assert_eq!(f.timeouts.global, Some(Duration::from_secs(10)));
    assert_eq!(f.timeouts.per_try, Some(Duration::from_secs(3)));
    assert_eq!(f.retry_state(rng()).unwrap().retries_remaining(), 2);
}

#[test]
fn grpc_requests_get_grpc_timeout_and_grpc_replies() {
    let mut a = forward(REVIEWS);
    a.max_grpc_timeout = Some(Duration::ZERO);
    let mut cfg = outbound_9080(vec![route(
        "g",
        PathMatch::Prefix("/".into()),
        RouteAction::Forward(Box::new(a)),
    )]);
    let p = parts(
        "POST",
        "/reviews.Reviews/Get",
        &[
            ("host", "reviews"),
            ("content-type", "application/grpc"),
            ("grpc-timeout", "1500m"),
        ],
    );
    let d = decide(&cfg, &p);
    let f = forwarded(&d);
    assert_eq!(f.timeouts.global, Some(Duration::from_millis(1500)));
    let mut up = p.clone();
    f.apply_to_parts(&mut up).unwrap();
    assert_eq!(up.headers["grpc-timeout"], "1500m");

    // Istio's REGISTRY_ONLY catch-all is a 502 direct response: gRPC callers see
    // UNAVAILABLE in a trailers-only response.
    cfg.virtual_hosts[1] = Arc::new(vhost(
        "block_all",
        &["*"],
        vec![route(
            "block_all",
            PathMatch::Prefix("/".into()),
            RouteAction::DirectResponse(DirectResponseAction {
                status: 502,
                body: None,
            }),
        )],
    ));
    let p = parts(
        "POST",
        "/pkg.Svc/Call",
        &[("host", "unknown"), ("content-type", "application/grpc")],
    );
    match decide(&cfg, &p).outcome {
        Outcome::Direct { reason, reply } => {
            assert_eq!(reason, DirectReason::DirectResponse);
            assert_eq!(reply.status, 200);
            assert_eq!(reply.headers["grpc-status"], "14");
        }
        other => panic!("{other:?}"),
    }
    match decide(&cfg, &parts("GET", "/", &[("host", "unknown")])).outcome {
        Outcome::Direct { reply, .. } => assert_eq!(reply.status, 502),
        other => panic!("{other:?}"),
    }
}

#[test]
fn redirects_and_direct_responses_carry_route_headers() {
    let mut redirect = route(
        "to-https",
        PathMatch::Prefix("/old/".into()),
        RouteAction::Redirect(RedirectAction {
            scheme: RedirectScheme::Https,
            host: None,
            port: None,
            path: RedirectPath::PrefixRewrite("/new/".into()),
            status: 308,
            strip_query: false,
        }),
    );
    redirect.response_headers = set_header("x-served-by", "mesh");
    let hello = route(
        "hello",
        PathMatch::Exact("/hello".into()),
        RouteAction::DirectResponse(DirectResponseAction {
            status: 200,
            body: Some(Bytes::from_static(b"hi")),
        }),
    );
    let cfg = outbound_9080(vec![redirect, hello]);
    let p = parts(
        "GET",
        "/old/a?b=c",
        &[("host", "reviews:80"), ("x-forwarded-proto", "http")],
    );
    match decide(&cfg, &p).outcome {
        Outcome::Redirect {
            status,
            location,
            reply,
        } => {
            assert_eq!(status, 308);
            assert_eq!(location, "https://reviews/new/a?b=c");
            assert_eq!(reply.status, 308);
            assert_eq!(reply.headers["location"], location.as_str());
            assert_eq!(reply.headers["x-served-by"], "mesh");
        }
        other => panic!("{other:?}"),
    }
    match decide(&cfg, &parts("GET", "/hello", &[("host", "reviews")])).outcome {
        Outcome::Direct { reason, reply } => {
            assert_eq!(reason, DirectReason::DirectResponse);
            assert_eq!(reply.status, 200);
            assert_eq!(&reply.body[..], b"hi");
            assert!(!reply.headers.contains_key("location"));
        }
        other => panic!("{other:?}"),
    }
}

fn faulty(delay: Option<u32>, abort: Option<u32>) -> RouteConfig {
    let mut r = istio_default_route(REVIEWS);
    r.fault = Some(FaultConfig {
        delay: delay.map(|ppm| (Duration::from_secs(7), PartsPerMillion(ppm))),
        abort: abort.map(|ppm| (FaultAbort::Http(418), PartsPerMillion(ppm))),
        max_active_faults: Some(100),
    });
    outbound_9080(vec![r])
}

#[test]
fn faults_delay_or_abort() {
    let p = parts("GET", "/", &[("host", "reviews")]);
    let cfg = faulty(Some(1_000_000), None);
    let d = decide(&cfg, &p);
    assert_eq!(d.delay, Some(Duration::from_secs(7)));
    assert!(d.fault_active);
    assert_eq!(forwarded(&d).cluster, REVIEWS);

    let cfg = faulty(None, Some(1_000_000));
    let d = decide(&cfg, &p);
    match &d.outcome {
        Outcome::Direct { reason, reply } => {
            assert_eq!(*reason, DirectReason::FaultAbort);
            assert_eq!(reason.response_flag(), Some("FI"));
            assert_eq!(reply.status, 418);
            assert_eq!(&reply.body[..], b"fault filter abort");
        }
        other => panic!("{other:?}"),
    }

    let busy = RouterOptions {
        active_faults: 100,
        ..RouterOptions::default()
    };
    let d = decide_with(&cfg, &p, &busy, &mut rng());
    assert!(
        matches!(d.outcome, Outcome::Forward(_)),
        "over max_active_faults"
    );

    let no_filter = RouterOptions {
        fault_filter: false,
        ..RouterOptions::default()
    };
    assert!(matches!(
        decide_with(&cfg, &p, &no_filter, &mut rng()).outcome,
        Outcome::Forward(_)
    ));

    // Half the requests aborted, sampled per request.
    let cfg = faulty(None, Some(500_000));
    let mut r = rng();
    let n = 10_000;
    let aborted = (0..n)
        .filter(|_| {
            matches!(
                decide_with(&cfg, &p, &RouterOptions::default(), &mut r).outcome,
                Outcome::Direct {
                    reason: DirectReason::FaultAbort,
                    ..
                }
            )
        })
        .count();
    let share = aborted as f64 / n as f64;
    assert!((0.47..0.53).contains(&share), "{share}");
}

#[test]
fn cors_preflight_and_simple_requests() {
    let mut r = istio_default_route(REVIEWS);
    r.cors = Some(CorsPolicy {
        allow_origins: vec![StringMatcher {
            pattern: StringMatch::Suffix(".example.com".into()),
            ignore_case: false,
        }],
        allow_methods: "GET,POST".into(),
        allow_headers: "content-type".into(),
        expose_headers: "x-request-id".into(),
        max_age: "600".into(),
        allow_credentials: None,
        forward_not_matching_preflights: true,
    });
    let cfg = outbound_9080(vec![r]);
    let pre = parts(
        "OPTIONS",
        "/reviews/0",
        &[
            ("host", "reviews"),
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ],
    );
    match decide(&cfg, &pre).outcome {
        Outcome::Direct { reason, reply } => {
            assert_eq!(reason, DirectReason::CorsPreflight);
            assert_eq!(reply.status, 200);
            assert_eq!(
                reply.headers["access-control-allow-origin"],
                "https://app.example.com"
            );
            assert_eq!(reply.headers["access-control-allow-methods"], "GET,POST");
            assert_eq!(reply.headers["access-control-max-age"], "600");
        }
        other => panic!("{other:?}"),
    }

    let simple = parts(
        "GET",
        "/reviews/0",
        &[("host", "reviews"), ("origin", "https://app.example.com")],
    );
    let d = decide(&cfg, &simple);
    let mut resp = HeaderMap::new();
    forwarded(&d).apply_to_response(&mut resp, None);
    assert_eq!(
        resp["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(resp["access-control-expose-headers"], "x-request-id");
    assert!(!resp.contains_key("x-envoy-upstream-service-time"));

    let no_cors = RouterOptions {
        cors_filter: false,
        ..RouterOptions::default()
    };
    assert!(matches!(
        decide_with(&cfg, &pre, &no_cors, &mut rng()).outcome,
        Outcome::Forward(_)
    ));
}

#[test]
fn mirrors_are_sampled() {
    let mut a = forward(REVIEWS);
    a.mirrors = vec![
        MirrorPolicy {
            cluster: "outbound|9080|mirror|reviews.default.svc.cluster.local".into(),
            fraction: PartsPerMillion::ALL,
        },
        MirrorPolicy {
            cluster: "outbound|9080|half|reviews.default.svc.cluster.local".into(),
            fraction: PartsPerMillion(500_000),
        },
    ];
    let cfg = outbound_9080(vec![route(
        "m",
        PathMatch::Prefix("/".into()),
        RouteAction::Forward(Box::new(a)),
    )]);
    let p = parts("GET", "/", &[("host", "reviews")]);
    let mut r = rng();
    let n = 4_000;
    let mut halves = 0;
    for _ in 0..n {
        let d = decide_with(&cfg, &p, &RouterOptions::default(), &mut r);
        let m = &forwarded(&d).mirrors;
        assert!(m[0].contains("|mirror|"));
        halves += usize::from(m.len() == 2);
    }
    let share = halves as f64 / n as f64;
    assert!((0.45..0.55).contains(&share), "{share}");
}

#[test]
fn route_table_matches_the_scan() {
    let cfg = Arc::new(bookinfo_reviews());
    let table = RouteTable::new(cfg.clone());
    for host in [
        "reviews",
        "reviews:9080",
        "10.96.0.11",
        "other",
        "REVIEWS.DEFAULT",
    ] {
        let p = parts("GET", "/", &[("host", host), ("end-user", "jason")]);
        let view = RequestView::from_parts(&p, false, None);
        let indexed = table.route_request(&view, &RouterOptions::default(), &mut rng());
        let scanned = route_request(&cfg, &view, &RouterOptions::default(), &mut rng());
        assert_eq!(
            indexed.vhost.map(|v| &v.name),
            scanned.vhost.map(|v| &v.name),
            "{host}"
        );
        assert_eq!(forwarded(&indexed).cluster, forwarded(&scanned).cluster);
    }
}

#[test]
fn response_operations_can_drop_service_time_and_auto_host_rewrites() {
    let mut a = forward("outbound|443||api.example.com");
    a.auto_host_rewrite = true;
    let mut r = route(
        "ext",
        PathMatch::Prefix("/".into()),
        RouteAction::Forward(Box::new(a)),
    );
    r.response_headers
        .remove
        .push(http::HeaderName::from_static(
            "x-envoy-upstream-service-time",
        ));
    let cfg = outbound_9080(vec![r]);
    let p = parts("GET", "/v1", &[("host", "reviews")]);
    let d = decide(&cfg, &p);
    let f = forwarded(&d);
    let mut resp = HeaderMap::new();
    f.apply_to_response(&mut resp, Some(Duration::from_millis(3)));
    assert!(!resp.contains_key("x-envoy-upstream-service-time"));

    let mut up = p.clone();
    f.apply_to_parts(&mut up).unwrap();
    assert_eq!(up.headers["host"], "reviews");
    f.apply_auto_host(&mut up, Some("api.example.com")).unwrap();
    assert_eq!(up.headers["host"], "api.example.com");
    f.apply_auto_host(&mut up, None).unwrap();
    assert_eq!(up.headers["host"], "api.example.com");
}
