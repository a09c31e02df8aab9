//! Every resource pilot-discovery generates for a bookinfo sidecar converts, and the
//! converted config says what the Istio config meant.

// Helpers outside #[test] functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod convert_support;

use std::collections::BTreeMap;
use std::time::Duration;

use convert_support::mesh;
use strait_pilot::model::{Proxy, PushContext};
use strait_pilot::xds;
use strait_proto::xds::type_url;
use strait_proxy::config::cluster::{Cluster, Discovery, LbPolicy};
use strait_proxy::config::common::{HeaderMatch, PartsPerMillion, StringMatch};
use strait_proxy::config::endpoint::ClusterLoadAssignment;
use strait_proxy::config::listener::{
    ClusterSpecifier, HttpFilter, Listener, NetworkFilter, RouteSource,
};
use strait_proxy::config::route::{
    FaultAbort, ForwardAction, RedirectPath, Route, RouteAction, RouteConfig, VirtualHost,
};
use strait_proxy::convert::{self, Resource};

const REVIEWS: &str = "reviews.default.svc.cluster.local";
const RATINGS: &str = "ratings.default.svc.cluster.local";

/// Routes for every HTTP feature pilot translates, on ratings.
const RATINGS_FEATURES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-features, namespace: default}
spec:
  hosts: [ratings]
  http:
  - name: abort
    match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]
  - name: delay
    match: [{uri: {prefix: /slowly}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 12.5}}}
    route: [{destination: {host: ratings}}]
  - name: timeout
    match: [{uri: {prefix: /delay/}}]
    timeout: 0.5s
    route: [{destination: {host: ratings}}]
  - name: retry
    match: [{uri: {prefix: /retry}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: 5xx}
    route: [{destination: {host: ratings}}]
  - name: noretry
    match: [{uri: {prefix: /noretry}}]
    retries: {attempts: 0}
    route: [{destination: {host: ratings}}]
  - name: rewrite
    match: [{uri: {prefix: /old/}}]
    rewrite: {uri: /new/}
    route: [{destination: {host: ratings}}]
  - name: regex-rewrite
    match: [{uri: {regex: "/r/[a-z]+"}}]
    rewrite: {uriRegexRewrite: {match: "^/r/(.*)$", rewrite: "/\\1"}}
    route: [{destination: {host: ratings}}]
  - name: direct
    match: [{uri: {exact: /direct}}]
    directResponse: {status: 503, body: {string: "ratings are resting"}}
  - name: mirror
    match: [{uri: {prefix: /mirror}}]
    mirror: {host: ratings, subset: v1}
    mirrorPercentage: {value: 50}
    route: [{destination: {host: ratings}}]
  - name: cors
    match: [{uri: {prefix: /cors}}]
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
      allowMethods: [GET, POST]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: ratings}}]
  - name: redirect
    match: [{uri: {prefix: /moved}}]
    redirect: {uri: /here, authority: example.com, redirectCode: 308}
  - name: headers
    match: [{headers: {x-tenant: {regex: "t-[0-9]+"}}, queryParams: {debug: {exact: "1"}}}]
    headers:
      request: {set: {x-routed: "yes"}}
      response: {remove: [x-internal]}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
"#;

struct Converted {
    clusters: BTreeMap<String, Cluster>,
    endpoints: BTreeMap<String, ClusterLoadAssignment>,
    listeners: BTreeMap<String, Listener>,
    routes: BTreeMap<String, RouteConfig>,
}

