//! Service registries: where services and endpoints come from. Every registry answers
//! the same questions ([`ServiceDiscovery`]); an [`Aggregate`] merges several (the config
//! directory, the Kubernetes API server via [`kube_watch`], ServiceEntries) into one view.

pub mod aggregate;
pub mod kube;
pub mod kube_convert;
pub mod kube_watch;
pub mod serviceentry;

use std::sync::Arc;

use crate::model::{Endpoint, Provider, Proxy, Service, ServiceTarget};

pub use aggregate::Aggregate;

/// A change a registry reports, telling the push machinery what to do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegistryEvent {
    /// The service itself changed (added, removed, ports...): a full push.
    Service { namespace: String, name: String },
    /// Only its endpoints may have changed: an EDS push if they did.
    Endpoints { namespace: String, name: String },
}

/// One source of services and endpoints.
pub trait ServiceDiscovery: Send + Sync {
    fn provider(&self) -> Provider;

    /// Every service this registry knows.
    fn services(&self) -> Vec<Service>;

    /// The endpoints of a service (all ports; each endpoint names its service port).
    fn endpoints(&self, namespace: &str, hostname: &str) -> Vec<Endpoint>;

    /// The endpoints of one service port.
    fn endpoints_for_port(
        &self,
        namespace: &str,
        hostname: &str,
        port_name: &str,
    ) -> Vec<Endpoint> {
        self.endpoints(namespace, hostname)
            .into_iter()
            .filter(|e| e.service_port_name == port_name)
            .collect()
    }

    /// The service ports a proxy's workload serves: those with an endpoint at one of the
    /// proxy's IPs.
    fn service_targets(&self, proxy: &Proxy) -> Vec<ServiceTarget> {
        let mut out = Vec::new();
        for service in self.services() {
            let service = Arc::new(service);
            for ep in self.endpoints(&service.namespace, &service.hostname) {
                if !proxy.ip_addresses.contains(&ep.address) {
                    continue;
                }
                let Some(port) = service.port_by_name(&ep.service_port_name) else {
                    continue;
                };
                if !out.iter().any(|t: &ServiceTarget| {
                    t.service.hostname == service.hostname && t.port.port == port.port
                }) {
                    out.push(ServiceTarget {
                        service: service.clone(),
                        port: port.clone(),
                        target_port: ep.endpoint_port,
                    });
                }
            }
        }
        out
    }
}
