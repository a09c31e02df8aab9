//! Watch updates turned into one change set for the environment, and the bookkeeping
//! of which watches have completed their first list.
//!
//! Updates of one batch are coalesced per object (the last one wins), so a delete and
//! a re-create seen together end as the re-created object.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::augment::Augmenter;
use super::relist::{Delta, ObjKey};
use crate::config::crd::{CrdStore, object_key};
use crate::config::file::ScanResult;
use crate::config::object::{Object, ObjectKey};
use crate::registry::kube::KubeObject;

/// Names of the watch streams, as initial sync counts them.
pub const SERVICES: &str = "Service";
pub const ENDPOINT_SLICES: &str = "EndpointSlice";
pub const PODS: &str = "Pod";
pub const NODES: &str = "Node";
pub const NAMESPACES: &str = "Namespace";
pub const CRDS: &str = "CustomResourceDefinition";

/// The registry's streams.
pub const REGISTRY_STREAMS: [&str; 5] = [SERVICES, ENDPOINT_SLICES, PODS, NODES, NAMESPACES];

/// What a watch saw.
#[derive(Debug)]
pub enum Update {
    Service(Delta<Box<KubeService>>),
    EndpointSlice(Delta<Box<EndpointSlice>>),
    Pod(Delta<Box<Pod>>),
    /// Only metadata: labels are all that is read.
    Node(Delta<Box<ObjectMeta>>),
    Namespace(Delta<Box<ObjectMeta>>),
    /// An Istio object, whole, as JSON.
    Config {
        kind: &'static str,
        delta: Delta<serde_json::Value>,
    },
    /// A kind's CRD is gone, and its objects with it.
    ConfigKindGone(&'static str),
    /// Initial sync also waits for this stream (a CRD present at start).
    Expect(&'static str),
    /// A stream without objects of its own completed its first list.
    Synced(&'static str),
}

/// Applies updates to what the API server holds and says what changed.
#[derive(Debug)]
pub struct Applier {
    augmenter: Augmenter,
    configs: CrdStore,
    expected: BTreeSet<&'static str>,
    synced: BTreeSet<&'static str>,
    complete: bool,
}

impl Applier {
    pub fn new(cluster_id: &str, expected: impl IntoIterator<Item = &'static str>) -> Applier {
        let expected: BTreeSet<_> = expected.into_iter().collect();
        Applier {
            augmenter: Augmenter::new(cluster_id),
            configs: CrdStore::default(),
            complete: expected.is_empty(),
            expected,
            synced: BTreeSet::new(),
        }
    }

    /// Whether every expected stream has listed everything once (it stays so).
    pub fn is_synced(&self) -> bool {
        self.complete
    }

    /// The streams still listing.
    pub fn pending(&self) -> Vec<&'static str> {
        self.expected.difference(&self.synced).copied().collect()
    }

    pub fn apply(&mut self, updates: Vec<Update>) -> ScanResult {
        let mut pending: BTreeMap<ObjectKey, Option<Object>> = BTreeMap::new();
        for update in updates {
            self.one(update, &mut pending);
        }
        if !self.complete && self.expected.is_subset(&self.synced) {
            self.complete = true;
        }
        let mut scan = ScanResult {
            errors: self.configs.errors(),
            changed: !pending.is_empty(),
            ..Default::default()
        };
        for (key, object) in pending {
            match object {
                Some(object) => scan.applied.push((key, object)),
                None => scan.deleted.push(key),
            }
        }
        scan
    }

    fn one(&mut self, update: Update, pending: &mut BTreeMap<ObjectKey, Option<Object>>) {
        let kube = |kind: &str, key: &ObjKey| object_key(kind, &key.0, &key.1);
        match update {
            Update::Service(delta) => match delta {
                Delta::Apply(svc) => {
                    let key = kube(SERVICES, &meta_key(&svc.metadata));
                    pending.insert(key, Some(Object::Kube(KubeObject::Service(svc))));
                }
                Delta::Delete(key) => {
                    pending.insert(kube(SERVICES, &key), None);
                }
                Delta::Synced => self.mark(SERVICES),
            },
            Update::EndpointSlice(delta) => match delta {
                Delta::Apply(slice) => {
                    let key = kube(ENDPOINT_SLICES, &meta_key(&slice.metadata));
                    pending.insert(key, Some(Object::Kube(KubeObject::EndpointSlice(slice))));
                }
                Delta::Delete(key) => {
                    pending.insert(kube(ENDPOINT_SLICES, &key), None);
                }
                Delta::Synced => self.mark(ENDPOINT_SLICES),
            },
            Update::Pod(delta) => match delta {
                Delta::Apply(pod) => {
                    let key = meta_key(&pod.metadata);
                    let pod = self.augmenter.pod(key.clone(), *pod);
                    pending.insert(kube(PODS, &key), Some(pod_object(pod)));
                }
                Delta::Delete(key) => {
                    self.augmenter.pod_deleted(&key);
                    pending.insert(kube(PODS, &key), None);
                }
                Delta::Synced => self.mark(PODS),
            },
            Update::Node(delta) => {
                let pods = match delta {
                    Delta::Apply(meta) => self.augmenter.node(
                        meta.name.as_deref().unwrap_or_default(),
                        &meta.labels.clone().unwrap_or_default(),
                    ),
                    Delta::Delete((_, name)) => self.augmenter.node_deleted(&name),
                    Delta::Synced => {
                        self.mark(NODES);
                        Vec::new()
                    }
                };
                for (key, pod) in pods {
                    pending.insert(kube(PODS, &key), Some(pod_object(pod)));
                }
            }
            Update::Namespace(delta) => {
                let pods = match delta {
                    Delta::Apply(meta) => self.augmenter.namespace(
                        meta.name.as_deref().unwrap_or_default(),
                        &meta.labels.clone().unwrap_or_default(),
                    ),
                    Delta::Delete((_, name)) => self.augmenter.namespace_deleted(&name),
                    Delta::Synced => {
                        self.mark(NAMESPACES);
                        Vec::new()
                    }
                };
                for (key, pod) in pods {
                    pending.insert(kube(PODS, &key), Some(pod_object(pod)));
                }
            }
            Update::Config { kind, delta } => match delta {
                Delta::Apply(object) => {
                    if let Some((key, object)) = self.configs.apply(object) {
                        pending.insert(key, Some(object));
                    }
                }
                Delta::Delete((namespace, name)) => {
                    let key = object_key(kind, &namespace, &name);
                    if self.configs.delete(&key) {
                        pending.insert(key, None);
                    }
                }
                Delta::Synced => self.mark(kind),
            },
            Update::ConfigKindGone(kind) => {
                for key in self.configs.keys_of(kind) {
                    if self.configs.delete(&key) {
                        pending.insert(key, None);
                    }
                }
            }
            Update::Expect(stream) => {
                if !self.complete {
                    self.expected.insert(stream);
                }
            }
            Update::Synced(stream) => self.mark(stream),
        }
    }

    fn mark(&mut self, stream: &'static str) {
        self.synced.insert(stream);
    }
}

fn meta_key(meta: &ObjectMeta) -> ObjKey {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn pod_object(pod: Pod) -> Object {
    Object::Kube(KubeObject::Pod(Box::new(pod)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str) -> KubeService {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap()
    }

    fn vs(name: &str) -> serde_json::Value {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "5"},
            "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}}]}]}
        })
    }

    fn keys(scan: &ScanResult) -> (Vec<String>, Vec<String>) {
        (
            scan.applied.iter().map(|(k, _)| k.to_string()).collect(),
            scan.deleted.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn coalesces_per_object() {
        let mut a = Applier::new("Kubernetes", []);
        let key: ObjKey = ("default".into(), "r".into());
        let scan = a.apply(vec![
            Update::Service(Delta::Delete(key.clone())),
            Update::Service(Delta::Apply(Box::new(service("r")))),
            Update::Service(Delta::Apply(Box::new(service("gone")))),
            Update::Service(Delta::Delete(("default".into(), "gone".into()))),
        ]);
        assert_eq!(
            keys(&scan),
            (
                vec!["Service/default/r".to_string()],
                vec!["Service/default/gone".to_string()]
            )
        );
    }

    #[test]
    fn sync_waits_for_every_stream_and_expected_crd() {
        let mut a = Applier::new("Kubernetes", [SERVICES, CRDS]);
        assert!(!a.is_synced());
        a.apply(vec![
            Update::Service(Delta::Synced),
            Update::Expect("VirtualService"),
            Update::Synced(CRDS),
        ]);
        assert!(!a.is_synced());
        assert_eq!(a.pending(), ["VirtualService"]);
        let scan = a.apply(vec![
            Update::Config {
                kind: "VirtualService",
                delta: Delta::Apply(vs("r")),
            },
            Update::Config {
                kind: "VirtualService",
                delta: Delta::Synced,
            },
        ]);
        assert!(a.is_synced());
        assert_eq!(keys(&scan).0, ["VirtualService/default/r"]);
        // Expect after sync changes nothing.
        a.apply(vec![Update::Expect("Sidecar")]);
        assert!(a.is_synced());
    }

    #[test]
    fn relisted_unchanged_config_is_not_reapplied_and_kind_removal_deletes() {
        let mut a = Applier::new("Kubernetes", []);
        let apply = |name: &str| Update::Config {
            kind: "VirtualService",
            delta: Delta::Apply(vs(name)),
        };
        assert_eq!(a.apply(vec![apply("a"), apply("b")]).applied.len(), 2);
        let again = a.apply(vec![apply("a"), apply("b")]);
        assert!(again.applied.is_empty() && again.deleted.is_empty());
        let gone = a.apply(vec![Update::ConfigKindGone("VirtualService")]);
        assert_eq!(
            keys(&gone).1,
            ["VirtualService/default/a", "VirtualService/default/b"]
        );
    }

    #[test]
    fn node_labels_reach_pods_already_stored() {
        let mut a = Applier::new("Kubernetes", []);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "r"}},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"podIP": "10.1.0.5"}
        }))
        .unwrap();
        a.apply(vec![Update::Pod(Delta::Apply(Box::new(pod)))]);
        let node = ObjectMeta {
            name: Some("n1".into()),
            labels: Some([("topology.kubernetes.io/zone".to_string(), "z1".to_string())].into()),
            ..Default::default()
        };
        let scan = a.apply(vec![Update::Node(Delta::Apply(Box::new(node)))]);
        let [(key, Object::Kube(KubeObject::Pod(pod)))] = &scan.applied[..] else {
            panic!("{:?}", scan.applied)
        };
        assert_eq!(key.to_string(), "Pod/default/p");
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["topology.kubernetes.io/zone"], "z1");
        assert_eq!(labels["app"], "r");
    }
}
