//! State-of-the-world xDS: what a `DiscoveryRequest` calls for (Istio's `ShouldRespond`)
//! and how a response is assembled. Pure: no I/O, no clock but the sent time.

use std::collections::BTreeSet;

use strait_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use strait_proto::xds::any::Any;
use strait_proto::xds::type_url;

use super::watch::{Decision, Scope, Sent, Watch, Watches};
use crate::xds::Resource;

/// Applies a request to the connection's watches and says whether to respond.
pub fn decide(watches: &mut Watches, req: &DiscoveryRequest) -> Decision {
    let type_url = req.type_url.as_str();

    if let Some(error) = &req.error_detail {
        if let Some(watch) = watches.get_mut(type_url) {
            watch.last_error = Some(error.message.clone());
        }
        return Decision::Nack {
            code: error.code,
            message: error.message.clone(),
        };
    }

    // An empty list on a named type is how Envoy drops its last resource of that type.
    if req.resource_names.is_empty() && !type_url::is_wildcard(type_url) {
        watches.remove(type_url);
        return Decision::Unsubscribe;
    }

    // First request for the type, or a reconnect carrying a nonce another server sent.
    if req.response_nonce.is_empty() || !watches.contains_key(type_url) {
        subscribe(watches, req);
        return Decision::Respond(Scope::all(true));
    }
    let Some(watch) = watches.get_mut(type_url) else {
        return Decision::Stale;
    };

    if watch.nonce_sent.as_deref() != Some(req.response_nonce.as_str()) {
        return Decision::Stale;
    }

    watch.last_error = None;
    watch.nonce_acked = Some(req.response_nonce.clone());
    watch.version_acked = Some(req.version_info.clone());
    let renewed = Watch::new(type_url, req.resource_names.iter().cloned());
    let added =
        renewed.names.difference(&watch.names).count() > 0 || (renewed.wildcard && !watch.wildcard);
    let changed = added || renewed.names != watch.names || renewed.wildcard != watch.wildcard;
    watch.names = renewed.names;
    watch.wildcard = renewed.wildcard;
    let always_respond = std::mem::take(&mut watch.always_respond);

    if always_respond {
        return Decision::Respond(Scope::all(true));
    }
    if !changed {
        return Decision::Ack;
    }
    // A named type that only lost names needs nothing new; Envoy drops the rest itself.
    if !type_url::is_wildcard(type_url) && !added {
        return Decision::Ack;
    }
    Decision::Respond(Scope::all(true))
}

fn subscribe(watches: &mut Watches, req: &DiscoveryRequest) {
    let type_url = req.type_url.as_str();
    watches.insert(
        type_url.to_string(),
        Watch::new(type_url, req.resource_names.iter().cloned()),
    );
    if type_url == type_url::CLUSTER
        && let Some(eds) = watches.get_mut(type_url::ENDPOINT)
    {
        eds.always_respond = true;
    }
}