/// Generates CDS, EDS (every EDS cluster), LDS and RDS (every RDS name the listeners use)
/// and converts all of it, failing on the first rejection.
fn convert_all(proxy: &Proxy, push: &PushContext) -> Converted {
    let convert = |url: &str, names: &[String]| -> Vec<Resource> {
        let generated = xds::generate(url, proxy, push, names);
        assert!(!generated.is_empty(), "pilot generated no {url}");
        generated
            .iter()
            .map(|r| {
                assert_eq!(r.body.type_url, url);
                convert::decode(url, &r.body.value)
                    .unwrap_or_else(|e| panic!("{} rejected: {e}", r.name))
            })
            .collect()
    };
    let mut out = Converted {
        clusters: BTreeMap::new(),
        endpoints: BTreeMap::new(),
        listeners: BTreeMap::new(),
        routes: BTreeMap::new(),
    };
    for r in convert(type_url::CLUSTER, &[]) {
        let Resource::Cluster(c) = r else {
            panic!("not a cluster")
        };
        out.clusters.insert(c.name.clone(), c);
    }
    let eds_names: Vec<String> = out
        .clusters
        .values()
        .filter_map(|c| match &c.discovery {
            Discovery::Eds { service_name } => Some(service_name.clone()),
            _ => None,
        })
        .collect();
    for r in convert(type_url::ENDPOINT, &eds_names) {
        let Resource::ClusterLoadAssignment(c) = r else {
            panic!("not a CLA")
        };
        out.endpoints.insert(c.cluster_name.clone(), c);
    }
    for r in convert(type_url::LISTENER, &[]) {
        let Resource::Listener(l) = r else {
            panic!("not a listener")
        };
        out.listeners.insert(l.name.clone(), l);
    }
    let mut rds_names: Vec<String> = out
        .listeners
        .values()
        .flat_map(|l| l.filter_chains.iter().chain(l.default_filter_chain.iter()))
        .filter_map(|c| match &c.filter {
            NetworkFilter::HttpConnectionManager(h) => match &h.route_source {
                RouteSource::Rds(name) => Some(name.clone()),
                RouteSource::Inline(_) => None,
            },
            NetworkFilter::TcpProxy(_) => None,
        })
        .collect();
    rds_names.sort();
    rds_names.dedup();
    assert!(rds_names.contains(&"9080".to_string()), "{rds_names:?}");
    for r in convert(type_url::ROUTE, &rds_names) {
        let Resource::RouteConfig(rc) = r else {
            panic!("not a route config")
        };
        out.routes.insert(rc.name.clone(), rc);
    }
    out
}

fn vhost<'a>(rc: &'a RouteConfig, host: &str) -> &'a VirtualHost {
    rc.virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == host))
        .unwrap_or_else(|| panic!("no virtual host for {host}"))
}

fn route<'a>(vh: &'a VirtualHost, name: &str) -> &'a Route {
    vh.routes
        .iter()
        .find(|r| &*r.name == name)
        .unwrap_or_else(|| panic!("no route {name} in {}", vh.name))
}

fn forward(r: &Route) -> &ForwardAction {
    match &r.action {
        RouteAction::Forward(f) => f,
        other => panic!("route {} is not a forward: {other:?}", r.name),
    }
}

