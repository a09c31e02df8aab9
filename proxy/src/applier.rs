//! Applies xDS updates: converts every resource, and only when all of them are valid
//! and the listeners could be put in place does the new snapshot replace the old one.
//! Otherwise the update is rejected whole (NACK) and the last good snapshot keeps
//! serving.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use strait_proto::xds::type_url;
use tracing::{info, warn};

use crate::config::listener::{NetworkFilter, RouteSource};
use crate::config::route::RouteConfig;
use crate::convert::{self, Resource};
use crate::listener::manager::ListenerManager;
use crate::snapshot::{Entry, Snapshot};
use crate::telemetry::{RdsOutcome, Telemetry, upstreams};
use crate::upstream::manager::ClusterManager;
use crate::xds::{Rejected, ResourceUpdate, XdsHandler};

/// RDS route configurations by name; the HTTP connection managers read it per request.
pub type Routes = Arc<ArcSwap<HashMap<String, Arc<RouteConfig>>>>;

pub struct Applier {
    current: Snapshot,
    published: Arc<ArcSwap<Snapshot>>,
    clusters: Arc<ClusterManager>,
    listeners: Arc<ListenerManager>,
    routes: Routes,
    telemetry: Arc<Telemetry>,
}

impl Applier {
    /// Starts from the bootstrap's static resources, which are put in place at once.
    pub fn new(
        initial: Snapshot,
        published: Arc<ArcSwap<Snapshot>>,
        clusters: Arc<ClusterManager>,
        listeners: Arc<ListenerManager>,
        routes: Routes,
    ) -> Result<Applier, Vec<Rejected>> {
        let telemetry = listeners.telemetry().clone();
        let applier = Applier {
            current: initial,
            published,
            clusters,
            listeners,
            routes,
            telemetry,
        };
        let changes = applier
            .clusters
            .update_clusters(applier.current.all_clusters());
        applier.telemetry.cluster_changes(&changes);
        applier
            .listeners
            .update(applier.current.all_listeners())
            .map_err(listener_rejects)?;
        applier.telemetry.upstreams().rebuild(&applier.clusters);
        applier.subscribe_routes();
        applier.publish();
        Ok(applier)
    }

    fn publish(&self) {
        self.routes.store(Arc::new(self.current.route_table()));
        self.published.store(Arc::new(self.current.clone()));
    }

    /// Remembers the Istio services CDS declares for each cluster, for telemetry.
    fn note_services(&self, fresh: &[(String, Entry<crate::config::cluster::Cluster>)]) {
        self.telemetry.upstreams().set_services(
            fresh
                .iter()
                .map(|(name, e)| (name.clone(), istio_service(&e.raw))),
        );
    }

    /// RDS subscriptions as Envoy scopes them: under the stat prefix of the first
    /// connection manager that names the route configuration.
    fn subscribe_routes(&self) {
        for listener in self.current.all_listeners() {
            let chains = listener
                .filter_chains
                .iter()
                .chain(listener.default_filter_chain.iter());
            for chain in chains {
                if let NetworkFilter::HttpConnectionManager(hcm) = &chain.filter
                    && let RouteSource::Rds(name) = &hcm.route_source
                {
                    self.telemetry
                        .rds()
                        .subscribe(&self.telemetry, name, &hcm.stat_prefix);
                }
            }
        }
    }
}

/// The service of a cluster's `istio` metadata, read from the resource as received.
fn istio_service(raw: &strait_proto::xds::any::Any) -> Option<crate::stats::ServiceLabels> {
    use prost::Message;
    let cluster =
        strait_proto::envoy::config::cluster::v3::Cluster::decode(raw.value.as_slice()).ok()?;
    let istio = cluster.metadata?.filter_metadata.remove("istio")?;
    let json = strait_proto::xds::json::to_json(&istio).ok()?;
    upstreams::service_of(&json)
}

