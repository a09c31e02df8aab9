//! PushContext: an immutable, indexed snapshot of the mesh, built once per full push
//! and shared (`Arc`) by every proxy's generators.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use strait_proto::istio;

use super::config::Config;
use super::endpoint::EndpointIndex;
use super::proxy::{Proxy, ServiceTarget};
use super::push_status::{PushStatus, metric};
use super::service::{Hostname, Service, Visibility};

/// Everything a PushContext is built from.
#[derive(Clone, Debug, Default)]
pub struct ConfigSnapshot {
    pub virtual_services: Vec<Config<istio::VirtualService>>,
    pub destination_rules: Vec<Config<istio::DestinationRule>>,
    pub service_entries: Vec<Config<istio::ServiceEntry>>,
    pub workload_entries: Vec<Config<istio::WorkloadEntry>>,
    pub sidecars: Vec<Config<istio::Sidecar>>,
}

/// Config that failed to load or validate, carried into push status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `Kind/namespace/name`, or the file path when no object could be identified.
    pub key: String,
    /// The file (or other source) the object came from.
    pub source: String,
    pub message: String,
}

pub struct PushContextInput {
    pub version: String,
    pub services: Vec<Arc<Service>>,
    pub configs: ConfigSnapshot,
    pub config_errors: Vec<ConfigError>,
    pub mesh: Arc<istio::MeshConfig>,
    pub endpoints: Arc<EndpointIndex>,
    pub domain_suffix: String,
}

/// A VirtualService as one proxy sees it: the hosts it owns there, fully qualified.
#[derive(Clone, Debug)]
pub struct VirtualServiceView {
    pub config: Config<istio::VirtualService>,
    pub hosts: Vec<String>,
}

pub struct PushContext {
    pub version: String,
    pub mesh: Arc<istio::MeshConfig>,
    pub domain_suffix: String,
    pub endpoints: Arc<EndpointIndex>,
    pub status: PushStatus,
    /// Sorted by hostname then namespace.
    services: Vec<Arc<Service>>,
    services_by_host: HashMap<Hostname, Vec<Arc<Service>>>,
    /// VirtualServices bound to the mesh gateway, in precedence order (oldest first),
    /// each with its hosts resolved to FQDNs.
    mesh_virtual_services: Vec<(Config<istio::VirtualService>, Vec<String>)>,
    /// In precedence order, each with its host resolved; indexed by exact host, with
    /// wildcard hosts kept apart (there are few).
    destination_rules: Vec<(Config<istio::DestinationRule>, String)>,
    destination_rules_by_host: HashMap<String, Vec<usize>>,
    wildcard_destination_rules: Vec<usize>,
    /// What every proxy of a namespace sees, computed on first use.
    namespace_views: Mutex<HashMap<String, Arc<NamespaceView>>>,
    pub configs: ConfigSnapshot,
    pub init_duration: std::time::Duration,
    /// Generated resources shared by proxies that see the same thing.
    pub xds_cache: crate::xds::cache::XdsCache,
}

/// The part of a proxy's view that depends only on its namespace.
#[derive(Debug)]
struct NamespaceView {
    services: Vec<Arc<Service>>,
    virtual_services: Vec<VirtualServiceView>,
}

impl std::fmt::Debug for PushContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushContext")
            .field("version", &self.version)
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

