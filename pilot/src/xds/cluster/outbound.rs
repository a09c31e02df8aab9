//! `outbound|<port>|<subset>|<host>` clusters: one per service port the proxy can see,
//! plus one per subset of the service's DestinationRule.

use std::collections::BTreeMap;

use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::cluster::v3::cluster::{
    DiscoveryType, DnsLookupFamily, EdsClusterConfig,
};
use strait_proto::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use strait_proto::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, TypedExtensionConfig,
};
use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use strait_proto::envoy::extensions::network::dns_resolver::cares::v3::CaresDnsResolverConfig;
use strait_proto::google::protobuf::Duration;
use strait_proto::istio::{DestinationRule, LbPolicy, SimpleLb, Subset, TrafficPolicy};
use strait_proto::xds::any;

use super::policy::{self, Direction, PolicyInput};
use super::{ClusterDraft, duration, endpoints, merge, metadata, tls, uint32};
use crate::model::{
    Config, NodeType, Protocol, Provider, Proxy, PushContext, Resolution, Service, ServicePort,
    metric, outbound_cluster_name,
};

/// Istio's metric for DNS clusters left out because nothing resolves them.
pub const DNS_NO_ENDPOINTS: &str = "pilot_dns_cluster_without_endpoints";

const CARES_RESOLVER: &str = "envoy.network.dns_resolver.cares";
/// Istio's defaults for DNS clusters: c-ares `udp_max_queries`, refresh jitter, and the
/// mesh `dnsRefreshRate` (the modelled MeshConfig has no such field yet).
const CARES_UDP_MAX_QUERIES: u32 = 100;
const DNS_JITTER: std::time::Duration = std::time::Duration::from_millis(100);
const DNS_REFRESH_RATE: std::time::Duration = std::time::Duration::from_secs(60);

type Rule = Config<DestinationRule>;

/// All outbound clusters of the proxy, service by service, each default cluster followed
/// by its subsets.
pub fn build(proxy: &Proxy, push: &PushContext) -> Vec<Cluster> {
    let mut out = Vec::new();
    for svc in push.services_for_proxy(proxy) {
        let Some(kind) = discovery_kind(proxy, &svc) else {
            continue;
        };
        let rule = push.destination_rule(proxy, &svc);
        for port in svc.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            let ctx = PortContext {
                proxy,
                push,
                svc: &svc,
                port,
                rule,
            };
            out.extend(ctx.clusters(kind));
        }
    }
    out
}

/// How the proxy finds the endpoints: none for aliases (ExternalName), which get no
/// cluster; gateways cannot use original-destination clusters for headless services.
fn discovery_kind(proxy: &Proxy, svc: &Service) -> Option<DiscoveryType> {
    Some(match svc.resolution {
        Resolution::ClientSideLb => DiscoveryType::Eds,
        Resolution::DnsLb => DiscoveryType::StrictDns,
        Resolution::DnsRoundRobinLb => DiscoveryType::LogicalDns,
        Resolution::Passthrough if proxy.node_type == NodeType::Router => DiscoveryType::Eds,
        Resolution::Passthrough => DiscoveryType::OriginalDst,
        Resolution::Alias => return None,
    })
}

/// A subset's label selector; `None` when it selects every endpoint.
fn subset_labels(subset: &Subset) -> Option<&BTreeMap<String, String>> {
    (!subset.labels.is_empty()).then_some(&subset.labels)
}

struct PortContext<'a> {
    proxy: &'a Proxy,
    push: &'a PushContext,
    svc: &'a Service,
    port: &'a ServicePort,
    rule: Option<&'a Rule>,
}