/// Keeps the entry already in place when a resource arrives unchanged (the same bytes),
/// so what uses it sees no change (Envoy ignores such duplicates too).
fn unchanged<T>(
    old: &BTreeMap<String, Entry<T>>,
    fresh: Vec<(String, Entry<T>)>,
) -> Vec<(String, Entry<T>)> {
    fresh
        .into_iter()
        .map(|(name, mut e)| {
            if let Some(prev) = old.get(&name)
                && prev.raw.type_url == e.raw.type_url
                && prev.raw.value == e.raw.value
            {
                e.config = prev.config.clone();
            }
            (name, e)
        })
        .collect()
}

fn listener_rejects(errors: Vec<crate::listener::manager::ListenerError>) -> Vec<Rejected> {
    errors
        .into_iter()
        .map(|e| Rejected::new(e.name.clone(), format!("Listener {}: {}", e.name, e.reason)))
        .collect()
}

/// Converts every update; all of them must be valid.
fn convert_all(
    url: &str,
    updates: Vec<ResourceUpdate>,
) -> Result<Vec<(Resource, ResourceUpdate)>, Vec<Rejected>> {
    let mut ok = Vec::new();
    let mut rejected = Vec::new();
    for update in updates {
        match convert::decode(url, &update.resource.value) {
            Ok(resource) if resource.name() == update.name => ok.push((resource, update)),
            Ok(resource) => rejected.push(Rejected::new(
                update.name.clone(),
                format!(
                    "resource name {:?} does not match its content ({:?})",
                    update.name,
                    resource.name()
                ),
            )),
            Err(e) => rejected.push(Rejected::new(update.name.clone(), e.to_string())),
        }
    }
    if rejected.is_empty() {
        Ok(ok)
    } else {
        Err(rejected)
    }
}

/// The new map of one type: the whole set for state-of-the-world wildcard types,
/// otherwise the old one with updates and removals applied.
fn merged<T>(
    old: &BTreeMap<String, Entry<T>>,
    fresh: Vec<(String, Entry<T>)>,
    removed: &[String],
    replace_all: bool,
) -> BTreeMap<String, Entry<T>>
where
    Entry<T>: Clone,
{
    let mut map = if replace_all {
        BTreeMap::new()
    } else {
        old.clone()
    };
    for name in removed {
        map.remove(name);
    }
    map.extend(fresh);
    map
}

fn entry<T>(config: T, update: ResourceUpdate, now: SystemTime) -> Entry<T> {
    Entry {
        config: Arc::new(config),
        raw: update.resource,
        version: update.version,
        updated: now,
    }
}

impl XdsHandler for Applier {
    fn apply(
        &mut self,
        url: &str,
        updated: Vec<ResourceUpdate>,
        removed: Vec<String>,
        full_state: bool,
    ) -> Result<(), Vec<Rejected>> {
        if url != type_url::ROUTE {
            return self.apply_update(url, updated, removed, full_state);
        }
        let changed: Vec<(String, bool)> = updated
            .iter()
            .map(|u| {
                let same = self
                    .current
                    .routes
                    .get(&u.name)
                    .is_some_and(|e| e.raw.value == u.resource.value);
                (u.name.clone(), !same)
            })
            .collect();
        let result = self.apply_update(url, updated, removed.clone(), full_state);
        let rds = self.telemetry.rds();
        for (name, changed) in changed {
            rds.record(
                &name,
                match result {
                    Ok(()) => RdsOutcome::Accepted { changed },
                    Err(_) => RdsOutcome::Rejected,
                },
            );
        }
        if result.is_ok() {
            for name in &removed {
                rds.record(name, RdsOutcome::Empty);
            }
        }
        result
    }

    fn wanted(&self, url: &str) -> Vec<String> {
        match url {
            type_url::ENDPOINT => self.current.wanted_endpoints(),
            type_url::ROUTE => self.current.wanted_routes(),
            _ => Vec::new(),
        }
    }
}

