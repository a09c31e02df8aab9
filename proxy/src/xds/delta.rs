//! Delta ADS rules. ACKs and NACKs carry only the response nonce (and the
//! `error_detail`); subscription changes go in separate requests with no nonce, so the
//! server can never drop them as stale. The first request for a type on a stream
//! restates the subscription and lists the versions the client holds
//! (`initial_resource_versions`), so a new server sends only what changed.

use strait_proto::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use tracing::{debug, warn};

use super::handler::XdsHandler;
use super::resource;
use super::state::{AdsState, error_detail};

impl AdsState {
    /// The first requests of a stream: wildcard CDS and LDS, and after a reconnect the
    /// EDS and RDS names still wanted, each with the versions held.
    pub fn initial_delta_requests(&mut self) -> Vec<DeltaDiscoveryRequest> {
        let mut out = Vec::new();
        for i in 0..self.types.len() {
            if self.types[i].subscribed() {
                out.push(self.delta_first_request(i));
            }
        }
        out
    }

    /// Applies one response through `handler`; returns the ACK or NACK, followed by any
    /// subscription changes the new config calls for.
    pub fn on_delta_response(
        &mut self,
        resp: DeltaDiscoveryResponse,
        handler: &mut dyn XdsHandler,
    ) -> Vec<DeltaDiscoveryRequest> {
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
        let removed = resp.removed_resources;
        let result =
            resource::delta_updates(type_url, resp.resources, &removed, &subscription.resources)
                .and_then(|mut updates| {
                    // A named type's response may predate an unsubscription.
                    updates.retain(|u| subscription.wants(&u.name));
                    let versions: Vec<(String, String)> = updates
                        .iter()
                        .map(|u| (u.name.clone(), u.version.clone()))
                        .collect();
                    handler
                        .apply(type_url, updates, removed.clone(), false)
                        .map(|()| versions)
                });

        let mut out = Vec::new();
        let ack = DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            response_nonce: resp.nonce,
            node: self.take_node(),
            ..DeltaDiscoveryRequest::default()
        };
        match result {
            Ok(versions) => {
                debug!(type_url, version = %resp.system_version_info, updated = versions.len(), removed = removed.len(), "ACK");
                let t = &mut self.types[index];
                for name in &removed {
                    t.resources.remove(name);
                }
                let mut answered: Vec<&str> = removed.iter().map(String::as_str).collect();
                answered.extend(versions.iter().map(|(name, _)| name.as_str()));
                t.resources.extend(versions.iter().cloned());
                t.version = resp.system_version_info;
                self.count(index, |s| &s.update_success);
                self.applied(index, answered);
                out.push(ack);
            }
            Err(rejected) => {
                let detail = error_detail(&rejected);
                warn!(type_url, version = %resp.system_version_info, "NACK: {}", detail.message);
                self.count(index, |s| &s.update_rejected);
                out.push(DeltaDiscoveryRequest {
                    error_detail: Some(detail),
                    ..ack
                });
            }
        }
        for change in self.follow_wanted(handler) {
            let t = &self.types[change.index];
            if !t.requested {
                if t.subscribed() {
                    out.push(self.delta_first_request(change.index));
                }
                continue;
            }
            out.push(DeltaDiscoveryRequest {
                type_url: t.type_url.to_string(),
                resource_names_subscribe: change.added,
                resource_names_unsubscribe: change.removed,
                ..DeltaDiscoveryRequest::default()
            });
        }
        out
    }

    fn delta_first_request(&mut self, index: usize) -> DeltaDiscoveryRequest {
        let node = self.take_node();
        let t = &mut self.types[index];
        t.requested = true;
        DeltaDiscoveryRequest {
            node,
            type_url: t.type_url.to_string(),
            // Wildcard types subscribe with an empty list, Envoy's legacy wildcard.
            resource_names_subscribe: t.names.iter().cloned().collect(),
            initial_resource_versions: t
                .resources
                .iter()
                .filter(|(name, _)| t.wildcard || t.names.contains(*name))
                .map(|(name, version)| (name.clone(), version.clone()))
                .collect(),
            ..DeltaDiscoveryRequest::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use strait_proto::envoy::config::cluster::v3::Cluster;
    use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use strait_proto::envoy::service::discovery::v3::Resource;
    use strait_proto::xds::any::{self, Any};
    use strait_proto::xds::type_url;

    use super::*;
    use crate::xds::XdsStats;
    use crate::xds::state::NACK_CODE;
    use crate::xds::state::tests::{FakeHandler, node};

    fn cluster(name: &str, version: &str) -> Resource {
        Resource {
            name: name.into(),
            version: version.into(),
            resource: Some(any::pack(&Cluster {
                name: name.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn cla(name: &str, version: &str) -> Resource {
        Resource {
            name: name.into(),
            version: version.into(),
            resource: Some(any::pack(&ClusterLoadAssignment {
                cluster_name: name.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn response(
        type_url: &str,
        nonce: &str,
        resources: Vec<Resource>,
        removed: &[&str],
    ) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: format!("sys-{nonce}"),
            resources,
            type_url: type_url.into(),
            removed_resources: removed.iter().map(|s| s.to_string()).collect(),
            nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn started() -> AdsState {
        let mut state = AdsState::new(node(), Arc::new(XdsStats::default()));
        state.start_stream();
        state
    }

    fn versions(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn first_requests_are_legacy_wildcard_cds_and_lds() {
        let mut state = started();
        let initial = state.initial_delta_requests();
        let types: Vec<_> = initial.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(types, [type_url::CLUSTER, type_url::LISTENER]);
        assert!(initial[0].node.is_some() && initial[1].node.is_none());
        for r in &initial {
            assert!(r.resource_names_subscribe.is_empty());
            assert!(r.initial_resource_versions.is_empty());
            assert!(r.response_nonce.is_empty());
        }
    }

    #[test]
    fn ack_carries_the_nonce_and_subscriptions_go_separately() {
        let mut state = started();
        state.initial_delta_requests();
        let mut h = FakeHandler::default();
        h.wanted.insert(type_url::ENDPOINT, vec!["a".into()]);
        let out = state.on_delta_response(
            response(type_url::CLUSTER, "n1", vec![cluster("a", "1")], &[]),
            &mut h,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].type_url, type_url::CLUSTER);
        assert_eq!(out[0].response_nonce, "n1");
        assert!(out[0].error_detail.is_none());
        assert!(out[0].resource_names_subscribe.is_empty());
        assert_eq!(out[1].type_url, type_url::ENDPOINT);
        assert_eq!(out[1].resource_names_subscribe, vec!["a".to_string()]);
        assert!(out[1].response_nonce.is_empty());
        let (_, updated, removed, full) = &h.applies[0];
        assert_eq!(updated[0].version, "1");
        assert!(removed.is_empty() && !full);

        // Later changes are diffs, with no nonce.
        state.on_delta_response(
            response(type_url::ENDPOINT, "n2", vec![cla("a", "e1")], &[]),
            &mut h,
        );
        h.wanted.insert(type_url::ENDPOINT, vec!["b".into()]);
        let out = state.on_delta_response(
            response(type_url::CLUSTER, "n3", vec![cluster("b", "1")], &["a"]),
            &mut h,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].resource_names_subscribe, vec!["b".to_string()]);
        assert_eq!(out[1].resource_names_unsubscribe, vec!["a".to_string()]);
        assert!(out[1].response_nonce.is_empty() && out[1].initial_resource_versions.is_empty());
        assert_eq!(
            h.applies[2].2,
            vec!["a".to_string()],
            "removals reach the handler"
        );
    }

    #[test]
    fn nack_records_nothing_so_a_reconnect_asks_again() {
        let mut state = started();
        state.initial_delta_requests();
        let mut h = FakeHandler::default();
        state.on_delta_response(
            response(type_url::CLUSTER, "n1", vec![cluster("a", "1")], &[]),
            &mut h,
        );
        h.reject
            .insert("bad".into(), "lb_policy: unsupported".into());
        let out = state.on_delta_response(
            response(
                type_url::CLUSTER,
                "n2",
                vec![cluster("a", "2"), cluster("bad", "1")],
                &[],
            ),
            &mut h,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response_nonce, "n2");
        let detail = out[0].error_detail.as_ref().unwrap();
        assert_eq!(detail.code, NACK_CODE);
        assert_eq!(detail.message, "bad: lb_policy: unsupported");
        assert_eq!(state.stats.cds.rejections(), 1);

        state.start_stream();
        let initial = state.initial_delta_requests();
        assert_eq!(
            initial[0].initial_resource_versions,
            versions(&[("a", "1")]),
            "only accepted versions: a at 1, bad not at all"
        );
    }

    #[test]
    fn reconnect_lists_held_versions_per_type() {
        let mut state = started();
        state.initial_delta_requests();
        let mut h = FakeHandler::default();
        h.wanted
            .insert(type_url::ENDPOINT, vec!["a".into(), "b".into()]);
        state.on_delta_response(
            response(
                type_url::CLUSTER,
                "n1",
                vec![cluster("a", "1"), cluster("b", "1"), cluster("c", "3")],
                &[],
            ),
            &mut h,
        );
        state.on_delta_response(
            response(type_url::ENDPOINT, "n2", vec![cla("a", "e1")], &["b"]),
            &mut h,
        );
        state.on_delta_response(response(type_url::CLUSTER, "n3", vec![], &["c"]), &mut h);

        state.start_stream();
        let initial = state.initial_delta_requests();
        let types: Vec<_> = initial.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(
            types,
            [type_url::CLUSTER, type_url::ENDPOINT, type_url::LISTENER]
        );
        assert!(initial[0].node.is_some());
        assert!(initial.iter().all(|r| r.response_nonce.is_empty()));
        assert_eq!(
            initial[0].initial_resource_versions,
            versions(&[("a", "1"), ("b", "1")])
        );
        assert!(initial[0].resource_names_subscribe.is_empty());
        assert_eq!(
            initial[1].resource_names_subscribe,
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(
            initial[1].initial_resource_versions,
            versions(&[("a", "e1")]),
            "b was removed by the server: subscribed, but no version held"
        );
        assert!(initial[2].initial_resource_versions.is_empty());
    }

    #[test]
    fn removal_answers_a_warming_name() {
        let mut state = started();
        state.initial_delta_requests();
        let mut h = FakeHandler::default();
        h.wanted.insert(type_url::ENDPOINT, vec!["a".into()]);
        state.on_delta_response(
            response(type_url::CLUSTER, "n1", vec![cluster("a", "1")], &[]),
            &mut h,
        );
        state.on_delta_response(response(type_url::LISTENER, "n2", vec![], &[]), &mut h);
        assert!(!state.is_ready());
        state.on_delta_response(response(type_url::ENDPOINT, "n3", vec![], &["a"]), &mut h);
        assert!(state.is_ready());
    }

    #[test]
    fn heartbeats_and_unrequested_names_are_not_applied() {
        let mut state = started();
        state.initial_delta_requests();
        let mut h = FakeHandler::default();
        h.wanted.insert(type_url::ENDPOINT, vec!["a".into()]);
        state.on_delta_response(
            response(type_url::CLUSTER, "n1", vec![cluster("a", "1")], &[]),
            &mut h,
        );
        state.on_delta_response(
            response(
                type_url::ENDPOINT,
                "n2",
                vec![cla("a", "e1"), cla("stray", "1")],
                &[],
            ),
            &mut h,
        );
        let applied: Vec<_> = h.applies[1].1.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(applied, ["a"]);
        let heartbeat = Resource {
            name: "a".into(),
            version: "e1".into(),
            ..Default::default()
        };
        let out = state.on_delta_response(
            response(type_url::ENDPOINT, "n3", vec![heartbeat], &[]),
            &mut h,
        );
        assert!(out[0].error_detail.is_none());
        assert!(h.applies[2].1.is_empty());
        assert_eq!(
            state
                .type_state(type_url::ENDPOINT)
                .unwrap()
                .resources
                .get("a")
                .map(String::as_str),
            Some("e1")
        );
        assert!(
            !state
                .type_state(type_url::ENDPOINT)
                .unwrap()
                .resources
                .contains_key("stray")
        );
    }

    #[test]
    fn delta_rejection_of_a_bad_body_is_a_nack() {
        let mut state = started();
        state.initial_delta_requests();
        let mut h = FakeHandler::default();
        let bad = Resource {
            name: "x".into(),
            version: "1".into(),
            resource: Some(Any {
                type_url: type_url::LISTENER.into(),
                value: vec![],
            }),
            ..Default::default()
        };
        let out =
            state.on_delta_response(response(type_url::CLUSTER, "n1", vec![bad], &[]), &mut h);
        assert!(h.applies.is_empty());
        assert!(
            out[0]
                .error_detail
                .as_ref()
                .unwrap()
                .message
                .starts_with("x: type URL")
        );
    }
}
