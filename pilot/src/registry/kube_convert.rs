//! Kubernetes Service / EndpointSlice / Pod → the mesh model, as Istio converts them
//! (inventory §3.1). Shared by every source of Kubernetes objects (files, API server).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::{
    Endpoint, HealthStatus, Locality, Protocol, Provider, Resolution, Service, ServicePort,
    Visibility,
};

/// Label on an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";
const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
const LOCALITY_LABEL: &str = "topology.istio.io/locality";
const REGION_LABEL: &str = "topology.kubernetes.io/region";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const SUBZONE_LABEL: &str = "topology.istio.io/subzone";

/// `<name>.<namespace>.svc.<domain>`.
pub fn service_hostname(name: &str, namespace: &str, domain_suffix: &str) -> String {
    format!("{name}.{namespace}.svc.{domain_suffix}")
}

/// Converts a Service; `None` when it has no name.
pub fn convert_service(
    svc: &KubeService,
    domain_suffix: &str,
    default_visibility: &Visibility,
) -> Option<Service> {
    let name = svc.metadata.name.clone()?;
    let namespace = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let spec = svc.spec.clone().unwrap_or_default();
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();

    let mut addresses: Vec<IpAddr> = spec
        .cluster_ips
        .clone()
        .unwrap_or_default()
        .iter()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    addresses.dedup();

    let is_external_name = spec.type_.as_deref() == Some("ExternalName");
    let headless = spec.cluster_ip.as_deref() == Some("None") || addresses.is_empty();
    let resolution = if is_external_name {
        Resolution::Alias
    } else if headless {
        Resolution::Passthrough
    } else {
        Resolution::ClientSideLb
    };

    let ports = spec
        .ports
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let target_port = match &p.target_port {
                Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                Some(IntOrString::String(_)) => None,
                None => Some(port),
            };
            Some(ServicePort {
                name: p.name.clone().unwrap_or_default(),
                port,
                protocol: Protocol::from_kube_port(
                    p.name.as_deref(),
                    p.app_protocol.as_deref(),
                    p.protocol.as_deref(),
                    port,
                ),
                target_port,
            })
        })
        .collect();

    let export_to: Vec<String> = annotations
        .get(EXPORT_TO_ANNOTATION)
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();

    Some(Service {
        hostname: Arc::from(service_hostname(&name, &namespace, domain_suffix)),
        name,
        namespace,
        addresses,
        ports,
        resolution,
        mesh_external: is_external_name,
        visibility: Visibility::from_export_to(&export_to, default_visibility.clone()),
        labels: svc.metadata.labels.clone().unwrap_or_default(),
        provider: Provider::Kubernetes,
        external_name: spec.external_name.clone(),
        creation_time: svc
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        service_accounts: Vec::new(),
    })
}

/// Endpoints of one EndpointSlice for one service, with pod labels and locality taken
/// from the pods they point at. Not-ready endpoints are kept as unhealthy.
pub fn convert_endpoint_slice(
    slice: &EndpointSlice,
    service: &Service,
    pods: &BTreeMap<(String, String), Pod>,
) -> Vec<Endpoint> {
    let namespace = slice
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let mut out = Vec::new();
    let ports = slice.ports.clone().unwrap_or_default();
    for ep in &slice.endpoints {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        let pod = ep.target_ref.as_ref().and_then(|r| {
            let ns = r.namespace.clone().unwrap_or_else(|| namespace.clone());
            pods.get(&(ns, r.name.clone()?))
        });
        let pod_labels = pod
            .and_then(|p| p.metadata.labels.clone())
            .unwrap_or_default();
        let locality = locality_of(&pod_labels, ep.zone.as_deref());
        let service_account = pod
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default();
        let workload_name = pod
            .and_then(|p| p.metadata.name.clone())
            .unwrap_or_default();
        for address in &ep.addresses {
            let Ok(ip) = address.parse::<IpAddr>() else {
                continue;
            };
            for port in &ports {
                let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                let port_name = port.name.clone().unwrap_or_default();
                if service.port_by_name(&port_name).is_none() && service.ports.len() != 1 {
                    continue;
                }
                out.push(Endpoint {
                    address: ip,
                    endpoint_port: number,
                    service_port_name: port_name,
                    labels: pod_labels.clone(),
                    locality: locality.clone(),
                    weight: 0,
                    health: if ready {
                        HealthStatus::Healthy
                    } else {
                        HealthStatus::Unhealthy
                    },
                    service_account: service_account.clone(),
                    namespace: namespace.clone(),
                    workload_name: workload_name.clone(),
                    tls_mode: pod_labels.get(TLS_MODE_LABEL).cloned().unwrap_or_default(),
                });
            }
        }
    }
    out
}

