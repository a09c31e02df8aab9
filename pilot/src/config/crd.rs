//! Istio config from the API server's CRDs: each object goes through the same parse
//! and validation as a file's document ([`parse_document`]), with the same last-good
//! rule. An object the API server accepted but Istio's rules refuse is reported (a
//! warning naming it, and `pilot_invalid_config` in push status) and its last good
//! version keeps serving.

use std::collections::BTreeMap;

use tracing::warn;

use super::file::SourceError;
use super::object::{Object, ObjectKey, Parsed, parse_document};
use crate::model::IstioConfig;

pub const GROUP: &str = "networking.istio.io";
/// The version watched. The API server serves every stored object in every served
/// version, so objects written as v1beta1 or v1alpha3 arrive too.
pub const VERSION: &str = "v1";

/// An Istio kind read from the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrdKind {
    pub kind: &'static str,
    pub plural: &'static str,
}

impl CrdKind {
    /// The CRD's name, `<plural>.<group>`.
    pub fn crd_name(&self) -> String {
        format!("{}.{GROUP}", self.plural)
    }
}

pub const KINDS: [CrdKind; 5] = [
    CrdKind {
        kind: "VirtualService",
        plural: "virtualservices",
    },
    CrdKind {
        kind: "DestinationRule",
        plural: "destinationrules",
    },
    CrdKind {
        kind: "ServiceEntry",
        plural: "serviceentries",
    },
    CrdKind {
        kind: "WorkloadEntry",
        plural: "workloadentries",
    },
    CrdKind {
        kind: "Sidecar",
        plural: "sidecars",
    },
];

pub fn kind_by_crd_name(name: &str) -> Option<CrdKind> {
    KINDS.into_iter().find(|k| k.crd_name() == name)
}

fn plural_of(kind: &str) -> &str {
    KINDS
        .iter()
        .find(|k| k.kind == kind)
        .map_or(kind, |k| k.plural)
}

/// Where an object lives in the API, shown as its source in errors and debug output.
pub fn api_path(kind: &str, namespace: &str, name: &str) -> String {
    format!(
        "/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{}/{name}",
        plural_of(kind)
    )
}

/// The Istio objects the API server holds, as last accepted.
#[derive(Debug, Default)]
pub struct CrdStore {
    applied: BTreeMap<ObjectKey, IstioConfig>,
    errors: BTreeMap<ObjectKey, SourceError>,
}

impl CrdStore {
    /// An object as the API server sent it (whole, as JSON). Returns the config to
    /// apply when it is valid and differs from what was applied before.
    pub fn apply(&mut self, object: serde_json::Value) -> Option<(ObjectKey, Object)> {
        let key = key_of(&object)?;
        let source = api_path(&key.kind, &key.namespace, &key.name);
        match parse_document(object, &source) {
            Ok(Parsed::Object(key, object)) => {
                self.errors.remove(&key);
                let Object::Istio(config) = *object else {
                    return None;
                };
                if self.applied.get(&key) == Some(&config) {
                    return None;
                }
                self.applied.insert(key.clone(), config.clone());
                Some((key, Object::Istio(config)))
            }
            Ok(Parsed::Ignored) => None,
            Err(err) => {
                let key = err.key.unwrap_or(key);
                let suffix = if self.applied.contains_key(&key) {
                    " (the last good version keeps serving)"
                } else {
                    ""
                };
                let error = SourceError {
                    key: key.to_string(),
                    file: source,
                    message: format!("{}{suffix}", err.message),
                };
                if self.errors.get(&key) != Some(&error) {
                    warn!(object = %key, source = %error.file, "invalid config: {}", error.message);
                }
                self.errors.insert(key, error);
                None
            }
        }
    }

    /// Forgets an object; whether it had been applied.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        self.errors.remove(key);
        self.applied.remove(key).is_some()
    }

    /// Every object of a kind, valid or not (its CRD went away).
    pub fn keys_of(&self, kind: &str) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = self
            .applied
            .keys()
            .chain(self.errors.keys())
            .filter(|k| k.kind == kind)
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Every problem present now.
    pub fn errors(&self) -> Vec<SourceError> {
        self.errors.values().cloned().collect()
    }
}

fn key_of(object: &serde_json::Value) -> Option<ObjectKey> {
    let meta = object.get("metadata")?;
    Some(ObjectKey {
        kind: object.get("kind")?.as_str()?.to_string(),
        namespace: meta
            .get("namespace")
            .and_then(|n| n.as_str())
            .unwrap_or("default")
            .to_string(),
        name: meta.get("name")?.as_str()?.to_string(),
    })
}

/// The key of an object of `kind` at `(namespace, name)`.
pub fn object_key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vs(rv: &str, subset: &str) -> serde_json::Value {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": rv},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}]}
        })
    }

    fn bad_regex(rv: &str) -> serde_json::Value {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": rv},
            "spec": {"hosts": ["reviews"], "http": [{"match": [{"uri": {"regex": "(jason"}}],
                     "route": [{"destination": {"host": "reviews"}}]}]}
        })
    }

    #[test]
    fn valid_objects_apply_once() {
        let mut store = CrdStore::default();
        let (key, obj) = store.apply(vs("1", "v1")).unwrap();
        assert_eq!(key.to_string(), "VirtualService/default/reviews");
        let Object::Istio(IstioConfig::VirtualService(cfg)) = obj else {
            panic!("not a VirtualService")
        };
        assert_eq!(
            cfg.meta.source,
            "/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews"
        );
        assert_eq!(cfg.meta.resource_version.as_deref(), Some("1"));
        // Listed again after a re-watch: the same object, nothing to do.
        assert!(store.apply(vs("1", "v1")).is_none());
        assert!(store.apply(vs("2", "v2")).is_some());
        assert!(store.delete(&key));
        assert!(!store.delete(&key));
    }

    #[test]
    fn invalid_objects_are_reported_and_the_last_good_one_kept() {
        let mut store = CrdStore::default();
        assert!(store.apply(bad_regex("1")).is_none());
        let errors = store.errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "VirtualService/default/reviews");
        assert!(errors[0].message.contains("regex"), "{}", errors[0].message);
        assert!(!errors[0].message.contains("last good"));

        assert!(store.apply(vs("2", "v1")).is_some());
        assert!(store.errors().is_empty(), "fixed");
        assert!(store.apply(bad_regex("3")).is_none());
        let errors = store.errors();
        assert!(
            errors[0].message.contains("last good"),
            "{}",
            errors[0].message
        );
        assert_eq!(
            store.keys_of("VirtualService"),
            vec![object_key("VirtualService", "default", "reviews")]
        );
        assert!(store.delete(&object_key("VirtualService", "default", "reviews")));
        assert!(store.errors().is_empty());
    }

    #[test]
    fn older_versions_parse_the_same() {
        let mut store = CrdStore::default();
        let mut dr = json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
        });
        assert!(store.apply(dr.clone()).is_some());
        dr["apiVersion"] = json!("networking.istio.io/v1beta1");
        dr["metadata"]["name"] = json!("other");
        assert!(store.apply(dr).is_some());
        assert_eq!(
            kind_by_crd_name("destinationrules.networking.istio.io").map(|k| k.kind),
            Some("DestinationRule")
        );
        assert_eq!(kind_by_crd_name("gateways.networking.istio.io"), None);
    }
}
