//! Generated resources shared between proxies that see the same thing, as Istio's XDS
//! cache. One cache lives in each PushContext, so a full push starts empty. EDS entries
//! also record the endpoint generation of their host: an EDS-only push changes the
//! endpoints without a new PushContext, and the stale entry is then rebuilt.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Resource;
use crate::model::Proxy;

/// (cluster name, proxy namespace, proxy locality).
type EndpointKey = (String, String, String);

#[derive(Debug, Default)]
pub struct XdsCache {
    /// → (endpoint generation, CLA).
    endpoints: Mutex<HashMap<EndpointKey, (u64, Resource)>>,
    /// (type URL, proxy view, requested names) → the whole response.
    responses: Mutex<HashMap<String, Arc<Vec<Resource>>>>,
}

impl XdsCache {
    pub fn endpoint(&self, cluster: &str, proxy: &Proxy, generation: u64) -> Option<Resource> {
        let key = endpoint_key(cluster, proxy);
        match self.endpoints.lock().get(&key) {
            Some((g, r)) if *g == generation => Some(r.clone()),
            _ => None,
        }
    }

    pub fn put_endpoint(&self, cluster: &str, proxy: &Proxy, generation: u64, resource: Resource) {
        self.endpoints
            .lock()
            .insert(endpoint_key(cluster, proxy), (generation, resource));
    }

    pub fn response(&self, key: &str) -> Option<Arc<Vec<Resource>>> {
        self.responses.lock().get(key).cloned()
    }

    pub fn put_response(&self, key: String, resources: Arc<Vec<Resource>>) {
        self.responses.lock().insert(key, resources);
    }
}

fn endpoint_key(cluster: &str, proxy: &Proxy) -> EndpointKey {
    let l = &proxy.locality;
    (
        cluster.to_string(),
        proxy.namespace.clone(),
        format!("{}/{}/{}", l.region, l.zone, l.sub_zone),
    )
}

/// What a proxy's CDS and RDS depend on besides the PushContext: proxies with equal keys
/// get equal responses.
pub fn view_key(type_url: &str, proxy: &Proxy, names: &[String]) -> String {
    let mut key = format!(
        "{type_url}|{}|{}|{:?}|{:?}|",
        proxy.node_type.as_str(),
        proxy.namespace,
        proxy.metadata.interception_mode,
        proxy.labels,
    );
    for t in &proxy.service_targets {
        let _ = write!(
            key,
            "{}:{}:{},",
            t.service.hostname, t.port.port, t.target_port
        );
    }
    key.push('|');
    for ip in &proxy.ip_addresses {
        key.push_str(if ip.is_ipv6() { "6" } else { "4" });
    }
    key.push('|');
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    for n in sorted {
        key.push_str(n);
        key.push(',');
    }
    key
}

#[cfg(test)]
mod tests {
    use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use strait_proto::xds::{any, type_url};

    use crate::model::{Hostname, ShardKey};
    use crate::xds::cluster::fixture::{self, REVIEWS};
    use crate::xds::generate;

    fn endpoint_count(resources: &[crate::xds::Resource], name: &str) -> usize {
        let r = resources.iter().find(|r| r.name == name).unwrap();
        let cla: ClusterLoadAssignment = any::unpack(&r.body).unwrap();
        cla.endpoints.iter().map(|l| l.lb_endpoints.len()).sum()
    }

    #[test]
    fn endpoint_changes_invalidate_cached_assignments() {
        let push = fixture::push();
        let proxy = fixture::sidecar(&push);
        let name = format!("outbound|9080||{REVIEWS}");
        let names = vec![name.clone()];
        let before = endpoint_count(&generate(type_url::ENDPOINT, &proxy, &push, &names), &name);
        // Same PushContext, new endpoints (an EDS-only push): the cache must not answer
        // with the old assignment.
        let host: Hostname = REVIEWS.into();
        let one = vec![fixture::endpoint("10.0.1.1", "http", 9080, "v1", "")];
        assert!(
            push.endpoints
                .update(&host, "default", ShardKey::kubernetes(), one)
        );
        let after = endpoint_count(&generate(type_url::ENDPOINT, &proxy, &push, &names), &name);
        assert!(before > 1);
        assert_eq!(after, 1);
    }

    #[test]
    fn proxies_that_see_the_same_thing_share_responses() {
        let push = fixture::push();
        let proxy = fixture::sidecar(&push);
        let first = generate(type_url::CLUSTER, &proxy, &push, &[]);
        let key = super::view_key(type_url::CLUSTER, &proxy, &[]);
        let cached = push.xds_cache.response(&key).unwrap();
        assert_eq!(cached.len(), first.len());
        assert_eq!(*cached, first);
        // Another namespace sees other things: a different key.
        let mut other = proxy.clone();
        other.namespace = "shop".into();
        assert_ne!(super::view_key(type_url::CLUSTER, &other, &[]), key);
    }
}
