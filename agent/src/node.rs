//! Who the proxy says it is: the node ID
//! (`sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`), `node.cluster`,
//! the locality and the metadata pilot-discovery reads (`NAMESPACE`, `LABELS`,
//! `INSTANCE_IPS`, `ISTIO_VERSION`, ...), from the environment (`ISTIO_META_*`,
//! `ISTIO_METAJSON_*`, `POD_NAME`, ...) and the pod's labels and annotations files.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::env::{Env, string_var};
use crate::podinfo::PodInfo;

/// The Istio release whose behaviour the generated config asks pilot-discovery for.
pub const ISTIO_VERSION: &str = "1.30.0";
const META_PREFIX: &str = "ISTIO_META_";
const META_JSON_PREFIX: &str = "ISTIO_METAJSON_";
/// Istio's locality label (`region.zone.subzone`).
const LOCALITY_LABEL: &str = "istio-locality";
/// Added by Deployments to every pod; meaningless to the mesh.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

/// The identity half of the bootstrap.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeIdentity {
    pub id: String,
    pub cluster: String,
    pub locality: Locality,
    pub metadata: Map<String, Value>,
}

/// What the identity is built from besides the environment and pod files.
#[derive(Debug, Clone)]
pub struct NodeInputs<'a> {
    pub ips: &'a [IpAddr],
    pub pod_name: &'a str,
    pub namespace: &'a str,
    pub domain: &'a str,
    /// The resolved proxy config, as JSON (`PROXY_CONFIG` metadata).
    pub proxy_config: Value,
    /// `ProxyConfig.proxyMetadata`.
    pub proxy_metadata: &'a BTreeMap<String, String>,
    /// `--serviceCluster` / `serviceCluster`; `istio-proxy` derives it.
    pub service_cluster: &'a str,
    pub interception_mode: &'a str,
    pub envoy_status_port: u16,
    pub envoy_prometheus_port: u16,
    pub exit_on_zero_active_connections: bool,
    pub outlier_log_path: Option<&'a str>,
}

/// `sidecar~<first ip>~<pod>.<namespace>~<domain>`.
pub fn node_id(ips: &[IpAddr], pod: &str, namespace: &str, domain: &str) -> String {
    let ip = ips.first().map(ToString::to_string).unwrap_or_default();
    format!("sidecar~{ip}~{pod}.{namespace}~{domain}")
}