impl PortContext<'_> {
    fn clusters(&self, kind: DiscoveryType) -> Vec<Cluster> {
        let name = outbound_cluster_name(self.port.port, "", &self.svc.hostname);
        let Some(mut default) = self.base(&name, kind, "", None) else {
            return Vec::new();
        };
        let top = self.rule.and_then(|r| r.spec.traffic_policy.as_ref());
        let (policy, _) = merge::for_port(top, self.port.port);
        self.apply_policy(&mut default, policy.as_ref());
        if self.svc.mesh_external {
            metadata::set_external(&mut default.cluster.metadata);
        }
        if let Some(rule) = self.rule {
            metadata::set_destination_rule(&mut default.cluster.metadata, &rule.meta);
        }
        // Subsets start from the default cluster's type, which PASSTHROUGH may have changed.
        let kind = default.discovery_type().unwrap_or(kind);
        let mut out = vec![default.finish()];
        if let Some(rule) = self.rule {
            for subset in &rule.spec.subsets {
                out.extend(self.subset(rule, subset, kind));
            }
        }
        out
    }

    fn subset(&self, rule: &Rule, subset: &Subset, kind: DiscoveryType) -> Option<Cluster> {
        let name = outbound_cluster_name(self.port.port, &subset.name, &self.svc.hostname);
        let own = subset.traffic_policy.as_ref();
        let kind = if own.is_some_and(is_passthrough) {
            DiscoveryType::OriginalDst
        } else {
            kind
        };
        let labels = subset_labels(subset);
        self.report_empty_subset(rule, subset, &name);
        let mut draft = self.base(&name, kind, &subset.name, labels)?;
        let policy = merge::for_subset(rule.spec.traffic_policy.as_ref(), own, self.port.port);
        self.apply_policy(&mut draft, policy.as_ref());
        metadata::set_destination_rule(&mut draft.cluster.metadata, &rule.meta);
        metadata::set_subset(&mut draft.cluster.metadata, &subset.name);
        Some(draft.finish())
    }

    /// A subset whose labels match no endpoint sends its traffic nowhere; push status
    /// names the DestinationRule field so that the mistake is easy to find.
    fn report_empty_subset(&self, rule: &Rule, subset: &Subset, cluster: &str) {
        let Some(labels) = subset_labels(subset) else {
            return;
        };
        if self.svc.resolution != Resolution::ClientSideLb
            || endpoints::any_with_labels(self.push, self.svc, labels)
        {
            return;
        }
        self.push.status.add(
            metric::EDS_NO_INSTANCES,
            cluster,
            endpoints::no_instances_message(Some(rule), &subset.name, self.svc, self.port.port),
        );
    }

    /// Istio's `buildCluster` for an outbound cluster; `None` for a DNS cluster that
    /// would have nothing to resolve.
    fn base(
        &self,
        name: &str,
        kind: DiscoveryType,
        subset: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Option<ClusterDraft> {
        let sidecar = self.proxy.node_type == NodeType::Sidecar;
        let mut draft = ClusterDraft::base(name, kind, self.port.protocol, sidecar);
        if matches!(kind, DiscoveryType::StrictDns | DiscoveryType::LogicalDns) {
            let assignment = self.load_assignment(name, kind, subset, labels);
            if assignment.endpoints.is_empty() {
                self.push.status.add(
                    DNS_NO_ENDPOINTS,
                    name,
                    format!(
                        "{} cluster without endpoints {name} found while pushing CDS",
                        dns_kind_name(kind)
                    ),
                );
                return None;
            }
            self.set_dns(&mut draft.cluster);
            draft.cluster.load_assignment = Some(assignment);
        }
        metadata::set_services(&mut draft.cluster.metadata, [self.svc]);
        Some(draft)
    }

    // Envoy deprecated the DNS fields in favour of the `envoy.clusters.dns` extension but
    // still reads them, and Istio still sends them.
    #[allow(deprecated)]
    fn set_dns(&self, cluster: &mut Cluster) {
        let ips = &self.proxy.ip_addresses;
        let v6_only = !ips.is_empty() && ips.iter().all(|ip| ip.is_ipv6());
        cluster.dns_lookup_family = if v6_only {
            DnsLookupFamily::V6Only
        } else {
            DnsLookupFamily::V4Only
        } as i32;
        cluster.typed_dns_resolver_config = Some(TypedExtensionConfig {
            name: CARES_RESOLVER.to_string(),
            typed_config: Some(any::pack(&CaresDnsResolverConfig {
                udp_max_queries: uint32(CARES_UDP_MAX_QUERIES),
                ..Default::default()
            })),
        });
        cluster.dns_jitter = Some(duration(DNS_JITTER));
        cluster.dns_refresh_rate = Some(duration(DNS_REFRESH_RATE));
        cluster.respect_dns_ttl = true;
    }

    /// The inline endpoints of a DNS cluster. A ServiceEntry resolved by DNS without
    /// endpoints resolves its own host name.
    fn load_assignment(
        &self,
        name: &str,
        kind: DiscoveryType,
        subset: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> ClusterLoadAssignment {
        let eps = endpoints::select(self.push, self.svc, self.port, labels);
        let mtls =
            endpoints::mtls_allowed(self.rule.map(|r| r.spec.as_ref()), subset, self.port.port);
        let (mut groups, _) = endpoints::group(&eps, self.svc, mtls);
        if groups.is_empty() && self.resolves_own_host(labels) {
            let target = self.port.target_port.unwrap_or(self.port.port);
            groups.push(endpoints::dns_host(self.svc, target));
        }
        if kind == DiscoveryType::LogicalDns {
            // Envoy rejects a LOGICAL_DNS cluster with more than one endpoint (Istio's
            // validation keeps such ServiceEntries out; registries may not).
            groups.truncate(1);
            if let Some(g) = groups.first_mut() {
                g.lb_endpoints.truncate(1);
                g.load_balancing_weight =
                    g.lb_endpoints.first().and_then(|e| e.load_balancing_weight);
            }
        }
        ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: groups,
            ..Default::default()
        }
    }

    fn resolves_own_host(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let no_endpoints = self
            .push
            .endpoints
            .endpoints(&self.svc.hostname, &self.svc.namespace)
            .iter()
            .all(|shard| shard.is_empty());
        no_endpoints
            && labels.is_none_or(|l| l.iter().all(|(k, v)| self.svc.labels.get(k) == Some(v)))
    }

    fn apply_policy(&self, draft: &mut ClusterDraft, policy: Option<&TrafficPolicy>) {
        let external_sans: &[String] = if self.svc.provider == Provider::External {
            &self.svc.service_accounts
        } else {
            &[]
        };
        policy::apply(
            draft,
            &PolicyInput {
                mesh: &self.push.mesh,
                policy,
                protocol: self.port.protocol,
                direction: Direction::Outbound,
                proxy_locality: &self.proxy.locality,
                tls: tls::TlsInput {
                    external_service_accounts: external_sans,
                },
            },
        );
        if draft.discovery_type() == Some(DiscoveryType::Eds) {
            draft.cluster.eds_cluster_config = Some(eds_config(&draft.cluster.name));
        }
    }
}

