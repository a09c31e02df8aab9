//! The accepted configuration: every resource in its converted form, with the proto as
//! received (for `/config_dump`), its version and when it was applied. Immutable;
//! a new snapshot replaces the old one whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use strait_proto::xds::any::Any;

use crate::config::cluster::{Cluster, Discovery};
use crate::config::endpoint::ClusterLoadAssignment;
use crate::config::listener::{Listener, NetworkFilter, RouteSource};
use crate::config::route::RouteConfig;

#[derive(Clone, Debug)]
pub struct Entry<T> {
    pub config: Arc<T>,
    /// The resource as the control plane sent it.
    pub raw: Any,
    pub version: String,
    pub updated: SystemTime,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub listeners: BTreeMap<String, Entry<Listener>>,
    pub routes: BTreeMap<String, Entry<RouteConfig>>,
    pub clusters: BTreeMap<String, Entry<Cluster>>,
    /// By cluster (EDS service) name.
    pub endpoints: BTreeMap<String, Entry<ClusterLoadAssignment>>,
    pub static_listeners: Vec<Arc<Listener>>,
    pub static_clusters: Vec<Arc<Cluster>>,
    /// Last accepted version per type URL.
    pub versions: BTreeMap<String, String>,
}

impl Snapshot {
    /// Static and dynamic listeners, as the listener manager should run them.
    pub fn all_listeners(&self) -> Vec<Arc<Listener>> {
        self.static_listeners
            .iter()
            .cloned()
            .chain(self.listeners.values().map(|e| e.config.clone()))
            .collect()
    }

    pub fn all_clusters(&self) -> Vec<Arc<Cluster>> {
        self.static_clusters
            .iter()
            .cloned()
            .chain(self.clusters.values().map(|e| e.config.clone()))
            .collect()
    }

    /// EDS service names the clusters need.
    pub fn wanted_endpoints(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .all_clusters()
            .iter()
            .filter_map(|c| match &c.discovery {
                Discovery::Eds { service_name } if service_name.is_empty() => Some(c.name.clone()),
                Discovery::Eds { service_name } => Some(service_name.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// RDS route configuration names the listeners need.
    pub fn wanted_routes(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .all_listeners()
            .iter()
            .flat_map(|l| l.filter_chains.iter().chain(l.default_filter_chain.iter()))
            .filter_map(|chain| match &chain.filter {
                NetworkFilter::HttpConnectionManager(hcm) => match &hcm.route_source {
                    RouteSource::Rds(name) => Some(name.clone()),
                    RouteSource::Inline(_) => None,
                },
                NetworkFilter::TcpProxy(_) => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// RDS route configurations by name, for the HTTP connection managers.
    pub fn route_table(&self) -> HashMap<String, Arc<RouteConfig>> {
        self.routes
            .iter()
            .map(|(name, e)| (name.clone(), e.config.clone()))
            .collect()
    }
}
