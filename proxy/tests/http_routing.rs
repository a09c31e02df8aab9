//! The HTTP connection manager routing real requests between real backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use http_support::*;
use strait_proxy::config::listener::RouteSource;
use strait_proxy::config::route::{
    DirectResponseAction, RedirectAction, RedirectPath, RedirectScheme, RouteAction,
};
use strait_proxy::http::{HttpService, new_route_table};

#[tokio::test]
async fn weighted_split_sends_traffic_to_both_clusters() {
    let a = backend("a").await;
    let b = backend("b").await;
    let cm = clusters(vec![cluster("a", &[a.addr]), cluster("b", &[b.addr])]);
    let p = proxy(
        inline(vec![vhost(
            &["*"],
            vec![to("/", weighted(&[("a", 50), ("b", 50)]))],
        )]),
        cm,
    )
    .await;
    let mut client = H1::connect(p.addr).await;
    let mut names = Vec::new();
    for _ in 0..60 {
        let r = client.get("svc", "/", &[]).await;
        assert_eq!(r.status, 200);
        names.push(r.text());
    }
    let to_a = names.iter().filter(|n| *n == "a").count();
    let to_b = names.iter().filter(|n| *n == "b").count();
    assert_eq!(to_a + to_b, 60);
    assert!(to_a >= 10 && to_b >= 10, "a={to_a} b={to_b}");
}

#[tokio::test]
async fn header_match_picks_the_route() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let cm = clusters(vec![cluster("v1", &[v1.addr]), cluster("v2", &[v2.addr])]);
    let mut canary = to("/", forward("v2"));
    canary.route_match.headers = vec![header_is("end-user", "jason")];
    let p = proxy(
        inline(vec![vhost(
            &["reviews"],
            vec![canary, to("/", forward("v1"))],
        )]),
        cm,
    )
    .await;
    assert_eq!(
        get(p.addr, "reviews", "/", &[("end-user", "jason")])
            .await
            .text(),
        "v2"
    );
    assert_eq!(
        get(p.addr, "reviews", "/", &[("end-user", "bob")])
            .await
            .text(),
        "v1"
    );
    assert_eq!(
        get(p.addr, "reviews:9080", "/", &[]).await.status,
        404,
        "port not ignored"
    );
}

