//! Builders for Istio-shaped route configurations used by the router's tests.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::config::common::{AppendAction, HeaderMutations, HeaderValueOption};
use crate::config::listener::{ClusterSpecifier, WeightedCluster};
use crate::config::route::{
    ForwardAction, PathMatch, RetryOn, RetryPolicy, Route, RouteAction, RouteConfig, RouteMatch,
    VirtualHost,
};

pub fn forward(cluster: &str) -> ForwardAction {
    ForwardAction {
        cluster: ClusterSpecifier::Cluster(cluster.into()),
        cluster_headers: vec![],
        timeout: None,
        idle_timeout: None,
        retry_policy: None,
        prefix_rewrite: None,
        regex_rewrite: None,
        host_rewrite: None,
        auto_host_rewrite: false,
        mirrors: vec![],
        hash_policy: vec![],
        max_grpc_timeout: None,
        upgrade_types: vec![],
    }
}

pub fn weighted(split: &[(&str, u32)]) -> ForwardAction {
    let mut a = forward("");
    a.cluster = ClusterSpecifier::Weighted(
        split
            .iter()
            .map(|(name, weight)| WeightedCluster {
                name: name.to_string(),
                weight: *weight,
            })
            .collect(),
    );
    a
}

/// Istio's default: `connect-failure,refused-stream,unavailable,cancelled,
/// retriable-status-codes` on 503, 2 retries, other hosts preferred.
pub fn istio_default_retry() -> RetryPolicy {
    RetryPolicy {
        retry_on: RetryOn {
            connect_failure: true,
            refused_stream: true,
            retriable_status_codes: true,
            grpc: vec!["unavailable".into(), "cancelled".into()],
            ..Default::default()
        },
        num_retries: 2,
        per_try_timeout: None,
        per_try_idle_timeout: None,
        retriable_status_codes: vec![503],
        base_interval: Duration::from_millis(25),
        max_interval: Duration::from_millis(250),
        avoid_previous_hosts: true,
        host_selection_retry_max_attempts: 5,
    }
}

pub fn route(name: &str, path: PathMatch, action: RouteAction) -> Route {
    Route {
        name: name.into(),
        route_match: RouteMatch {
            path,
            case_sensitive: true,
            headers: vec![],
            query_parameters: vec![],
            fraction: None,
            grpc: false,
        },
        action,
        headers: HeaderMutations::default(),
        response_headers: HeaderMutations::default(),
        fault: None,
        cors: None,
        operation: None,
    }
}

/// Istio's default route for a service: everything to one cluster, no timeout, default
/// retries.
pub fn istio_default_route(cluster: &str) -> Route {
    let mut a = forward(cluster);
    a.retry_policy = Some(istio_default_retry());
    a.max_grpc_timeout = Some(Duration::ZERO);
    route(
        "default",
        PathMatch::Prefix("/".into()),
        RouteAction::Forward(Box::new(a)),
    )
}

pub fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes: routes.into_iter().map(Arc::new).collect(),
        include_request_attempt_count: true,
        ..Default::default()
    }
}

pub fn reviews_domains() -> [&'static str; 5] {
    [
        "reviews.default.svc.cluster.local",
        "reviews",
        "reviews.default.svc",
        "reviews.default",
        "10.96.0.11",
    ]
}

/// Istio's outbound route configuration `9080` with `reviews` and the catch-all.
pub fn outbound_9080(reviews_routes: Vec<Route>) -> RouteConfig {
    let mut passthrough = forward("PassthroughCluster");
    passthrough.max_grpc_timeout = Some(Duration::ZERO);
    RouteConfig {
        name: "9080".into(),
        virtual_hosts: vec![
            Arc::new(vhost(
                "reviews.default.svc.cluster.local:9080",
                &reviews_domains(),
                reviews_routes,
            )),
            Arc::new(vhost(
                "allow_any",
                &["*"],
                vec![route(
                    "allow_any",
                    PathMatch::Prefix("/".into()),
                    RouteAction::Forward(Box::new(passthrough)),
                )],
            )),
        ],
        ignore_port_in_host_matching: true,
        ..Default::default()
    }
}

pub fn set_header(name: &'static str, value: &'static str) -> HeaderMutations {
    HeaderMutations {
        add: vec![HeaderValueOption {
            name: HeaderName::from_static(name),
            value: HeaderValue::from_static(value),
            action: AppendAction::OverwriteIfExistsOrAdd,
            keep_empty: false,
        }],
        remove: vec![],
    }
}

/// A request head with a URI and headers; `Host` is added from an absolute URI.
pub fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("test request").into_parts().0
}
