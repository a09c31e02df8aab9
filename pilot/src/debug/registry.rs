//! `/debug/registryz`, `/debug/endpointShardz` (alias `/debug/endpointz`) and
//! `/debug/instancesz`: the service registry as Istio's `model.Service`,
//! `EndpointShards` and `ServiceTarget` JSON (Go field names where Istio has no tags).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Serialize;

use super::respond::{self, Params, Source};
use super::time::ZERO_TIME;
use crate::model::{
    Endpoint, HealthStatus, Locality, Provider, Resolution, Service, ServicePort, ServiceTarget,
    Visibility,
};

/// The cluster ID Istio gives the local Kubernetes cluster; Strait knows only that one.
const CLUSTER_ID: &str = "Kubernetes";

/// Go's `sets.Set[string]`: a JSON object whose keys are the members.
type GoSet = BTreeMap<String, Empty>;

#[derive(Debug, Default, Serialize)]
pub(crate) struct Empty {}

fn go_set<I: IntoIterator<Item = String>>(items: I) -> GoSet {
    items.into_iter().map(|k| (k, Empty {})).collect()
}

#[derive(Debug, Serialize)]
pub(crate) struct ServiceView {
    #[serde(rename = "Attributes")]
    attributes: AttributesView,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortView>,
    #[serde(rename = "serviceAccounts", skip_serializing_if = "Vec::is_empty")]
    service_accounts: Vec<String>,
    #[serde(rename = "creationTime")]
    creation_time: String,
    hostname: String,
    #[serde(rename = "clusterVIPs")]
    cluster_vips: AddressMap,
    #[serde(rename = "defaultAddress", skip_serializing_if = "String::is_empty")]
    default_address: String,
    /// Istio's `Resolution` enum number.
    #[serde(rename = "Resolution")]
    resolution: u8,
    #[serde(rename = "MeshExternal")]
    mesh_external: bool,
    #[serde(rename = "ResourceVersion")]
    resource_version: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct AttributesView {
    service_registry: &'static str,
    name: String,
    namespace: String,
    labels: Option<BTreeMap<String, String>>,
    export_to: Option<GoSet>,
    label_selectors: Option<BTreeMap<String, String>>,
    aliases: Option<Vec<String>>,
    cluster_external_addresses: Option<AddressMap>,
    cluster_external_ports: Option<BTreeMap<String, String>>,
    passthrough_target_ports: Option<BTreeMap<String, u32>>,
    // Istio's embedded K8sAttributes, flattened by Go.
    #[serde(rename = "Type")]
    kube_type: String,
    external_name: String,
    node_local: bool,
    traffic_distribution: u8,
    object_name: String,
    publish_not_ready_addresses: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct AddressMap {
    addresses: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PortView {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    port: u16,
    protocol: &'static str,
}

impl From<&ServicePort> for PortView {
    fn from(p: &ServicePort) -> Self {
        PortView {
            name: p.name.clone(),
            port: p.port,
            protocol: p.protocol.as_str(),
        }
    }
}

/// Istio's `Resolution` numbering: ClientSideLB, DNSLB, Passthrough, DNSRoundRobinLB, Alias.
fn resolution_number(r: Resolution) -> u8 {
    match r {
        Resolution::ClientSideLb => 0,
        Resolution::DnsLb => 1,
        Resolution::Passthrough => 2,
        Resolution::DnsRoundRobinLb => 3,
        Resolution::Alias => 4,
    }
}

fn export_to(v: &Visibility) -> Option<GoSet> {
    match v {
        Visibility::Public => None,
        Visibility::Private => Some(go_set([".".to_string()])),
        Visibility::None => Some(go_set(["~".to_string()])),
        Visibility::Namespaces(list) => Some(go_set(list.iter().cloned())),
    }
}

pub(crate) fn service_view(svc: &Service) -> ServiceView {
    let addresses: Vec<String> = svc.addresses.iter().map(|a| a.to_string()).collect();
    let kube_type = match (svc.provider, &svc.external_name) {
        (Provider::Kubernetes, Some(_)) => "ExternalName",
        (Provider::Kubernetes, None) => "ClusterIP",
        (Provider::External, _) => "",
    };
    ServiceView {
        attributes: AttributesView {
            service_registry: svc.provider.as_str(),
            name: svc.name.clone(),
            namespace: svc.namespace.clone(),
            labels: (!svc.labels.is_empty()).then(|| svc.labels.clone()),
            export_to: export_to(&svc.visibility),
            label_selectors: None,
            aliases: None,
            cluster_external_addresses: None,
            cluster_external_ports: None,
            passthrough_target_ports: None,
            kube_type: kube_type.to_string(),
            external_name: svc.external_name.clone().unwrap_or_default(),
            node_local: false,
            traffic_distribution: 0,
            object_name: svc.name.clone(),
            publish_not_ready_addresses: false,
        },
        ports: svc.ports.iter().map(PortView::from).collect(),
        service_accounts: svc.service_accounts.clone(),
        creation_time: svc
            .creation_time
            .clone()
            .unwrap_or_else(|| ZERO_TIME.to_string()),
        hostname: svc.hostname.to_string(),
        default_address: addresses.first().cloned().unwrap_or_default(),
        cluster_vips: AddressMap {
            addresses: (!addresses.is_empty())
                .then(|| BTreeMap::from([(CLUSTER_ID.to_string(), addresses)])),
        },
        resolution: resolution_number(svc.resolution),
        mesh_external: svc.mesh_external,
        resource_version: String::new(),
    }
}

/// `/debug/registryz`.
pub(crate) async fn registryz(
    State(source): State<Source>,
    Query(params): Query<Params>,
) -> Response {
    let push = source.push_context();
    let services: Vec<ServiceView> = push
        .all_services()
        .iter()
        .map(|s| service_view(s))
        .collect();
    respond::json(&services, &params)
}

/// Istio's `EndpointShards`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EndpointShardsView {
    /// `"<provider>/<cluster>"` → endpoints.
    shards: BTreeMap<String, Vec<IstioEndpointView>>,
    service_accounts: GoSet,
}

/// Istio's `IstioEndpoint`, which has no JSON tags.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct IstioEndpointView {
    labels: Option<BTreeMap<String, String>>,
    addresses: Vec<String>,
    service_port_name: String,
    legacy_cluster_port_key: u16,
    service_account: String,
    network: String,
    locality: LocalityView,
    endpoint_port: u16,
    lb_weight: u32,
    #[serde(rename = "TLSMode")]
    tls_mode: String,
    namespace: String,
    workload_name: String,
    host_name: String,
    sub_domain: String,
    /// Istio's `HealthStatus` number: Healthy=1, UnHealthy=2.
    health_status: u8,
    send_unhealthy_endpoints: bool,
    node_name: String,
}

#[derive(Debug, Serialize)]
struct LocalityView {
    #[serde(rename = "Label")]
    label: String,
    #[serde(rename = "ClusterID")]
    cluster_id: String,
}

/// `region/zone/subzone`, without trailing empty parts.
fn locality_label(l: &Locality) -> String {
    let parts = [&l.region, &l.zone, &l.sub_zone];
    let used = parts
        .iter()
        .rposition(|p| !p.is_empty())
        .map_or(0, |i| i + 1);
    parts[..used]
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join("/")
}

fn endpoint_view(ep: &Endpoint, cluster: &str) -> IstioEndpointView {
    IstioEndpointView {
        labels: (!ep.labels.is_empty()).then(|| ep.labels.clone()),
        addresses: vec![ep.address.to_string()],
        service_port_name: ep.service_port_name.clone(),
        legacy_cluster_port_key: 0,
        service_account: ep.service_account.clone(),
        network: String::new(),
        locality: LocalityView {
            label: locality_label(&ep.locality),
            cluster_id: cluster.to_string(),
        },
        endpoint_port: ep.endpoint_port,
        lb_weight: ep.weight,
        tls_mode: ep.tls_mode.clone(),
        namespace: ep.namespace.clone(),
        workload_name: ep.workload_name.clone(),
        host_name: String::new(),
        sub_domain: String::new(),
        health_status: match ep.health {
            HealthStatus::Healthy => 1,
            HealthStatus::Unhealthy => 2,
        },
        send_unhealthy_endpoints: false,
        node_name: String::new(),
    }
}

/// hostname → namespace → shards, from the PushContext's endpoint index.
pub(crate) fn endpoint_shards(
    push: &crate::model::PushContext,
) -> BTreeMap<String, BTreeMap<String, EndpointShardsView>> {
    push.endpoints
        .snapshot()
        .into_iter()
        .map(|(host, by_ns)| {
            let by_ns = by_ns
                .into_iter()
                .map(|(ns, shards)| {
                    let service_accounts = go_set(
                        shards
                            .values()
                            .flat_map(|eps| eps.iter())
                            .map(|ep| ep.service_account.clone())
                            .filter(|sa| !sa.is_empty()),
                    );
                    let shards = shards
                        .iter()
                        .map(|(key, eps)| {
                            let views = eps
                                .iter()
                                .map(|ep| endpoint_view(ep, &key.cluster))
                                .collect();
                            (key.to_string(), views)
                        })
                        .collect();
                    (
                        ns,
                        EndpointShardsView {
                            shards,
                            service_accounts,
                        },
                    )
                })
                .collect();
            (host, by_ns)
        })
        .collect()
}

/// `/debug/endpointShardz` and `/debug/endpointz`.
pub(crate) async fn endpoint_shardz(
    State(source): State<Source>,
    Query(params): Query<Params>,
) -> Response {
    let push = source.push_context();
    respond::json(&endpoint_shards(&push), &params)
}

/// Istio's `ServiceTarget`: the service and the port with its target port (the embedded
/// `*Port` flattened by Go).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceTargetView {
    service: ServiceView,
    port: TargetPortView,
}

