//! One manifest document → a typed object, with errors naming the object and field.

use std::fmt;

use serde::de::DeserializeOwned;
use strait_proto::istio;

use crate::model::{Config, ConfigMeta, IstioConfig};
use crate::registry::kube::KubeObject;

/// The identity of a document, known even when its spec is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Clone, Debug)]
pub enum Object {
    Istio(IstioConfig),
    Kube(KubeObject),
}

/// Why a document could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectError {
    /// `None` when the document does not even say what it is.
    pub key: Option<ObjectKey>,
    pub message: String,
}

/// What a document turned out to be.
#[derive(Clone, Debug)]
pub enum Parsed {
    Object(ObjectKey, Box<Object>),
    /// A kind this control plane does not read (Deployment, ConfigMap, ...).
    Ignored,
}

const ISTIO_NETWORKING: [&str; 3] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

/// Parses one document (already turned from YAML into JSON).
pub fn parse_document(doc: serde_json::Value, source: &str) -> Result<Parsed, ObjectError> {
    let api_version = doc
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let kind = doc
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if kind.is_empty() {
        return Err(ObjectError {
            key: None,
            message: "kind: missing".to_string(),
        });
    }
    let is_istio = ISTIO_NETWORKING.contains(&api_version.as_str());
    let is_kube = matches!(
        (api_version.as_str(), kind.as_str()),
        ("v1", "Service") | ("v1", "Pod") | ("discovery.k8s.io/v1", "EndpointSlice")
    );
    if !is_istio && !is_kube {
        if api_version.starts_with("networking.istio.io/") {
            return Err(ObjectError {
                key: None,
                message: format!(
                    "apiVersion: {api_version:?} is not served (use networking.istio.io/v1, v1beta1 or v1alpha3)"
                ),
            });
        }
        return Ok(Parsed::Ignored);
    }
    let meta = parse_meta(&doc, source).map_err(|message| ObjectError { key: None, message })?;
    let key = ObjectKey {
        kind: kind.clone(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
    };
    let fail = |message: String| ObjectError {
        key: Some(key.clone()),
        message,
    };
    let object = if is_istio {
        let spec = doc
            .get("spec")
            .cloned()
            .unwrap_or(serde_json::Value::Object(Default::default()));
        Object::Istio(match kind.as_str() {
            "VirtualService" => IstioConfig::VirtualService(
                typed::<istio::VirtualService>(spec, meta).map_err(fail)?,
            ),
            "DestinationRule" => IstioConfig::DestinationRule(
                typed::<istio::DestinationRule>(spec, meta).map_err(fail)?,
            ),
            "ServiceEntry" => {
                IstioConfig::ServiceEntry(typed::<istio::ServiceEntry>(spec, meta).map_err(fail)?)
            }
            "WorkloadEntry" => {
                IstioConfig::WorkloadEntry(typed::<istio::WorkloadEntry>(spec, meta).map_err(fail)?)
            }
            "Sidecar" => IstioConfig::Sidecar(typed::<istio::Sidecar>(spec, meta).map_err(fail)?),
            _ => return Ok(Parsed::Ignored),
        })
    } else {
        Object::Kube(parse_kube(&kind, doc).map_err(fail)?)
    };
    Ok(Parsed::Object(key, Box::new(object)))
}

/// Istio specs are checked twice: shape (unknown fields, types) while parsing, then
/// Istio's semantic rules (regexes, weights, ...).
fn typed<S>(spec: serde_json::Value, meta: ConfigMeta) -> Result<Config<S>, String>
where
    S: DeserializeOwned + istio::Validate,
{
    let spec: S = istio::parse_spec(spec).map_err(|e| e.to_string())?;
    if let Err(errors) = spec.validate() {
        let joined = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(joined);
    }
    Ok(Config {
        meta,
        spec: std::sync::Arc::new(spec),
    })
}

fn parse_kube(kind: &str, doc: serde_json::Value) -> Result<KubeObject, String> {
    fn de<T: DeserializeOwned>(doc: serde_json::Value) -> Result<T, String> {
        serde_path_to_error::deserialize(doc).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }
    Ok(match kind {
        "Service" => KubeObject::Service(Box::new(de(doc)?)),
        "Pod" => KubeObject::Pod(Box::new(de(doc)?)),
        _ => KubeObject::EndpointSlice(Box::new(de(doc)?)),
    })
}

fn parse_meta(doc: &serde_json::Value, source: &str) -> Result<ConfigMeta, String> {
    let meta = doc.get("metadata").ok_or("metadata: missing")?;
    let name = meta
        .get("name")
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name: missing")?;
    let string_map = |field: &str| -> Result<_, String> {
        match meta.get(field) {
            None | Some(serde_json::Value::Null) => Ok(Default::default()),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| format!("metadata.{field}: {e}"))
            }
        }
    };
    Ok(ConfigMeta {
        name: name.to_string(),
        namespace: meta
            .get("namespace")
            .and_then(|v| v.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_string(),
        labels: string_map("labels")?,
        annotations: string_map("annotations")?,
        creation_timestamp: meta
            .get("creationTimestamp")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        resource_version: meta
            .get("resourceVersion")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        generation: meta.get("generation").and_then(|v| v.as_i64()),
        source: source.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(yaml: &str) -> serde_json::Value {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn parses_virtual_service() {
        let parsed = parse_document(
            doc("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}"),
            "a.yaml",
        )
        .unwrap();
        let Parsed::Object(key, obj) = parsed else {
            panic!("ignored")
        };
        assert_eq!(key.to_string(), "VirtualService/default/reviews");
        assert!(matches!(
            *obj,
            Object::Istio(IstioConfig::VirtualService(_))
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_document(
            doc("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}, weight: x}]}]}"),
            "a.yaml",
        )
        .unwrap_err();
        assert_eq!(err.key.unwrap().to_string(), "VirtualService/shop/r");
        assert!(
            err.message.contains("spec.http[0].route[0].weight"),
            "{}",
            err.message
        );

        let err = parse_document(
            doc("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [r], bogus: 1}"),
            "a.yaml",
        )
        .unwrap_err();
        assert!(err.message.contains("bogus"), "{}", err.message);
    }

    #[test]
    fn other_kinds_are_ignored_and_kube_kinds_parsed() {
        assert!(matches!(
            parse_document(
                doc("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}"),
                "a"
            )
            .unwrap(),
            Parsed::Ignored
        ));
        let parsed = parse_document(
            doc("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}"),
            "a",
        )
        .unwrap();
        assert!(
            matches!(parsed, Parsed::Object(_, o) if matches!(*o, Object::Kube(KubeObject::Service(_))))
        );
        let err =
            parse_document(doc("apiVersion: v1\nkind: Service\nmetadata: {}"), "a").unwrap_err();
        assert!(err.message.contains("metadata.name"));
    }
}
