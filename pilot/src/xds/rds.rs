//! RDS: the route configurations a sidecar's HTTP listeners ask for by name.

use strait_proto::envoy::config::route::v3::RouteConfiguration;

use super::route::outbound::build_route_config;
use crate::model::{Proxy, PushContext};

/// One route configuration per requested name, in request order. Port names (`"9080"`) get
/// every HTTP service on the port, `<host>:<port>` names a sniffed service's own routes, and
/// unknown names an empty configuration (Envoy waits for every name it asked for).
pub fn build_routes(
    proxy: &Proxy,
    push: &PushContext,
    names: &[String],
) -> Vec<RouteConfiguration> {
    names
        .iter()
        .map(|name| build_route_config(proxy, push, name))
        .collect()
}
