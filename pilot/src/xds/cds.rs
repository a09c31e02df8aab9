//! CDS: every cluster a proxy needs, in the order Istio sends them to a sidecar:
//! outbound clusters (service by service, subsets after their default cluster),
//! `BlackHoleCluster`, `PassthroughCluster`, inbound clusters by port, then
//! `InboundPassthroughCluster`. Gateways get their outbound clusters and the black hole.

use std::collections::HashSet;

use strait_proto::envoy::config::cluster::v3::Cluster;

use super::cluster::{inbound, outbound, special};
use crate::model::{NodeType, Proxy, PushContext, metric};

pub fn build_clusters(proxy: &Proxy, push: &PushContext) -> Vec<Cluster> {
    let mut clusters = outbound::build(proxy, push);
    clusters.push(special::black_hole(&push.mesh));
    if proxy.node_type == NodeType::Sidecar {
        clusters.push(special::passthrough(&push.mesh));
        clusters.extend(inbound::build(proxy, push));
        clusters.push(special::inbound_passthrough(
            &push.mesh,
            &proxy.ip_addresses,
        ));
    }
    dedupe(clusters, proxy, push)
}

/// Two services can yield one cluster name (e.g. ServiceEntries with the same host);
/// Envoy rejects such a response, so the first one wins and the rest are reported.
fn dedupe(clusters: Vec<Cluster>, proxy: &Proxy, push: &PushContext) -> Vec<Cluster> {
    let mut seen: HashSet<String> = HashSet::with_capacity(clusters.len());
    clusters
        .into_iter()
        .filter(|c| {
            let fresh = seen.insert(c.name.clone());
            if !fresh {
                push.status.add_for_proxy(
                    metric::DUPLICATE_ENVOY_CLUSTERS,
                    c.name.clone(),
                    Some(proxy.id.clone()),
                    format!("Duplicate cluster {} found while pushing CDS", c.name),
                );
            }
            fresh
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use strait_proto::envoy::config::cluster::v3::cluster::{DiscoveryType, LbConfig, LbPolicy};
    use strait_proto::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
    use strait_proto::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use strait_proto::envoy::extensions::upstreams::http::v3::http_protocol_options::UpstreamProtocolOptions;
    use strait_proto::google::protobuf::value::Kind;
    use strait_proto::xds::{any, json};

    use super::*;
    use crate::xds::cluster::fixture::{
        self, DR_SOURCE, EXTERNAL, HEADLESS, MYSQL, RATINGS, REVIEWS,
    };
    use crate::xds::cluster::{HTTP_PROTOCOL_OPTIONS_KEY, discovery_type};

    fn build() -> (Vec<Cluster>, PushContext) {
        let push = fixture::push();
        let proxy = fixture::sidecar(&push);
        (build_clusters(&proxy, &push), push)
    }

    fn find<'a>(clusters: &'a [Cluster], name: &str) -> &'a Cluster {
        clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
    }

    fn istio_meta<'a>(c: &'a Cluster, key: &str) -> Option<&'a Kind> {
        c.metadata
            .as_ref()?
            .filter_metadata
            .get("istio")?
            .fields
            .get(key)?
            .kind
            .as_ref()
    }

    #[test]
    fn names_and_order_follow_istio() {
        let (clusters, _) = build();
        let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "outbound|443||api.example.com",
                "outbound|5432||db.default.svc.cluster.local",
                "outbound|3306||mysql.default.svc.cluster.local",
                "outbound|9080||productpage.default.svc.cluster.local",
                "outbound|50051||ratings.default.svc.cluster.local",
                "outbound|9080||reviews.default.svc.cluster.local",
                "outbound|9080|v1|reviews.default.svc.cluster.local",
                "outbound|9080|v2|reviews.default.svc.cluster.local",
                "outbound|9080|v3|reviews.default.svc.cluster.local",
                "BlackHoleCluster",
                "PassthroughCluster",
                "inbound|9080||",
                "InboundPassthroughCluster",
            ],
            "UDP ports and aliases get no cluster"
        );
    }

    #[test]
    fn eds_clusters_point_at_ads() {
        let (clusters, _) = build();
        for name in [
            format!("outbound|9080||{REVIEWS}"),
            format!("outbound|9080|v2|{REVIEWS}"),
            format!("outbound|3306||{MYSQL}"),
        ] {
            let c = find(&clusters, &name);
            assert_eq!(discovery_type(c), Some(DiscoveryType::Eds), "{name}");
            assert_eq!(c.alt_stat_name, format!("{name};"));
            let eds = c.eds_cluster_config.as_ref().unwrap();
            assert_eq!(eds.service_name, name);
            let source = eds.eds_config.as_ref().unwrap();
            assert!(matches!(
                source.config_source_specifier,
                Some(ConfigSourceSpecifier::Ads(_))
            ));
            let timeout = source.initial_fetch_timeout.as_ref().unwrap();
            assert_eq!((timeout.seconds, timeout.nanos), (0, 0));
            assert_eq!(source.resource_api_version, 2, "V3");
        }
    }

    #[test]
    fn destination_rule_shapes_the_default_cluster() {
        let (clusters, _) = build();
        let c = find(&clusters, &format!("outbound|9080||{REVIEWS}"));
        assert_eq!(c.lb_policy, LbPolicy::RoundRobin as i32);
        assert_eq!(c.connect_timeout.as_ref().unwrap().seconds, 3);
        let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(t.max_connections.as_ref().unwrap().value, 100);
        assert_eq!(t.max_pending_requests.as_ref().unwrap().value, 10);
        assert_eq!(t.max_requests.as_ref().unwrap().value, u32::MAX);
        assert_eq!(t.max_retries.as_ref().unwrap().value, u32::MAX);
        assert!(!t.track_remaining, "Istio leaves the remaining gauges off");
        let o = c.outlier_detection.as_ref().unwrap();
        assert_eq!(o.consecutive_5xx.as_ref().unwrap().value, 5);
        assert_eq!(o.enforcing_consecutive_5xx.as_ref().unwrap().value, 100);
        assert_eq!(o.interval.as_ref().unwrap().seconds, 10);
        assert_eq!(o.base_ejection_time.as_ref().unwrap().seconds, 30);
        assert_eq!(o.max_ejection_percent.as_ref().unwrap().value, 50);
        assert_eq!(o.enforcing_success_rate.as_ref().unwrap().value, 0);
        let lb = c.common_lb_config.as_ref().unwrap();
        assert_eq!(lb.healthy_panic_threshold.as_ref().unwrap().value, 0.0);
        assert_eq!(
            istio_meta(c, "config"),
            Some(&Kind::StringValue(
                "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews".into()
            ))
        );
        let Some(Kind::ListValue(services)) = istio_meta(c, "services") else {
            panic!("no services metadata");
        };
        let Some(Kind::StructValue(svc)) = &services.values[0].kind else {
            panic!("service entry is not a struct");
        };
        assert_eq!(
            svc.fields["host"].kind,
            Some(Kind::StringValue(REVIEWS.into()))
        );
        assert_eq!(
            svc.fields["name"].kind,
            Some(Kind::StringValue("reviews".into()))
        );
    }

    #[test]
    fn subsets_merge_their_policy_over_the_rule() {
        let (clusters, _) = build();
        let v1 = find(&clusters, &format!("outbound|9080|v1|{REVIEWS}"));
        assert_eq!(v1.lb_policy, LbPolicy::RoundRobin as i32);
        assert_eq!(
            istio_meta(v1, "subset"),
            Some(&Kind::StringValue("v1".into()))
        );
        let v2 = find(&clusters, &format!("outbound|9080|v2|{REVIEWS}"));
        assert_eq!(v2.lb_policy, LbPolicy::RingHash as i32);
        let Some(LbConfig::RingHashLbConfig(ring)) = &v2.lb_config else {
            panic!("no ring hash config");
        };
        assert_eq!(ring.minimum_ring_size.as_ref().unwrap().value, 1024);
        assert!(v2.outlier_detection.is_some(), "inherited from the rule");
        assert_eq!(
            v2.circuit_breakers.as_ref().unwrap().thresholds[0]
                .max_connections
                .as_ref()
                .unwrap()
                .value,
            100
        );
    }

    #[test]
    fn defaults_without_a_destination_rule() {
        let (clusters, _) = build();
        let c = find(&clusters, &format!("outbound|3306||{MYSQL}"));
        assert_eq!(c.lb_policy, LbPolicy::LeastRequest as i32);
        assert_eq!(c.connect_timeout.as_ref().unwrap().seconds, 10);
        assert!(c.outlier_detection.is_none());
        assert!(c.typed_extension_protocol_options.is_empty());
        assert!(istio_meta(c, "config").is_none());
        let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(t.max_connections.as_ref().unwrap().value, u32::MAX);
    }

    #[test]
    fn grpc_ports_speak_http2() {
        let (clusters, _) = build();
        let c = find(&clusters, &format!("outbound|50051||{RATINGS}"));
        let opts: HttpProtocolOptions =
            any::unpack(&c.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY]).unwrap();
        assert!(matches!(
            opts.upstream_protocol_options,
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(_))
        ));
    }

    #[test]
    fn headless_and_dns_services() {
        let (clusters, _) = build();
        let headless = find(&clusters, &format!("outbound|5432||{HEADLESS}"));
        assert_eq!(discovery_type(headless), Some(DiscoveryType::OriginalDst));
        assert_eq!(headless.lb_policy, LbPolicy::ClusterProvided as i32);
        assert!(headless.eds_cluster_config.is_none());
        let dns = find(&clusters, &format!("outbound|443||{EXTERNAL}"));
        assert_eq!(discovery_type(dns), Some(DiscoveryType::StrictDns));
        let cla = dns.load_assignment.as_ref().unwrap();
        assert_eq!(cla.cluster_name, dns.name);
        let ep = &cla.endpoints[0].lb_endpoints[0];
        let Some(strait_proto::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(
            e,
        )) = &ep.host_identifier
        else {
            panic!("no endpoint");
        };
        let Some(strait_proto::envoy::config::core::v3::address::Address::SocketAddress(sa)) =
            &e.address.as_ref().unwrap().address
        else {
            panic!("no socket address");
        };
        assert_eq!(sa.address, EXTERNAL);
        assert!(dns.typed_dns_resolver_config.is_some());
        assert_eq!(istio_meta(dns, "external"), Some(&Kind::BoolValue(true)));
    }

    #[test]
    fn special_and_inbound_clusters() {
        let (clusters, _) = build();
        let black = find(&clusters, "BlackHoleCluster");
        assert_eq!(discovery_type(black), Some(DiscoveryType::Static));
        let pass = find(&clusters, "PassthroughCluster");
        assert_eq!(discovery_type(pass), Some(DiscoveryType::OriginalDst));
        assert_eq!(pass.lb_policy, LbPolicy::ClusterProvided as i32);
        let inbound_pass = find(&clusters, "InboundPassthroughCluster");
        assert_eq!(
            inbound_pass
                .upstream_bind_config
                .as_ref()
                .unwrap()
                .source_address
                .as_ref()
                .unwrap()
                .address,
            "127.0.0.6"
        );
        let inbound = find(&clusters, "inbound|9080||");
        assert_eq!(discovery_type(inbound), Some(DiscoveryType::OriginalDst));
        assert_eq!(inbound.lb_policy, LbPolicy::ClusterProvided as i32);
        assert_eq!(
            inbound
                .upstream_bind_config
                .as_ref()
                .unwrap()
                .source_address
                .as_ref()
                .unwrap()
                .address,
            "127.0.0.6"
        );
        assert!(inbound.outlier_detection.is_none());
        assert!(inbound.eds_cluster_config.is_none());
    }

    #[test]
    fn gateways_get_no_passthrough_or_inbound() {
        let push = fixture::push();
        let mut proxy = fixture::sidecar(&push);
        proxy.node_type = NodeType::Router;
        let clusters = build_clusters(&proxy, &push);
        assert!(clusters.iter().any(|c| c.name == "BlackHoleCluster"));
        assert!(!clusters.iter().any(|c| c.name.contains("Passthrough")));
        assert!(!clusters.iter().any(|c| c.name.starts_with("inbound|")));
        let headless = find(&clusters, &format!("outbound|5432||{HEADLESS}"));
        assert_eq!(discovery_type(headless), Some(DiscoveryType::Eds));
    }

    #[test]
    fn empty_subset_is_reported_with_its_rule() {
        let (_, push) = build();
        let status = push.status.snapshot();
        let entries = &status[metric::EDS_NO_INSTANCES];
        let v3 = &entries[&format!("outbound|9080|v3|{REVIEWS}")];
        assert!(v3.message.contains(DR_SOURCE), "{}", v3.message);
        assert!(v3.message.contains("default/reviews"), "{}", v3.message);
        assert!(
            v3.message.contains("spec.subsets[2].labels"),
            "{}",
            v3.message
        );
        assert!(v3.message.contains("version=v3"), "{}", v3.message);
        assert!(!entries.contains_key(&format!("outbound|9080|v2|{REVIEWS}")));
    }

    #[test]
    fn duplicates_are_dropped_and_reported() {
        let push = fixture::push();
        let proxy = fixture::sidecar(&push);
        let named = |n: &str| Cluster {
            name: n.into(),
            ..Default::default()
        };
        let out = dedupe(vec![named("a"), named("b"), named("a")], &proxy, &push);
        assert_eq!(out.len(), 2);
        assert_eq!(push.status.count(metric::DUPLICATE_ENVOY_CLUSTERS), 1);
    }

    #[test]
    fn every_cluster_renders_as_json() {
        let (clusters, _) = build();
        assert!(
            clusters
                .iter()
                .any(|c| discovery_type(c) == Some(DiscoveryType::StrictDns)),
            "the fixture includes a DNS cluster, whose resolver config must render too"
        );
        for c in &clusters {
            let value = json::to_json(c).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(value["name"], c.name.as_str());
        }
    }
}
