//! Incremental (delta) xDS: what a `DeltaDiscoveryRequest` calls for (Istio's
//! `shouldRespondDelta`) and which resources a response must carry. Pure: no I/O.

use std::collections::BTreeSet;

use strait_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DeltaResource,
};
use strait_proto::xds::any::Any;
use strait_proto::xds::type_url;

use super::version::resource_version;
use super::watch::{Decision, Scope, Sent, Watch, Watches};
use crate::xds::Resource;

/// Applies a request to the connection's watches and says whether to respond.
pub fn decide(watches: &mut Watches, req: &DeltaDiscoveryRequest) -> Decision {
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

    let Some(watch) = watches.get_mut(type_url) else {
        subscribe(watches, req);
        return Decision::Respond(Scope::all(true));
    };

    // An empty nonce is a spontaneous request (a subscription change), never stale.
    let is_ack = !req.response_nonce.is_empty();
    if is_ack && watch.nonce_sent.as_deref() != Some(req.response_nonce.as_str()) {
        return Decision::Stale;
    }
    if is_ack {
        watch.nonce_acked = Some(req.response_nonce.clone());
        watch.version_acked = watch.version_sent.clone();
        watch.last_error = None;
    }

    let mut wildcard_added = false;
    let mut added = BTreeSet::new();
    for name in &req.resource_names_subscribe {
        if name == "*" {
            if type_url::is_wildcard(type_url) && !watch.wildcard {
                watch.wildcard = true;
                wildcard_added = true;
            }
        } else if watch.names.insert(name.clone()) {
            added.insert(name.clone());
        }
    }
    let mut removed = false;
    for name in &req.resource_names_unsubscribe {
        if name == "*" {
            removed |= std::mem::replace(&mut watch.wildcard, false);
        } else {
            removed |= watch.names.remove(name);
            added.remove(name);
        }
    }
    // The client drops what it unsubscribed from; forget it so a later subscription
    // gets it again.
    let Watch {
        sent,
        names,
        wildcard,
        ..
    } = &mut *watch;
    sent.retain(|name, _| *wildcard || names.contains(name));

    let always_respond = std::mem::take(&mut watch.always_respond);
    if wildcard_added || always_respond {
        return Decision::Respond(Scope::all(true));
    }
    if !added.is_empty() {
        return Decision::Respond(Scope::names(added, true));
    }
    if removed {
        return Decision::Unsubscribe;
    }
    Decision::Ack
}

fn subscribe(watches: &mut Watches, req: &DeltaDiscoveryRequest) {
    let type_url = req.type_url.as_str();
    let unsubscribed: BTreeSet<&String> = req.resource_names_unsubscribe.iter().collect();
    let mut watch = Watch::new(
        type_url,
        req.resource_names_subscribe
            .iter()
            .filter(|n| !unsubscribed.contains(n))
            .cloned(),
    );
    // A reconnecting client lists what it still holds. Everything is sent again (no
    // version can match ""), and whatever no longer exists is named as removed.
    watch.sent = req
        .initial_resource_versions
        .keys()
        .filter(|name| watch.wants(name))
        .map(|name| (name.clone(), String::new()))
        .collect();
    watches.insert(type_url.to_string(), watch);
    if type_url == type_url::CLUSTER
        && let Some(eds) = watches.get_mut(type_url::ENDPOINT)
    {
        eds.always_respond = true;
    }
}

