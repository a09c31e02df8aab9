//! State-of-the-world ADS rules. Every request for a type carries the full list of
//! names and the last applied `version_info`, so an ACK (same version and nonce as the
//! response) or a NACK (the previous version, the new nonce, an `error_detail`) also
//! restates the subscription; a request the server drops as stale is thus repaired by
//! the next ACK.

use strait_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use strait_proto::google::rpc::Status as RpcStatus;
use tracing::{debug, warn};

use super::handler::XdsHandler;
use super::resource;
use super::state::{AdsState, error_detail};
use super::stats::TypeStats;

impl AdsState {
    /// The first requests of a stream: CDS and LDS, and after a reconnect the EDS and
    /// RDS names still wanted, each with the version last applied.
    pub fn initial_sotw_requests(&mut self) -> Vec<DiscoveryRequest> {
        let mut out = Vec::new();
        for i in 0..self.types.len() {
            if self.types[i].subscribed() {
                out.push(self.sotw_request(i, None));
            }
        }
        out
    }

    /// Applies one response through `handler`; returns the ACK or NACK, followed by any
    /// subscription changes the new config calls for.
    pub fn on_sotw_response(
        &mut self,
        resp: DiscoveryResponse,
        handler: &mut dyn XdsHandler,
    ) -> Vec<DiscoveryRequest> {
        let Some(index) = self
            .index(&resp.type_url)
            .filter(|&i| self.types[i].requested)
        else {
            warn!(type_url = %resp.type_url, "ignoring a response for a type not subscribed to");
            return Vec::new();
        };
        let type_url = self.types[index].type_url;
        self.types[index].nonce = resp.nonce.clone();
        self.count(index, |s| &s.update_attempt);

        let subscription = &self.types[index];
        let result = resource::sotw_updates(type_url, &resp.version_info, resp.resources).and_then(
            |mut updates| {
                // A named type's response may predate an unsubscription.
                updates.retain(|u| subscription.wants(&u.name));
                let names: Vec<String> = updates.iter().map(|u| u.name.clone()).collect();
                handler
                    .apply(type_url, updates, Vec::new(), true)
                    .map(|()| names)
            },
        );

        let mut out = Vec::new();
        match result {
            Ok(names) => {
                debug!(type_url, version = %resp.version_info, resources = names.len(), "ACK");
                self.types[index].version = resp.version_info;
                self.count(index, |s| &s.update_success);
                self.applied(index, names.iter().map(String::as_str));
                out.push(self.sotw_request(index, None));
            }
            Err(rejected) => {
                let detail = error_detail(&rejected);
                warn!(type_url, version = %resp.version_info, "NACK: {}", detail.message);
                self.count(index, |s: &TypeStats| &s.update_rejected);
                out.push(self.sotw_request(index, Some(detail)));
            }
        }
        for change in self.follow_wanted(handler) {
            let t = &self.types[change.index];
            // Never asked for on this stream and nothing wanted: nothing to say.
            if t.requested || t.subscribed() {
                out.push(self.sotw_request(change.index, None));
            }
        }
        out
    }

