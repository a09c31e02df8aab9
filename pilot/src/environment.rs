//! The environment: registries, config store and endpoint index behind one lock-free
//! read path. Sources hand it changes; it answers with the pushes they imply and builds
//! PushContexts on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use strait_proto::istio;

use crate::config::file::{ScanResult, SourceError};
use crate::config::object::Object;
use crate::model::{
    ConfigError, ConfigKey, ConfigKind, ConfigSnapshot, EndpointIndex, IstioConfig, PushContext,
    PushContextInput, ShardKey, Visibility,
};
use crate::push::request::{PushRequest, TriggerReason};
use crate::registry::kube::KubeRegistry;
use crate::registry::serviceentry::{self, ExternalServices};
use crate::registry::{Aggregate, RegistryEvent, ServiceDiscovery};

pub struct Environment {
    pub mesh: Arc<istio::MeshConfig>,
    pub domain_suffix: String,
    pub endpoints: Arc<EndpointIndex>,
    /// Kubernetes objects from the config directory.
    kube: Arc<RwLock<KubeRegistry>>,
    /// Services declared by ServiceEntries, recomputed on config changes.
    external: Arc<RwLock<ExternalServices>>,
    /// Every registry above, as one.
    registry: Aggregate,
    state: Mutex<State>,
    push_counter: AtomicU64,
}

struct State {
    configs: BTreeMap<ConfigKey, IstioConfig>,
    errors: Vec<SourceError>,
    /// (namespace, host) pairs that currently hold ServiceEntry endpoints.
    external_hosts: BTreeSet<(String, String)>,
}

impl Environment {
    pub fn new(mesh: Arc<istio::MeshConfig>, domain_suffix: &str) -> Environment {
        let default_visibility =
            Visibility::from_export_to(&mesh.default_service_export_to, Visibility::Public);
        let kube = Arc::new(RwLock::new(KubeRegistry::new(
            domain_suffix,
            default_visibility,
        )));
        let external = Arc::new(RwLock::new(ExternalServices::default()));
        let registry = Aggregate::new(vec![kube.clone(), external.clone()]);
        Environment {
            mesh,
            domain_suffix: domain_suffix.to_string(),
            endpoints: Arc::new(EndpointIndex::new()),
            kube,
            external,
            registry,
            state: Mutex::new(State {
                configs: BTreeMap::new(),
                errors: Vec::new(),
                external_hosts: BTreeSet::new(),
            }),
            push_counter: AtomicU64::new(0),
        }
    }

    /// Applies what a source scan found, returning the pushes it implies (none when
    /// nothing changed). Endpoint-only changes become EDS-only pushes.
    pub fn apply_scan(&self, scan: ScanResult) -> Vec<PushRequest> {
        let mut state = self.state.lock();
        let mut full: Option<PushRequest> = None;
        let mut add_full = |reason: TriggerReason, key: ConfigKey| {
            let req = PushRequest::full(reason, [key]);
            full = Some(match full.take() {
                Some(f) => f.merge(req),
                None => req,
            });
        };
        let mut registry_changes = Vec::new();
        let mut external_changed = false;

        for (_, object) in scan.applied {
            match object {
                Object::Istio(cfg) => {
                    let config_key = cfg.key();
                    external_changed |= matches!(
                        config_key.kind,
                        ConfigKind::ServiceEntry | ConfigKind::WorkloadEntry
                    );
                    state.configs.insert(config_key.clone(), cfg);
                    add_full(TriggerReason::Config, config_key);
                }
                Object::Kube(obj) => registry_changes.extend(self.kube.write().apply(obj)),
            }
        }
        for key in scan.deleted {
            match config_kind(&key.kind) {
                Some(kind) => {
                    let config_key = ConfigKey::new(kind, &key.namespace, &key.name);
                    external_changed |=
                        matches!(kind, ConfigKind::ServiceEntry | ConfigKind::WorkloadEntry);
                    if state.configs.remove(&config_key).is_some() {
                        add_full(TriggerReason::Config, config_key);
                    }
                }
                None => registry_changes.extend(self.kube.write().delete(
                    &key.kind,
                    &key.namespace,
                    &key.name,
                )),
            }
        }
        if scan.errors != state.errors {
            state.errors = scan.errors;
            // Errors show in push status, which lives in the PushContext.
            add_full(
                TriggerReason::Config,
                ConfigKey::new(ConfigKind::MeshConfig, "", "errors"),
            );
        }

        let mut eds_hosts = Vec::new();
        for change in dedup(registry_changes) {
            match change {
                RegistryEvent::Service { namespace, name } => {
                    let host = self.refresh_kube_endpoints(&namespace, &name).0;
                    add_full(
                        TriggerReason::Service,
                        ConfigKey::new(ConfigKind::Service, &namespace, &host),
                    );
                }
                RegistryEvent::Endpoints { namespace, name } => {
                    let (host, changed) = self.refresh_kube_endpoints(&namespace, &name);
                    if changed {
                        eds_hosts.push((namespace.clone(), host));
                    }
                }
            }
        }
        if external_changed {
            self.refresh_external(&mut state);
        }

        let mut out = Vec::new();
        if !eds_hosts.is_empty() {
            out.push(PushRequest::endpoints(eds_hosts));
        }
        out.extend(full);
        out
    }

