//! Endpoints of one cluster as Envoy gets them, for EDS and for the inline load
//! assignment of DNS clusters: the service port's ready endpoints (of the subset, if
//! any), grouped by locality, weighted, with Istio's endpoint metadata.

use std::collections::BTreeMap;

use strait_proto::envoy::config::core::v3::{
    HealthStatus as EnvoyHealth, Locality as EnvoyLocality,
};
use strait_proto::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use strait_proto::envoy::config::endpoint::v3::{
    Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
};
use strait_proto::istio::{ClientTlsMode, DestinationRule};

use super::locality::EndpointLabels;
use super::{address, ip_address, merge, metadata, uint32};
use crate::model::{
    Config, Endpoint, HealthStatus, Locality, Provider, PushContext, Service, ServicePort,
};

pub type Labels = BTreeMap<String, String>;

/// The ready endpoints of `port`, limited to `subset` labels when given. Unhealthy
/// endpoints are left out, as Istio does unless told to send them.
pub fn select(
    push: &PushContext,
    svc: &Service,
    port: &ServicePort,
    subset: Option<&Labels>,
) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = push
        .endpoints
        .endpoints(&svc.hostname, &svc.namespace)
        .iter()
        .flat_map(|shard| shard.iter())
        .filter(|ep| serves_port(ep, svc, port))
        .filter(|ep| ep.health == HealthStatus::Healthy)
        .filter(|ep| subset.is_none_or(|labels| ep.matches_labels(labels)))
        .cloned()
        .collect();
    out.sort_by_cached_key(|ep| (locality_label(&ep.locality), ep.address, ep.endpoint_port));
    out
}

/// Whether any endpoint of the service (ready or not, any port) carries the labels: a
/// subset that selects none is a configuration mistake worth reporting.
pub fn any_with_labels(push: &PushContext, svc: &Service, labels: &Labels) -> bool {
    push.endpoints
        .endpoints(&svc.hostname, &svc.namespace)
        .iter()
        .flat_map(|shard| shard.iter())
        .any(|ep| ep.matches_labels(labels))
}

/// Whether endpoints may advertise `tlsMode: istio`: not when the DestinationRule sets
/// another TLS mode for the subset and port (Istio's mTLS checker; PeerAuthentication is
/// not modelled yet).
pub fn mtls_allowed(rule: Option<&DestinationRule>, subset: &str, port: u16) -> bool {
    let Some(rule) = rule else {
        return true;
    };
    let policy = merge::subset_policy(rule, subset, port);
    match policy.and_then(|p| p.tls) {
        Some(tls) => tls.mode == ClientTlsMode::IstioMutual,
        None => true,
    }
}

/// The push-status message for a cluster without endpoints. For a subset with labels
/// it names the DestinationRule field, where the mistake usually is.
pub fn no_instances_message(
    rule: Option<&Config<DestinationRule>>,
    subset: &str,
    svc: &Service,
    port: u16,
) -> String {
    let with_labels = rule.and_then(|r| {
        let index = r.spec.subsets.iter().position(|s| s.name == subset)?;
        let labels = &r.spec.subsets[index].labels;
        (!labels.is_empty()).then_some((r, index, labels))
    });
    let Some((rule, index, labels)) = with_labels else {
        return format!("no ready endpoint of {}:{port}", svc.hostname);
    };
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}: DestinationRule {}/{}: spec.subsets[{index}].labels {{{}}} of subset {subset:?} select no ready endpoint of {}:{port}",
        rule.meta.source,
        rule.meta.namespace,
        rule.meta.name,
        selector.join(", "),
        svc.hostname,
    )
}

/// Registries name the service port an endpoint serves; endpoints without a name count
/// for a single-port service.
fn serves_port(ep: &Endpoint, svc: &Service, port: &ServicePort) -> bool {
    ep.service_port_name == port.name || (ep.service_port_name.is_empty() && svc.ports.len() == 1)
}

/// Istio's locality label (`region/zone/subzone`), which orders the groups.
pub fn locality_label(l: &Locality) -> String {
    let parts = [l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()];
    let used = parts
        .iter()
        .rposition(|p| !p.is_empty())
        .map_or(0, |i| i + 1);
    parts[..used].join("/")
}

/// Groups sorted endpoints by locality; each group's weight is the sum of its endpoints'.
/// The labels of each endpoint come along for `failoverPriority`.
pub fn group<'a>(
    eps: &'a [Endpoint],
    svc: &Service,
    mtls: bool,
) -> (Vec<LocalityLbEndpoints>, EndpointLabels<'a>) {
    let health = health_status(svc);
    let mut groups: Vec<LocalityLbEndpoints> = Vec::new();
    let mut labels: EndpointLabels<'_> = Vec::new();
    let mut current: Option<&Locality> = None;
    for ep in eps {
        if current != Some(&ep.locality) {
            current = Some(&ep.locality);
            groups.push(LocalityLbEndpoints {
                locality: Some(envoy_locality(&ep.locality)),
                ..Default::default()
            });
            labels.push(Vec::new());
        }
        if let (Some(g), Some(l)) = (groups.last_mut(), labels.last_mut()) {
            g.lb_endpoints.push(lb_endpoint(ep, mtls, health));
            l.push(&ep.labels);
        }
    }
    for g in &mut groups {
        let total = g
            .lb_endpoints
            .iter()
            .map(|e| e.load_balancing_weight.as_ref().map_or(0, |w| w.value))
            .fold(0u32, u32::saturating_add);
        g.load_balancing_weight = uint32(total);
    }
    (groups, labels)
}

pub fn envoy_locality(l: &Locality) -> EnvoyLocality {
    EnvoyLocality {
        region: l.region.clone(),
        zone: l.zone.clone(),
        sub_zone: l.sub_zone.clone(),
    }
}

/// Kubernetes endpoints are sent as HEALTHY; ServiceEntry endpoints leave the status
/// unset (UNKNOWN, which Envoy also routes to), as Istio's registries do.
fn health_status(svc: &Service) -> i32 {
    match svc.provider {
        Provider::Kubernetes => EnvoyHealth::Healthy as i32,
        Provider::External => EnvoyHealth::Unknown as i32,
    }
}

pub fn lb_endpoint(ep: &Endpoint, mtls: bool, health_status: i32) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(ip_address(ep.address, u32::from(ep.endpoint_port))),
            ..Default::default()
        })),
        health_status,
        metadata: Some(metadata::endpoint(ep, mtls)),
        load_balancing_weight: uint32(ep.weight.max(1)),
    }
}

/// A DNS cluster's only endpoint when the registry gave none: the host itself, which
/// Envoy resolves (a ServiceEntry with `resolution: DNS` and no endpoints).
pub fn dns_host(svc: &Service, port: u16) -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        locality: Some(EnvoyLocality::default()),
        lb_endpoints: vec![LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
                address: Some(address(&svc.hostname, u32::from(port))),
                ..Default::default()
            })),
            health_status: EnvoyHealth::Unknown as i32,
            metadata: Some(metadata::service_workload(svc)),
            load_balancing_weight: uint32(1),
        }],
        load_balancing_weight: uint32(1),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_labels() {
        assert_eq!(locality_label(&Locality::default()), "");
        assert_eq!(locality_label(&Locality::parse("r1/z1")), "r1/z1");
        assert_eq!(locality_label(&Locality::parse("r1/z1/s1")), "r1/z1/s1");
    }
}