/// Builds the response for one watch from freshly generated resources: the resources
/// in scope whose version differs from what the client holds (all of them when
/// forced), and the names in scope the client holds or asked for that no longer exist.
/// `None` when there is nothing to tell the client and it is not waiting for an answer.
pub fn build(
    watch: &Watch,
    type_url: &str,
    version: &str,
    nonce: String,
    resources: Vec<Resource>,
    scope: &Scope,
) -> Option<(DeltaDiscoveryResponse, Sent)> {
    let mut present = BTreeSet::new();
    let mut out = Vec::new();
    let mut versions = Vec::new();
    let mut bytes = 0;
    for Resource { name, body } in resources {
        if !scope.covers(watch, &name) || present.contains(&name) {
            continue;
        }
        let resource_version = resource_version(type_url, &body.value);
        present.insert(name.clone());
        let unchanged = watch.sent.get(&name) == Some(&resource_version);
        if unchanged && !scope.forced && !scope.refresh.contains(&name) {
            continue;
        }
        bytes += body.value.len();
        versions.push((name.clone(), resource_version.clone()));
        out.push(DeltaResource {
            name,
            version: resource_version,
            resource: Some(Any {
                type_url: body.type_url,
                value: body.value,
            }),
            ..DeltaResource::default()
        });
    }

    let mut gone: BTreeSet<&String> = watch
        .sent
        .keys()
        .filter(|name| scope.covers(watch, name))
        .collect();
    if scope.forced {
        // Names the client explicitly asked for must be answered, if only as removed.
        gone.extend(scope.names.as_ref().unwrap_or(&watch.names));
    }
    let removed: Vec<String> = gone
        .into_iter()
        .filter(|name| !present.contains(*name))
        .cloned()
        .collect();

    if out.is_empty() && removed.is_empty() && !scope.forced {
        return None;
    }
    let sent = Sent {
        nonce: nonce.clone(),
        version: version.to_string(),
        resources: out.len(),
        bytes,
        versions,
        removed: removed.clone(),
    };
    let response = DeltaDiscoveryResponse {
        system_version_info: version.to_string(),
        resources: out,
        type_url: type_url.to_string(),
        removed_resources: removed,
        nonce,
        ..DeltaDiscoveryResponse::default()
    };
    Some((response, sent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};
    use strait_proto::envoy::config::cluster::v3::Cluster;
    use strait_proto::google::rpc::Status;

    fn req(type_url: &str, sub: &[&str], unsub: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
            resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.to_string(),
            ..DeltaDiscoveryRequest::default()
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn cluster(name: &str, timeout_ms: i32) -> Resource {
        Resource::new(
            name,
            &Cluster {
                name: name.to_string(),
                connect_timeout: Some(strait_proto::google::protobuf::Duration {
                    seconds: 0,
                    nanos: timeout_ms * 1_000_000,
                }),
                ..Default::default()
            },
        )
    }

    /// Builds and records a response, as the connection does after a successful send.
    fn push(
        w: &mut Watches,
        type_url: &str,
        resources: Vec<Resource>,
        scope: &Scope,
        nonce: &str,
    ) -> Option<DeltaDiscoveryResponse> {
        let (resp, sent) = build(&w[type_url], type_url, "v1", nonce.into(), resources, scope)?;
        w.get_mut(type_url).unwrap().record_sent(&sent);
        Some(resp)
    }

    fn resource_names(resp: &DeltaDiscoveryResponse) -> Vec<&str> {
        resp.resources.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn first_request_responds_with_everything() {
        let mut w = Watches::new();
        let d = decide(&mut w, &req(type_url::CLUSTER, &[], &[], ""));
        assert_eq!(d, Decision::Respond(Scope::all(true)));
        assert!(w[type_url::CLUSTER].wildcard);
        let resp = push(
            &mut w,
            type_url::CLUSTER,
            vec![cluster("a", 1), cluster("b", 1)],
            &Scope::all(true),
            "n1",
        )
        .unwrap();
        assert_eq!(resource_names(&resp), vec!["a", "b"]);
        assert!(resp.resources.iter().all(|r| r.version.len() == 16));
        assert_eq!(resp.system_version_info, "v1");
        assert_eq!(resp.nonce, "n1");

        // An explicit "*" is a wildcard subscription too.
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::LISTENER, &["*", "x"], &[], ""));
        assert!(w[type_url::LISTENER].wildcard);
        assert_eq!(w[type_url::LISTENER].names, names(&["x"]));
    }

    #[test]
    fn reconnect_sends_everything_and_removes_what_is_gone() {
        let mut w = Watches::new();
        let mut r = req(type_url::CLUSTER, &[], &[], "");
        r.initial_resource_versions = HashMap::from([
            ("a".to_string(), resource_version(type_url::CLUSTER, b"")),
            ("gone".to_string(), "x".to_string()),
        ]);
        assert_eq!(decide(&mut w, &r), Decision::Respond(Scope::all(true)));
        let resp = push(
            &mut w,
            type_url::CLUSTER,
            vec![cluster("a", 1)],
            &Scope::all(true),
            "n1",
        )
        .unwrap();
        assert_eq!(resource_names(&resp), vec!["a"]);
        assert_eq!(resp.removed_resources, vec!["gone".to_string()]);
    }

    #[test]
    fn named_first_request_answers_missing_names_as_removed() {
        let mut w = Watches::new();
        let d = decide(&mut w, &req(type_url::ENDPOINT, &["a", "missing"], &[], ""));
        assert_eq!(d, Decision::Respond(Scope::all(true)));
        assert!(!w[type_url::ENDPOINT].wildcard);
        let resp = push(
            &mut w,
            type_url::ENDPOINT,
            vec![cluster("a", 1)],
            &Scope::all(true),
            "n1",
        )
        .unwrap();
        assert_eq!(resource_names(&resp), vec!["a"]);
        assert_eq!(resp.removed_resources, vec!["missing".to_string()]);
    }

    #[test]
    fn ack_nack_and_stale() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::CLUSTER, &[], &[], ""));
        push(
            &mut w,
            type_url::CLUSTER,
            vec![cluster("a", 1)],
            &Scope::all(true),
            "n1",
        );

        let mut nack = req(type_url::CLUSTER, &[], &[], "n1");
        nack.error_detail = Some(Status {
            code: 13,
            message: "rejected".into(),
            details: vec![],
        });
        assert!(matches!(
            decide(&mut w, &nack),
            Decision::Nack { code: 13, .. }
        ));
        assert_eq!(w[type_url::CLUSTER].last_error.as_deref(), Some("rejected"));

        assert_eq!(
            decide(&mut w, &req(type_url::CLUSTER, &[], &[], "old")),
            Decision::Stale
        );
        assert_eq!(w[type_url::CLUSTER].nonce_acked, None);

        assert_eq!(
            decide(&mut w, &req(type_url::CLUSTER, &[], &[], "n1")),
            Decision::Ack
        );
        let watch = &w[type_url::CLUSTER];
        assert_eq!(watch.nonce_acked.as_deref(), Some("n1"));
        assert_eq!(watch.version_acked.as_deref(), Some("v1"));
        assert_eq!(watch.last_error, None);
    }

    #[test]
    fn subscribe_responds_for_added_names_and_unsubscribe_forgets() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::ENDPOINT, &["a"], &[], ""));
        push(
            &mut w,
            type_url::ENDPOINT,
            vec![cluster("a", 1)],
            &Scope::all(true),
            "n1",
        );

        let d = decide(&mut w, &req(type_url::ENDPOINT, &["b", "a"], &[], ""));
        assert_eq!(d, Decision::Respond(Scope::names(names(&["b"]), true)));
        assert_eq!(w[type_url::ENDPOINT].names, names(&["a", "b"]));
        let resp = push(
            &mut w,
            type_url::ENDPOINT,
            vec![cluster("b", 1)],
            &Scope::names(names(&["b"]), true),
            "n2",
        )
        .unwrap();
        assert_eq!(resource_names(&resp), vec!["b"]);
        assert!(resp.removed_resources.is_empty());

        let d = decide(&mut w, &req(type_url::ENDPOINT, &[], &["a"], ""));
        assert_eq!(d, Decision::Unsubscribe);
        let watch = &w[type_url::ENDPOINT];
        assert_eq!(watch.names, names(&["b"]));
        assert!(
            !watch.sent.contains_key("a"),
            "unsubscribed names are forgotten"
        );
    }

    #[test]
    fn push_sends_only_changes_and_removals() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::CLUSTER, &[], &[], ""));
        push(
            &mut w,
            type_url::CLUSTER,
            vec![cluster("a", 1), cluster("b", 1), cluster("c", 1)],
            &Scope::all(true),
            "n1",
        );
        // Unchanged: nothing to send.
        assert!(
            push(
                &mut w,
                type_url::CLUSTER,
                vec![cluster("a", 1), cluster("b", 1), cluster("c", 1)],
                &Scope::all(false),
                "n2",
            )
            .is_none()
        );
        // b changed, c removed, d added.
        let resp = push(
            &mut w,
            type_url::CLUSTER,
            vec![cluster("a", 1), cluster("b", 2), cluster("d", 1)],
            &Scope::all(false),
            "n3",
        )
        .unwrap();
        assert_eq!(resource_names(&resp), vec!["b", "d"]);
        assert_eq!(resp.removed_resources, vec!["c".to_string()]);
        let sent: BTreeMap<_, _> = w[type_url::CLUSTER].sent.clone();
        assert_eq!(sent.keys().collect::<Vec<_>>(), vec!["a", "b", "d"]);
        // A forced push resends everything.
        let resp = push(
            &mut w,
            type_url::CLUSTER,
            vec![cluster("a", 1), cluster("b", 2), cluster("d", 1)],
            &Scope::all(true),
            "n4",
        )
        .unwrap();
        assert_eq!(resp.resources.len(), 3);
    }

    #[test]
    fn refresh_resends_unchanged_names() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::ENDPOINT, &["a", "b"], &[], ""));
        push(
            &mut w,
            type_url::ENDPOINT,
            vec![cluster("a", 1), cluster("b", 1)],
            &Scope::all(true),
            "n1",
        );
        let scope = Scope::all(false).with_refresh(names(&["b"]));
        let resp = push(
            &mut w,
            type_url::ENDPOINT,
            vec![cluster("a", 1), cluster("b", 1)],
            &scope,
            "n2",
        )
        .unwrap();
        assert_eq!(resource_names(&resp), vec!["b"]);
    }

    #[test]
    fn named_push_removes_names_the_generator_dropped() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::ENDPOINT, &["a", "b"], &[], ""));
        push(
            &mut w,
            type_url::ENDPOINT,
            vec![cluster("a", 1), cluster("b", 1)],
            &Scope::all(true),
            "n1",
        );
        let resp = push(
            &mut w,
            type_url::ENDPOINT,
            vec![cluster("a", 1)],
            &Scope::names(names(&["a", "b"]), false),
            "n2",
        )
        .unwrap();
        assert!(resp.resources.is_empty());
        assert_eq!(resp.removed_resources, vec!["b".to_string()]);
        // Already told: not repeated on the next push.
        assert!(
            push(
                &mut w,
                type_url::ENDPOINT,
                vec![cluster("a", 1)],
                &Scope::all(false),
                "n3"
            )
            .is_none()
        );
    }

    #[test]
    fn wildcard_unsubscribe_keeps_explicit_names() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::CLUSTER, &["*", "a"], &[], ""));
        push(
            &mut w,
            type_url::CLUSTER,
            vec![cluster("a", 1), cluster("b", 1)],
            &Scope::all(true),
            "n1",
        );
        let d = decide(&mut w, &req(type_url::CLUSTER, &[], &["*"], ""));
        assert_eq!(d, Decision::Unsubscribe);
        let watch = &w[type_url::CLUSTER];
        assert!(!watch.wildcard);
        assert_eq!(watch.sent.keys().collect::<Vec<_>>(), vec!["a"]);

        let d = decide(&mut w, &req(type_url::CLUSTER, &["*"], &[], ""));
        assert_eq!(d, Decision::Respond(Scope::all(true)));
        assert!(w[type_url::CLUSTER].wildcard);
    }

    #[test]
    fn new_cds_watch_forces_next_eds_response() {
        let mut w = Watches::new();
        decide(&mut w, &req(type_url::ENDPOINT, &["a"], &[], ""));
        push(
            &mut w,
            type_url::ENDPOINT,
            vec![cluster("a", 1)],
            &Scope::all(true),
            "e1",
        );
        decide(&mut w, &req(type_url::CLUSTER, &[], &[], ""));
        assert_eq!(
            decide(&mut w, &req(type_url::ENDPOINT, &[], &[], "e1")),
            Decision::Respond(Scope::all(true))
        );
        assert_eq!(
            decide(&mut w, &req(type_url::ENDPOINT, &[], &[], "e1")),
            Decision::Ack
        );
    }
}
