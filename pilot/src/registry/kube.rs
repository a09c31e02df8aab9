//! A store of Kubernetes Services, EndpointSlices and Pods, fed by any source (files
//! now, the API server later). Each change reports which services changed and how.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::kube_convert::{
    convert_endpoint_slice, convert_service, service_hostname, slice_service_name,
};
use super::{RegistryEvent, ServiceDiscovery};
use crate::model::{Endpoint, HealthStatus, Provider, Service, Visibility};

/// A Kubernetes object the registry understands.
#[derive(Clone, Debug)]
pub enum KubeObject {
    Service(Box<KubeService>),
    EndpointSlice(Box<EndpointSlice>),
    Pod(Box<Pod>),
}

type Key = (String, String);

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((
        meta.namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        meta.name.clone()?,
    ))
}

#[derive(Debug)]
pub struct KubeRegistry {
    domain_suffix: String,
    default_visibility: Visibility,
    services: BTreeMap<Key, KubeService>,
    slices: BTreeMap<Key, EndpointSlice>,
    pods: BTreeMap<Key, Pod>,
    /// Whether a service without EndpointSlices gets endpoints from the pods its
    /// selector matches.
    selector_endpoints: bool,
}

impl KubeRegistry {
    pub fn new(domain_suffix: &str, default_visibility: Visibility) -> KubeRegistry {
        KubeRegistry {
            domain_suffix: domain_suffix.to_string(),
            default_visibility,
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            pods: BTreeMap::new(),
            selector_endpoints: true,
        }
    }

    /// Endpoints from EndpointSlices only, as Istio reads a cluster: an API server
    /// has its EndpointSlice controller write them.
    pub fn slices_only(mut self) -> KubeRegistry {
        self.selector_endpoints = false;
        self
    }

    pub fn apply(&mut self, object: KubeObject) -> Vec<RegistryEvent> {
        match object {
            KubeObject::Service(svc) => {
                let Some(key) = key_of(&svc.metadata) else {
                    return Vec::new();
                };
                let old = self.services.insert(key.clone(), *svc);
                if old.as_ref() == self.services.get(&key) {
                    return Vec::new();
                }
                vec![RegistryEvent::Service {
                    namespace: key.0,
                    name: key.1,
                }]
            }
            KubeObject::EndpointSlice(slice) => {
                let Some(key) = key_of(&slice.metadata) else {
                    return Vec::new();
                };
                let mut changes = self.slice_owner_change(self.slices.get(&key));
                changes.extend(self.slice_owner_change(Some(&slice)));
                self.slices.insert(key, *slice);
                dedup(changes)
            }
            KubeObject::Pod(pod) => {
                let Some(key) = key_of(&pod.metadata) else {
                    return Vec::new();
                };
                let old = self.pods.insert(key.clone(), (*pod).clone());
                if old.as_ref() == Some(&*pod) {
                    return Vec::new();
                }
                let mut changes = self.pod_services(&key, &pod);
                if let Some(old) = old {
                    changes.extend(self.pod_services(&key, &old));
                }
                dedup(changes)
            }
        }
    }

