//! The protocol state the client keeps per type URL, shared by the SotW (`sotw.rs`) and
//! delta (`delta.rs`) rules. Pure: responses go in, the requests to send come out; the
//! handler is the only thing called. What survives a reconnect (accepted versions,
//! subscriptions, readiness) lives here, next to what does not (nonces, the node).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use strait_proto::envoy::config::core::v3::Node;
use strait_proto::google::rpc::Status as RpcStatus;
use strait_proto::xds::type_url;

use super::TYPES;
use super::handler::{Rejected, XdsHandler};
use super::readiness::Readiness;
use super::stats::{TypeStats, XdsStats};

/// `google.rpc.Code.INTERNAL`: the code Envoy puts in a NACK's `error_detail`.
pub const NACK_CODE: i32 = 13;

/// Envoy truncates NACK messages to this many bytes so a flood of errors cannot exceed
/// the control plane's message size limit.
const MAX_ERROR_DETAIL: usize = 4096;

/// One type URL's subscription.
#[derive(Clone, Debug)]
pub struct TypeState {
    pub type_url: &'static str,
    /// CDS and LDS: everything the server has for this proxy.
    pub wildcard: bool,
    /// Named types (EDS, RDS): the names subscribed to.
    pub names: BTreeSet<String>,
    /// The `version_info` (delta: `system_version_info`) of the last applied response.
    pub version: String,
    /// The nonce of the last response on the current stream.
    pub nonce: String,
    /// Delta: name → version of every applied resource, sent back as
    /// `initial_resource_versions` on reconnect. Rejected resources never get in, so a
    /// new server sends them again.
    pub resources: BTreeMap<String, String>,
    /// Whether a request for this type went out on the current stream.
    pub requested: bool,
}

impl TypeState {
    fn new(type_url: &'static str) -> TypeState {
        TypeState {
            type_url,
            wildcard: type_url::is_wildcard(type_url),
            names: BTreeSet::new(),
            version: String::new(),
            nonce: String::new(),
            resources: BTreeMap::new(),
            requested: false,
        }
    }

    /// Whether there is anything to ask the server for.
    pub fn subscribed(&self) -> bool {
        self.wildcard || !self.names.is_empty()
    }

    /// Whether a resource of this name is one the client asked for.
    pub fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// A named type whose subscription has to change after a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SubscriptionChange {
    pub index: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// The client's protocol state across streams.
#[derive(Debug)]
pub struct AdsState {
    node: Node,
    /// Envoy's `set_node_on_first_message_only`: set until a stream's first request.
    node_pending: bool,
    pub(crate) types: Vec<TypeState>,
    readiness: Readiness,
    pub(crate) stats: Arc<XdsStats>,
}

impl AdsState {
    pub fn new(node: Node, stats: Arc<XdsStats>) -> AdsState {
        AdsState {
            node,
            node_pending: true,
            types: TYPES.iter().map(|t| TypeState::new(t)).collect(),
            readiness: Readiness::default(),
            stats,
        }
    }

    /// Forgets what belonged to the previous stream; keeps versions, subscriptions and
    /// readiness (the last good config keeps serving meanwhile).
    pub fn start_stream(&mut self) {
        self.node_pending = true;
        for t in &mut self.types {
            t.nonce.clear();
            t.requested = false;
        }
    }