impl PushContext {
    pub fn build(input: PushContextInput) -> PushContext {
        let started = Instant::now();
        let status = PushStatus::default();
        for err in &input.config_errors {
            status.add(
                metric::INVALID_CONFIG,
                err.key.clone(),
                format!("{}: {}", err.source, err.message),
            );
        }

        let mut services = input.services;
        services.sort_by(|a, b| {
            (a.hostname.as_ref(), a.namespace.as_str())
                .cmp(&(b.hostname.as_ref(), b.namespace.as_str()))
        });
        let mut services_by_host: HashMap<Hostname, Vec<Arc<Service>>> = HashMap::new();
        for svc in &services {
            services_by_host
                .entry(svc.hostname.clone())
                .or_default()
                .push(svc.clone());
        }

        let domain = input.domain_suffix.as_str();
        let mut mesh_virtual_services: Vec<_> = input
            .configs
            .virtual_services
            .iter()
            .filter(|vs| {
                vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh")
            })
            .map(|vs| {
                let hosts = vs
                    .spec
                    .hosts
                    .iter()
                    .map(|h| resolve_short_name(h, &vs.meta.namespace, domain))
                    .collect();
                (vs.clone(), hosts)
            })
            .collect();
        mesh_virtual_services.sort_by(|a, b| a.0.precedence_key().cmp(&b.0.precedence_key()));

        let mut destination_rules: Vec<_> = input
            .configs
            .destination_rules
            .iter()
            .map(|dr| {
                let host = resolve_short_name(&dr.spec.host, &dr.meta.namespace, domain);
                (dr.clone(), host)
            })
            .collect();
        destination_rules.sort_by(|a, b| a.0.precedence_key().cmp(&b.0.precedence_key()));
        let mut destination_rules_by_host: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard_destination_rules = Vec::new();
        for (i, (_, host)) in destination_rules.iter().enumerate() {
            if host.starts_with('*') {
                wildcard_destination_rules.push(i);
            } else {
                destination_rules_by_host
                    .entry(host.clone())
                    .or_default()
                    .push(i);
            }
        }

        let mut push = PushContext {
            version: input.version,
            mesh: input.mesh,
            domain_suffix: input.domain_suffix,
            endpoints: input.endpoints,
            status,
            services,
            services_by_host,
            mesh_virtual_services,
            destination_rules,
            destination_rules_by_host,
            wildcard_destination_rules,
            namespace_views: Mutex::new(HashMap::new()),
            configs: input.configs,
            xds_cache: Default::default(),
            init_duration: Default::default(),
        };
        push.record_virtual_service_conflicts();
        push.init_duration = started.elapsed();
        push
    }

    /// An empty context, for a server that has not loaded anything yet.
    pub fn empty(mesh: Arc<istio::MeshConfig>, endpoints: Arc<EndpointIndex>) -> PushContext {
        PushContext::build(PushContextInput {
            version: String::new(),
            services: Vec::new(),
            configs: ConfigSnapshot::default(),
            config_errors: Vec::new(),
            mesh,
            endpoints,
            domain_suffix: "cluster.local".to_string(),
        })
    }

    pub fn all_services(&self) -> &[Arc<Service>] {
        &self.services
    }

    /// Services the proxy may see (exportTo), one per hostname: its own namespace's wins,
    /// else the oldest.
    pub fn services_for_proxy(&self, proxy: &Proxy) -> Vec<Arc<Service>> {
        self.namespace_view(&proxy.namespace).services.clone()
    }

    fn namespace_view(&self, namespace: &str) -> Arc<NamespaceView> {
        if let Some(view) = self.namespace_views.lock().get(namespace) {
            return view.clone();
        }
        // Built outside the lock: two proxies of a new namespace may both build it, which
        // costs a little time but never blocks the others.
        let view = Arc::new(NamespaceView {
            services: self.visible_services(namespace),
            virtual_services: self.visible_virtual_services(namespace),
        });
        self.namespace_views
            .lock()
            .insert(namespace.to_string(), view.clone());
        view
    }

    fn visible_services(&self, namespace: &str) -> Vec<Arc<Service>> {
        let mut out = Vec::new();
        for svc in &self.services {
            if !svc.visibility.visible_from(&svc.namespace, namespace) {
                continue;
            }
            if let Some(chosen) = self.service_for_host(&svc.hostname, namespace)
                && Arc::ptr_eq(&chosen, svc)
            {
                out.push(svc.clone());
            }
        }
        out
    }

