//! Response resources → named [`ResourceUpdate`]s, after the checks Envoy makes before
//! any resource reaches its subscriber: matching type URLs, names present and unique,
//! delta heartbeats skipped. A failed check rejects the whole response.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use strait_proto::envoy::service::discovery::v3::Resource as DiscoveryResource;
use strait_proto::xds::any::{self, Any};

use super::handler::{Rejected, ResourceUpdate};

/// Field 1 is the name of every type the client subscribes to (`Cluster.name`,
/// `ClusterLoadAssignment.cluster_name`, `Listener.name`, `RouteConfiguration.name`),
/// so SotW names are read without decoding the rest; prost skips the other fields.
#[derive(Clone, PartialEq, Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

/// The name of a resource of one of the subscribed types.
pub(crate) fn resource_name(body: &Any) -> Result<String, prost::DecodeError> {
    NameOnly::decode(body.value.as_slice()).map(|n| n.name)
}

/// Where a nameless resource is reported.
fn position(index: usize) -> String {
    format!("resources[{index}]")
}

/// SotW: names every resource of a response, all of which must be of `type_url`.
/// Resources may come wrapped in `envoy.service.discovery.v3.Resource`, which then
/// carries the name.
pub(crate) fn sotw_updates(
    type_url: &str,
    version: &str,
    resources: Vec<Any>,
) -> Result<Vec<ResourceUpdate>, Vec<Rejected>> {
    let mut rejected = Vec::new();
    let mut updates = Vec::with_capacity(resources.len());
    let mut seen = BTreeSet::new();
    for (index, body) in resources.into_iter().enumerate() {
        let (wrapper_name, body) = match unwrap(body) {
            Ok(unwrapped) => unwrapped,
            Err(error) => {
                rejected.push(Rejected::new(position(index), error));
                continue;
            }
        };
        if body.type_url != type_url {
            rejected.push(Rejected::new(
                position(index),
                mismatch(&body.type_url, type_url),
            ));
            continue;
        }
        let name = match wrapper_name.filter(|n| !n.is_empty()) {
            Some(name) => name,
            None => match resource_name(&body) {
                Ok(name) if !name.is_empty() => name,
                Ok(_) => {
                    rejected.push(Rejected::new(position(index), "resource has no name"));
                    continue;
                }
                Err(e) => {
                    rejected.push(Rejected::new(
                        position(index),
                        format!("cannot decode: {e}"),
                    ));
                    continue;
                }
            },
        };
        if !seen.insert(name.clone()) {
            rejected.push(Rejected::new(name, "duplicate name in the response"));
            continue;
        }
        updates.push(ResourceUpdate {
            name,
            version: version.to_string(),
            resource: body,
        });
    }
    if rejected.is_empty() {
        Ok(updates)
    } else {
        Err(rejected)
    }
}

/// Opens an `envoy.service.discovery.v3.Resource` wrapper; other bodies pass through.
fn unwrap(body: Any) -> Result<(Option<String>, Any), String> {
    if !any::is::<DiscoveryResource>(&body) {
        return Ok((None, body));
    }
    let wrapper: DiscoveryResource =
        any::unpack(&body).map_err(|e| format!("cannot decode the Resource wrapper: {e}"))?;
    match wrapper.resource {
        Some(inner) => Ok((Some(wrapper.name), inner)),
        // A bodiless wrapper is a TTL heartbeat, which only makes sense for resources
        // with a TTL; nothing here sets one.
        None => Err(format!(
            "Resource wrapper {:?} has no body (TTL heartbeats are not supported)",
            wrapper.name
        )),
    }
}

fn mismatch(actual: &str, expected: &str) -> String {
    format!("type URL {actual} does not match the response's type URL {expected}")
}