#[tokio::test]
async fn prefix_rewrite_and_envoy_request_headers() {
    let be = backend("be").await;
    let cm = clusters(vec![cluster("be", &[be.addr])]);
    let mut action = forward("be");
    action.prefix_rewrite = Some("/v2/".into());
    action.host_rewrite = Some("backend.internal".into());
    let mut r = to("/api/", action);
    r.headers = set_header("x-added", "yes");
    r.response_headers = set_header("x-resp", "added");
    let mut edge = inline(vec![vhost(&["*"], vec![r])]);
    edge.use_remote_address = true;
    let p = proxy(edge, cm).await;
    let reply = get(
        p.addr,
        "svc",
        "/api/items?q=1",
        &[("x-envoy-retry-on", "5xx")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-resp"), Some("added"));
    assert_eq!(reply.header("server"), Some("envoy"));
    assert!(reply.header("x-envoy-upstream-service-time").is_some());
    let seen = be.last();
    assert_eq!(seen.path, "/v2/items?q=1");
    assert_eq!(seen.host.as_deref(), Some("backend.internal"));
    assert_eq!(seen.header("x-envoy-original-path"), Some("/api/items?q=1"));
    assert_eq!(seen.header("x-added"), Some("yes"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-envoy-attempt-count"), Some("1"));
    assert_eq!(seen.header("x-envoy-expected-rq-timeout-ms"), Some("15000"));
    let id = seen.header("x-request-id").expect("a request id");
    assert_eq!(id.len(), 36);
    // At the edge, a loopback peer is internal: it goes into x-forwarded-for and its
    // controls are honoured (and consumed by the router rather than forwarded).
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-envoy-internal"), Some("true"));
    assert!(seen.header("x-envoy-retry-on").is_none());

    let log = p.log.wait_for(1).await;
    let info = &log[0];
    assert_eq!(info.status, Some(200));
    assert_eq!(info.path, "/api/items?q=1");
    assert_eq!(info.upstream_cluster.as_deref(), Some("be"));
    assert_eq!(info.upstream_host, Some(be.addr));
    assert_eq!(info.request_header("x-request-id"), Some(id));
    assert_eq!(info.response_flags.to_string(), "-");
    assert_eq!(info.bytes_sent, 2);
    assert_eq!(info.route_name.as_deref(), Some("route/api/"));
    assert_eq!(info.response_code_details, "via_upstream");
    assert_eq!(
        info.connection_manager
            .as_ref()
            .map(|h| h.stat_prefix.as_str()),
        Some("test")
    );
}

#[tokio::test]
async fn direct_response_redirect_and_no_route() {
    let cm = clusters(vec![]);
    let direct = route(
        "/health",
        RouteAction::DirectResponse(DirectResponseAction {
            status: 200,
            body: Some(bytes::Bytes::from_static(b"ok\n")),
        }),
    );
    let redirect = route(
        "/old",
        RouteAction::Redirect(RedirectAction {
            scheme: RedirectScheme::Https,
            host: Some("new.example.com".into()),
            port: None,
            path: RedirectPath::Keep,
            status: 301,
            strip_query: false,
        }),
    );
    let p = proxy(
        inline(vec![vhost(&["example.com"], vec![direct, redirect])]),
        cm,
    )
    .await;
    let health = get(p.addr, "example.com", "/health", &[]).await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(health.header("content-type"), Some("text/plain"));
    let moved = get(p.addr, "example.com", "/old/page?x=1", &[]).await;
    assert_eq!(moved.status, 301);
    assert_eq!(
        moved.header("location"),
        Some("https://new.example.com/old/page?x=1")
    );
    let missing = get(p.addr, "other.com", "/", &[]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.is_empty());
    let log = p.log.wait_for(3).await;
    assert_eq!(log[2].response_flags.to_string(), "NR");
    assert_eq!(log[2].response_code_details, "route_not_found");
}

#[tokio::test]
async fn a_missing_cluster_is_503_nc() {
    let cm = clusters(vec![]);
    let p = proxy(
        inline(vec![vhost(&["*"], vec![to("/", forward("nowhere"))])]),
        cm,
    )
    .await;
    let r = get(p.addr, "svc", "/", &[]).await;
    assert_eq!(r.status, 503);
    let log = p.log.wait_for(1).await;
    assert_eq!(log[0].response_flags.to_string(), "NC");
}

#[tokio::test]
async fn rds_routes_come_from_the_table_and_new_streams_see_updates() {
    let a = backend("a").await;
    let b = backend("b").await;
    let cm = clusters(vec![cluster("a", &[a.addr]), cluster("b", &[b.addr])]);
    let table = new_route_table();
    let service = HttpService::new(table.clone(), cm);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hcm = Arc::new(hcm(RouteSource::Rds("80".into())));
    tokio::spawn(async move {
        while let Ok((s, peer)) = listener.accept().await {
            let (service, hcm) = (service.clone(), hcm.clone());
            tokio::spawn(async move { service.serve_connection(s, peer, addr, hcm).await });
        }
    });
    // No RDS configuration yet: 404.
    assert_eq!(get(addr, "svc", "/", &[]).await.status, 404);
    let mut config = route_config(vec![vhost(&["*"], vec![to("/", forward("a"))])]);
    config.name = "80".into();
    strait_proxy::http::routes::store_all(&table, [Arc::new(config.clone())]);
    let mut client = H1::connect(addr).await;
    assert_eq!(client.get("svc", "/", &[]).await.text(), "a");
    config.virtual_hosts = vec![Arc::new(vhost(&["*"], vec![to("/", forward("b"))]))];
    strait_proxy::http::routes::store_all(&table, [Arc::new(config)]);
    assert_eq!(client.get("svc", "/", &[]).await.text(), "b");
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn original_dst_clusters_go_where_the_client_connected() {
    let be = backend("be").await;
    let mut passthrough = cluster("PassthroughCluster", &[]);
    passthrough.discovery = strait_proxy::config::cluster::Discovery::OriginalDst;
    passthrough.lb_policy = strait_proxy::config::cluster::LbPolicy::ClusterProvided;
    let service = HttpService::new(new_route_table(), clusters(vec![passthrough]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hcm = Arc::new(inline(vec![vhost(
        &["*"],
        vec![to("/", forward("PassthroughCluster"))],
    )]));
    let destination = be.addr;
    tokio::spawn(async move {
        while let Ok((s, peer)) = listener.accept().await {
            let (service, hcm) = (service.clone(), hcm.clone());
            tokio::spawn(async move { service.serve_connection(s, peer, destination, hcm).await });
        }
    });
    let r = get(addr, "anything.example", "/", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "be"));
}
