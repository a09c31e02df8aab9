//! ServiceEntry / WorkloadEntry → services and endpoints (the "External" registry).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use strait_proto::istio;

use super::ServiceDiscovery;
use crate::model::{
    Config, Endpoint, HealthStatus, Locality, Protocol, Provider, Resolution, Service, ServicePort,
    Visibility,
};

/// Services and their endpoints declared by ServiceEntries.
#[derive(Debug, Default)]
pub struct ExternalServices {
    pub services: Vec<Service>,
    /// (namespace, hostname) → endpoints.
    pub endpoints: BTreeMap<(String, String), Vec<Endpoint>>,
}

pub fn convert(
    entries: &[Config<istio::ServiceEntry>],
    workload_entries: &[Config<istio::WorkloadEntry>],
    default_visibility: &Visibility,
) -> ExternalServices {
    let mut out = ExternalServices::default();
    for se in entries {
        let spec = &se.spec;
        let ports: Vec<ServicePort> = spec
            .ports
            .iter()
            .filter_map(|p| {
                Some(ServicePort {
                    name: p.name.clone(),
                    port: u16::try_from(p.number).ok()?,
                    protocol: Protocol::parse(&p.protocol),
                    target_port: u16::try_from(p.target_port).ok().filter(|t| *t != 0),
                })
            })
            .collect();
        let resolution = match spec.resolution {
            istio::Resolution::None => Resolution::Passthrough,
            istio::Resolution::Static => Resolution::ClientSideLb,
            istio::Resolution::Dns | istio::Resolution::DynamicDns => Resolution::DnsLb,
            istio::Resolution::DnsRoundRobin => Resolution::DnsRoundRobinLb,
        };
        let addresses: Vec<IpAddr> = spec
            .addresses
            .iter()
            .filter_map(|a| a.split('/').next().and_then(|ip| ip.parse().ok()))
            .collect();
        let visibility = Visibility::from_export_to(&spec.export_to, default_visibility.clone());

        let mut workloads: Vec<&istio::WorkloadEntry> = spec.endpoints.iter().collect();
        if let Some(selector) = &spec.workload_selector {
            workloads.extend(
                workload_entries
                    .iter()
                    .filter(|we| we.meta.namespace == se.meta.namespace)
                    .filter(|we| {
                        selector
                            .labels
                            .iter()
                            .all(|(k, v)| we.spec.labels.get(k) == Some(v))
                    })
                    .map(|we| &*we.spec),
            );
        }

        for host in &spec.hosts {
            let service = Service {
                hostname: Arc::from(host.as_str()),
                name: se.meta.name.clone(),
                namespace: se.meta.namespace.clone(),
                addresses: addresses.clone(),
                ports: ports.clone(),
                resolution,
                mesh_external: spec.location == istio::Location::MeshExternal,
                visibility: visibility.clone(),
                labels: se.meta.labels.clone(),
                provider: Provider::External,
                external_name: None,
                creation_time: se.meta.creation_timestamp.clone(),
                service_accounts: spec.subject_alt_names.clone(),
            };
            let endpoints = endpoints_of(&workloads, &service, &se.meta.namespace);
            if !endpoints.is_empty() {
                out.endpoints
                    .insert((se.meta.namespace.clone(), host.clone()), endpoints);
            }
            out.services.push(service);
        }
    }
    out
}

/// One endpoint per (workload, service port). Workloads addressed by DNS name are left
/// to DNS clusters, which resolve the service's hosts themselves.
fn endpoints_of(
    workloads: &[&istio::WorkloadEntry],
    service: &Service,
    namespace: &str,
) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for we in workloads {
        let Ok(address) = we.address.parse::<IpAddr>() else {
            continue;
        };
        for port in &service.ports {
            let endpoint_port = we
                .ports
                .get(&port.name)
                .and_then(|p| u16::try_from(*p).ok())
                .or(port.target_port)
                .unwrap_or(port.port);
            out.push(Endpoint {
                address,
                endpoint_port,
                service_port_name: port.name.clone(),
                labels: we.labels.clone(),
                locality: Locality::parse(&we.locality),
                weight: we.weight,
                health: HealthStatus::Healthy,
                service_account: we.service_account.clone(),
                namespace: namespace.to_string(),
                workload_name: String::new(),
                tls_mode: we
                    .labels
                    .get("security.istio.io/tlsMode")
                    .cloned()
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// ServiceEntries change only with config, so the registry is replaced whole on each
/// config change and read through the lock.
impl ServiceDiscovery for parking_lot::RwLock<ExternalServices> {
    fn provider(&self) -> Provider {
        Provider::External
    }

    fn services(&self) -> Vec<Service> {
        self.read().services.clone()
    }

    fn endpoints(&self, namespace: &str, hostname: &str) -> Vec<Endpoint> {
        self.read()
            .endpoints
            .get(&(namespace.to_string(), hostname.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConfigMeta;

    fn config<S>(ns: &str, name: &str, spec: S) -> Config<S> {
        Config {
            meta: ConfigMeta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            },
            spec: Arc::new(spec),
        }
    }

    #[test]
    fn static_entry_with_selected_workloads() {
        let se: istio::ServiceEntry = serde_json::from_value(serde_json::json!({
            "hosts": ["db.internal"],
            "addresses": ["10.200.0.5"],
            "ports": [{"number": 5432, "name": "tcp-db", "protocol": "TCP"}],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "workloadSelector": {"labels": {"app": "db"}},
            "endpoints": [{"address": "10.1.1.1", "ports": {"tcp-db": 15432}}]
        }))
        .unwrap();
        let we: istio::WorkloadEntry = serde_json::from_value(serde_json::json!({
            "address": "10.1.1.2", "labels": {"app": "db"}
        }))
        .unwrap();
        let other: istio::WorkloadEntry = serde_json::from_value(serde_json::json!({
            "address": "10.1.1.3", "labels": {"app": "web"}
        }))
        .unwrap();
        let out = convert(
            &[config("data", "db", se)],
            &[config("data", "db-1", we), config("data", "web-1", other)],
            &Visibility::Public,
        );
        assert_eq!(out.services.len(), 1);
        let svc = &out.services[0];
        assert_eq!(svc.resolution, Resolution::ClientSideLb);
        assert!(!svc.mesh_external);
        assert_eq!(svc.ports[0].protocol, Protocol::Tcp);
        let eps = &out.endpoints[&("data".to_string(), "db.internal".to_string())];
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].endpoint_port, 15432);
        assert_eq!(eps[1].endpoint_port, 5432);
    }
}
