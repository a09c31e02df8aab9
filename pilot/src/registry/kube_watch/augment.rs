//! Pod labels as Istio sees them: a Pod's labels plus what its Node and Namespace say
//! about where it runs (Istio's `AugmentLabels`). The endpoint conversion reads
//! locality and subset labels from the result, so a Node relabelled into another zone
//! moves its Pods' endpoints there.
//!
//! - locality: the Pod's `topology.istio.io/locality` (or legacy `istio-locality`)
//!   label, `region.zone.subzone`; else the Node's `topology.kubernetes.io/region` /
//!   `zone` (or the beta `failure-domain.beta.kubernetes.io/...`) and
//!   `topology.istio.io/subzone` labels. Written as those three labels.
//! - `topology.istio.io/cluster`: the cluster ID; `kubernetes.io/hostname`: the Node.
//! - `topology.istio.io/network`: the Pod's own, else its Namespace's.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;

use super::relist::ObjKey;

const REGION: &str = "topology.kubernetes.io/region";
const ZONE: &str = "topology.kubernetes.io/zone";
const REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";
const ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
const SUBZONE: &str = "topology.istio.io/subzone";
const LOCALITY: &str = "topology.istio.io/locality";
const LOCALITY_LEGACY: &str = "istio-locality";
const CLUSTER: &str = "topology.istio.io/cluster";
const HOSTNAME: &str = "kubernetes.io/hostname";
const NETWORK: &str = "topology.istio.io/network";

type Labels = BTreeMap<String, String>;

/// (region, zone, subzone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Locality(String, String, String);

impl Locality {
    fn of_node(labels: &Labels) -> Locality {
        let get = |ga: &str, beta: Option<&str>| {
            labels
                .get(ga)
                .or_else(|| beta.and_then(|b| labels.get(b)))
                .cloned()
                .unwrap_or_default()
        };
        Locality(
            get(REGION, Some(REGION_BETA)),
            get(ZONE, Some(ZONE_BETA)),
            get(SUBZONE, None),
        )
    }

    /// `region.zone.subzone` (Istio also accepts `/`).
    fn parse(label: &str) -> Locality {
        let mut parts = label.split(['.', '/']).map(str::to_string);
        Locality(
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        )
    }
}

/// Pods as the API server has them, and the Node and Namespace facts that augment them.
#[derive(Debug)]
pub struct Augmenter {
    cluster_id: String,
    nodes: HashMap<String, Locality>,
    networks: HashMap<String, String>,
    pods: HashMap<ObjKey, Pod>,
}

impl Augmenter {
    pub fn new(cluster_id: &str) -> Augmenter {
        Augmenter {
            cluster_id: cluster_id.to_string(),
            nodes: HashMap::new(),
            networks: HashMap::new(),
            pods: HashMap::new(),
        }
    }

    /// Stores a Pod and returns it augmented.
    pub fn pod(&mut self, key: ObjKey, pod: Pod) -> Pod {
        let out = self.augmented(&pod);
        self.pods.insert(key, pod);
        out
    }

    pub fn pod_deleted(&mut self, key: &ObjKey) {
        self.pods.remove(key);
    }

    /// A Node's labels; the Pods on it, augmented again, when its locality changed.
    pub fn node(&mut self, name: &str, labels: &Labels) -> Vec<(ObjKey, Pod)> {
        let locality = Locality::of_node(labels);
        if self.nodes.get(name) == Some(&locality) {
            return Vec::new();
        }
        self.nodes.insert(name.to_string(), locality);
        self.reaugment(|pod| node_of(pod) == Some(name))
    }

    pub fn node_deleted(&mut self, name: &str) -> Vec<(ObjKey, Pod)> {
        if self.nodes.remove(name).is_none() {
            return Vec::new();
        }
        self.reaugment(|pod| node_of(pod) == Some(name))
    }

    /// A Namespace's labels; its Pods, augmented again, when its network changed.
    pub fn namespace(&mut self, name: &str, labels: &Labels) -> Vec<(ObjKey, Pod)> {
        let network = labels.get(NETWORK).cloned().unwrap_or_default();
        let old = self.networks.get(name).cloned().unwrap_or_default();
        if network == old {
            return Vec::new();
        }
        if network.is_empty() {
            self.networks.remove(name);
        } else {
            self.networks.insert(name.to_string(), network);
        }
        self.reaugment(|pod| pod.metadata.namespace.as_deref() == Some(name))
    }

    pub fn namespace_deleted(&mut self, name: &str) -> Vec<(ObjKey, Pod)> {
        self.namespace(name, &Labels::new())
    }