    /// Recomputes a Kubernetes service's endpoints into the index: its hostname, and
    /// whether they changed.
    fn refresh_kube_endpoints(&self, namespace: &str, name: &str) -> (String, bool) {
        let host = self.kube.read().hostname(namespace, name);
        let endpoints = self.kube.endpoints(namespace, &host);
        let changed = self.endpoints.update(
            &Arc::from(host.as_str()),
            namespace,
            ShardKey::kubernetes(),
            endpoints,
        );
        (host, changed)
    }

    /// ServiceEntry endpoints are recomputed whole: they change with config, which is a
    /// full push anyway.
    fn refresh_external(&self, state: &mut State) {
        let snapshot = snapshot_of(&state.configs);
        let external = serviceentry::convert(
            &snapshot.service_entries,
            &snapshot.workload_entries,
            &self.default_service_visibility(),
        );
        let mut now_present = BTreeSet::new();
        for ((namespace, host), endpoints) in &external.endpoints {
            self.endpoints.update(
                &Arc::from(host.as_str()),
                namespace,
                ShardKey::external(),
                endpoints.clone(),
            );
            now_present.insert((namespace.clone(), host.clone()));
        }
        for (namespace, host) in state.external_hosts.difference(&now_present) {
            self.endpoints.update(
                &Arc::from(host.as_str()),
                namespace,
                ShardKey::external(),
                Vec::new(),
            );
        }
        state.external_hosts = now_present;
        *self.external.write() = external;
    }

    fn default_service_visibility(&self) -> Visibility {
        Visibility::from_export_to(&self.mesh.default_service_export_to, Visibility::Public)
    }

    /// Builds a new PushContext from the current state, with a fresh version.
    pub fn build_push_context(&self) -> PushContext {
        let (services, configs, config_errors) = {
            let state = self.state.lock();
            let configs = snapshot_of(&state.configs);
            let services: Vec<_> = self.registry.services().into_iter().map(Arc::new).collect();
            let errors = state
                .errors
                .iter()
                .map(|e| ConfigError {
                    key: e.key.clone(),
                    source: e.file.clone(),
                    message: e.message.clone(),
                })
                .collect();
            (services, configs, errors)
        };
        PushContext::build(PushContextInput {
            version: self.next_version(),
            services,
            configs,
            config_errors,
            mesh: self.mesh.clone(),
            endpoints: self.endpoints.clone(),
            domain_suffix: self.domain_suffix.clone(),
        })
    }

    /// Istio's push version: `<RFC3339 time>/<counter>`.
    fn next_version(&self) -> String {
        let n = self.push_counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!(
            "{}/{n}",
            humantime::format_rfc3339_seconds(SystemTime::now())
        )
    }

    pub fn configs(&self) -> Vec<IstioConfig> {
        self.state.lock().configs.values().cloned().collect()
    }

    pub fn errors(&self) -> Vec<SourceError> {
        self.state.lock().errors.clone()
    }
}

fn config_kind(kind: &str) -> Option<ConfigKind> {
    Some(match kind {
        "VirtualService" => ConfigKind::VirtualService,
        "DestinationRule" => ConfigKind::DestinationRule,
        "ServiceEntry" => ConfigKind::ServiceEntry,
        "WorkloadEntry" => ConfigKind::WorkloadEntry,
        "Sidecar" => ConfigKind::Sidecar,
        _ => return None,
    })
}

fn snapshot_of(configs: &BTreeMap<ConfigKey, IstioConfig>) -> ConfigSnapshot {
    let mut snap = ConfigSnapshot::default();
    for cfg in configs.values() {
        match cfg {
            IstioConfig::VirtualService(c) => snap.virtual_services.push(c.clone()),
            IstioConfig::DestinationRule(c) => snap.destination_rules.push(c.clone()),
            IstioConfig::ServiceEntry(c) => snap.service_entries.push(c.clone()),
            IstioConfig::WorkloadEntry(c) => snap.workload_entries.push(c.clone()),
            IstioConfig::Sidecar(c) => snap.sidecars.push(c.clone()),
        }
    }
    snap
}

fn dedup(changes: Vec<RegistryEvent>) -> Vec<RegistryEvent> {
    changes
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}
