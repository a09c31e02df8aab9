//! RDS against a bookinfo mesh: virtual hosts, domains, and every translated route field.

use strait_proto::envoy::config::core::v3::data_source::Specifier;
use strait_proto::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, VirtualHost,
    header_matcher::HeaderMatchSpecifier,
    route,
    route_action::hash_policy::PolicySpecifier,
    route_action::{ClusterSpecifier, HostRewriteSpecifier},
    route_match::PathSpecifier,
};
use strait_proto::envoy::extensions::filters::http::fault::v3::{
    HttpFault, fault_abort::ErrorType,
};
use strait_proto::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use strait_proto::istio::MeshOutboundMode;
use strait_proto::xds::{any, json};

use super::fixture::*;
use super::wkt;
use crate::model::{Protocol, metric};
use crate::xds::rds::build_routes;

fn routes(mode: MeshOutboundMode, names: &[&str]) -> Vec<RouteConfiguration> {
    let push = bookinfo_push(mode);
    let proxy = productpage_proxy(&push);
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    build_routes(&proxy, &push, &names)
}

fn vhost<'a>(rc: &'a RouteConfiguration, name: &str) -> &'a VirtualHost {
    rc.virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no vhost {name} in {:?}",
                rc.virtual_hosts.iter().map(|v| &v.name).collect::<Vec<_>>()
            )
        })
}

fn action(r: &Route) -> &RouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("expected a route action, got {other:?}"),
    }
}

fn cluster(r: &Route) -> &str {
    match &action(r).cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => c,
        other => panic!("expected one cluster, got {other:?}"),
    }
}

#[test]
fn port_route_config_lists_services_then_catch_all() {
    let rc = &routes(MeshOutboundMode::AllowAny, &["9080"])[0];
    assert_eq!(rc.name, "9080");
    assert_eq!(rc.validate_clusters, Some(wkt::bool_value(false)));
    assert_eq!(
        rc.max_direct_response_body_size_bytes,
        Some(wkt::u32_value(1024 * 1024))
    );
    assert!(rc.ignore_port_in_host_matching);
    let names: Vec<_> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "details.other.svc.cluster.local:9080",
            "productpage.default.svc.cluster.local:9080",
            "ratings.default.svc.cluster.local:9080",
            "reviews.default.svc.cluster.local:9080",
            "allow_any"
        ]
    );
    let allow_any = vhost(rc, "allow_any");
    assert_eq!(allow_any.domains, ["*"]);
    assert_eq!(cluster(&allow_any.routes[0]), "PassthroughCluster");
}

#[test]
fn registry_only_blocks_unknown_hosts() {
    let rc = &routes(MeshOutboundMode::RegistryOnly, &["9080"])[0];
    let last = rc.virtual_hosts.last().unwrap();
    assert_eq!(last.name, "block_all");
    match &last.routes[0].action {
        Some(route::Action::DirectResponse(d)) => assert_eq!(d.status, 502),
        other => panic!("{other:?}"),
    }
}

#[test]
fn domains_follow_the_proxy_namespace() {
    let rc = &routes(MeshOutboundMode::AllowAny, &["9080"])[0];
    assert_eq!(
        vhost(rc, "reviews.default.svc.cluster.local:9080").domains,
        [
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local.",
            "reviews",
            "reviews.default.svc",
            "reviews.default",
            "10.96.0.10"
        ]
    );
    assert_eq!(
        vhost(rc, "details.other.svc.cluster.local:9080").domains,
        [
            "details.other.svc.cluster.local",
            "details.other.svc.cluster.local.",
            "details.other",
            "details.other.svc",
            "10.96.0.12"
        ]
    );
}

