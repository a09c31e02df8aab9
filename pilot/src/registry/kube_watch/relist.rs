//! A watch stream's events as store updates. kube-runtime's watcher re-lists after it
//! loses its place (e.g. the API server answered 410 Gone); objects deleted meanwhile
//! never get a delete event, so the keys seen before and after a re-list are compared.
//! Objects are applied as they are listed: the stores ignore what did not change, so a
//! re-list of an unchanged world changes nothing.

use std::collections::HashSet;

use kube::Resource;
use kube::runtime::watcher::Event;

/// `(namespace, name)`; the namespace is empty for cluster-scoped kinds.
pub type ObjKey = (String, String);

pub fn key_of<K: Resource>(obj: &K) -> ObjKey {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// What one event means for a store.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta<K> {
    /// Added or changed (or listed again, possibly unchanged).
    Apply(K),
    Delete(ObjKey),
    /// A list completed: the store now holds everything the API server has.
    Synced,
}

impl<K> Delta<K> {
    pub fn map<T>(self, f: impl FnOnce(K) -> T) -> Delta<T> {
        match self {
            Delta::Apply(k) => Delta::Apply(f(k)),
            Delta::Delete(key) => Delta::Delete(key),
            Delta::Synced => Delta::Synced,
        }
    }
}

/// The keys one watch stream has handed out.
#[derive(Debug, Default)]
pub struct Relist {
    known: HashSet<ObjKey>,
    /// Keys seen by the list in progress, if one is.
    listing: Option<HashSet<ObjKey>>,
}

impl Relist {
    pub fn handle<K: Resource>(&mut self, event: Event<K>) -> Vec<Delta<K>> {
        match event {
            Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(obj) => {
                self.listing
                    .get_or_insert_with(HashSet::new)
                    .insert(key_of(&obj));
                vec![Delta::Apply(obj)]
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let mut gone: Vec<ObjKey> = self.known.difference(&listed).cloned().collect();
                gone.sort();
                self.known = listed;
                let mut out: Vec<Delta<K>> = gone.into_iter().map(Delta::Delete).collect();
                out.push(Delta::Synced);
                out
            }
            Event::Apply(obj) => {
                self.known.insert(key_of(&obj));
                vec![Delta::Apply(obj)]
            }
            Event::Delete(obj) => {
                let key = key_of(&obj);
                self.known.remove(&key);
                vec![Delta::Delete(key)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(deltas: &[Delta<ConfigMap>]) -> Vec<String> {
        deltas
            .iter()
            .map(|d| match d {
                Delta::Apply(c) => format!("apply {}", c.metadata.name.as_deref().unwrap_or("")),
                Delta::Delete((_, n)) => format!("delete {n}"),
                Delta::Synced => "synced".into(),
            })
            .collect()
    }

    #[test]
    fn relist_deletes_what_vanished_meanwhile() {
        let mut r = Relist::default();
        let mut out = Vec::new();
        for e in [
            Event::Init,
            Event::InitApply(cm("a")),
            Event::InitApply(cm("b")),
            Event::InitDone,
        ] {
            out.extend(r.handle(e));
        }
        assert_eq!(names(&out), ["apply a", "apply b", "synced"]);
        assert_eq!(
            names(&r.handle(Event::Apply(cm("c")))),
            ["apply c"],
            "watch events pass through"
        );
        assert_eq!(names(&r.handle(Event::Delete(cm("a")))), ["delete a"]);

        // The watch lost its place; b was deleted and d created while it was away.
        let mut out = Vec::new();
        for e in [
            Event::Init,
            Event::InitApply(cm("c")),
            Event::InitApply(cm("d")),
            Event::InitDone,
        ] {
            out.extend(r.handle(e));
        }
        assert_eq!(names(&out), ["apply c", "apply d", "delete b", "synced"]);
        // A re-list after that deletes nothing more.
        let mut out = Vec::new();
        for e in [
            Event::Init,
            Event::InitApply(cm("c")),
            Event::InitApply(cm("d")),
            Event::InitDone,
        ] {
            out.extend(r.handle(e));
        }
        assert_eq!(names(&out), ["apply c", "apply d", "synced"]);
    }
}
