//! `metadata.filter_metadata["istio"]` of clusters and endpoints: which services a
//! cluster serves, which DestinationRule (and subset) shaped it, and the compact
//! workload identity of endpoints. Telemetry and istioctl read these.

use std::collections::{BTreeMap, HashMap};

use strait_proto::envoy::config::core::v3::Metadata;
use strait_proto::google::protobuf::value::Kind;
use strait_proto::google::protobuf::{ListValue, Struct, Value};

use crate::model::{ConfigMeta, Endpoint, Provider, Service};

pub const ISTIO: &str = "istio";
/// The key Envoy matches `transport_socket_matches` against.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// Where config paths of DestinationRules start (Istio names the v1 API there).
const DESTINATION_RULE_PATH: &str = "/apis/networking.istio.io/v1/namespaces";

/// The registry cluster every endpoint comes from until multi-cluster exists.
const CLUSTER_ID: &str = "Kubernetes";

pub fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn boolean(b: bool) -> Value {
    Value {
        kind: Some(Kind::BoolValue(b)),
    }
}

fn structure(fields: HashMap<String, Value>) -> Value {
    Value {
        kind: Some(Kind::StructValue(Struct { fields })),
    }
}

/// The `istio` struct of a metadata, created on first use.
pub fn istio_fields(metadata: &mut Option<Metadata>) -> &mut HashMap<String, Value> {
    &mut metadata
        .get_or_insert_with(Metadata::default)
        .filter_metadata
        .entry(ISTIO.to_string())
        .or_default()
        .fields
}

/// `services: [{host, name, namespace}]`.
pub fn set_services<'a>(
    metadata: &mut Option<Metadata>,
    services: impl IntoIterator<Item = &'a Service>,
) {
    let values = services.into_iter().map(service_value).collect();
    istio_fields(metadata).insert(
        "services".to_string(),
        Value {
            kind: Some(Kind::ListValue(ListValue { values })),
        },
    );
}

/// ServiceEntry services are named by their host in Istio's model, Kubernetes ones by
/// the Service's name.
fn service_value(svc: &Service) -> Value {
    let name = match svc.provider {
        Provider::Kubernetes => svc.name.as_str(),
        Provider::External => svc.hostname.as_ref(),
    };
    structure(HashMap::from([
        ("host".to_string(), string(svc.hostname.as_ref())),
        ("name".to_string(), string(name)),
        ("namespace".to_string(), string(svc.namespace.clone())),
    ]))
}

/// `config: /apis/networking.istio.io/v1/namespaces/<ns>/destination-rule/<name>`.
pub fn set_destination_rule(metadata: &mut Option<Metadata>, meta: &ConfigMeta) {
    let path = format!(
        "{DESTINATION_RULE_PATH}/{}/destination-rule/{}",
        meta.namespace, meta.name
    );
    istio_fields(metadata).insert("config".to_string(), string(path));
}

pub fn set_subset(metadata: &mut Option<Metadata>, subset: &str) {
    istio_fields(metadata).insert("subset".to_string(), string(subset));
}

pub fn set_external(metadata: &mut Option<Metadata>) {
    istio_fields(metadata).insert("external".to_string(), boolean(true));
}

/// Marks clusters whose TLS the user configured (SIMPLE, MUTUAL), so that the ALPN
/// override of Istio's proxy leaves their ALPN alone.
pub fn set_alpn_override_off(metadata: &mut Option<Metadata>) {
    istio_fields(metadata).insert("alpn_override".to_string(), string("false"));
}

/// Endpoint metadata: the `tlsMode` Envoy selects the transport socket by, and the
/// compact `<workload>;<ns>;<canonical name>;<canonical revision>;<cluster>` identity.
pub fn endpoint(ep: &Endpoint, mtls: bool) -> Metadata {
    let tls_mode = if mtls { ep.tls_mode.as_str() } else { "" };
    build_endpoint(tls_mode, &ep.labels, &ep.workload_name, &ep.namespace)
}

/// Metadata of an endpoint that only the service describes (a DNS host): the declaring
/// object stands in for the workload, as in Istio's ServiceEntry registry.
pub fn service_workload(svc: &Service) -> Metadata {
    build_endpoint("", &svc.labels, &svc.name, &svc.namespace)
}

fn build_endpoint(
    tls_mode: &str,
    labels: &BTreeMap<String, String>,
    workload: &str,
    namespace: &str,
) -> Metadata {
    let mut metadata = Some(Metadata::default());
    if !tls_mode.is_empty()
        && tls_mode != "disabled"
        && let Some(m) = metadata.as_mut()
    {
        m.filter_metadata.insert(
            TRANSPORT_SOCKET_MATCH.to_string(),
            Struct {
                fields: HashMap::from([("tlsMode".to_string(), string(tls_mode))]),
            },
        );
    }
    let (name, revision) = canonical_service(labels, workload);
    // "latest" is the default revision; Istio leaves it out to keep config small.
    let revision = if revision == "latest" { "" } else { revision };
    let identity = format!("{workload};{namespace};{name};{revision};{CLUSTER_ID}");
    istio_fields(&mut metadata).insert("workload".to_string(), string(identity));
    metadata.unwrap_or_default()
}

/// Istio's canonical service name and revision, from the canonical labels or the usual
/// app/version labels.
pub fn canonical_service<'a>(
    labels: &'a BTreeMap<String, String>,
    workload: &'a str,
) -> (&'a str, &'a str) {
    let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k).map(String::as_str));
    let name = first(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or(workload);
    let revision = first(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or("latest");
    (name, revision)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::model::{HealthStatus, Locality};

    fn ep(labels: &[(&str, &str)], tls: &str) -> Endpoint {
        Endpoint {
            address: IpAddr::from([10, 0, 0, 1]),
            endpoint_port: 9080,
            service_port_name: "http".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            locality: Locality::default(),
            weight: 0,
            health: HealthStatus::Healthy,
            service_account: String::new(),
            namespace: "default".into(),
            workload_name: "reviews-v1".into(),
            tls_mode: tls.into(),
        }
    }

    fn field<'a>(m: &'a Metadata, filter: &str, key: &str) -> Option<&'a Kind> {
        m.filter_metadata
            .get(filter)?
            .fields
            .get(key)?
            .kind
            .as_ref()
    }

    #[test]
    fn workload_identity_uses_canonical_labels() {
        let m = endpoint(&ep(&[("app", "reviews"), ("version", "v1")], "istio"), true);
        assert_eq!(
            field(&m, ISTIO, "workload"),
            Some(&Kind::StringValue(
                "reviews-v1;default;reviews;v1;Kubernetes".into()
            ))
        );
        assert_eq!(
            field(&m, TRANSPORT_SOCKET_MATCH, "tlsMode"),
            Some(&Kind::StringValue("istio".into()))
        );
        let m = endpoint(&ep(&[], "istio"), false);
        assert!(field(&m, TRANSPORT_SOCKET_MATCH, "tlsMode").is_none());
        assert_eq!(
            field(&m, ISTIO, "workload"),
            Some(&Kind::StringValue(
                "reviews-v1;default;reviews-v1;;Kubernetes".into()
            ))
        );
    }
}