#[derive(Debug, Serialize)]
struct TargetPortView {
    #[serde(flatten)]
    port: PortView,
    #[serde(rename = "TargetPort")]
    target_port: u16,
}

fn target_view(t: &ServiceTarget) -> ServiceTargetView {
    ServiceTargetView {
        service: service_view(&t.service),
        port: TargetPortView {
            port: PortView::from(&t.port),
            target_port: t.target_port,
        },
    }
}

/// `/debug/instancesz`: proxy ID → the service targets it serves under the current push.
pub(crate) async fn instancesz(
    State(source): State<Source>,
    Query(params): Query<Params>,
) -> Response {
    let push = source.push_context();
    let mut out: BTreeMap<String, Vec<ServiceTargetView>> = BTreeMap::new();
    for con in respond::sorted_connections(&*source) {
        let targets = push.service_targets(&con.proxy);
        out.insert(
            con.proxy.id.clone(),
            targets.iter().map(target_view).collect(),
        );
    }
    respond::json(&out, &params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_labels_drop_trailing_empties() {
        assert_eq!(locality_label(&Locality::default()), "");
        assert_eq!(locality_label(&Locality::parse("r1/z1")), "r1/z1");
        assert_eq!(locality_label(&Locality::parse("r1/z1/s1")), "r1/z1/s1");
    }
}
