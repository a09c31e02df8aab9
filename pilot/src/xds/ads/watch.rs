//! Per-connection, per-type subscription state, and the vocabulary the SotW and Delta
//! state machines use to say what a request calls for.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use strait_proto::xds::type_url;

use crate::xds::status::WatchStatus;

/// What one connection subscribed to for one type URL, and what it was sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Watch {
    /// Names the client asked for explicitly (never contains `*`).
    pub names: BTreeSet<String>,
    /// The client wants every resource of this (wildcard) type.
    pub wildcard: bool,
    pub nonce_sent: Option<String>,
    pub nonce_acked: Option<String>,
    pub version_sent: Option<String>,
    pub version_acked: Option<String>,
    pub sent_time: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Answer the next ACK even if the names did not change: after a new CDS
    /// subscription Envoy re-requests EDS for warming clusters with the same names and
    /// waits for a response (envoyproxy/envoy#13009), as Istio's `AlwaysRespond`.
    pub always_respond: bool,
    /// Delta only: name → version of every resource the client holds, so a push can
    /// skip unchanged resources and name the removed ones.
    pub sent: BTreeMap<String, String>,
}

impl Watch {
    pub fn new(type_url: &str, requested: impl IntoIterator<Item = String>) -> Watch {
        let requested: BTreeSet<String> = requested.into_iter().collect();
        let wildcard =
            type_url::is_wildcard(type_url) && (requested.is_empty() || requested.contains("*"));
        let names = requested.into_iter().filter(|n| n != "*").collect();
        Watch {
            names,
            wildcard,
            ..Watch::default()
        }
    }

    /// Whether a resource name is wanted under this subscription.
    pub fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    pub fn status(&self) -> WatchStatus {
        WatchStatus {
            names: self.names.iter().cloned().collect(),
            wildcard: self.wildcard,
            nonce_sent: self.nonce_sent.clone(),
            nonce_acked: self.nonce_acked.clone(),
            version_sent: self.version_sent.clone(),
            version_acked: self.version_acked.clone(),
            sent_time: self.sent_time,
            last_error: self.last_error.clone(),
        }
    }

    /// Records a response the client now has: only called once the send succeeded, so
    /// an ACK can never match a nonce the client did not receive.
    pub fn record_sent(&mut self, sent: &Sent) {
        self.nonce_sent = Some(sent.nonce.clone());
        self.version_sent = Some(sent.version.clone());
        self.sent_time = Some(SystemTime::now());
        for (name, version) in &sent.versions {
            self.sent.insert(name.clone(), version.clone());
        }
        for name in &sent.removed {
            self.sent.remove(name);
        }
    }
}

/// Type URL → watch.
pub type Watches = BTreeMap<String, Watch>;

/// Which resources a response covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Only these names; `None` means everything the watch covers.
    pub names: Option<BTreeSet<String>>,
    /// Send every resource in scope even if the client already has that version, and
    /// respond even when there is nothing to send (the client is waiting for an answer).
    pub forced: bool,
    /// Delta: names to send even if unchanged. A cluster updated by CDS warms until it
    /// gets its endpoints, so a push resends EDS for the clusters it just changed.
    pub refresh: BTreeSet<String>,
}

impl Scope {
    pub fn all(forced: bool) -> Scope {
        Scope {
            names: None,
            forced,
            refresh: BTreeSet::new(),
        }
    }

    pub fn names(names: BTreeSet<String>, forced: bool) -> Scope {
        Scope {
            names: Some(names),
            forced,
            refresh: BTreeSet::new(),
        }
    }

    pub fn with_refresh(mut self, refresh: BTreeSet<String>) -> Scope {
        self.refresh = refresh;
        self
    }

    /// Whether a resource belongs in the response.
    pub fn covers(&self, watch: &Watch, name: &str) -> bool {
        match &self.names {
            Some(names) => names.contains(name),
            None => watch.wants(name),
        }
    }
}

/// What a request from the proxy calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The proxy rejected our last response; recorded, nothing to send.
    Nack { code: i32, message: String },
    /// A nonce older than the last one sent: superseded, ignored.
    Stale,
    /// The proxy accepted a response; nothing to send.
    Ack,
    /// The proxy dropped resources (or the whole type); nothing to send.
    Unsubscribe,
    /// Send a response.
    Respond(Scope),
}

