//! `/debug/config_dump?proxyID=` (and `/debug/edsz`): what pilot would send a connected
//! proxy, generated fresh from the current PushContext and laid out as Envoy's admin
//! `ConfigDump`, so it can be compared with the proxy's own `/config_dump`.

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prost::Message;
use strait_proto::envoy::admin::v3::{
    BootstrapConfigDump, ClustersConfigDump, ConfigDump, EcdsConfigDump, EndpointsConfigDump,
    ListenersConfigDump, RoutesConfigDump, ScopedRoutesConfigDump, SecretsConfigDump,
    clusters_config_dump::DynamicCluster, endpoints_config_dump::DynamicEndpointConfig,
    listeners_config_dump::DynamicListener, listeners_config_dump::DynamicListenerState,
    routes_config_dump::DynamicRouteConfig,
};
use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use strait_proto::envoy::config::listener::v3::{FilterChain, Listener, filter};
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use strait_proto::xds::any::{self, Any};
use strait_proto::xds::{XdsError, json, type_url};

use super::respond::{self, Params, Source};
use crate::model::{Proxy, PushContext};
use crate::xds::status::ConnectionStatus;
use crate::xds::{Resource, generate};

/// Generates one connection's resources, naming RDS and EDS resources the way the proxy
/// would ask for them.
struct Dumper<'a> {
    con: &'a ConnectionStatus,
    proxy: Proxy,
    push: &'a PushContext,
}