#[test]
fn bookinfo_converts_and_keeps_its_meaning() {
    let (proxy, push) = mesh(true, &[]);
    let c = convert_all(&proxy, &push);

    // Clusters.
    let v1 = &c.clusters[&format!("outbound|9080|v1|{REVIEWS}")];
    assert_eq!(
        v1.discovery,
        Discovery::Eds {
            service_name: format!("outbound|9080|v1|{REVIEWS}")
        }
    );
    assert_eq!(
        c.clusters["PassthroughCluster"].discovery,
        Discovery::OriginalDst
    );
    assert_eq!(
        c.clusters["PassthroughCluster"].lb_policy,
        LbPolicy::ClusterProvided
    );
    assert_eq!(
        c.clusters["BlackHoleCluster"].discovery,
        Discovery::Static(vec![])
    );
    assert_eq!(
        c.clusters["InboundPassthroughCluster"]
            .upstream_bind
            .map(|a| a.ip()),
        Some("127.0.0.6".parse().unwrap())
    );

    // Endpoints: the three reviews versions behind their subsets.
    let v3 = &c.endpoints[&format!("outbound|9080|v3|{REVIEWS}")];
    let addrs: Vec<String> = v3.endpoints.iter().map(|e| e.address.to_string()).collect();
    assert_eq!(addrs, ["10.77.0.13:9080"]);
    assert_eq!(
        c.endpoints[&format!("outbound|9080||{REVIEWS}")]
            .endpoints
            .len(),
        3
    );

    // Listeners.
    let vo = &c.listeners["virtualOutbound"];
    assert!(vo.use_original_dst);
    assert_eq!(vo.address.port(), 15001);
    assert!(vo.listener_filters.original_dst);
    let l9080 = &c.listeners["0.0.0.0_9080"];
    assert!(!l9080.bind_to_port);
    let hcm = l9080
        .filter_chains
        .iter()
        .chain(l9080.default_filter_chain.iter())
        .find_map(|fc| match &fc.filter {
            NetworkFilter::HttpConnectionManager(h) => Some(h.clone()),
            NetworkFilter::TcpProxy(_) => None,
        })
        .expect("0.0.0.0_9080 has an HTTP chain");
    assert!(matches!(&hcm.route_source, RouteSource::Rds(n) if n == "9080"));
    assert!(matches!(hcm.http_filters.last(), Some(HttpFilter::Router)));
    assert!(
        hcm.http_filters
            .iter()
            .any(|f| matches!(f, HttpFilter::Fault))
    );
    assert_eq!(hcm.stream_idle_timeout, None, "Istio sets 0s: disabled");
    assert_eq!(hcm.upgrade_types, ["websocket"]);
    assert!(c.listeners.contains_key("virtualInbound"));

    // Routes: jason goes to v2, everybody else 80/20 over v1 and v3.
    let rc = &c.routes["9080"];
    let reviews = vhost(rc, "reviews");
    let jason = route(reviews, "jason");
    let end_user = &jason.route_match.headers[0];
    assert_eq!(end_user.name, "end-user");
    assert!(
        matches!(&end_user.matcher, HeaderMatch::String(m) if matches!(&m.pattern, StringMatch::Exact(v) if v == "jason")),
        "{end_user:?}"
    );
    assert_eq!(
        forward(jason).cluster,
        ClusterSpecifier::Cluster(format!("outbound|9080|v2|{REVIEWS}"))
    );
    match &forward(route(reviews, "split")).cluster {
        ClusterSpecifier::Weighted(w) => {
            let got: Vec<(String, u32)> = w.iter().map(|c| (c.name.clone(), c.weight)).collect();
            assert_eq!(
                got,
                [
                    (format!("outbound|9080|v1|{REVIEWS}"), 80),
                    (format!("outbound|9080|v3|{REVIEWS}"), 20)
                ]
            );
        }
        other => panic!("split is not weighted: {other:?}"),
    }

    // Istio's default retry policy on a route without retries of its own.
    let details = vhost(rc, "details");
    let default_route = forward(&details.routes[0]);
    let retry = default_route
        .retry_policy
        .as_ref()
        .expect("Istio's default retry policy");
    assert_eq!(retry.num_retries, 2);
    assert!(
        retry.retry_on.connect_failure
            && retry.retry_on.refused_stream
            && retry.retry_on.retriable_status_codes
    );
    assert_eq!(retry.retry_on.grpc, ["unavailable", "cancelled"]);
    assert!(!retry.retry_on.five_xx);
    assert_eq!(retry.retriable_status_codes, [503]);
    assert!(retry.avoid_previous_hosts);
    assert_eq!(retry.host_selection_retry_max_attempts, 5);
    assert_eq!(
        default_route.timeout, None,
        "Istio's 0s timeout disables it"
    );
    assert_eq!(default_route.max_grpc_timeout, Some(Duration::ZERO));

    // The ratings VirtualService: 2s timeout, 3 attempts on 5xx,connect-failure.
    let ratings = forward(&vhost(rc, "ratings").routes[0]);
    assert_eq!(ratings.timeout, Some(Duration::from_secs(2)));
    let r = ratings.retry_policy.as_ref().unwrap();
    assert_eq!(r.num_retries, 3);
    assert_eq!(r.per_try_timeout, Some(Duration::from_secs(1)));
    assert!(r.retry_on.five_xx && r.retry_on.connect_failure);
}