fn is_passthrough(policy: &TrafficPolicy) -> bool {
    matches!(
        policy
            .load_balancer
            .as_ref()
            .and_then(|l| l.policy.as_ref()),
        Some(LbPolicy::Simple(SimpleLb::Passthrough))
    )
}

fn dns_kind_name(kind: DiscoveryType) -> &'static str {
    match kind {
        DiscoveryType::LogicalDns => "LOGICAL_DNS",
        _ => "STRICT_DNS",
    }
}

/// Endpoints come over the same ADS stream, named like the cluster; no initial fetch
/// timeout, so the cluster waits for its first assignment.
pub fn eds_config(cluster: &str) -> EdsClusterConfig {
    EdsClusterConfig {
        service_name: cluster.to_string(),
        eds_config: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
            initial_fetch_timeout: Some(Duration {
                seconds: 0,
                nanos: 0,
            }),
            resource_api_version: ApiVersion::V3 as i32,
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use strait_proto::envoy::config::cluster::v3::cluster::LbPolicy as EnvoyLbPolicy;

    use super::*;
    use crate::model::{ConfigSnapshot, EndpointIndex, Hostname, PushContextInput, ShardKey};
    use crate::xds::cluster::discovery_type;
    use crate::xds::cluster::fixture::{self, endpoint, port, service};

    const LEGACY: &str = "legacy.example.com";

    fn push_for(
        svc: Arc<Service>,
        eps: Vec<crate::model::Endpoint>,
        rules: Vec<Rule>,
    ) -> PushContext {
        let index = Arc::new(EndpointIndex::new());
        let host: Hostname = svc.hostname.clone();
        index.update(&host, "default", ShardKey::external(), eps);
        PushContext::build(PushContextInput {
            version: "t".into(),
            services: vec![svc],
            configs: ConfigSnapshot {
                destination_rules: rules,
                ..Default::default()
            },
            config_errors: Vec::new(),
            mesh: Arc::new(Default::default()),
            endpoints: index,
            domain_suffix: "cluster.local".into(),
        })
    }

    #[test]
    fn logical_dns_keeps_a_single_endpoint() {
        let svc = service(
            LEGACY,
            vec![port("tcp", 7000, Protocol::Tcp)],
            Resolution::DnsRoundRobinLb,
        );
        let eps = vec![
            endpoint("10.1.0.1", "tcp", 7000, "v1", ""),
            endpoint("10.1.0.2", "tcp", 7000, "v1", ""),
        ];
        let push = push_for(svc, eps, Vec::new());
        let proxy = fixture::sidecar(&fixture::push());
        let clusters = build(&proxy, &push);
        assert_eq!(clusters.len(), 1);
        assert_eq!(
            discovery_type(&clusters[0]),
            Some(DiscoveryType::LogicalDns)
        );
        let cla = clusters[0].load_assignment.as_ref().unwrap();
        assert_eq!(cla.endpoints.len(), 1);
        assert_eq!(cla.endpoints[0].lb_endpoints.len(), 1);
    }

    #[test]
    fn dns_subset_without_endpoints_is_dropped_and_reported() {
        let svc = service(
            LEGACY,
            vec![port("tcp", 7000, Protocol::Tcp)],
            Resolution::DnsLb,
        );
        let eps = vec![endpoint("10.1.0.1", "tcp", 7000, "v1", "")];
        let spec = serde_json::from_value(json!({
            "host": LEGACY,
            "subsets": [{"name": "v9", "labels": {"version": "v9"}}],
        }))
        .unwrap();
        let rule = Config {
            meta: Default::default(),
            spec: Arc::new(spec),
        };
        let push = push_for(svc, eps, vec![rule]);
        let proxy = fixture::sidecar(&fixture::push());
        let names: Vec<String> = build(&proxy, &push).into_iter().map(|c| c.name).collect();
        assert_eq!(names, vec![format!("outbound|7000||{LEGACY}")]);
        assert_eq!(push.status.count(DNS_NO_ENDPOINTS), 1);
    }

    #[test]
    fn passthrough_subset_becomes_original_dst() {
        let svc = service(
            fixture::REVIEWS,
            vec![port("http", 9080, Protocol::Http)],
            Resolution::ClientSideLb,
        );
        let spec = serde_json::from_value(json!({
            "host": fixture::REVIEWS,
            "subsets": [{"name": "direct", "trafficPolicy": {"loadBalancer": {"simple": "PASSTHROUGH"}}}],
        }))
        .unwrap();
        let rule = Config {
            meta: Default::default(),
            spec: Arc::new(spec),
        };
        let push = push_for(svc, Vec::new(), vec![rule]);
        let proxy = fixture::sidecar(&fixture::push());
        let clusters = build(&proxy, &push);
        let direct = &clusters[1];
        assert_eq!(
            direct.name,
            format!("outbound|9080|direct|{}", fixture::REVIEWS)
        );
        assert_eq!(discovery_type(direct), Some(DiscoveryType::OriginalDst));
        assert_eq!(direct.lb_policy, EnvoyLbPolicy::ClusterProvided as i32);
        assert!(direct.eds_cluster_config.is_none());
        assert_eq!(discovery_type(&clusters[0]), Some(DiscoveryType::Eds));
    }
}