    /// The service for a hostname as seen from `namespace`.
    pub fn service_for_host(&self, host: &str, namespace: &str) -> Option<Arc<Service>> {
        let candidates = self.services_by_host.get(host)?;
        let visible = candidates
            .iter()
            .filter(|s| s.visibility.visible_from(&s.namespace, namespace));
        let mut best: Option<&Arc<Service>> = None;
        for svc in visible {
            if svc.namespace == namespace {
                return Some(svc.clone());
            }
            best = match best {
                Some(b) if b.creation_time <= svc.creation_time => Some(b),
                _ => Some(svc),
            };
        }
        best.cloned()
    }

    /// Resolves a host named in config relative to the config's namespace, as Istio's
    /// `ResolveShortnameToFQDN`: `reviews` in `default` → `reviews.default.svc.<domain>`.
    pub fn resolve_host(&self, host: &str, config_namespace: &str) -> String {
        resolve_short_name(host, config_namespace, &self.domain_suffix)
    }

    /// VirtualServices applying to this proxy's outbound traffic, each with the hosts it
    /// owns. A host claimed by two VirtualServices goes to the older one.
    pub fn virtual_services_for_proxy(&self, proxy: &Proxy) -> Vec<VirtualServiceView> {
        self.namespace_view(&proxy.namespace)
            .virtual_services
            .clone()
    }

    fn visible_virtual_services(&self, namespace: &str) -> Vec<VirtualServiceView> {
        let default = self.default_visibility(VisibilityKind::VirtualService);
        let mut claimed: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for (vs, resolved) in &self.mesh_virtual_services {
            let visibility = Visibility::from_export_to(&vs.spec.export_to, default.clone());
            if !visibility.visible_from(&vs.meta.namespace, namespace) {
                continue;
            }
            let hosts: Vec<String> = resolved
                .iter()
                .filter(|h| claimed.insert(h.as_str()))
                .cloned()
                .collect();
            if !hosts.is_empty() {
                out.push(VirtualServiceView {
                    config: vs.clone(),
                    hosts,
                });
            }
        }
        out
    }