    fn sotw_request(&mut self, index: usize, error: Option<RpcStatus>) -> DiscoveryRequest {
        let node = self.take_node();
        let t = &mut self.types[index];
        t.requested = true;
        DiscoveryRequest {
            version_info: t.version.clone(),
            node,
            resource_names: if t.wildcard {
                Vec::new()
            } else {
                t.names.iter().cloned().collect()
            },
            type_url: t.type_url.to_string(),
            response_nonce: t.nonce.clone(),
            error_detail: error,
            ..DiscoveryRequest::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strait_proto::envoy::config::cluster::v3::Cluster;
    use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use strait_proto::envoy::config::listener::v3::Listener;
    use strait_proto::xds::any::{self, Any};
    use strait_proto::xds::type_url;

    use super::*;
    use crate::xds::XdsStats;
    use crate::xds::state::NACK_CODE;
    use crate::xds::state::tests::{FakeHandler, node};

    fn cluster(name: &str) -> Any {
        any::pack(&Cluster {
            name: name.into(),
            ..Default::default()
        })
    }

    fn cla(name: &str) -> Any {
        any::pack(&ClusterLoadAssignment {
            cluster_name: name.into(),
            ..Default::default()
        })
    }

    fn listener(name: &str) -> Any {
        any::pack(&Listener {
            name: name.into(),
            ..Default::default()
        })
    }

    fn response(
        type_url: &str,
        version: &str,
        nonce: &str,
        resources: Vec<Any>,
    ) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.into(),
            resources,
            type_url: type_url.into(),
            nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn started() -> (AdsState, Vec<DiscoveryRequest>) {
        let mut state = AdsState::new(node(), Arc::new(XdsStats::default()));
        state.start_stream();
        let initial = state.initial_sotw_requests();
        (state, initial)
    }

    #[test]
    fn first_requests_are_wildcard_cds_and_lds_with_the_node_once() {
        let (_, initial) = started();
        let types: Vec<_> = initial.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(types, [type_url::CLUSTER, type_url::LISTENER]);
        assert_eq!(
            initial[0].node.as_ref().map(|n| n.id.as_str()),
            Some(node().id.as_str())
        );
        assert!(
            initial[1].node.is_none(),
            "node only on the stream's first message"
        );
        for r in &initial {
            assert!(r.resource_names.is_empty() && r.version_info.is_empty());
            assert!(r.response_nonce.is_empty() && r.error_detail.is_none());
        }
    }

    #[test]
    fn ack_echoes_version_and_nonce_then_subscribes_to_endpoints() {
        let (mut state, _) = started();
        let mut h = FakeHandler::default();
        h.wanted.insert(type_url::ENDPOINT, vec!["c1".into()]);
        let out = state.on_sotw_response(
            response(type_url::CLUSTER, "v1", "n1", vec![cluster("c1")]),
            &mut h,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        let ack = &out[0];
        assert_eq!(ack.type_url, type_url::CLUSTER);
        assert_eq!(
            (ack.version_info.as_str(), ack.response_nonce.as_str()),
            ("v1", "n1")
        );
        assert!(ack.error_detail.is_none() && ack.node.is_none());
        let eds = &out[1];
        assert_eq!(eds.type_url, type_url::ENDPOINT);
        assert_eq!(eds.resource_names, vec!["c1".to_string()]);
        assert!(eds.response_nonce.is_empty() && eds.version_info.is_empty());

        let (t, updated, removed, full) = &h.applies[0];
        assert_eq!(t, type_url::CLUSTER);
        assert_eq!(updated[0].name, "c1");
        assert_eq!(updated[0].version, "v1");
        assert!(removed.is_empty() && *full);
        assert_eq!(state.stats.cds.successes(), 1);
        assert_eq!(state.stats.cds.attempts(), 1);
    }

    #[test]
    fn nack_keeps_the_last_applied_version_and_names_the_resource() {
        let (mut state, _) = started();
        let mut h = FakeHandler::default();
        state.on_sotw_response(
            response(type_url::CLUSTER, "v1", "n1", vec![cluster("a")]),
            &mut h,
        );
        h.reject
            .insert("bad".into(), "connect_timeout: must be positive".into());
        let out = state.on_sotw_response(
            response(
                type_url::CLUSTER,
                "v2",
                "n2",
                vec![cluster("a"), cluster("bad")],
            ),
            &mut h,
        );
        assert_eq!(out.len(), 1);
        let nack = &out[0];
        assert_eq!(
            nack.version_info, "v1",
            "NACK carries the last accepted version"
        );
        assert_eq!(nack.response_nonce, "n2");
        let detail = nack.error_detail.as_ref().unwrap();
        assert_eq!(detail.code, NACK_CODE);
        assert_eq!(detail.message, "bad: connect_timeout: must be positive");
        assert_eq!(state.type_state(type_url::CLUSTER).unwrap().version, "v1");
        assert_eq!(state.stats.cds.rejections(), 1);
        assert_eq!(state.stats.cds.successes(), 1);
    }

    #[test]
    fn malformed_responses_are_nacked_without_reaching_the_handler() {
        let (mut state, _) = started();
        let mut h = FakeHandler::default();
        let out = state.on_sotw_response(
            response(type_url::CLUSTER, "v1", "n1", vec![listener("l")]),
            &mut h,
        );
        assert!(h.applies.is_empty());
        let detail = out[0].error_detail.as_ref().unwrap();
        assert!(
            detail.message.starts_with("resources[0]: type URL"),
            "{}",
            detail.message
        );
        assert!(out[0].version_info.is_empty());
    }

    #[test]
    fn unsubscribed_types_are_ignored() {
        let (mut state, _) = started();
        let mut h = FakeHandler::default();
        let out = state.on_sotw_response(
            response(type_url::ENDPOINT, "v1", "n1", vec![cla("x")]),
            &mut h,
        );
        assert!(out.is_empty() && h.applies.is_empty());
        let out = state.on_sotw_response(
            response("type.googleapis.com/other", "v1", "n1", vec![]),
            &mut h,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn named_type_changes_restate_the_full_list_with_its_own_version_and_nonce() {
        let (mut state, _) = started();
        let mut h = FakeHandler::default();
        h.wanted
            .insert(type_url::ENDPOINT, vec!["a".into(), "b".into()]);
        state.on_sotw_response(
            response(
                type_url::CLUSTER,
                "c1",
                "cn1",
                vec![cluster("a"), cluster("b")],
            ),
            &mut h,
        );
        let out = state.on_sotw_response(
            response(
                type_url::ENDPOINT,
                "e1",
                "en1",
                vec![cla("a"), cla("b"), cla("stray")],
            ),
            &mut h,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].resource_names,
            vec!["a".to_string(), "b".to_string()]
        );
        let applied: Vec<_> = h.applies[1].1.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(applied, ["a", "b"], "unrequested names are dropped");

        // CDS drops cluster a: the EDS list shrinks, restated with EDS's version/nonce.
        h.wanted.insert(type_url::ENDPOINT, vec!["b".into()]);
        let out = state.on_sotw_response(
            response(type_url::CLUSTER, "c2", "cn2", vec![cluster("b")]),
            &mut h,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].type_url, type_url::ENDPOINT);
        assert_eq!(out[1].resource_names, vec!["b".to_string()]);
        assert_eq!(
            (out[1].version_info.as_str(), out[1].response_nonce.as_str()),
            ("e1", "en1")
        );

        // No clusters left: an empty list unsubscribes.
        h.wanted.remove(type_url::ENDPOINT);
        let out = state.on_sotw_response(response(type_url::CLUSTER, "c3", "cn3", vec![]), &mut h);
        assert_eq!(out.len(), 2);
        assert!(out[1].resource_names.is_empty());
        assert_eq!(out[1].type_url, type_url::ENDPOINT);
    }

    #[test]
    fn reconnect_restates_versions_and_names_without_nonces() {
        let (mut state, _) = started();
        let mut h = FakeHandler::default();
        h.wanted.insert(type_url::ENDPOINT, vec!["a".into()]);
        state.on_sotw_response(
            response(type_url::CLUSTER, "c1", "cn1", vec![cluster("a")]),
            &mut h,
        );
        state.on_sotw_response(
            response(type_url::ENDPOINT, "e1", "en1", vec![cla("a")]),
            &mut h,
        );
        state.on_sotw_response(response(type_url::LISTENER, "l1", "ln1", vec![]), &mut h);
        assert!(state.is_ready());

        state.start_stream();
        let initial = state.initial_sotw_requests();
        let summary: Vec<_> = initial
            .iter()
            .map(|r| {
                (
                    r.type_url.as_str(),
                    r.version_info.as_str(),
                    r.resource_names.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (type_url::CLUSTER, "c1", vec![]),
                (type_url::ENDPOINT, "e1", vec!["a".to_string()]),
                (type_url::LISTENER, "l1", vec![]),
            ]
        );
        assert!(initial.iter().all(|r| r.response_nonce.is_empty()));
        assert!(initial[0].node.is_some() && initial[1..].iter().all(|r| r.node.is_none()));
        assert!(state.is_ready(), "readiness survives the reconnect");
    }

    #[test]
    fn ready_only_after_referenced_endpoints_and_routes_are_applied() {
        let (mut state, _) = started();
        let mut h = FakeHandler::default();
        h.wanted
            .insert(type_url::ENDPOINT, vec!["a".into(), "b".into()]);
        state.on_sotw_response(
            response(
                type_url::CLUSTER,
                "c1",
                "n",
                vec![cluster("a"), cluster("b")],
            ),
            &mut h,
        );
        h.wanted.insert(type_url::ROUTE, vec!["80".into()]);
        state.on_sotw_response(
            response(type_url::LISTENER, "l1", "n", vec![listener("l")]),
            &mut h,
        );
        assert!(!state.is_ready());
        // b is missing from the response: it keeps warming.
        state.on_sotw_response(
            response(type_url::ENDPOINT, "e1", "n", vec![cla("a")]),
            &mut h,
        );
        assert!(!state.is_ready());
        // A rejected update answers nothing.
        h.reject.insert("b".into(), "bad".into());
        state.on_sotw_response(
            response(type_url::ENDPOINT, "e2", "n", vec![cla("a"), cla("b")]),
            &mut h,
        );
        assert!(!state.is_ready());
        h.reject.clear();
        state.on_sotw_response(
            response(type_url::ENDPOINT, "e3", "n", vec![cla("a"), cla("b")]),
            &mut h,
        );
        assert!(!state.is_ready(), "route 80 still missing");
        let route = any::pack(
            &strait_proto::envoy::config::route::v3::RouteConfiguration {
                name: "80".into(),
                ..Default::default()
            },
        );
        state.on_sotw_response(response(type_url::ROUTE, "r1", "n", vec![route]), &mut h);
        assert!(state.is_ready());
    }
}