/// Delta: turns the response's resources into updates. `known` holds the versions
/// already accepted: a bodiless resource at a known version is a heartbeat and skipped.
pub(crate) fn delta_updates(
    type_url: &str,
    resources: Vec<DiscoveryResource>,
    removed: &[String],
    known: &BTreeMap<String, String>,
) -> Result<Vec<ResourceUpdate>, Vec<Rejected>> {
    let mut rejected = Vec::new();
    let mut updates = Vec::with_capacity(resources.len());
    let mut seen = BTreeSet::new();
    for (index, resource) in resources.into_iter().enumerate() {
        let DiscoveryResource {
            name,
            version,
            resource: body,
            aliases,
            ..
        } = resource;
        if name.is_empty() {
            rejected.push(Rejected::new(position(index), "resource has no name"));
            continue;
        }
        if !seen.insert(name.clone()) {
            rejected.push(Rejected::new(
                name,
                "duplicate name among added/updated resources",
            ));
            continue;
        }
        let Some(body) = body else {
            let heartbeat = known.get(&name) == Some(&version);
            // Unresolved aliases come back bodiless too; there is nothing to apply.
            if !heartbeat && aliases.is_empty() {
                rejected.push(Rejected::new(name, "resource has no body"));
            }
            continue;
        };
        if body.type_url != type_url {
            rejected.push(Rejected::new(name, mismatch(&body.type_url, type_url)));
            continue;
        }
        updates.push(ResourceUpdate {
            name,
            version,
            resource: body,
        });
    }
    for name in removed {
        if !seen.insert(name.clone()) {
            rejected.push(Rejected::new(
                name.clone(),
                "duplicate name in the union of added and removed resources",
            ));
        }
    }
    if rejected.is_empty() {
        Ok(updates)
    } else {
        Err(rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::envoy::config::cluster::v3::Cluster;
    use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use strait_proto::envoy::config::listener::v3::Listener;
    use strait_proto::envoy::config::route::v3::RouteConfiguration;
    use strait_proto::xds::type_url;

    fn cluster(name: &str) -> Any {
        any::pack(&Cluster {
            name: name.to_string(),
            alt_stat_name: "other string field".to_string(),
            ..Cluster::default()
        })
    }

    #[test]
    fn name_is_field_one_of_every_subscribed_type() {
        assert_eq!(resource_name(&cluster("c")).unwrap(), "c");
        let cla = ClusterLoadAssignment {
            cluster_name: "e".into(),
            ..Default::default()
        };
        assert_eq!(resource_name(&any::pack(&cla)).unwrap(), "e");
        let listener = Listener {
            name: "l".into(),
            stat_prefix: "s".into(),
            ..Default::default()
        };
        assert_eq!(resource_name(&any::pack(&listener)).unwrap(), "l");
        let route = RouteConfiguration {
            name: "r".into(),
            ..Default::default()
        };
        assert_eq!(resource_name(&any::pack(&route)).unwrap(), "r");
    }

    #[test]
    fn sotw_names_resources_and_carries_the_response_version() {
        let updates =
            sotw_updates(type_url::CLUSTER, "v7", vec![cluster("a"), cluster("b")]).unwrap();
        let names: Vec<_> = updates.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(updates.iter().all(|u| u.version == "v7"));
        assert_eq!(updates[0].resource, cluster("a"));
    }

    #[test]
    fn sotw_rejects_wrong_type_nameless_and_duplicate_resources() {
        let listener = any::pack(&Listener {
            name: "l".into(),
            ..Default::default()
        });
        let rejected = sotw_updates(
            type_url::CLUSTER,
            "v1",
            vec![cluster("a"), listener, cluster(""), cluster("a")],
        )
        .unwrap_err();
        assert_eq!(rejected.len(), 3, "{rejected:?}");
        assert_eq!(rejected[0].name, "resources[1]");
        assert!(
            rejected[0]
                .error
                .contains("envoy.config.listener.v3.Listener")
        );
        assert_eq!(rejected[1].name, "resources[2]");
        assert!(rejected[1].error.contains("no name"));
        assert_eq!(rejected[2].name, "a");
        assert!(rejected[2].error.contains("duplicate"));
    }

    #[test]
    fn sotw_opens_resource_wrappers() {
        let wrapped = any::pack(&DiscoveryResource {
            name: "from-wrapper".into(),
            version: "1".into(),
            resource: Some(cluster("inner")),
            ..Default::default()
        });
        let updates = sotw_updates(type_url::CLUSTER, "v1", vec![wrapped]).unwrap();
        assert_eq!(updates[0].name, "from-wrapper");
        assert_eq!(updates[0].resource, cluster("inner"));

        let heartbeat = any::pack(&DiscoveryResource {
            name: "hb".into(),
            ..Default::default()
        });
        let rejected = sotw_updates(type_url::CLUSTER, "v1", vec![heartbeat]).unwrap_err();
        assert!(rejected[0].error.contains("no body"), "{rejected:?}");
    }

    fn delta(name: &str, version: &str, body: Option<Any>) -> DiscoveryResource {
        DiscoveryResource {
            name: name.into(),
            version: version.into(),
            resource: body,
            ..Default::default()
        }
    }

    #[test]
    fn delta_skips_heartbeats_and_rejects_bodiless_unknowns() {
        let known = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let updates = delta_updates(
            type_url::CLUSTER,
            vec![delta("a", "1", None), delta("b", "2", Some(cluster("b")))],
            &[],
            &known,
        )
        .unwrap();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].name, "b");
        assert_eq!(updates[0].version, "2");

        let rejected =
            delta_updates(type_url::CLUSTER, vec![delta("a", "2", None)], &[], &known).unwrap_err();
        assert_eq!(rejected, vec![Rejected::new("a", "resource has no body")]);
    }

    #[test]
    fn delta_rejects_duplicates_and_wrong_types() {
        let route = any::pack(&RouteConfiguration {
            name: "r".into(),
            ..Default::default()
        });
        let rejected = delta_updates(
            type_url::CLUSTER,
            vec![
                delta("a", "1", Some(cluster("a"))),
                delta("a", "1", Some(cluster("a"))),
                delta("r", "1", Some(route)),
            ],
            &["a".to_string()],
            &BTreeMap::new(),
        )
        .unwrap_err();
        let names: Vec<_> = rejected.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "r", "a"], "{rejected:?}");
        assert!(rejected[1].error.contains("RouteConfiguration"));
        assert!(rejected[2].error.contains("added and removed"));
    }
}