    /// Records, once per push, VirtualServices that lose hosts to older ones.
    fn record_virtual_service_conflicts(&self) {
        let mut owner: HashMap<String, String> = HashMap::new();
        for (vs, resolved) in &self.mesh_virtual_services {
            for (i, fqdn) in resolved.iter().enumerate() {
                let fqdn = fqdn.clone();
                let me = format!("{}/{}", vs.meta.namespace, vs.meta.name);
                match owner.get(&fqdn) {
                    Some(first) if *first != me => self.status.add(
                        metric::VSERVICE_HOST_CONFLICT,
                        format!("VirtualService/{me}"),
                        format!(
                            "{}: spec.hosts[{i}]: host {fqdn:?} is already claimed by the older VirtualService {first}; ignored for this host",
                            vs.meta.source
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        owner.insert(fqdn, me);
                    }
                }
            }
        }
    }

    /// The DestinationRule for a service as this proxy sees it: the proxy's namespace
    /// first, then the service's namespace, then the root namespace, then any other
    /// exported to the proxy. Among DestinationRules at the same level the older wins;
    /// an exact host beats a wildcard.
    pub fn destination_rule(
        &self,
        proxy: &Proxy,
        service: &Service,
    ) -> Option<&Config<istio::DestinationRule>> {
        let root = self.mesh.root_namespace.as_str();
        let default = self.default_visibility(VisibilityKind::DestinationRule);
        let exact = self
            .destination_rules_by_host
            .get(service.hostname.as_ref())
            .into_iter()
            .flatten();
        let mut best: Option<(u8, u8, usize)> = None;
        for &i in exact.chain(&self.wildcard_destination_rules) {
            let (dr, host) = &self.destination_rules[i];
            if dr.spec.workload_selector.is_some() {
                continue;
            }
            let Some(specificity) = host_match(host, &service.hostname) else {
                continue;
            };
            let visibility = Visibility::from_export_to(&dr.spec.export_to, default.clone());
            if !visibility.visible_from(&dr.meta.namespace, &proxy.namespace) {
                continue;
            }
            let level = if dr.meta.namespace == proxy.namespace {
                0
            } else if dr.meta.namespace == service.namespace {
                1
            } else if dr.meta.namespace == root {
                2
            } else {
                3
            };
            // Candidates come in precedence order per group; keep the first best.
            let better = match best {
                None => true,
                Some((l, s, j)) => (level, specificity, i) < (l, s, j),
            };
            if better {
                best = Some((level, specificity, i));
            }
        }
        best.map(|(_, _, i)| &self.destination_rules[i].0)
    }

    /// The service ports this proxy's workload serves, from the endpoints at its IPs.
    pub fn service_targets(&self, proxy: &Proxy) -> Vec<ServiceTarget> {
        let mut out: Vec<ServiceTarget> = Vec::new();
        for ip in &proxy.ip_addresses {
            for (host, namespace, ep) in self.endpoints.by_address(*ip) {
                let Some(service) = self
                    .services_by_host
                    .get(&host)
                    .and_then(|all| all.iter().find(|s| s.namespace == namespace))
                else {
                    continue;
                };
                let Some(port) = service
                    .port_by_name(&ep.service_port_name)
                    .or_else(|| (service.ports.len() == 1).then(|| &service.ports[0]))
                else {
                    continue;
                };
                let target = ServiceTarget {
                    service: service.clone(),
                    port: port.clone(),
                    target_port: ep.endpoint_port,
                };
                if !out.iter().any(|t| {
                    t.service.hostname == target.service.hostname && t.port.port == target.port.port
                }) {
                    out.push(target);
                }
            }
        }
        out.sort_by(|a, b| {
            (a.target_port, a.service.hostname.as_ref())
                .cmp(&(b.target_port, b.service.hostname.as_ref()))
        });
        out
    }

    fn default_visibility(&self, kind: VisibilityKind) -> Visibility {
        let list = match kind {
            VisibilityKind::VirtualService => &self.mesh.default_virtual_service_export_to,
            VisibilityKind::DestinationRule => &self.mesh.default_destination_rule_export_to,
        };
        Visibility::from_export_to(list, Visibility::Public)
    }

    /// Counts used by metrics and `/debug` output.
    pub fn summary(&self) -> BTreeMap<&'static str, usize> {
        BTreeMap::from([
            ("services", self.services.len()),
            ("virtualServices", self.configs.virtual_services.len()),
            ("destinationRules", self.configs.destination_rules.len()),
        ])
    }
}

enum VisibilityKind {
    VirtualService,
    DestinationRule,
}

/// `reviews` in namespace `default` → `reviews.default.svc.<domain>`; names with a dot
/// and wildcards stay as they are.
pub fn resolve_short_name(host: &str, namespace: &str, domain_suffix: &str) -> String {
    if host.contains('.') || host.starts_with('*') || host.is_empty() {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.{domain_suffix}")
    }
}

/// How well a config host (maybe `*.suffix`) matches a service host: 0 exact,
/// 1 wildcard (shorter suffixes match later), `None` when it does not match.
pub fn host_match(config_host: &str, service_host: &str) -> Option<u8> {
    if config_host == service_host {
        return Some(0);
    }
    if config_host == "*" {
        return Some(2);
    }
    if let Some(suffix) = config_host.strip_prefix('*')
        && service_host.ends_with(suffix)
    {
        return Some(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve() {
        assert_eq!(
            resolve_short_name("reviews", "default", "cluster.local"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(
            resolve_short_name(
                "reviews.other.svc.cluster.local",
                "default",
                "cluster.local"
            ),
            "reviews.other.svc.cluster.local"
        );
        assert_eq!(
            resolve_short_name("*.example.com", "default", "cluster.local"),
            "*.example.com"
        );
    }

    #[test]
    fn wildcard_host_match() {
        assert_eq!(host_match("a.b.c", "a.b.c"), Some(0));
        assert_eq!(host_match("*.b.c", "a.b.c"), Some(1));
        assert_eq!(host_match("*", "a.b.c"), Some(2));
        assert_eq!(host_match("*.x.c", "a.b.c"), None);
    }
}