    fn reaugment(&self, on: impl Fn(&Pod) -> bool) -> Vec<(ObjKey, Pod)> {
        let mut out: Vec<(ObjKey, Pod)> = self
            .pods
            .iter()
            .filter(|(_, pod)| on(pod))
            .map(|(key, pod)| (key.clone(), self.augmented(pod)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn augmented(&self, pod: &Pod) -> Pod {
        let mut out = pod.clone();
        let labels = out.metadata.labels.get_or_insert_with(Labels::new);
        let node = node_of(pod).unwrap_or_default();
        let locality = labels
            .get(LOCALITY)
            .or_else(|| labels.get(LOCALITY_LEGACY))
            .map(|l| Locality::parse(l))
            .unwrap_or_else(|| self.nodes.get(node).cloned().unwrap_or_default());
        for (key, value) in [
            (REGION, locality.0),
            (ZONE, locality.1),
            (SUBZONE, locality.2),
        ] {
            if !value.is_empty() {
                labels.insert(key.to_string(), value);
            }
        }
        if !self.cluster_id.is_empty() {
            labels.insert(CLUSTER.to_string(), self.cluster_id.clone());
        }
        if !node.is_empty() {
            labels.insert(HOSTNAME.to_string(), node.to_string());
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(network) = self.networks.get(namespace)
            && !labels.contains_key(NETWORK)
        {
            labels.insert(NETWORK.to_string(), network.clone());
        }
        out
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, labels: &[(&str, &str)]) -> (ObjKey, Pod) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop",
                         "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Labels>()},
            "spec": {"nodeName": node, "containers": []}
        }))
        .unwrap();
        (("shop".into(), name.into()), pod)
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
        pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    #[test]
    fn node_locality_and_identity_labels() {
        let mut a = Augmenter::new("Kubernetes");
        let (key, p) = pod("reviews-1", "n1", &[("app", "reviews")]);
        let out = a.pod(key, p);
        assert_eq!(label(&out, "app"), Some("reviews"));
        assert_eq!(label(&out, CLUSTER), Some("Kubernetes"));
        assert_eq!(label(&out, HOSTNAME), Some("n1"));
        assert_eq!(label(&out, ZONE), None, "the node is not known yet");

        // The node arrives: its pods are handed out again with its locality.
        let again = a.node(
            "n1",
            &labels(&[
                (REGION, "us-east1"),
                (ZONE_BETA, "us-east1-b"),
                (SUBZONE, "rack7"),
            ]),
        );
        assert_eq!(again.len(), 1);
        let out = &again[0].1;
        assert_eq!(label(out, REGION), Some("us-east1"));
        assert_eq!(label(out, ZONE), Some("us-east1-b"));
        assert_eq!(label(out, SUBZONE), Some("rack7"));
        // Unchanged locality (other labels changed): nothing to redo.
        assert!(
            a.node(
                "n1",
                &labels(&[
                    (REGION, "us-east1"),
                    (ZONE_BETA, "us-east1-b"),
                    (SUBZONE, "rack7"),
                    ("x", "y")
                ])
            )
            .is_empty()
        );
        // Other nodes' pods are not touched.
        assert!(a.node("n2", &labels(&[(REGION, "eu")])).is_empty());
        assert_eq!(a.node_deleted("n1").len(), 1);
    }

    #[test]
    fn pod_locality_label_wins_over_the_node() {
        let mut a = Augmenter::new("");
        a.node("n1", &labels(&[(REGION, "us"), (ZONE, "a")]));
        let (key, p) = pod("p", "n1", &[(LOCALITY_LEGACY, "eu.west.r1")]);
        let out = a.pod(key, p);
        assert_eq!(label(&out, REGION), Some("eu"));
        assert_eq!(label(&out, ZONE), Some("west"));
        assert_eq!(label(&out, SUBZONE), Some("r1"));
        assert_eq!(label(&out, CLUSTER), None);
    }

    #[test]
    fn namespace_network_unless_the_pod_has_one() {
        let mut a = Augmenter::new("c1");
        let (k1, p1) = pod("p1", "", &[]);
        let (k2, p2) = pod("p2", "", &[(NETWORK, "own")]);
        a.pod(k1, p1);
        a.pod(k2, p2);
        let again = a.namespace("shop", &labels(&[(NETWORK, "net-a")]));
        assert_eq!(again.len(), 2);
        assert_eq!(label(&again[0].1, NETWORK), Some("net-a"));
        assert_eq!(label(&again[1].1, NETWORK), Some("own"));
        assert_eq!(label(&again[0].1, HOSTNAME), None, "no node");
        assert!(
            a.namespace("shop", &labels(&[(NETWORK, "net-a")]))
                .is_empty()
        );
        let again = a.namespace_deleted("shop");
        assert_eq!(label(&again[0].1, NETWORK), None);
        a.pod_deleted(&("shop".into(), "p1".into()));
        assert_eq!(a.namespace("shop", &labels(&[(NETWORK, "b")])).len(), 1);
    }
}
