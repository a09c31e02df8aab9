//! The admin server's view of the running proxy: the accepted snapshot, the cluster and
//! listener managers, readiness, and the quit and drain controls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use strait_proto::envoy::config::bootstrap::v3::Bootstrap;
use strait_proto::xds::{any, type_url};
use tokio::sync::Notify;

use crate::admin::{
    AdminSource, ClusterEntry, DrainOptions, DumpedResource, ListenerEntry, ResourceDump,
    ServerDetails,
};
use crate::listener::manager::ListenerManager;
use crate::snapshot::{Entry, Snapshot};
use crate::stats::{ServerState, ServerStats};
use crate::upstream::manager::ClusterManager;

pub struct ProxyAdmin {
    pub bootstrap: Bootstrap,
    pub started: SystemTime,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub clusters: Arc<ClusterManager>,
    pub listeners: Arc<ListenerManager>,
    pub server: Arc<ServerStats>,
    /// Set once the initial configuration is in place.
    pub ready: Arc<AtomicBool>,
    pub draining: AtomicBool,
    /// Woken by `/quitquitquit`.
    pub quit: Arc<Notify>,
}

fn dynamic<T>(entries: &std::collections::BTreeMap<String, Entry<T>>) -> Vec<DumpedResource> {
    entries
        .iter()
        .map(|(name, e)| DumpedResource {
            name: name.clone(),
            version: e.version.clone(),
            resource: e.raw.clone(),
            last_updated: Some(e.updated),
        })
        .collect()
}

impl ProxyAdmin {
    fn statics<M: prost::Message + prost::Name>(
        &self,
        items: &[M],
        name: impl Fn(&M) -> String,
    ) -> Vec<DumpedResource> {
        items
            .iter()
            .map(|m| DumpedResource {
                name: name(m),
                version: String::new(),
                resource: any::pack(m),
                last_updated: Some(self.started),
            })
            .collect()
    }

    fn version(&self, snapshot: &Snapshot, url: &str) -> String {
        snapshot.versions.get(url).cloned().unwrap_or_default()
    }
}

impl AdminSource for ProxyAdmin {
    fn server_state(&self) -> ServerState {
        let state = if self.draining.load(Ordering::Relaxed) {
            ServerState::Draining
        } else if self.ready.load(Ordering::Relaxed) {
            ServerState::Live
        } else {
            ServerState::Initializing
        };
        self.server.set_state(state);
        state
    }

    fn server_details(&self) -> ServerDetails {
        ServerDetails {
            version: format!("strait-proxy/{}", env!("CARGO_PKG_VERSION")),
            node: self.bootstrap.node.clone().unwrap_or_default(),
            command_line_options: Default::default(),
            start_time: Some(self.started),
        }
    }

    fn bootstrap(&self) -> Option<(Bootstrap, SystemTime)> {
        Some((self.bootstrap.clone(), self.started))
    }

    fn clusters_dump(&self) -> ResourceDump {
        let snapshot = self.snapshot.load();
        let statics = self
            .bootstrap
            .static_resources
            .as_ref()
            .map(|s| self.statics(&s.clusters, |c| c.name.clone()))
            .unwrap_or_default();
        ResourceDump {
            version_info: self.version(&snapshot, type_url::CLUSTER),
            static_resources: statics,
            dynamic_resources: dynamic(&snapshot.clusters),
        }
    }

    fn listeners_dump(&self) -> ResourceDump {
        let snapshot = self.snapshot.load();
        let statics = self
            .bootstrap
            .static_resources
            .as_ref()
            .map(|s| self.statics(&s.listeners, |l| l.name.clone()))
            .unwrap_or_default();
        ResourceDump {
            version_info: self.version(&snapshot, type_url::LISTENER),
            static_resources: statics,
            dynamic_resources: dynamic(&snapshot.listeners),
        }
    }

    fn routes_dump(&self) -> ResourceDump {
        let snapshot = self.snapshot.load();
        ResourceDump {
            version_info: self.version(&snapshot, type_url::ROUTE),
            static_resources: Vec::new(),
            dynamic_resources: dynamic(&snapshot.routes),
        }
    }

    fn endpoints_dump(&self) -> ResourceDump {
        let snapshot = self.snapshot.load();
        ResourceDump {
            version_info: self.version(&snapshot, type_url::ENDPOINT),
            static_resources: Vec::new(),
            dynamic_resources: dynamic(&snapshot.endpoints),
        }
    }

    fn clusters(&self) -> Vec<ClusterEntry> {
        let snapshot = self.snapshot.load();
        let mut out: Vec<ClusterEntry> = self
            .clusters
            .snapshot()
            .values()
            .map(|state| ClusterEntry {
                added_via_api: snapshot.clusters.contains_key(state.name()),
                state: state.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.state.name().cmp(b.state.name()));
        out
    }

    fn listeners(&self) -> Vec<ListenerEntry> {
        self.listeners
            .listeners()
            .iter()
            .map(|l| ListenerEntry {
                name: l.name.clone(),
                address: l.address,
            })
            .collect()
    }

    fn quit(&self) {
        self.quit.notify_one();
    }

    fn drain_listeners(&self, options: DrainOptions) {
        self.draining.store(!options.skip_exit, Ordering::Relaxed);
        // Readiness probes read the `server.state` stat, not `/ready`: publish it now.
        self.server_state();
        self.listeners
            .drain_listeners(options.inbound_only, options.graceful, options.skip_exit);
    }
}