#[test]
fn every_route_feature_converts() {
    let (proxy, push) = mesh(false, &[("ratings-features.yaml", RATINGS_FEATURES)]);
    let c = convert_all(&proxy, &push);
    let vh = vhost(&c.routes["9080"], "ratings");

    let abort = route(vh, "abort").fault.as_ref().expect("abort fault");
    assert!(
        matches!(
            abort.abort,
            Some((FaultAbort::Http(418), PartsPerMillion(1_000_000)))
        ),
        "{abort:?}"
    );
    assert!(abort.delay.is_none());
    let delay = route(vh, "delay").fault.as_ref().expect("delay fault");
    assert_eq!(
        delay.delay,
        Some((Duration::from_secs(1), PartsPerMillion(125_000)))
    );
    assert!(route(vh, "timeout").fault.is_none());

    assert_eq!(
        forward(route(vh, "timeout")).timeout,
        Some(Duration::from_millis(500))
    );
    let retry = forward(route(vh, "retry")).retry_policy.as_ref().unwrap();
    assert_eq!(
        (retry.num_retries, retry.per_try_timeout),
        (3, Some(Duration::from_secs(2)))
    );
    assert!(retry.retry_on.five_xx);
    assert_eq!(
        forward(route(vh, "noretry"))
            .retry_policy
            .as_ref()
            .map_or(0, |r| r.num_retries),
        0
    );

    assert_eq!(
        forward(route(vh, "rewrite")).prefix_rewrite.as_deref(),
        Some("/new/")
    );
    let (re, sub) = forward(route(vh, "regex-rewrite"))
        .regex_rewrite
        .as_ref()
        .unwrap();
    assert_eq!(re.replace_all("/r/abc", sub.as_str()), "/abc");
    match &route(vh, "regex-rewrite").route_match.path {
        strait_proxy::config::route::PathMatch::Regex(r) => {
            assert!(r.is_match("/r/abc") && !r.is_match("/r/abc/d"));
        }
        other => panic!("{other:?}"),
    }

    match &route(vh, "direct").action {
        RouteAction::DirectResponse(d) => {
            assert_eq!(d.status, 503);
            assert_eq!(d.body.as_deref(), Some(&b"ratings are resting"[..]));
        }
        other => panic!("{other:?}"),
    }

    let mirrors = &forward(route(vh, "mirror")).mirrors;
    assert_eq!(mirrors.len(), 1);
    assert_eq!(mirrors[0].cluster, format!("outbound|9080|v1|{RATINGS}"));
    assert_eq!(mirrors[0].fraction, PartsPerMillion(500_000));

    let cors = route(vh, "cors").cors.as_ref().expect("cors policy");
    assert_eq!(cors.allow_methods, "GET,POST");
    assert_eq!(cors.max_age, "86400");
    assert_eq!(cors.allow_credentials, Some(true));
    assert!(
        matches!(&cors.allow_origins[0].pattern, StringMatch::Exact(o) if o == "https://example.com")
    );
    assert!(route(vh, "abort").cors.is_none());

    match &route(vh, "redirect").action {
        RouteAction::Redirect(r) => {
            assert_eq!(r.status, 308);
            assert_eq!(r.host.as_deref(), Some("example.com"));
            assert!(matches!(&r.path, RedirectPath::Path(p) if p == "/here"));
        }
        other => panic!("{other:?}"),
    }

    let headers = route(vh, "headers");
    let tenant = headers
        .route_match
        .headers
        .iter()
        .find(|h| h.name == "x-tenant")
        .unwrap();
    match &tenant.matcher {
        HeaderMatch::String(m) => match &m.pattern {
            StringMatch::Regex(r) => assert!(r.is_match("t-42") && !r.is_match("xt-42")),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(headers.route_match.query_parameters[0].name, "debug");
    let set: Vec<&str> = headers
        .headers
        .add
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert!(set.contains(&"x-routed"), "{set:?}");
    assert_eq!(headers.response_headers.remove[0].as_str(), "x-internal");
}