/// A response about to be sent, with what to record once it was.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sent {
    pub nonce: String,
    pub version: String,
    /// Delta: the resources in the response with their versions.
    pub versions: Vec<(String, String)>,
    /// Delta: names the response tells the client to drop.
    pub removed: Vec<String>,
    pub resources: usize,
    pub bytes: usize,
}

/// The types this server generates; requests for others are tracked but not answered,
/// as Istio does for types without a generator.
pub const GENERATED_TYPES: [&str; 4] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
];

pub fn is_generated(type_url: &str) -> bool {
    GENERATED_TYPES.contains(&type_url)
}

/// Istio's push order: clusters before the endpoints that warm them, listeners before
/// the routes they reference, then any other watched type in a stable order.
pub fn push_order<'a>(watched: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    const ORDER: [&str; 8] = [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
        type_url::SECRET,
        type_url::ADDRESS,
        type_url::WORKLOAD,
        type_url::WORKLOAD_AUTHORIZATION,
    ];
    let mut watched: Vec<&String> = watched.into_iter().collect();
    watched.sort_by_key(|t| {
        let rank = ORDER.iter().position(|o| o == t).unwrap_or(ORDER.len());
        (rank, t.as_str())
    });
    watched.into_iter().cloned().collect()
}

/// Istio's nonce: the push version followed by a random UUID, so a nonce names the
/// version it carried and is never reused.
pub fn nonce(version: &str) -> String {
    format!("{version}{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_order_is_istio_order_then_alphabetical() {
        let watched: Vec<String> = [
            "type.googleapis.com/zzz.Other",
            type_url::ROUTE,
            type_url::LISTENER,
            "type.googleapis.com/aaa.Other",
            type_url::ENDPOINT,
            type_url::CLUSTER,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            push_order(&watched),
            vec![
                type_url::CLUSTER.to_string(),
                type_url::ENDPOINT.to_string(),
                type_url::LISTENER.to_string(),
                type_url::ROUTE.to_string(),
                "type.googleapis.com/aaa.Other".to_string(),
                "type.googleapis.com/zzz.Other".to_string(),
            ]
        );
    }

    #[test]
    fn nonce_carries_version_and_is_unique() {
        let a = nonce("2025-01-01T00:00:00Z/3");
        let b = nonce("2025-01-01T00:00:00Z/3");
        assert!(a.starts_with("2025-01-01T00:00:00Z/3"));
        assert_ne!(a, b);
    }

    #[test]
    fn new_watch_wildcard_rules() {
        let w = Watch::new(type_url::CLUSTER, Vec::new());
        assert!(w.wildcard && w.names.is_empty());
        let w = Watch::new(type_url::LISTENER, vec!["*".to_string(), "a".to_string()]);
        assert!(w.wildcard);
        assert_eq!(w.names, BTreeSet::from(["a".to_string()]));
        let w = Watch::new(type_url::CLUSTER, vec!["a".to_string()]);
        assert!(!w.wildcard);
        let w = Watch::new(type_url::ENDPOINT, Vec::new());
        assert!(!w.wildcard, "named types are never wildcard");
        assert!(!w.wants("x"));
    }

    #[test]
    fn record_sent_tracks_delta_versions() {
        let mut w = Watch::new(type_url::CLUSTER, Vec::new());
        w.record_sent(&Sent {
            nonce: "n1".into(),
            version: "v1".into(),
            versions: vec![("a".into(), "1".into()), ("b".into(), "1".into())],
            ..Sent::default()
        });
        w.record_sent(&Sent {
            nonce: "n2".into(),
            version: "v2".into(),
            versions: vec![("a".into(), "2".into())],
            removed: vec!["b".into()],
            ..Sent::default()
        });
        assert_eq!(w.nonce_sent.as_deref(), Some("n2"));
        assert_eq!(w.version_sent.as_deref(), Some("v2"));
        assert!(w.sent_time.is_some());
        assert_eq!(w.sent, BTreeMap::from([("a".to_string(), "2".to_string())]));
    }
}