    /// Deletes by kind name (`Service`, `EndpointSlice`, `Pod`).
    pub fn delete(&mut self, kind: &str, namespace: &str, name: &str) -> Vec<RegistryEvent> {
        let key = (namespace.to_string(), name.to_string());
        match kind {
            "Service" => match self.services.remove(&key) {
                Some(_) => vec![RegistryEvent::Service {
                    namespace: key.0,
                    name: key.1,
                }],
                None => Vec::new(),
            },
            "EndpointSlice" => {
                let old = self.slices.remove(&key);
                self.slice_owner_change(old.as_ref())
            }
            "Pod" => match self.pods.remove(&key) {
                Some(pod) => self.pod_services(&key, &pod),
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Every service, converted to the model.
    pub fn services(&self) -> Vec<Service> {
        self.services
            .values()
            .filter_map(|s| convert_service(s, &self.domain_suffix, &self.default_visibility))
            .collect()
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<Service> {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
            .and_then(|s| convert_service(s, &self.domain_suffix, &self.default_visibility))
    }

    pub fn hostname(&self, namespace: &str, name: &str) -> String {
        service_hostname(name, namespace, &self.domain_suffix)
    }

    /// The endpoints of a service: from its EndpointSlices when it has any, else from
    /// the running pods its selector matches (what the EndpointSlice controller would
    /// write), so a config directory need not spell out EndpointSlices.
    pub fn endpoints(&self, namespace: &str, name: &str) -> Vec<Endpoint> {
        let Some(service) = self.service(namespace, name) else {
            return Vec::new();
        };
        let slices: Vec<&EndpointSlice> = self
            .slices
            .iter()
            .filter(|((ns, _), s)| ns == namespace && slice_service_name(s) == Some(name))
            .map(|(_, s)| s)
            .collect();
        let mut endpoints: Vec<Endpoint> = if slices.is_empty() {
            if !self.selector_endpoints {
                return Vec::new();
            }
            self.endpoints_from_pods(namespace, name, &service)
        } else {
            slices
                .iter()
                .flat_map(|s| convert_endpoint_slice(s, &service, &self.pods))
                .collect()
        };
        endpoints.sort_by(|a, b| {
            (a.address, a.endpoint_port, &a.service_port_name).cmp(&(
                b.address,
                b.endpoint_port,
                &b.service_port_name,
            ))
        });
        endpoints.dedup_by(|a, b| {
            a.address == b.address
                && a.endpoint_port == b.endpoint_port
                && a.service_port_name == b.service_port_name
        });
        endpoints
    }

    fn endpoints_from_pods(&self, namespace: &str, name: &str, service: &Service) -> Vec<Endpoint> {
        let Some(kube) = self
            .services
            .get(&(namespace.to_string(), name.to_string()))
        else {
            return Vec::new();
        };
        let spec = kube.spec.clone().unwrap_or_default();
        let Some(selector) = spec.selector.filter(|s| !s.is_empty()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ((ns, _), pod) in &self.pods {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            if ns != namespace || !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                continue;
            }
            let Some(ip) = pod_ip(pod) else { continue };
            let ready = pod_ready(pod);
            for (kube_port, port) in spec.ports.iter().flatten().zip(&service.ports) {
                let Some(target) =
                    resolve_target_port(kube_port.target_port.as_ref(), port.port, pod)
                else {
                    continue;
                };
                out.push(Endpoint {
                    address: ip,
                    endpoint_port: target,
                    service_port_name: port.name.clone(),
                    labels: labels.clone(),
                    locality: Default::default(),
                    weight: 0,
                    health: if ready {
                        HealthStatus::Healthy
                    } else {
                        HealthStatus::Unhealthy
                    },
                    service_account: pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_default(),
                    namespace: namespace.to_string(),
                    workload_name: pod.metadata.name.clone().unwrap_or_default(),
                    tls_mode: labels
                        .get("security.istio.io/tlsMode")
                        .cloned()
                        .unwrap_or_default(),
                });
            }
        }
        out
    }

    fn slice_owner_change(&self, slice: Option<&EndpointSlice>) -> Vec<RegistryEvent> {
        let Some(slice) = slice else {
            return Vec::new();
        };
        let Some(service) = slice_service_name(slice) else {
            return Vec::new();
        };
        vec![RegistryEvent::Endpoints {
            namespace: slice
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            name: service.to_string(),
        }]
    }

    /// Services whose endpoints a pod feeds: through slices that point at it, or
    /// through selectors of services without slices.
    fn pod_services(&self, key: &Key, pod: &Pod) -> Vec<RegistryEvent> {
        let mut out = Vec::new();
        for slice in self.slices.values() {
            let points_here = slice.endpoints.iter().any(|e| {
                e.target_ref.as_ref().is_some_and(|r| {
                    r.name.as_deref() == Some(key.1.as_str())
                        && r.namespace.as_deref().unwrap_or(&key.0) == key.0
                })
            });
            if points_here {
                out.extend(self.slice_owner_change(Some(slice)));
            }
        }
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        // Keys sort by namespace first: only this namespace's services can select the pod.
        let in_namespace = self
            .services
            .range((key.0.clone(), String::new())..)
            .take_while(|((ns, _), _)| ns == &key.0);
        for ((ns, name), svc) in in_namespace {
            let selector = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
            if let Some(selector) = selector
                && !selector.is_empty()
                && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            {
                out.push(RegistryEvent::Endpoints {
                    namespace: ns.clone(),
                    name: name.clone(),
                });
            }
        }
        out
    }
}

fn dedup(mut changes: Vec<RegistryEvent>) -> Vec<RegistryEvent> {
    let set: BTreeSet<_> = changes.drain(..).collect();
    set.into_iter().collect()
}

fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()
}

/// A pod without a Ready condition counts as ready: files rarely spell out status.
fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    match conditions.and_then(|c| c.iter().find(|c| c.type_ == "Ready")) {
        Some(c) => c.status == "True",
        None => true,
    }
}

fn resolve_target_port(target: Option<&IntOrString>, service_port: u16, pod: &Pod) -> Option<u16> {
    match target {
        None => Some(service_port),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// The registry as a long-lived, shared source: sources write through the lock, push
/// builds read through it.
impl ServiceDiscovery for parking_lot::RwLock<KubeRegistry> {
    fn provider(&self) -> Provider {
        Provider::Kubernetes
    }

    fn services(&self) -> Vec<Service> {
        self.read().services()
    }

    fn endpoints(&self, namespace: &str, hostname: &str) -> Vec<Endpoint> {
        let registry = self.read();
        let suffix = format!(".{namespace}.svc.{}", registry.domain_suffix);
        match hostname.strip_suffix(&suffix) {
            Some(name) => registry.endpoints(namespace, name),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(yaml: &str) -> KubeObject {
        let v: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
        match v["kind"].as_str().unwrap() {
            "Service" => KubeObject::Service(Box::new(serde_json::from_value(v).unwrap())),
            "Pod" => KubeObject::Pod(Box::new(serde_json::from_value(v).unwrap())),
            _ => KubeObject::EndpointSlice(Box::new(serde_json::from_value(v).unwrap())),
        }
    }

    #[test]
    fn pods_selected_by_service_become_endpoints() {
        let mut reg = KubeRegistry::new("cluster.local", Visibility::Public);
        let changes = reg.apply(obj("kind: Service\nmetadata: {name: reviews, namespace: default}\nspec: {clusterIP: 10.96.0.9, selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: web}]}"));
        assert_eq!(changes.len(), 1);
        let changes = reg.apply(obj("kind: Pod\nmetadata: {name: r1, namespace: default, labels: {app: reviews, version: v1}}\nspec: {containers: [{name: app, ports: [{name: web, containerPort: 8080}]}]}\nstatus: {podIP: 10.1.0.5}"));
        assert_eq!(
            changes,
            vec![RegistryEvent::Endpoints {
                namespace: "default".into(),
                name: "reviews".into()
            }]
        );
        let eps = reg.endpoints("default", "reviews");
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].endpoint_port, 8080);
        assert_eq!(eps[0].labels["version"], "v1");
        // Re-applying the same pod changes nothing.
        assert!(reg.apply(obj("kind: Pod\nmetadata: {name: r1, namespace: default, labels: {app: reviews, version: v1}}\nspec: {containers: [{name: app, ports: [{name: web, containerPort: 8080}]}]}\nstatus: {podIP: 10.1.0.5}")).is_empty());
        assert_eq!(reg.delete("Pod", "default", "r1").len(), 1);
        assert!(reg.endpoints("default", "reviews").is_empty());
    }

    #[test]
    fn selectors_only_reach_pods_of_their_own_namespace() {
        let mut reg = KubeRegistry::new("cluster.local", Visibility::Public);
        for ns in ["a", "ab", "b"] {
            reg.apply(obj(&format!("kind: Service\nmetadata: {{name: r, namespace: {ns}}}\nspec: {{clusterIP: 10.96.0.9, selector: {{app: r}}, ports: [{{name: http, port: 80}}]}}")));
        }
        let changes = reg.apply(obj("kind: Pod\nmetadata: {name: p, namespace: ab, labels: {app: r}}\nstatus: {podIP: 10.1.0.5}"));
        assert_eq!(
            changes,
            vec![RegistryEvent::Endpoints {
                namespace: "ab".into(),
                name: "r".into()
            }]
        );
        assert_eq!(reg.endpoints("ab", "r").len(), 1);
        assert!(reg.endpoints("a", "r").is_empty());
        assert!(reg.endpoints("b", "r").is_empty());
    }

    #[test]
    fn slices_win_over_selectors() {
        let mut reg = KubeRegistry::new("cluster.local", Visibility::Public);
        reg.apply(obj("kind: Service\nmetadata: {name: r, namespace: default}\nspec: {clusterIP: 10.96.0.9, selector: {app: r}, ports: [{name: http, port: 80}]}"));
        reg.apply(obj("kind: Pod\nmetadata: {name: p, namespace: default, labels: {app: r}}\nstatus: {podIP: 10.1.0.5}"));
        let changes = reg.apply(obj("kind: EndpointSlice\napiVersion: discovery.k8s.io/v1\nmetadata: {name: r-1, namespace: default, labels: {kubernetes.io/service-name: r}}\naddressType: IPv4\nports: [{name: http, port: 8081}]\nendpoints: [{addresses: [10.1.0.9]}]"));
        assert_eq!(changes.len(), 1);
        let eps = reg.endpoints("default", "r");
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].address.to_string(), "10.1.0.9");
    }
}
