//! EDS: the endpoints of the `outbound|<port>|<subset>|<host>` clusters a proxy asked
//! for, grouped by locality, with locality priorities relative to the proxy.
//!
//! Like Istio, a requested cluster whose service or port is unknown gets an assignment
//! without endpoints (Envoy waits for an answer to each name it asked for). Names that
//! are not outbound clusters are skipped.

use std::collections::HashSet;

use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;

use super::cluster::{endpoints, lb, locality, merge};
use crate::model::service::parse_cluster_name;
use crate::model::{Proxy, PushContext, Resolution, metric};

pub fn build_endpoints(
    proxy: &Proxy,
    push: &PushContext,
    cluster_names: &[String],
) -> Vec<ClusterLoadAssignment> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(cluster_names.len());
    cluster_names
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .filter_map(|name| assignment(proxy, push, name))
        .collect()
}

fn empty(name: &str) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        ..Default::default()
    }
}

fn assignment(proxy: &Proxy, push: &PushContext, name: &str) -> Option<ClusterLoadAssignment> {
    let key = parse_cluster_name(name).filter(|k| k.direction == "outbound")?;
    let Some(svc) = push.service_for_host(key.host, &proxy.namespace) else {
        return Some(empty(name));
    };
    let Some(port) = svc.port_by_number(key.port) else {
        return Some(empty(name));
    };
    // A service now resolved by DNS has no EDS cluster; Envoy drops the name once the
    // new cluster arrives.
    if matches!(
        svc.resolution,
        Resolution::DnsLb | Resolution::DnsRoundRobinLb
    ) {
        return Some(empty(name));
    }
    let rule = push.destination_rule(proxy, &svc);
    let spec = rule.map(|r| r.spec.as_ref());
    let labels = spec
        .and_then(|r| merge::subset(r, key.subset))
        .map(|s| &s.labels)
        .filter(|l| !key.subset.is_empty() && !l.is_empty());
    let eps = endpoints::select(push, &svc, port, labels);
    let mtls = endpoints::mtls_allowed(spec, key.subset, key.port);
    let (groups, ep_labels) = endpoints::group(&eps, &svc, mtls);
    if groups.is_empty() {
        push.status.add(
            metric::EDS_NO_INSTANCES,
            name,
            endpoints::no_instances_message(rule, key.subset, &svc, key.port),
        );
        return Some(empty(name));
    }
    let mut cla = ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: groups,
        ..Default::default()
    };
    // Failover only works with outlier detection: without it Envoy never leaves
    // priority 0.
    let policy = spec.and_then(|r| merge::subset_policy(r, key.subset, key.port));
    let failover = policy
        .as_ref()
        .is_some_and(|p| p.outlier_detection.is_some());
    let lb_settings = policy.as_ref().and_then(|p| p.load_balancer.as_ref());
    if let Some(setting) = lb::effective_locality_setting(&push.mesh, lb_settings) {
        locality::apply_with_labels(
            &mut cla,
            &proxy.locality,
            &proxy.labels,
            setting,
            failover,
            &ep_labels,
        );
    }
    Some(cla)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use strait_proto::envoy::config::core::v3::address::Address as AddressKind;
    use strait_proto::envoy::config::endpoint::v3::LbEndpoint;
    use strait_proto::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    use strait_proto::xds::json;

    use super::*;
    use crate::xds::cluster::fixture::{self, REVIEWS};

    fn ip(ep: &LbEndpoint) -> IpAddr {
        let Some(HostIdentifier::Endpoint(e)) = &ep.host_identifier else {
            panic!("no endpoint");
        };
        let Some(AddressKind::SocketAddress(sa)) = &e.address.as_ref().unwrap().address else {
            panic!("no socket address");
        };
        sa.address.parse().unwrap()
    }

    fn ips(cla: &ClusterLoadAssignment) -> Vec<String> {
        cla.endpoints
            .iter()
            .flat_map(|g| g.lb_endpoints.iter().map(|e| ip(e).to_string()))
            .collect()
    }

    fn generate(names: &[&str]) -> (Vec<ClusterLoadAssignment>, PushContext) {
        let push = fixture::push();
        let proxy = fixture::sidecar(&push);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        (build_endpoints(&proxy, &push, &names), push)
    }

    #[test]
    fn subset_gets_only_its_ready_endpoints() {
        let name = format!("outbound|9080|v2|{REVIEWS}");
        let (out, _) = generate(&[&name]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].cluster_name, name);
        assert_eq!(
            ips(&out[0]),
            vec!["10.0.0.2", "10.0.1.2"],
            "no v1, no unhealthy"
        );
        let (all, _) = generate(&[&format!("outbound|9080||{REVIEWS}")]);
        assert_eq!(ips(&all[0]), vec!["10.0.0.1", "10.0.0.2", "10.0.1.2"]);
    }

    #[test]
    fn localities_group_weights_and_fail_over() {
        let (out, _) = generate(&[&format!("outbound|9080||{REVIEWS}")]);
        let groups = &out[0].endpoints;
        assert_eq!(groups.len(), 2);
        let zone = |i: usize| groups[i].locality.as_ref().unwrap().zone.clone();
        assert_eq!((zone(0), zone(1)), ("z1".to_string(), "z2".to_string()));
        assert_eq!(
            groups[0].load_balancing_weight.as_ref().unwrap().value,
            4,
            "1 + 3"
        );
        assert_eq!(groups[1].load_balancing_weight.as_ref().unwrap().value, 1);
        let weights: Vec<u32> = groups[0]
            .lb_endpoints
            .iter()
            .map(|e| e.load_balancing_weight.as_ref().unwrap().value)
            .collect();
        assert_eq!(weights, vec![1, 3]);
        // The rule has outlier detection: the proxy's own zone (r1/z1) comes first.
        assert_eq!((groups[0].priority, groups[1].priority), (0, 1));
    }

    #[test]
    fn no_failover_without_outlier_detection() {
        let mut rule = fixture::reviews_rule();
        let mut spec = (*rule.spec).clone();
        if let Some(p) = spec.traffic_policy.as_mut() {
            p.outlier_detection = None;
        }
        rule.spec = std::sync::Arc::new(spec);
        let push = fixture::push_with(vec![rule]);
        let proxy = fixture::sidecar(&push);
        let out = build_endpoints(&proxy, &push, &[format!("outbound|9080||{REVIEWS}")]);
        assert!(out[0].endpoints.iter().all(|g| g.priority == 0));
    }

    #[test]
    fn endpoints_carry_istio_metadata() {
        let (out, _) = generate(&[&format!("outbound|9080|v1|{REVIEWS}")]);
        let ep = &out[0].endpoints[0].lb_endpoints[0];
        let meta = ep.metadata.as_ref().unwrap();
        assert!(
            meta.filter_metadata
                .contains_key("envoy.transport_socket_match")
        );
        assert!(
            meta.filter_metadata["istio"]
                .fields
                .contains_key("workload")
        );
        assert_eq!(ep.health_status, 1, "HEALTHY");
    }

    #[test]
    fn unknown_and_non_outbound_names() {
        let (out, _) = generate(&[
            "outbound|80||nope.default.svc.cluster.local",
            &format!("outbound|81||{REVIEWS}"),
            "inbound|9080||",
            "not-a-cluster",
            "outbound|80||nope.default.svc.cluster.local",
        ]);
        let names: Vec<&str> = out.iter().map(|c| c.cluster_name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "outbound|80||nope.default.svc.cluster.local",
                "outbound|81||reviews.default.svc.cluster.local"
            ]
        );
        assert!(out.iter().all(|c| c.endpoints.is_empty()));
    }

    #[test]
    fn empty_subset_reports_the_rule() {
        let name = format!("outbound|9080|v3|{REVIEWS}");
        let (out, push) = generate(&[&name]);
        assert!(out[0].endpoints.is_empty());
        let status = push.status.snapshot();
        let msg = &status[metric::EDS_NO_INSTANCES][&name].message;
        assert!(msg.contains("spec.subsets[2].labels {version=v3}"), "{msg}");
        assert!(msg.contains(fixture::DR_SOURCE), "{msg}");
    }

    #[test]
    fn assignments_render_as_json() {
        let (out, _) = generate(&[&format!("outbound|9080||{REVIEWS}")]);
        let value = json::to_json(&out[0]).unwrap();
        assert_eq!(value["clusterName"], format!("outbound|9080||{REVIEWS}"));
    }
}
