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

use crate::config::route::RouteConfig;
use crate::convert::{self, Resource};
use crate::listener::manager::ListenerManager;
use crate::snapshot::{Entry, Snapshot};
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
        let applier = Applier {
            current: initial,
            published,
            clusters,
            listeners,
            routes,
        };
        applier
            .clusters
            .update_clusters(applier.current.all_clusters());
        applier
            .listeners
            .update(applier.current.all_listeners())
            .map_err(listener_rejects)?;
        applier.publish();
        Ok(applier)
    }

    fn publish(&self) {
        self.routes.store(Arc::new(self.current.route_table()));
        self.published.store(Arc::new(self.current.clone()));
    }
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
                next.clusters = merged(&self.current.clusters, fresh, &removed, replace_all);
                let changes = self.clusters.update_clusters(next.all_clusters());
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
        self.publish();
        Ok(())
    }

    fn wanted(&self, url: &str) -> Vec<String> {
        match url {
            type_url::ENDPOINT => self.current.wanted_endpoints(),
            type_url::ROUTE => self.current.wanted_routes(),
            _ => Vec::new(),
        }
    }
}
