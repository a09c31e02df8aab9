//! Routes that exist without any VirtualService: a service's default route, the catch-all
//! virtual host for unknown hosts, and the inbound route to the local workload.

use strait_proto::envoy::config::route::v3::{
    Decorator, DirectResponseAction, RetryPolicy, Route, RouteAction, RouteMatch, VirtualHost,
    route,
    route_action::{ClusterSpecifier, HashPolicy, MaxStreamDuration},
    route_match::PathSpecifier,
};
use strait_proto::istio::{HttpRetry, MeshOutboundMode};

use super::{retry, wkt};
use crate::xds::listener::names;

pub const DEFAULT_ROUTE_NAME: &str = "default";
const ALLOW_ANY: &str = "allow_any";
const BLOCK_ALL: &str = "block_all";

/// `<host>:<port>/*`, the tracing operation of default routes.
pub fn trace_operation(host: &str, port: u16) -> String {
    format!("{host}:{port}/*")
}

fn prefix_all() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
        ..Default::default()
    }
}

fn default_route(cluster: &str, operation: String, action: RouteAction) -> Route {
    Route {
        name: DEFAULT_ROUTE_NAME.to_string(),
        r#match: Some(prefix_all()),
        decorator: Some(Decorator {
            operation,
            propagate: None,
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
            ..action
        })),
        ..Default::default()
    }
}

/// A service's route when no VirtualService applies: no timeout, the mesh's default retry
/// policy (Istio's when unset), and the DestinationRule's hash key if any.
// Istio still sets the deprecated max_grpc_timeout: its replacement regressed.
#[allow(deprecated)]
pub fn outbound_default_route(
    cluster: &str,
    operation: String,
    mesh_retry: Option<&HttpRetry>,
    hash_policy: Option<HashPolicy>,
) -> Route {
    default_route(
        cluster,
        operation,
        RouteAction {
            timeout: Some(wkt::zero_duration()),
            max_grpc_timeout: Some(wkt::zero_duration()),
            retry_policy: retry::convert_policy(mesh_retry, false),
            hash_policy: hash_policy.into_iter().collect(),
            ..Default::default()
        },
    )
}

/// The route to the local workload: no timeouts, retried only when the upstream connection
/// was reset before the request went out.
pub fn inbound_default_route(cluster: &str, operation: String) -> Route {
    default_route(
        cluster,
        operation,
        RouteAction {
            timeout: Some(wkt::zero_duration()),
            max_stream_duration: Some(MaxStreamDuration {
                max_stream_duration: Some(wkt::zero_duration()),
                grpc_timeout_header_max: Some(wkt::zero_duration()),
                grpc_timeout_header_offset: None,
            }),
            retry_policy: Some(RetryPolicy {
                retry_on: "reset-before-request".to_string(),
                num_retries: Some(wkt::u32_value(2)),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// The last virtual host of an outbound route config: unknown hosts pass through
/// (`ALLOW_ANY`) or get a 502 (`REGISTRY_ONLY`).
// Istio still sets the deprecated max_grpc_timeout: its replacement regressed.
#[allow(deprecated)]
pub fn catch_all_virtual_host(mode: MeshOutboundMode) -> VirtualHost {
    let (name, action) = match mode {
        MeshOutboundMode::RegistryOnly => (
            BLOCK_ALL,
            route::Action::DirectResponse(DirectResponseAction {
                status: 502,
                ..Default::default()
            }),
        ),
        MeshOutboundMode::AllowAny | MeshOutboundMode::AllowAnyDynamicDns => (
            ALLOW_ANY,
            route::Action::Route(RouteAction {
                cluster_specifier: Some(ClusterSpecifier::Cluster(
                    names::PASSTHROUGH_CLUSTER.to_string(),
                )),
                timeout: Some(wkt::zero_duration()),
                max_grpc_timeout: Some(wkt::zero_duration()),
                ..Default::default()
            }),
        ),
    };
    VirtualHost {
        name: name.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![Route {
            name: name.to_string(),
            r#match: Some(prefix_all()),
            action: Some(action),
            ..Default::default()
        }],
        include_request_attempt_count: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_all_hosts() {
        let allow = catch_all_virtual_host(MeshOutboundMode::AllowAny);
        assert_eq!(allow.name, "allow_any");
        assert_eq!(allow.domains, ["*"]);
        match &allow.routes[0].action {
            Some(route::Action::Route(a)) => assert_eq!(
                a.cluster_specifier,
                Some(ClusterSpecifier::Cluster("PassthroughCluster".into()))
            ),
            other => panic!("{other:?}"),
        }
        let block = catch_all_virtual_host(MeshOutboundMode::RegistryOnly);
        assert_eq!(block.name, "block_all");
        assert!(matches!(
            &block.routes[0].action,
            Some(route::Action::DirectResponse(d)) if d.status == 502
        ));
    }

    #[test]
    fn inbound_route_has_no_timeouts() {
        let r = inbound_default_route("inbound|9080||", trace_operation("reviews", 9080));
        assert_eq!(r.name, "default");
        assert_eq!(r.decorator.unwrap().operation, "reviews:9080/*");
        match r.action {
            Some(route::Action::Route(a)) => {
                assert_eq!(a.timeout, Some(wkt::zero_duration()));
                assert_eq!(a.retry_policy.unwrap().retry_on, "reset-before-request");
                assert!(a.max_stream_duration.is_some());
            }
            other => panic!("{other:?}"),
        }
    }
}
