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

/// Where a change comes from. Each source keeps its own Kubernetes objects, Istio
/// config and errors, so the config directory and the API server can feed one
/// environment side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// `--configDir`.
    Files,
    /// The Kubernetes API server.
    Kubernetes,
}

pub struct Environment {
    pub mesh: Arc<istio::MeshConfig>,
    pub domain_suffix: String,
    pub endpoints: Arc<EndpointIndex>,
    /// Kubernetes objects from the config directory.
    kube: Arc<RwLock<KubeRegistry>>,
    /// Kubernetes objects from the API server.
    cluster: Arc<RwLock<KubeRegistry>>,
    /// Services declared by ServiceEntries, recomputed on config changes.
    external: Arc<RwLock<ExternalServices>>,
    /// Every registry above, as one.
    registry: Aggregate,
    state: Mutex<State>,
    push_counter: AtomicU64,
}

struct State {
    configs: BTreeMap<(Source, ConfigKey), IstioConfig>,
    errors: BTreeMap<Source, Vec<SourceError>>,
    /// (namespace, host) pairs that currently hold ServiceEntry endpoints.
    external_hosts: BTreeSet<(String, String)>,
}

impl Environment {
    pub fn new(mesh: Arc<istio::MeshConfig>, domain_suffix: &str) -> Environment {
        let default_visibility =
            Visibility::from_export_to(&mesh.default_service_export_to, Visibility::Public);
        let kube = Arc::new(RwLock::new(KubeRegistry::new(
            domain_suffix,
            default_visibility.clone(),
        )));
        let cluster = Arc::new(RwLock::new(
            KubeRegistry::new(domain_suffix, default_visibility).slices_only(),
        ));
        let external = Arc::new(RwLock::new(ExternalServices::default()));
        let registry = Aggregate::new(vec![kube.clone(), cluster.clone(), external.clone()]);
        Environment {
            mesh,
            domain_suffix: domain_suffix.to_string(),
            endpoints: Arc::new(EndpointIndex::new()),
            kube,
            cluster,
            external,
            registry,
            state: Mutex::new(State {
                configs: BTreeMap::new(),
                errors: BTreeMap::new(),
                external_hosts: BTreeSet::new(),
            }),
            push_counter: AtomicU64::new(0),
        }
    }

    /// Applies what a config directory scan found, returning the pushes it implies
    /// (none when nothing changed). Endpoint-only changes become EDS-only pushes.
    pub fn apply_scan(&self, scan: ScanResult) -> Vec<PushRequest> {
        self.apply_from(Source::Files, scan)
    }

