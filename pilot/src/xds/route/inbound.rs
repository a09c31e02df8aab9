//! The inline route configuration of an inbound HTTP chain: everything to the local
//! workload's cluster.

use strait_proto::envoy::config::route::v3::{RouteConfiguration, VirtualHost};

use super::defaults::{inbound_default_route, trace_operation};
use super::wkt;

/// Named after the cluster (`inbound|<targetPort>||`), one `inbound|http|<servicePort>` virtual
/// host matching every authority. `host` names the service for tracing (empty for the
/// passthrough chain).
pub fn inbound_route_config(cluster: &str, service_port: u16, host: &str) -> RouteConfiguration {
    let vhost = VirtualHost {
        name: format!("inbound|http|{service_port}"),
        domains: vec!["*".to_string()],
        routes: vec![inbound_default_route(
            cluster,
            trace_operation(host, service_port),
        )],
        ..Default::default()
    };
    RouteConfiguration {
        name: cluster.to_string(),
        virtual_hosts: vec![vhost],
        validate_clusters: Some(wkt::bool_value(false)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_config_shape() {
        let rc = inbound_route_config("inbound|9080||", 9080, "reviews.default.svc.cluster.local");
        assert_eq!(rc.name, "inbound|9080||");
        assert_eq!(rc.virtual_hosts[0].name, "inbound|http|9080");
        assert_eq!(rc.virtual_hosts[0].domains, ["*"]);
        assert_eq!(
            rc.virtual_hosts[0].routes[0]
                .decorator
                .as_ref()
                .unwrap()
                .operation,
            "reviews.default.svc.cluster.local:9080/*"
        );
        assert_eq!(rc.validate_clusters, Some(wkt::bool_value(false)));
    }
}