    /// Counts a failed or ended stream against every subscribed type, as Envoy's
    /// `update_failure`.
    pub fn stream_failed(&self) {
        for t in self.types.iter().filter(|t| t.subscribed()) {
            if let Some(stats) = self.stats.for_type(t.type_url) {
                TypeStats::inc(&stats.update_failure);
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    pub fn type_state(&self, type_url: &str) -> Option<&TypeState> {
        self.types.iter().find(|t| t.type_url == type_url)
    }

    pub(crate) fn index(&self, type_url: &str) -> Option<usize> {
        self.types.iter().position(|t| t.type_url == type_url)
    }

    pub(crate) fn take_node(&mut self) -> Option<Node> {
        std::mem::take(&mut self.node_pending).then(|| self.node.clone())
    }

    pub(crate) fn type_stats(&self, index: usize) -> Option<&TypeStats> {
        self.types
            .get(index)
            .and_then(|t| self.stats.for_type(t.type_url))
    }

    pub(crate) fn count(
        &self,
        index: usize,
        pick: impl Fn(&TypeStats) -> &std::sync::atomic::AtomicU64,
    ) {
        if let Some(stats) = self.type_stats(index) {
            TypeStats::inc(pick(stats));
        }
    }

    /// Records an applied response that answered `names`.
    pub(crate) fn applied<'a>(&mut self, index: usize, names: impl IntoIterator<Item = &'a str>) {
        if let Some(t) = self.types.get(index) {
            self.readiness.applied(t.type_url, names);
        }
    }

    /// After any response: brings the named types' subscriptions in line with what the
    /// handler's config wants now, and re-evaluates readiness. Returns the changes to
    /// announce; removed names' versions are forgotten, as the client drops them.
    pub(crate) fn follow_wanted(&mut self, handler: &dyn XdsHandler) -> Vec<SubscriptionChange> {
        let mut changes = Vec::new();
        let mut wanted_endpoints = BTreeSet::new();
        let mut wanted_routes = BTreeSet::new();
        for (index, t) in self.types.iter_mut().enumerate() {
            if t.wildcard {
                continue;
            }
            let wanted: BTreeSet<String> = handler.wanted(t.type_url).into_iter().collect();
            let added: Vec<String> = wanted.difference(&t.names).cloned().collect();
            let removed: Vec<String> = t.names.difference(&wanted).cloned().collect();
            for name in &removed {
                t.resources.remove(name);
            }
            if !added.is_empty() || !removed.is_empty() {
                t.names = wanted.clone();
                changes.push(SubscriptionChange {
                    index,
                    added,
                    removed,
                });
            }
            match t.type_url {
                type_url::ENDPOINT => wanted_endpoints = wanted,
                type_url::ROUTE => wanted_routes = wanted,
                _ => {}
            }
        }
        self.readiness.update(&wanted_endpoints, &wanted_routes);
        changes
    }
}

/// A NACK's `error_detail`: one `name: error` line per rejected resource.
pub fn error_detail(rejected: &[Rejected]) -> RpcStatus {
    let mut message = rejected
        .iter()
        .map(|r| format!("{}: {}", r.name, r.error))
        .collect::<Vec<_>>()
        .join("\n");
    if message.len() > MAX_ERROR_DETAIL {
        const MARKER: &str = "...(truncated)";
        let mut end = MAX_ERROR_DETAIL - MARKER.len();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(MARKER);
    }
    RpcStatus {
        code: NACK_CODE,
        message,
        details: Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::xds::handler::ResourceUpdate;

    /// A handler double: records applies, rejects names it was told to, and wants
    /// whatever it was told to.
    #[derive(Default)]
    pub(crate) struct FakeHandler {
        pub applies: Vec<(String, Vec<ResourceUpdate>, Vec<String>, bool)>,
        pub reject: BTreeMap<String, String>,
        pub wanted: BTreeMap<&'static str, Vec<String>>,
    }

    impl XdsHandler for FakeHandler {
        fn apply(
            &mut self,
            type_url: &str,
            updated: Vec<ResourceUpdate>,
            removed: Vec<String>,
            full_state: bool,
        ) -> Result<(), Vec<Rejected>> {
            let rejected: Vec<Rejected> = updated
                .iter()
                .filter_map(|u| self.reject.get(&u.name).map(|e| Rejected::new(&u.name, e)))
                .collect();
            self.applies
                .push((type_url.to_string(), updated, removed, full_state));
            if rejected.is_empty() {
                Ok(())
            } else {
                Err(rejected)
            }
        }

        fn wanted(&self, type_url: &str) -> Vec<String> {
            self.wanted.get(type_url).cloned().unwrap_or_default()
        }
    }

    pub(crate) fn node() -> Node {
        Node {
            id: "sidecar~10.0.0.1~app.default~default.svc.cluster.local".into(),
            ..Node::default()
        }
    }

    #[test]
    fn error_detail_joins_rejections_with_envoys_code() {
        let status = error_detail(&[
            Rejected::new("c1", "connect_timeout: must be positive"),
            Rejected::new("c2", "lb_policy: unsupported"),
        ]);
        assert_eq!(status.code, NACK_CODE);
        assert_eq!(
            status.message,
            "c1: connect_timeout: must be positive\nc2: lb_policy: unsupported"
        );
    }

    #[test]
    fn error_detail_is_truncated_on_a_char_boundary() {
        let rejected: Vec<Rejected> = (0..1000)
            .map(|i| Rejected::new(format!("cluster-{i}"), "ünsupported"))
            .collect();
        let status = error_detail(&rejected);
        assert!(status.message.len() <= MAX_ERROR_DETAIL);
        assert!(status.message.ends_with("...(truncated)"));
        assert!(status.message.starts_with("cluster-0: ünsupported\n"));
    }

    #[test]
    fn follow_wanted_diffs_named_types_only() {
        let mut state = AdsState::new(node(), Arc::default());
        let mut handler = FakeHandler::default();
        handler
            .wanted
            .insert(type_url::ENDPOINT, vec!["a".into(), "b".into()]);
        handler
            .wanted
            .insert(type_url::CLUSTER, vec!["ignored".into()]);
        let changes = state.follow_wanted(&handler);
        assert_eq!(
            changes,
            vec![SubscriptionChange {
                index: 1,
                added: vec!["a".into(), "b".into()],
                removed: vec![],
            }]
        );
        assert!(
            state.follow_wanted(&handler).is_empty(),
            "no change, nothing to send"
        );

        state.types[1].resources.insert("a".into(), "1".into());
        handler
            .wanted
            .insert(type_url::ENDPOINT, vec!["b".into(), "c".into()]);
        let changes = state.follow_wanted(&handler);
        assert_eq!(changes[0].added, vec!["c".to_string()]);
        assert_eq!(changes[0].removed, vec!["a".to_string()]);
        assert!(
            state.types[1].resources.is_empty(),
            "dropped names forget their version"
        );
        assert!(
            state.types[0].names.is_empty(),
            "wildcard types keep no names"
        );
    }
}