/// The service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
pub fn slice_service_name(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .map(String::as_str)
}

/// Locality from Istio's `topology.istio.io/locality` label (`region.zone.subzone`
/// with dots), else the standard topology labels, else the slice's zone.
fn locality_of(labels: &BTreeMap<String, String>, slice_zone: Option<&str>) -> Locality {
    if let Some(l) = labels.get(LOCALITY_LABEL) {
        return Locality::parse(&l.replace('.', "/"));
    }
    Locality {
        region: labels.get(REGION_LABEL).cloned().unwrap_or_default(),
        zone: labels
            .get(ZONE_LABEL)
            .cloned()
            .or_else(|| slice_zone.map(str::to_string))
            .unwrap_or_default(),
        sub_zone: labels.get(SUBZONE_LABEL).cloned().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(yaml: &str) -> Service {
        let svc: KubeService = serde_yaml::from_str(yaml).unwrap();
        convert_service(&svc, "cluster.local", &Visibility::Public).unwrap()
    }

    #[test]
    fn converts_cluster_ip_service() {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.12
  ports:
  - {name: http, port: 9080, targetPort: 9080}
  - {name: tcp-db, port: 3306, targetPort: dbport}
  - {name: web, port: 8080, appProtocol: kubernetes.io/h2c}
"#);
        assert_eq!(&*s.hostname, "reviews.default.svc.cluster.local");
        assert_eq!(s.resolution, Resolution::ClientSideLb);
        assert_eq!(s.addresses, vec!["10.96.0.12".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.ports[0].protocol, Protocol::Http);
        assert_eq!(s.ports[1].protocol, Protocol::Tcp);
        assert_eq!(s.ports[1].target_port, None);
        assert_eq!(s.ports[2].protocol, Protocol::Http2);
    }

    #[test]
    fn headless_and_external_name() {
        let s = svc(
            "metadata: {name: db, namespace: x}\nspec: {clusterIP: None, ports: [{port: 5432}]}",
        );
        assert_eq!(s.resolution, Resolution::Passthrough);
        let s = svc(
            "metadata: {name: ext, namespace: x}\nspec: {type: ExternalName, externalName: example.com}",
        );
        assert_eq!(s.resolution, Resolution::Alias);
        assert!(s.mesh_external);
    }

    #[test]
    fn export_to_annotation() {
        let s = svc(
            "metadata: {name: a, namespace: x, annotations: {networking.istio.io/exportTo: '.'}}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}",
        );
        assert_eq!(s.visibility, Visibility::Private);
    }

    #[test]
    fn endpoint_slice_with_pod_labels() {
        let s = svc(
            "metadata: {name: reviews, namespace: default}\nspec: {clusterIP: 10.96.0.12, ports: [{name: http, port: 9080}]}",
        );
        let slice: EndpointSlice = serde_yaml::from_str(
            r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-1, namespace: default, labels: {kubernetes.io/service-name: reviews}}
addressType: IPv4
ports: [{name: http, port: 9080}]
endpoints:
- addresses: [10.1.0.7]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-v1, namespace: default}
- addresses: [10.1.0.8]
  conditions: {ready: false}
"#,
        )
        .unwrap();
        let pod: Pod = serde_yaml::from_str("metadata: {name: reviews-v1, namespace: default, labels: {app: reviews, version: v1, topology.istio.io/locality: us.east.a}}").unwrap();
        let pods = BTreeMap::from([(("default".to_string(), "reviews-v1".to_string()), pod)]);
        assert_eq!(slice_service_name(&slice), Some("reviews"));
        let eps = convert_endpoint_slice(&slice, &s, &pods);
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].labels["version"], "v1");
        assert_eq!(eps[0].locality.zone, "east");
        assert_eq!(eps[0].health, HealthStatus::Healthy);
        assert_eq!(eps[1].health, HealthStatus::Unhealthy);
        assert_eq!(eps[0].endpoint_port, 9080);
    }
}