    /// Applies changes from `source`: its objects are added, replaced or deleted, and
    /// `scan.errors` replaces the problems it reported before.
    pub fn apply_from(&self, source: Source, scan: ScanResult) -> Vec<PushRequest> {
        let registry = match source {
            Source::Files => &self.kube,
            Source::Kubernetes => &self.cluster,
        };
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
                    state.configs.insert((source, config_key.clone()), cfg);
                    add_full(TriggerReason::Config, config_key);
                }
                Object::Kube(obj) => registry_changes.extend(registry.write().apply(obj)),
            }
        }
        for key in scan.deleted {
            match config_kind(&key.kind) {
                Some(kind) => {
                    let config_key = ConfigKey::new(kind, &key.namespace, &key.name);
                    external_changed |=
                        matches!(kind, ConfigKind::ServiceEntry | ConfigKind::WorkloadEntry);
                    if state
                        .configs
                        .remove(&(source, config_key.clone()))
                        .is_some()
                    {
                        add_full(TriggerReason::Config, config_key);
                    }
                }
                None => registry_changes.extend(registry.write().delete(
                    &key.kind,
                    &key.namespace,
                    &key.name,
                )),
            }
        }
        if state.errors.get(&source).map_or(&[][..], Vec::as_slice) != scan.errors.as_slice() {
            state.errors.insert(source, scan.errors);
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
    /// whether they changed. The config directory and the API server may both know
    /// the service; its endpoints are those of both.
    fn refresh_kube_endpoints(&self, namespace: &str, name: &str) -> (String, bool) {
        let host = self.kube.read().hostname(namespace, name);
        let mut endpoints = self.kube.endpoints(namespace, &host);
        endpoints.extend(self.cluster.endpoints(namespace, &host));
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
        let snapshot = snapshot_of(state.configs.values());
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
            let configs = snapshot_of(state.configs.values());
            let services: Vec<_> = self.registry.services().into_iter().map(Arc::new).collect();
            let errors = state
                .errors
                .values()
                .flatten()
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
        self.state
            .lock()
            .errors
            .values()
            .flatten()
            .cloned()
            .collect()
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

fn snapshot_of<'a>(configs: impl Iterator<Item = &'a IstioConfig>) -> ConfigSnapshot {
    let mut snap = ConfigSnapshot::default();
    for cfg in configs {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::object::{ObjectKey, Parsed, parse_document};

    fn object(yaml: &str) -> (ObjectKey, Object) {
        match parse_document(serde_yaml::from_str(yaml).unwrap(), "test").unwrap() {
            Parsed::Object(key, object) => (key, *object),
            Parsed::Ignored => panic!("ignored: {yaml}"),
        }
    }

    fn scan(objects: &[&str]) -> ScanResult {
        ScanResult {
            applied: objects.iter().map(|y| object(y)).collect(),
            ..Default::default()
        }
    }

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: r, namespace: default}\nspec: {clusterIP: 10.96.0.9, selector: {app: r}, ports: [{name: http, port: 80}]}";
    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: default}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}]}]}";

    const SLICE: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: r-1, namespace: default, labels: {kubernetes.io/service-name: r}}\naddressType: IPv4\nports: [{name: http, port: 80}]\nendpoints: [{addresses: [10.1.0.2], targetRef: {kind: Pod, name: b, namespace: default}}]";

    fn pod(name: &str, ip: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: r}}}}\nstatus: {{podIP: {ip}}}"
        )
    }

    fn addresses(env: &Environment) -> Vec<String> {
        let mut out: Vec<String> = env
            .endpoints
            .endpoints("r.default.svc.cluster.local", "default")
            .iter()
            .flat_map(|shard| shard.iter().map(|e| e.address.to_string()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn files_and_api_server_aggregate() {
        let env = Environment::new(Arc::new(istio::MeshConfig::default()), "cluster.local");
        env.apply_scan(scan(&[SERVICE, &pod("a", "10.1.0.1"), VS]));
        env.apply_from(
            Source::Kubernetes,
            scan(&[SERVICE, VS, &pod("b", "10.1.0.2")]),
        );
        assert_eq!(
            addresses(&env),
            ["10.1.0.1"],
            "from the API server, endpoints come from EndpointSlices only"
        );
        let pushes = env.apply_from(Source::Kubernetes, scan(&[SLICE]));
        assert!(
            pushes.len() == 1 && !pushes[0].full,
            "an EDS push: {pushes:?}"
        );
        assert_eq!(addresses(&env), ["10.1.0.1", "10.1.0.2"]);
        assert_eq!(env.configs().len(), 2, "each source keeps its own copy");

        // Errors of one source do not clear the other's.
        let error = |key: &str| SourceError {
            key: key.into(),
            file: "f".into(),
            message: "bad".into(),
        };
        env.apply_scan(ScanResult {
            errors: vec![error("VirtualService/default/x")],
            ..Default::default()
        });
        let pushes = env.apply_from(
            Source::Kubernetes,
            ScanResult {
                errors: vec![error("VirtualService/default/y")],
                ..Default::default()
            },
        );
        assert_eq!(pushes.len(), 1, "new errors show in push status");
        assert_eq!(env.errors().len(), 2);
        assert!(
            env.apply_from(
                Source::Kubernetes,
                ScanResult {
                    errors: vec![error("VirtualService/default/y")],
                    ..Default::default()
                },
            )
            .is_empty(),
            "the same errors again: nothing to push"
        );

        // The API server deletes its objects; the directory's stay.
        let key = |kind: &str, name: &str| ObjectKey {
            kind: kind.into(),
            namespace: "default".into(),
            name: name.into(),
        };
        env.apply_from(
            Source::Kubernetes,
            ScanResult {
                deleted: vec![key("EndpointSlice", "r-1"), key("VirtualService", "r")],
                errors: vec![error("VirtualService/default/y")],
                ..Default::default()
            },
        );
        assert_eq!(addresses(&env), ["10.1.0.1"]);
        assert_eq!(env.configs().len(), 1);
        assert_eq!(env.build_push_context().all_services().len(), 2);
    }
}
