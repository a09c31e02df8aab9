//! Several registries seen as one: services concatenated, endpoints gathered from every
//! registry that has the service.

use std::sync::Arc;

use super::ServiceDiscovery;
use crate::model::{Endpoint, Provider, Service};

#[derive(Default, Clone)]
pub struct Aggregate {
    registries: Vec<Arc<dyn ServiceDiscovery>>,
}

impl std::fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("registries", &self.registries.len())
            .finish()
    }
}

impl Aggregate {
    pub fn new(registries: Vec<Arc<dyn ServiceDiscovery>>) -> Aggregate {
        Aggregate { registries }
    }

    pub fn add(&mut self, registry: Arc<dyn ServiceDiscovery>) {
        self.registries.push(registry);
    }
}

impl ServiceDiscovery for Aggregate {
    /// The aggregate speaks for Kubernetes when it holds any Kubernetes registry.
    fn provider(&self) -> Provider {
        self.registries
            .first()
            .map_or(Provider::Kubernetes, |r| r.provider())
    }

    fn services(&self) -> Vec<Service> {
        self.registries.iter().flat_map(|r| r.services()).collect()
    }

    fn endpoints(&self, namespace: &str, hostname: &str) -> Vec<Endpoint> {
        self.registries
            .iter()
            .flat_map(|r| r.endpoints(namespace, hostname))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HealthStatus, Locality, Proxy, Resolution, ServicePort, Visibility};

    struct Fixed(Provider, Service, Vec<Endpoint>);

    impl ServiceDiscovery for Fixed {
        fn provider(&self) -> Provider {
            self.0
        }
        fn services(&self) -> Vec<Service> {
            vec![self.1.clone()]
        }
        fn endpoints(&self, namespace: &str, hostname: &str) -> Vec<Endpoint> {
            if namespace == self.1.namespace && hostname == &*self.1.hostname {
                self.2.clone()
            } else {
                Vec::new()
            }
        }
    }

    fn service(host: &str) -> Service {
        Service {
            hostname: host.into(),
            name: host.split('.').next().unwrap_or_default().into(),
            namespace: "default".into(),
            addresses: vec![],
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                protocol: crate::model::Protocol::Http,
                target_port: Some(8080),
            }],
            resolution: Resolution::ClientSideLb,
            mesh_external: false,
            visibility: Visibility::Public,
            labels: Default::default(),
            provider: Provider::Kubernetes,
            external_name: None,
            creation_time: None,
            service_accounts: vec![],
        }
    }

    fn endpoint(ip: &str) -> Endpoint {
        Endpoint {
            address: ip.parse().unwrap(),
            endpoint_port: 8080,
            service_port_name: "http".into(),
            labels: Default::default(),
            locality: Locality::default(),
            weight: 0,
            health: HealthStatus::Healthy,
            service_account: String::new(),
            namespace: "default".into(),
            workload_name: String::new(),
            tls_mode: String::new(),
        }
    }

    #[test]
    fn merges_registries_and_finds_service_targets() {
        let kube = Fixed(
            Provider::Kubernetes,
            service("a.default.svc.cluster.local"),
            vec![endpoint("10.0.0.1")],
        );
        let external = Fixed(
            Provider::External,
            service("b.example.com"),
            vec![endpoint("10.0.0.2")],
        );
        let agg = Aggregate::new(vec![Arc::new(kube), Arc::new(external)]);
        assert_eq!(agg.services().len(), 2);
        assert_eq!(agg.endpoints("default", "b.example.com").len(), 1);
        assert_eq!(
            agg.endpoints_for_port("default", "b.example.com", "grpc")
                .len(),
            0
        );
        let proxy = Proxy::from_node(
            "sidecar~10.0.0.2~b-1.default~default.svc.cluster.local",
            Default::default(),
            Locality::default(),
        )
        .unwrap();
        let targets = agg.service_targets(&proxy);
        assert_eq!(targets.len(), 1);
        assert_eq!(&*targets[0].service.hostname, "b.example.com");
        assert_eq!(targets[0].target_port, 8080);
    }
}