impl<'a> Dumper<'a> {
    fn new(con: &'a ConnectionStatus, push: &'a PushContext) -> Dumper<'a> {
        // Service targets are filled per push; recompute them against the context the
        // dump is generated from so inbound config matches that context.
        let mut proxy = (*con.proxy).clone();
        proxy.service_targets = push.service_targets(&proxy);
        Dumper { con, proxy, push }
    }

    /// The names the proxy subscribed to for `type_url`, when it named any.
    fn watched(&self, type_url: &str) -> Option<Vec<String>> {
        self.con
            .watches
            .get(type_url)
            .filter(|w| !w.names.is_empty())
            .map(|w| w.names.clone())
    }

    fn generate(&self, type_url: &str, names: &[String]) -> Vec<Resource> {
        generate(type_url, &self.proxy, self.push, names)
    }

    fn clusters(&self) -> Vec<Resource> {
        self.generate(type_url::CLUSTER, &[])
    }

    fn listeners(&self) -> Vec<Resource> {
        self.generate(type_url::LISTENER, &[])
    }

    /// Routes the proxy watches, or else those the listeners refer to (what it would ask for).
    fn routes(&self, listeners: &[Resource]) -> Vec<Resource> {
        let names = self
            .watched(type_url::ROUTE)
            .unwrap_or_else(|| route_names(listeners));
        self.generate(type_url::ROUTE, &names)
    }

    /// Endpoints the proxy watches, or else those of the EDS clusters.
    fn endpoints(&self, clusters: &[Resource]) -> Vec<Resource> {
        let names = self
            .watched(type_url::ENDPOINT)
            .unwrap_or_else(|| eds_names(clusters));
        self.generate(type_url::ENDPOINT, &names)
    }

    fn of_type(&self, type_url: &str) -> Vec<Resource> {
        match type_url {
            type_url::CLUSTER => self.clusters(),
            type_url::LISTENER => self.listeners(),
            type_url::ROUTE => self.routes(&self.listeners()),
            type_url::ENDPOINT => self.endpoints(&self.clusters()),
            other => self.generate(other, &self.watched(other).unwrap_or_default()),
        }
    }

    fn full(&self, include_eds: bool) -> ConfigDump {
        let version = self.push.version.clone();
        let clusters = self.clusters();
        let listeners = self.listeners();
        let routes = self.routes(&listeners);

        let clusters_dump = ClustersConfigDump {
            version_info: version.clone(),
            dynamic_active_clusters: clusters
                .iter()
                .map(|c| DynamicCluster {
                    version_info: version.clone(),
                    cluster: Some(to_any(c)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let listeners_dump = ListenersConfigDump {
            version_info: version.clone(),
            dynamic_listeners: listeners
                .iter()
                .map(|l| DynamicListener {
                    name: l.name.clone(),
                    active_state: Some(DynamicListenerState {
                        version_info: version.clone(),
                        listener: Some(to_any(l)),
                        last_updated: None,
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let routes_dump = RoutesConfigDump {
            dynamic_route_configs: routes
                .iter()
                .map(|r| DynamicRouteConfig {
                    version_info: version.clone(),
                    route_config: Some(to_any(r)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };

        let mut configs = vec![
            any::pack(&BootstrapConfigDump::default()),
            any::pack(&clusters_dump),
        ];
        if include_eds {
            let endpoints_dump = EndpointsConfigDump {
                dynamic_endpoint_configs: self
                    .endpoints(&clusters)
                    .iter()
                    .map(|e| DynamicEndpointConfig {
                        version_info: version.clone(),
                        endpoint_config: Some(to_any(e)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            configs.push(any::pack(&endpoints_dump));
        }
        configs.extend([
            any::pack(&listeners_dump),
            any::pack(&ScopedRoutesConfigDump::default()),
            any::pack(&routes_dump),
            any::pack(&SecretsConfigDump::default()),
            any::pack(&EcdsConfigDump::default()),
        ]);
        ConfigDump { configs }
    }

    /// The raw resources of the given short types (`cds,lds,...`), as Istio's `?types=`.
    fn typed(&self, short_types: &str) -> ConfigDump {
        let mut seen = BTreeSet::new();
        let configs = short_types
            .split(',')
            .filter_map(|t| type_url::from_short(t.trim()))
            .filter(|url| seen.insert(*url))
            .flat_map(|url| self.of_type(url))
            .map(|r| to_any(&r))
            .collect();
        ConfigDump { configs }
    }
}

/// The body of a generated resource as the `Any` the admin protos carry.
fn to_any(r: &Resource) -> Any {
    Any {
        type_url: r.body.type_url.clone(),
        value: r.body.value.clone(),
    }
}

fn decode<M: Message + Default>(r: &Resource) -> Option<M> {
    M::decode(r.body.value.as_slice()).ok()
}

/// RDS names the listeners' HTTP connection managers refer to, sorted and deduplicated.
fn route_names(listeners: &[Resource]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for listener in listeners.iter().filter_map(decode::<Listener>) {
        let chains = listener
            .filter_chains
            .iter()
            .chain(listener.default_filter_chain.as_ref());
        for name in chains.flat_map(chain_route_names) {
            names.insert(name);
        }
    }
    names.into_iter().collect()
}

fn chain_route_names(chain: &FilterChain) -> Vec<String> {
    chain
        .filters
        .iter()
        .filter_map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(typed)) => Some(typed),
            _ => None,
        })
        .filter(|typed| any::type_name(&typed.type_url) == HCM_TYPE)
        .filter_map(|typed| HttpConnectionManager::decode(typed.value.as_slice()).ok())
        .filter_map(|hcm| match hcm.route_specifier {
            Some(RouteSpecifier::Rds(rds)) if !rds.route_config_name.is_empty() => {
                Some(rds.route_config_name)
            }
            _ => None,
        })
        .collect()
}

const HCM_TYPE: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The EDS service names of the EDS clusters (the cluster name when none is set).
fn eds_names(clusters: &[Resource]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for cluster in clusters.iter().filter_map(decode::<Cluster>) {
        let is_eds = matches!(
            cluster.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(t)) if t == DiscoveryType::Eds as i32
        );
        if !is_eds {
            continue;
        }
        let service_name = cluster
            .eds_cluster_config
            .map(|c| c.service_name)
            .filter(|s| !s.is_empty());
        names.insert(service_name.unwrap_or(cluster.name));
    }
    names.into_iter().collect()
}

fn render(dump: &ConfigDump, params: &Params) -> Response {
    match json::to_json(dump) {
        Ok(value) => respond::json(&value, params),
        Err(e) => internal_error(&e),
    }
}

fn internal_error(e: &XdsError) -> Response {
    respond::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn dump_response(source: &Source, params: &Params) -> Response {
    let con = match respond::require_connection(&**source, params) {
        Ok(con) => con,
        Err(rejection) => return rejection.into_response(),
    };
    let push = source.push_context();
    let dumper = Dumper::new(&con, &push);
    let dump = match params.get("types").filter(|t| !t.is_empty()) {
        Some(types) => dumper.typed(types),
        None => dumper.full(params.contains_key("include_eds")),
    };
    render(&dump, params)
}

/// `/debug/config_dump?proxyID=[&include_eds][&types=cds,lds,...]`.
pub(crate) async fn config_dump(
    State(source): State<Source>,
    Query(params): Query<Params>,
) -> Response {
    dump_response(&source, &params)
}

/// `/debug/edsz?proxyID=`: the config dump restricted to EDS.
pub(crate) async fn edsz(
    State(source): State<Source>,
    Query(mut params): Query<Params>,
) -> Response {
    params.insert("types".to_string(), "eds".to_string());
    dump_response(&source, &params)
}
