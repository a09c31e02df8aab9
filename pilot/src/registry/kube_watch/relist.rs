//! A watch stream's events as store updates. kube-runtime's watcher re-lists after it
//! loses its place (e.g. the API server answered 410 Gone); objects deleted meanwhile
//! never get a delete event, so the keys seen before and after a re-list are compared.
//! Objects are applied as they are listed: the stores ignore what did not change, so a
//! re-list of an unchanged world changes nothing.

use std::collections::HashSet;

use kube::Resource;
use kube::runtime::watcher::Event;

use crate::metrics::{K8sEvent, K8sEvents};

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
    /// What `event` means for the store; `events` (if any) counts it as an informer
    /// would: an object not held before is an add, one held is an update.
    pub fn handle<K: Resource>(
        &mut self,
        event: Event<K>,
        events: Option<&K8sEvents>,
    ) -> Vec<Delta<K>> {
        let record = |e: K8sEvent| {
            if let Some(events) = events {
                events.record(e);
            }
        };
        match event {
            Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(obj) => {
                let key = key_of(&obj);
                record(if self.known.contains(&key) {
                    K8sEvent::Update
                } else {
                    K8sEvent::Add
                });
                self.listing.get_or_insert_with(HashSet::new).insert(key);
                vec![Delta::Apply(obj)]
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let mut gone: Vec<ObjKey> = self.known.difference(&listed).cloned().collect();
                gone.sort();
                gone.iter().for_each(|_| record(K8sEvent::Delete));
                self.known = listed;
                let mut out: Vec<Delta<K>> = gone.into_iter().map(Delta::Delete).collect();
                out.push(Delta::Synced);
                out
            }
            Event::Apply(obj) => {
                record(if self.known.insert(key_of(&obj)) {
                    K8sEvent::Add
                } else {
                    K8sEvent::Update
                });
                vec![Delta::Apply(obj)]
            }
            Event::Delete(obj) => {
                let key = key_of(&obj);
                self.known.remove(&key);
                record(K8sEvent::Delete);
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
            out.extend(r.handle(e, None));
        }
        assert_eq!(names(&out), ["apply a", "apply b", "synced"]);
        assert_eq!(
            names(&r.handle(Event::Apply(cm("c")), None)),
            ["apply c"],
            "watch events pass through"
        );
        assert_eq!(names(&r.handle(Event::Delete(cm("a")), None)), ["delete a"]);

        // The watch lost its place; b was deleted and d created while it was away.
        let mut out = Vec::new();
        for e in [
            Event::Init,
            Event::InitApply(cm("c")),
            Event::InitApply(cm("d")),
            Event::InitDone,
        ] {
            out.extend(r.handle(e, None));
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
            out.extend(r.handle(e, None));
        }
        assert_eq!(names(&out), ["apply c", "apply d", "synced"]);
    }

    #[test]
    fn events_are_counted_as_an_informer_would() {
        let metrics = crate::metrics::Metrics::new();
        let events = metrics.k8s_reg_events("Services");
        let mut r = Relist::default();
        for e in [
            Event::Init,
            Event::InitApply(cm("a")),
            Event::InitApply(cm("b")),
            Event::InitDone,
            Event::Apply(cm("a")),
            Event::Apply(cm("c")),
            Event::Delete(cm("c")),
            // A re-list without b: a is an update, b a delete.
            Event::Init,
            Event::InitApply(cm("a")),
            Event::InitDone,
        ] {
            r.handle(e, Some(&events));
        }
        let text = metrics.encode();
        let count = |event: &str| {
            let series = format!(r#"pilot_k8s_reg_events{{type="Services",event="{event}"}} "#);
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .unwrap_or_else(|| panic!("no {series} in {text}"))
                .to_string()
        };
        assert_eq!(count("add"), "3");
        assert_eq!(count("update"), "2");
        assert_eq!(count("delete"), "2");
    }
}