/// Builds the node identity. Problems with optional inputs (a malformed
/// `ISTIO_METAJSON_*`) are returned as warnings, as Istio logs and skips them.
pub fn identity(env: &Env, pod: &PodInfo, inputs: &NodeInputs<'_>) -> (NodeIdentity, Vec<String>) {
    let mut warnings = Vec::new();
    let mut meta = Map::new();
    // Lowest precedence first: proxyMetadata, then ISTIO_META_*, then ISTIO_METAJSON_*.
    for (k, v) in inputs.proxy_metadata {
        if let Some(key) = k.strip_prefix(META_PREFIX).filter(|k| !k.is_empty()) {
            meta.insert(key.to_owned(), json!(v));
        }
    }
    for (k, v) in env {
        if let Some(key) = k.strip_prefix(META_PREFIX).filter(|k| !k.is_empty()) {
            meta.insert(key.to_owned(), json!(v));
        }
    }
    let mut static_labels: Option<BTreeMap<String, String>> = None;
    for (k, v) in env {
        if !k.starts_with(META_JSON_PREFIX) {
            continue;
        }
        if k == "ISTIO_METAJSON_LABELS" {
            match serde_json::from_str::<BTreeMap<String, String>>(v) {
                Ok(labels) if !labels.is_empty() => static_labels = Some(labels),
                Ok(_) => {}
                Err(e) => warnings.push(format!("{k} is not a JSON object of strings: {e}")),
            }
            continue;
        }
        match serde_json::from_str::<Map<String, Value>>(v) {
            Ok(obj) => meta.extend(obj),
            Err(e) => warnings.push(format!("{k} is not a JSON object: {e}")),
        }
    }

    let mut labels: BTreeMap<String, String> = static_labels.clone().unwrap_or_default();
    if let Some(pod_labels) = &pod.labels {
        for (k, v) in pod_labels {
            if k != POD_TEMPLATE_HASH {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    let locality = labels
        .get(LOCALITY_LABEL)
        .map(|l| l.replace('.', "/"))
        .filter(|l| !l.is_empty());
    if let Some(l) = &locality {
        labels.insert(LOCALITY_LABEL.to_owned(), l.clone());
    }
    let locality = locality.map(|l| parse_locality(&l)).unwrap_or_default();

    meta.entry("ISTIO_VERSION").or_insert(json!(ISTIO_VERSION));
    meta.entry("INTERCEPTION_MODE")
        .or_insert(json!(inputs.interception_mode));
    let ips: Vec<String> = inputs.ips.iter().map(ToString::to_string).collect();
    meta.insert("INSTANCE_IPS".into(), json!(ips.join(",")));
    meta.insert("NAME".into(), json!(inputs.pod_name));
    meta.insert("NAMESPACE".into(), json!(inputs.namespace));
    if let Some(sa) = string_var(env, "SERVICE_ACCOUNT") {
        meta.insert("SERVICE_ACCOUNT".into(), json!(sa));
    }
    if !labels.is_empty() {
        meta.insert("LABELS".into(), json!(labels));
    }
    if let Some(s) = &static_labels {
        meta.insert("STATIC_LABELS".into(), json!(s));
    }
    if let Some(annotations) = &pod.annotations {
        let mut merged = match meta.remove("ANNOTATIONS") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for (k, v) in annotations {
            merged.insert(k.clone(), json!(v));
        }
        meta.insert("ANNOTATIONS".into(), Value::Object(merged));
    }
    meta.insert("PROXY_CONFIG".into(), inputs.proxy_config.clone());
    meta.insert("ENVOY_STATUS_PORT".into(), json!(inputs.envoy_status_port));
    meta.insert(
        "ENVOY_PROMETHEUS_PORT".into(),
        json!(inputs.envoy_prometheus_port),
    );
    meta.insert(
        "EXIT_ON_ZERO_ACTIVE_CONNECTIONS".into(),
        json!(inputs.exit_on_zero_active_connections.to_string()),
    );
    if let Some(p) = inputs.outlier_log_path {
        meta.insert("OUTLIER_LOG_PATH".into(), json!(p));
    }

    let cluster = service_cluster(inputs.service_cluster, &labels, &meta, inputs.namespace);
    let id = node_id(inputs.ips, inputs.pod_name, inputs.namespace, inputs.domain);
    (
        NodeIdentity {
            id,
            cluster,
            locality,
            metadata: meta,
        },
        warnings,
    )
}

/// `region/zone/subzone`, any part may be missing.
fn parse_locality(l: &str) -> Locality {
    let mut parts = l.splitn(3, '/').map(str::to_owned);
    Locality {
        region: parts.next().unwrap_or_default(),
        zone: parts.next().unwrap_or_default(),
        sub_zone: parts.next().unwrap_or_default(),
    }
}

/// An explicit name wins; `istio-proxy` (the default) becomes `<app>.<namespace>`,
/// else `<workload>.<namespace>`, else `istio-proxy.<namespace>`.
fn service_cluster(
    name: &str,
    labels: &BTreeMap<String, String>,
    meta: &Map<String, Value>,
    namespace: &str,
) -> String {
    if !name.is_empty() && name != "istio-proxy" {
        return name.to_owned();
    }
    if let Some(app) = labels.get("app") {
        return format!("{app}.{namespace}");
    }
    if let Some(w) = meta
        .get("WORKLOAD_NAME")
        .and_then(Value::as_str)
        .filter(|w| !w.is_empty())
    {
        return format!("{w}.{namespace}");
    }
    if namespace.is_empty() {
        "istio-proxy".to_owned()
    } else {
        format!("istio-proxy.{namespace}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn inputs<'a>(ips: &'a [IpAddr], pm: &'a BTreeMap<String, String>) -> NodeInputs<'a> {
        NodeInputs {
            ips,
            pod_name: "reviews-v1-abc",
            namespace: "default",
            domain: "default.svc.cluster.local",
            proxy_config: json!({"discoveryAddress": "istiod:15010"}),
            proxy_metadata: pm,
            service_cluster: "istio-proxy",
            interception_mode: "REDIRECT",
            envoy_status_port: 15021,
            envoy_prometheus_port: 15090,
            exit_on_zero_active_connections: false,
            outlier_log_path: None,
        }
    }

    #[test]
    fn node_id_is_istios() {
        let ips: Vec<IpAddr> = vec!["10.1.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
        assert_eq!(
            node_id(
                &ips,
                "reviews-v1-abc",
                "default",
                "default.svc.cluster.local"
            ),
            "sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local"
        );
    }

    #[test]
    fn metadata_from_env_and_pod_files() {
        let ips: Vec<IpAddr> = vec!["10.1.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
        let pm: BTreeMap<String, String> = [
            ("ISTIO_META_DNS_CAPTURE".to_owned(), "true".to_owned()),
            (
                "ISTIO_META_CLUSTER_ID".to_owned(),
                "from-proxy-config".to_owned(),
            ),
            ("NOT_META".to_owned(), "x".to_owned()),
        ]
        .into();
        let e = env(&[
            ("ISTIO_META_CLUSTER_ID", "Kubernetes"),
            ("ISTIO_META_WORKLOAD_NAME", "reviews-v1"),
            (
                "ISTIO_METAJSON_EXTRA",
                r#"{"MESH_ID": "mesh1", "NETWORK": "n1"}"#,
            ),
            ("ISTIO_METAJSON_BROKEN", "{"),
            ("SERVICE_ACCOUNT", "bookinfo-reviews"),
            ("POD_NAME", "ignored-here"),
        ]);
        let pod = PodInfo {
            labels: Some(
                [
                    ("app", "reviews"),
                    ("version", "v1"),
                    ("pod-template-hash", "abc"),
                    ("istio-locality", "us-east.us-east-1a.rack7"),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ),
            annotations: Some([("sidecar.istio.io/status".to_owned(), "{}".to_owned())].into()),
        };
        let (node, warnings) = identity(&e, &pod, &inputs(&ips, &pm));
        let m = &node.metadata;
        assert_eq!(
            node.id,
            "sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local"
        );
        assert_eq!(node.cluster, "reviews.default");
        assert_eq!(
            node.locality,
            Locality {
                region: "us-east".into(),
                zone: "us-east-1a".into(),
                sub_zone: "rack7".into()
            }
        );
        assert_eq!(m["CLUSTER_ID"], "Kubernetes", "env wins over proxyMetadata");
        assert_eq!(m["DNS_CAPTURE"], "true");
        assert!(!m.contains_key("NOT_META"));
        assert_eq!(m["MESH_ID"], "mesh1");
        assert_eq!(m["NETWORK"], "n1");
        assert_eq!(m["INSTANCE_IPS"], "10.1.0.7,fd00::7");
        assert_eq!(m["NAME"], "reviews-v1-abc");
        assert_eq!(m["NAMESPACE"], "default");
        assert_eq!(m["SERVICE_ACCOUNT"], "bookinfo-reviews");
        assert_eq!(m["ISTIO_VERSION"], ISTIO_VERSION);
        assert_eq!(m["INTERCEPTION_MODE"], "REDIRECT");
        assert_eq!(m["LABELS"]["app"], "reviews");
        assert_eq!(m["LABELS"]["istio-locality"], "us-east/us-east-1a/rack7");
        assert!(m["LABELS"].get("pod-template-hash").is_none());
        assert_eq!(m["ANNOTATIONS"]["sidecar.istio.io/status"], "{}");
        assert_eq!(m["PROXY_CONFIG"]["discoveryAddress"], "istiod:15010");
        assert_eq!(m["ENVOY_STATUS_PORT"], 15021);
        assert_eq!(m["EXIT_ON_ZERO_ACTIVE_CONNECTIONS"], "false");
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("ISTIO_METAJSON_BROKEN"),
            "{warnings:?}"
        );
    }

    #[test]
    fn metajson_labels_are_static_labels_under_the_pod_labels() {
        let ips: Vec<IpAddr> = vec!["10.1.0.8".parse().unwrap()];
        let pm = BTreeMap::new();
        let e = env(&[("ISTIO_METAJSON_LABELS", r#"{"app":"vm","tier":"db"}"#)]);
        let pod = PodInfo {
            labels: Some([("app".to_owned(), "pod".to_owned())].into()),
            annotations: None,
        };
        let (node, _) = identity(&e, &pod, &inputs(&ips, &pm));
        assert_eq!(node.metadata["LABELS"], json!({"app": "pod", "tier": "db"}));
        assert_eq!(
            node.metadata["STATIC_LABELS"],
            json!({"app": "vm", "tier": "db"})
        );
        assert!(!node.metadata.contains_key("ANNOTATIONS"));
    }

    #[test]
    fn service_cluster_fallbacks() {
        let labels = BTreeMap::new();
        let mut meta = Map::new();
        assert_eq!(
            service_cluster("explicit", &labels, &meta, "ns"),
            "explicit"
        );
        assert_eq!(
            service_cluster("istio-proxy", &labels, &meta, "ns"),
            "istio-proxy.ns"
        );
        meta.insert("WORKLOAD_NAME".into(), json!("w"));
        assert_eq!(service_cluster("", &labels, &meta, "ns"), "w.ns");
    }
}