/// Builds the response carrying `resources` for one watch. A SotW response always goes
/// out: for wildcard types it is the complete set, so it must be sent even when empty.
pub fn build(
    watch: &Watch,
    type_url: &str,
    version: &str,
    nonce: String,
    resources: Vec<Resource>,
    scope: &Scope,
) -> (DiscoveryResponse, Sent) {
    let mut bytes = 0;
    let mut out = Vec::with_capacity(resources.len());
    let mut seen = BTreeSet::new();
    for Resource { name, body } in resources {
        if !scope.covers(watch, &name) || !seen.insert(name) {
            continue;
        }
        bytes += body.value.len();
        out.push(Any {
            type_url: body.type_url,
            value: body.value,
        });
    }
    let sent = Sent {
        nonce: nonce.clone(),
        version: version.to_string(),
        resources: out.len(),
        bytes,
        ..Sent::default()
    };
    let response = DiscoveryResponse {
        version_info: version.to_string(),
        resources: out,
        type_url: type_url.to_string(),
        nonce,
        ..DiscoveryResponse::default()
    };
    (response, sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::google::rpc::Status;

    fn req(type_url: &str, names: &[&str], nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.to_string(),
            version_info: "v1".to_string(),
            ..DiscoveryRequest::default()
        }
    }

    fn sent(watches: &mut Watches, type_url: &str, nonce: &str) {
        watches.get_mut(type_url).unwrap().record_sent(&Sent {
            nonce: nonce.into(),
            version: "v1".into(),
            ..Sent::default()
        });
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn initial_request_creates_watch_and_responds() {
        let mut w = Watches::new();
        let d = decide(&mut w, &req(type_url::CLUSTER, &[], ""));
        assert_eq!(d, Decision::Respond(Scope::all(true)));
        assert!(w[type_url::CLUSTER].wildcard);

        let d = decide(&mut w, &req(type_url::ENDPOINT, &["a", "b"], ""));
        assert_eq!(d, Decision::Respond(Scope::all(true)));
        assert_eq!(w[type_url::ENDPOINT].names, names(&["a", "b"]));
        assert!(!w[type_url::ENDPOINT].wildcard);
    }

    #[test]
    fn reconnect_with_foreign_nonce_is_initial() {
        let mut w = Watches::new();
        let d = decide(&mut w, &req(type_url::LISTENER, &[], "other-server-nonce"));
        assert_eq!(d, Decision::Respond(Scope::all(true)));
        assert!(w.contains_key(type_url::LISTENER));
    }

    #[test]
    fn ack_records_nonce_and_does_not_respond() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::CLUSTER, &[], ""));
        sent(&mut w, type_url::CLUSTER, "n1");
        w.get_mut(type_url::CLUSTER).unwrap().last_error = Some("old".into());
        let d = decide(&mut w, &req(type_url::CLUSTER, &[], "n1"));
        assert_eq!(d, Decision::Ack);
        let watch = &w[type_url::CLUSTER];
        assert_eq!(watch.nonce_acked.as_deref(), Some("n1"));
        assert_eq!(watch.version_acked.as_deref(), Some("v1"));
        assert_eq!(watch.last_error, None, "an ACK clears the last NACK");
    }

    #[test]
    fn nack_records_error_without_response() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::CLUSTER, &[], ""));
        sent(&mut w, type_url::CLUSTER, "n1");
        let mut nack = req(type_url::CLUSTER, &[], "n1");
        nack.error_detail = Some(Status {
            code: 3,
            message: "bad cluster".into(),
            details: vec![],
        });
        let d = decide(&mut w, &nack);
        assert_eq!(
            d,
            Decision::Nack {
                code: 3,
                message: "bad cluster".into()
            }
        );
        let watch = &w[type_url::CLUSTER];
        assert_eq!(watch.last_error.as_deref(), Some("bad cluster"));
        assert_eq!(watch.nonce_acked, None);
    }

    #[test]
    fn stale_nonce_is_ignored() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::ENDPOINT, &["a"], ""));
        sent(&mut w, type_url::ENDPOINT, "n1");
        sent(&mut w, type_url::ENDPOINT, "n2");
        let before = w.clone();
        let d = decide(&mut w, &req(type_url::ENDPOINT, &["a", "b"], "n1"));
        assert_eq!(d, Decision::Stale);
        assert_eq!(w, before, "a stale request changes nothing");
    }

    #[test]
    fn empty_named_request_unsubscribes() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::ROUTE, &["80"], ""));
        sent(&mut w, type_url::ROUTE, "n1");
        let d = decide(&mut w, &req(type_url::ROUTE, &[], "n1"));
        assert_eq!(d, Decision::Unsubscribe);
        assert!(!w.contains_key(type_url::ROUTE));
        // Empty on a wildcard type is a wildcard subscription, not an unsubscribe.
        assert_eq!(
            decide(&mut w, &req(type_url::LISTENER, &[], "")),
            Decision::Respond(Scope::all(true))
        );
    }

    #[test]
    fn added_names_respond_removed_names_do_not() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::ENDPOINT, &["a"], ""));
        sent(&mut w, type_url::ENDPOINT, "n1");
        let d = decide(&mut w, &req(type_url::ENDPOINT, &["a", "b"], "n1"));
        assert_eq!(d, Decision::Respond(Scope::all(true)));
        assert_eq!(w[type_url::ENDPOINT].names, names(&["a", "b"]));

        sent(&mut w, type_url::ENDPOINT, "n2");
        let d = decide(&mut w, &req(type_url::ENDPOINT, &["b"], "n2"));
        assert_eq!(d, Decision::Ack);
        assert_eq!(w[type_url::ENDPOINT].names, names(&["b"]));
    }

    #[test]
    fn wildcard_type_name_changes_respond() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::LISTENER, &["a", "b"], ""));
        assert!(!w[type_url::LISTENER].wildcard);
        sent(&mut w, type_url::LISTENER, "n1");
        let d = decide(&mut w, &req(type_url::LISTENER, &["a"], "n1"));
        assert_eq!(d, Decision::Respond(Scope::all(true)));
    }

    #[test]
    fn new_cds_watch_forces_next_eds_response() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::ENDPOINT, &["a"], ""));
        sent(&mut w, type_url::ENDPOINT, "e1");
        decide(&mut w, &req(type_url::CLUSTER, &[], ""));
        // Same names, matching nonce: normally an ACK, but the clusters are warming.
        let d = decide(&mut w, &req(type_url::ENDPOINT, &["a"], "e1"));
        assert_eq!(d, Decision::Respond(Scope::all(true)));
        sent(&mut w, type_url::ENDPOINT, "e2");
        let d = decide(&mut w, &req(type_url::ENDPOINT, &["a"], "e2"));
        assert_eq!(d, Decision::Ack, "only the next request is forced");
    }

    #[test]
    fn build_filters_named_types_and_sets_version() {
        use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::ENDPOINT, &["a"], ""));
        let cla = |n: &str| {
            Resource::new(
                n,
                &ClusterLoadAssignment {
                    cluster_name: n.to_string(),
                    ..Default::default()
                },
            )
        };
        let (resp, sent) = build(
            &w[type_url::ENDPOINT],
            type_url::ENDPOINT,
            "v7",
            "v7-nonce".into(),
            vec![cla("a"), cla("b")],
            &Scope::all(true),
        );
        assert_eq!(resp.version_info, "v7");
        assert_eq!(resp.nonce, "v7-nonce");
        assert_eq!(resp.type_url, type_url::ENDPOINT);
        assert_eq!(resp.resources.len(), 1, "b was not subscribed");
        assert_eq!(sent.resources, 1);
        assert_eq!(sent.nonce, "v7-nonce");
        assert!(sent.bytes > 0);
    }
}