#[test]
fn default_route_without_virtual_service() {
    let rc = &routes(MeshOutboundMode::AllowAny, &["9080"])[0];
    let vh = vhost(rc, "productpage.default.svc.cluster.local:9080");
    assert_eq!(vh.routes.len(), 1);
    let r = &vh.routes[0];
    assert_eq!(r.name, "default");
    assert_eq!(
        r.r#match.as_ref().unwrap().path_specifier,
        Some(PathSpecifier::Prefix("/".into()))
    );
    assert_eq!(
        cluster(r),
        "outbound|9080||productpage.default.svc.cluster.local"
    );
    assert_eq!(
        r.decorator.as_ref().unwrap().operation,
        "productpage.default.svc.cluster.local:9080/*"
    );
    let a = action(r);
    assert_eq!(a.timeout, Some(wkt::zero_duration()));
    let retry = a.retry_policy.as_ref().unwrap();
    assert_eq!(
        retry.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(retry.num_retries, Some(wkt::u32_value(2)));
    assert_eq!(retry.retriable_status_codes, [503]);
    assert_eq!(retry.host_selection_retry_max_attempts, 5);
    assert_eq!(
        retry.retry_host_predicate[0].name,
        "envoy.retry_host_predicates.previous_hosts"
    );
    assert!(vh.include_request_attempt_count);
}

#[test]
fn destination_rule_hash_reaches_default_route() {
    let rc = &routes(MeshOutboundMode::AllowAny, &["9080"])[0];
    let r = &vhost(rc, "details.other.svc.cluster.local:9080").routes[0];
    match &action(r).hash_policy[0].policy_specifier {
        Some(PolicySpecifier::Cookie(c)) => {
            assert_eq!(c.name, "user");
            assert_eq!(c.ttl, Some(wkt::zero_duration()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reviews_header_match_and_weighted_split() {
    let rc = &routes(MeshOutboundMode::AllowAny, &["9080"])[0];
    let vh = vhost(rc, "reviews.default.svc.cluster.local:9080");
    assert_eq!(vh.routes.len(), 2);
    let jason = &vh.routes[0];
    assert_eq!(jason.name, "jason");
    let m = jason.r#match.as_ref().unwrap();
    assert_eq!(m.headers[0].name, "end-user");
    match &m.headers[0].header_match_specifier {
        Some(HeaderMatchSpecifier::StringMatch(s)) => {
            assert_eq!(s.match_pattern, Some(MatchPattern::Exact("jason".into())))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.case_sensitive, Some(wkt::bool_value(true)));
    assert_eq!(
        cluster(jason),
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    assert_eq!(
        jason.decorator.as_ref().unwrap().operation,
        "reviews.default.svc.cluster.local:9080/*"
    );
    let split = &vh.routes[1];
    assert_eq!(split.name, "split");
    match &action(split).cluster_specifier {
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            let got: Vec<_> = w
                .clusters
                .iter()
                .map(|c| (c.name.as_str(), c.weight.unwrap().value))
                .collect();
            assert_eq!(
                got,
                [
                    ("outbound|9080|v1|reviews.default.svc.cluster.local", 80),
                    ("outbound|9080|v3|reviews.default.svc.cluster.local", 20)
                ]
            );
            #[allow(deprecated)]
            let total = w.total_weight;
            assert!(total.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        split.decorator.as_ref().unwrap().operation,
        "reviews:9080/*"
    );
    assert!(split.metadata.is_some());
}

#[test]
fn ratings_fault_rewrite_direct_response_timeout_retries() {
    let rc = &routes(MeshOutboundMode::AllowAny, &["9080"])[0];
    let vh = vhost(rc, "ratings.default.svc.cluster.local:9080");
    let names: Vec<_> = vh.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["faulty", "rewrite", "gone", "default"]);

    let fault_any = &vh.routes[0].typed_per_filter_config["envoy.filters.http.fault"];
    let fault: HttpFault = any::unpack(fault_any).unwrap();
    let delay = fault.delay.unwrap();
    assert_eq!(delay.percentage.unwrap().numerator, 1_000_000);
    let abort = fault.abort.unwrap();
    assert_eq!(abort.error_type, Some(ErrorType::HttpStatus(500)));
    assert_eq!(abort.percentage.unwrap().numerator, 500_000);

    let rewrite = &vh.routes[1];
    assert_eq!(
        rewrite.r#match.as_ref().unwrap().path_specifier,
        Some(PathSpecifier::Prefix("/ratings".into()))
    );
    assert_eq!(action(rewrite).prefix_rewrite, "/v1/bookRatings");

    match &vh.routes[2].action {
        Some(route::Action::DirectResponse(d)) => {
            assert_eq!(d.status, 503);
            assert_eq!(
                d.body.as_ref().unwrap().specifier,
                Some(Specifier::InlineString("unknown".into()))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        vh.routes[2].decorator.as_ref().unwrap().operation,
        "ratings:9080/unknown"
    );

    let default = action(&vh.routes[3]);
    assert_eq!(
        default.timeout,
        Some(wkt::duration(std::time::Duration::from_millis(500)))
    );
    #[allow(deprecated)]
    let grpc_timeout = default.max_grpc_timeout;
    assert_eq!(grpc_timeout, default.timeout);
    let retry = default.retry_policy.as_ref().unwrap();
    assert_eq!(retry.num_retries, Some(wkt::u32_value(3)));
    assert_eq!(retry.per_try_timeout.unwrap().seconds, 2);
    assert_eq!(retry.retry_on, "5xx,gateway-error,retriable-status-codes");
    assert_eq!(retry.retriable_status_codes, [503]);
}

#[test]
fn sniffed_route_name_serves_one_service() {
    let svc = service(
        "legacy",
        "default",
        Some("10.96.0.40"),
        vec![port("web", 8000, Protocol::Unsupported)],
    );
    let push = push_with(
        vec![svc],
        Vec::new(),
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    let proxy = client_proxy();
    let rcs = build_routes(
        &proxy,
        &push,
        &[
            "legacy.default.svc.cluster.local:8000".to_string(),
            "8000".to_string(),
        ],
    );
    let sniffed = &rcs[0];
    assert_eq!(sniffed.virtual_hosts.len(), 1);
    assert_eq!(sniffed.virtual_hosts[0].domains, ["*"]);
    assert_eq!(
        cluster(&sniffed.virtual_hosts[0].routes[0]),
        "outbound|8000||legacy.default.svc.cluster.local"
    );
    // The port form includes sniffed services too, plus the catch-all.
    assert_eq!(rcs[1].virtual_hosts.len(), 2);
}

#[test]
fn unknown_names_get_empty_configs() {
    let rcs = routes(MeshOutboundMode::AllowAny, &["http_proxy", "1234"]);
    assert_eq!(rcs[0].name, "http_proxy");
    assert!(rcs[0].virtual_hosts.is_empty());
    // A port no service uses still has the catch-all.
    assert_eq!(rcs[1].virtual_hosts.len(), 1);
}

#[test]
fn duplicate_domains_are_dropped_and_reported() {
    // Two services sharing a VIP: the second loses the VIP domain.
    let a = service(
        "a",
        "default",
        Some("10.96.1.1"),
        vec![port("http", 80, Protocol::Http)],
    );
    let b = service(
        "b",
        "default",
        Some("10.96.1.1"),
        vec![port("http", 80, Protocol::Http)],
    );
    let push = push_with(
        vec![a, b],
        Vec::new(),
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    let proxy = client_proxy();
    let rc = &build_routes(&proxy, &push, &["80".to_string()])[0];
    let all: Vec<&String> = rc.virtual_hosts.iter().flat_map(|v| &v.domains).collect();
    assert_eq!(all.iter().filter(|d| d.as_str() == "10.96.1.1").count(), 1);
    assert_eq!(push.status.count(metric::VSERVICE_DUP_DOMAIN), 1);
}

#[test]
fn source_labels_and_match_port_filter_routes() {
    let vs = config(
        "reviews",
        "default",
        r#"
hosts: [reviews]
http:
- name: for-others
  match:
  - sourceLabels: {app: someone-else}
  route:
  - destination: {host: reviews, subset: v9}
- name: other-port
  match:
  - port: 1234
  route:
  - destination: {host: reviews, subset: v8}
- name: mine
  match:
  - sourceLabels: {app: productpage}
    sourceNamespace: default
  route:
  - destination: {host: reviews, subset: v2}
"#,
    );
    let push = push_with(
        bookinfo_services(),
        vec![vs],
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    let proxy = productpage_proxy(&push);
    let rc = &build_routes(&proxy, &push, &["9080".to_string()])[0];
    let vh = vhost(rc, "reviews.default.svc.cluster.local:9080");
    let names: Vec<_> = vh.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["mine"]);
}

#[test]
fn invalid_rules_are_skipped_and_reported() {
    let vs = config(
        "reviews",
        "default",
        r#"
hosts: [reviews]
http:
- name: bad-regex
  match:
  - uri: {regex: "("}
  route:
  - destination: {host: reviews}
- name: all-zero
  match:
  - uri: {prefix: /zero}
  route:
  - destination: {host: reviews, subset: v1}
    weight: 0
  - destination: {host: reviews, subset: v2}
    weight: 0
- name: ok
  route:
  - destination: {host: reviews}
  headers:
    request:
      set: {x-from: mesh}
      remove: [x-debug]
    response:
      add: {x-served-by: reviews}
"#,
    );
    let push = push_with(
        bookinfo_services(),
        vec![vs],
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    let proxy = productpage_proxy(&push);
    let rc = &build_routes(&proxy, &push, &["9080".to_string()])[0];
    let vh = vhost(rc, "reviews.default.svc.cluster.local:9080");
    let names: Vec<_> = vh.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ok"]);
    assert_eq!(
        vh.routes[0].request_headers_to_add[0]
            .header
            .as_ref()
            .unwrap()
            .key,
        "x-from"
    );
    assert_eq!(vh.routes[0].request_headers_to_remove, ["x-debug"]);
    assert_eq!(vh.routes[0].response_headers_to_add.len(), 1);
    let status = push.status.snapshot();
    let entry = &status[metric::INVALID_CONFIG]["VirtualService/default/reviews"];
    assert!(
        entry.message.contains("http[0].match[0]"),
        "{}",
        entry.message
    );
    assert!(
        entry.message.contains("http[1].match[0]"),
        "{}",
        entry.message
    );
}

#[test]
fn mirrors_cors_redirect_and_authority() {
    let vs = config(
        "reviews",
        "default",
        r#"
hosts: [reviews]
http:
- name: moved
  match:
  - uri: {prefix: /old}
  redirect:
    uri: /new
    authority: example.com
    redirectCode: 308
- name: main
  route:
  - destination: {host: reviews, subset: v1}
  rewrite:
    authority: reviews.internal
  mirror: {host: ratings}
  mirrorPercentage: {value: 25}
  corsPolicy:
    allowOrigins:
    - exact: https://example.com
    allowMethods: [GET]
"#,
    );
    let push = push_with(
        bookinfo_services(),
        vec![vs],
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    let proxy = productpage_proxy(&push);
    let rc = &build_routes(&proxy, &push, &["9080".to_string()])[0];
    let vh = vhost(rc, "reviews.default.svc.cluster.local:9080");
    match &vh.routes[0].action {
        Some(route::Action::Redirect(r)) => {
            assert_eq!(r.host_redirect, "example.com");
            assert_eq!(r.response_code, 4);
        }
        other => panic!("{other:?}"),
    }
    let main = action(&vh.routes[1]);
    assert_eq!(
        main.host_rewrite_specifier,
        Some(HostRewriteSpecifier::HostRewriteLiteral(
            "reviews.internal".into()
        ))
    );
    let mirror = &main.request_mirror_policies[0];
    assert_eq!(
        mirror.cluster,
        "outbound|9080||ratings.default.svc.cluster.local"
    );
    assert_eq!(
        mirror
            .runtime_fraction
            .as_ref()
            .unwrap()
            .default_value
            .unwrap()
            .numerator,
        250_000
    );
    assert_eq!(mirror.trace_sampled, Some(wkt::bool_value(false)));
    assert!(
        vh.routes[1]
            .typed_per_filter_config
            .contains_key("envoy.filters.http.cors")
    );
}

#[test]
fn every_route_configuration_renders_as_json() {
    for mode in [MeshOutboundMode::AllowAny, MeshOutboundMode::RegistryOnly] {
        for rc in routes(mode, &["9080", "3306", "unknown"]) {
            let value = json::to_json(&rc).unwrap_or_else(|e| panic!("{}: {e}", rc.name));
            assert_eq!(value["name"], rc.name.as_str());
        }
    }
}