impl Applier {
    fn apply_update(
        &mut self,
        url: &str,
        updated: Vec<ResourceUpdate>,
        removed: Vec<String>,
        full_state: bool,
    ) -> Result<(), Vec<Rejected>> {
        let version = updated.first().map(|u| u.version.clone());
        let converted = convert_all(url, updated)?;
        let now = SystemTime::now();
        let mut next = self.current.clone();
        // Wildcard types carry the whole set in state-of-the-world; named types only
        // what was asked for.
        let replace_all = full_state && type_url::is_wildcard(url);
        match url {
            type_url::CLUSTER => {
                let fresh = converted
                    .into_iter()
                    .filter_map(|(r, u)| match r {
                        Resource::Cluster(c) => Some((c.name.clone(), entry(c, u, now))),
                        _ => None,
                    })
                    .collect();
                let fresh: Vec<_> = fresh;
                self.note_services(&fresh);
                next.clusters = merged(&self.current.clusters, fresh, &removed, replace_all);
                let changes = self.clusters.update_clusters(next.all_clusters());
                self.telemetry.cluster_changes(&changes);
                self.telemetry.upstreams().rebuild(&self.clusters);
                info!(clusters = next.clusters.len(), ?changes, "CDS applied");
            }
            type_url::ENDPOINT => {
                let fresh: Vec<_> = converted
                    .into_iter()
                    .filter_map(|(r, u)| match r {
                        Resource::ClusterLoadAssignment(c) => {
                            Some((c.cluster_name.clone(), entry(c, u, now)))
                        }
                        _ => None,
                    })
                    .collect();
                for (_, e) in &fresh {
                    self.clusters.update_assignment((*e.config).clone());
                }
                for name in &removed {
                    self.clusters.remove_assignment(name);
                }
                let services: std::collections::HashSet<&str> = fresh
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .chain(removed.iter().map(String::as_str))
                    .collect();
                let touched: Vec<String> = self
                    .current
                    .all_clusters()
                    .iter()
                    .filter(|c| match &c.discovery {
                        crate::config::cluster::Discovery::Eds { service_name } => {
                            let service = if service_name.is_empty() {
                                &c.name
                            } else {
                                service_name
                            };
                            services.contains(service.as_str())
                        }
                        _ => false,
                    })
                    .map(|c| c.name.clone())
                    .collect();
                self.telemetry.upstreams().refresh(&self.clusters, &touched);
                next.endpoints = merged(&self.current.endpoints, fresh, &removed, false);
            }
            type_url::LISTENER => {
                let fresh = converted
                    .into_iter()
                    .filter_map(|(r, u)| match r {
                        Resource::Listener(l) => Some((l.name.clone(), entry(l, u, now))),
                        _ => None,
                    })
                    .collect();
                let fresh = unchanged(&self.current.listeners, fresh);
                next.listeners = merged(&self.current.listeners, fresh, &removed, replace_all);
                if let Err(errors) = self.listeners.update(next.all_listeners()) {
                    warn!(
                        ?errors,
                        "LDS update rejected: listeners could not be put in place"
                    );
                    return Err(listener_rejects(errors));
                }
                info!(listeners = next.listeners.len(), "LDS applied");
            }
            type_url::ROUTE => {
                let fresh = converted
                    .into_iter()
                    .filter_map(|(r, u)| match r {
                        Resource::RouteConfig(c) => Some((c.name.clone(), entry(c, u, now))),
                        _ => None,
                    })
                    .collect();
                let fresh = unchanged(&self.current.routes, fresh);
                next.routes = merged(&self.current.routes, fresh, &removed, false);
            }
            other => {
                return Err(vec![Rejected::new(
                    "-",
                    format!("unsupported type URL {other}"),
                )]);
            }
        }
        if let Some(version) = version {
            next.versions.insert(url.to_string(), version);
        }
        self.current = next;
        if url == type_url::LISTENER {
            self.subscribe_routes();
        }
        self.publish();
        Ok(())
    }
}
