//! Turning the xDS `Node` of a stream's first request into a `Proxy`.

use strait_proto::envoy::config::core::v3::Node;
use strait_proto::google::protobuf::{Struct, Value, value::Kind};
use tonic::Status;

use crate::model::{Locality, Proxy};

/// The proxy a stream serves; errors are the gRPC status the stream is closed with.
pub fn proxy_from_node(node: Option<&Node>) -> Result<Proxy, Status> {
    let Some(node) = node.filter(|n| !n.id.is_empty()) else {
        return Err(Status::invalid_argument("missing node information"));
    };
    let metadata = node
        .metadata
        .as_ref()
        .map(struct_to_json)
        .unwrap_or_default();
    let locality = node
        .locality
        .as_ref()
        .map(|l| Locality {
            region: l.region.clone(),
            zone: l.zone.clone(),
            sub_zone: l.sub_zone.clone(),
        })
        .unwrap_or_default();
    Proxy::from_node(&node.id, metadata, locality)
        .map_err(|err| Status::invalid_argument(err.to_string()))
}

/// `google.protobuf.Struct` → JSON object, as the agent wrote the metadata.
pub fn struct_to_json(s: &Struct) -> serde_json::Map<String, serde_json::Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::StructValue(s)) => J::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => J::Array(l.values.iter().map(value_to_json).collect()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use strait_proto::envoy::config::core::v3::Locality as NodeLocality;
    use strait_proto::google::protobuf::ListValue;

    fn string(s: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(s.to_string())),
        }
    }

    #[test]
    fn metadata_and_locality_reach_the_proxy() {
        let labels = Struct {
            fields: HashMap::from([("app".to_string(), string("reviews"))]),
        };
        let node = Node {
            id: "sidecar~10.1.0.7~reviews-v1.default~default.svc.cluster.local".into(),
            metadata: Some(Struct {
                fields: HashMap::from([
                    ("ISTIO_VERSION".to_string(), string("1.30.0")),
                    (
                        "LABELS".to_string(),
                        Value {
                            kind: Some(Kind::StructValue(labels)),
                        },
                    ),
                    (
                        "LIST".to_string(),
                        Value {
                            kind: Some(Kind::ListValue(ListValue {
                                values: vec![
                                    Value {
                                        kind: Some(Kind::NumberValue(1.5)),
                                    },
                                    Value {
                                        kind: Some(Kind::BoolValue(true)),
                                    },
                                    Value { kind: None },
                                ],
                            })),
                        },
                    ),
                ]),
            }),
            locality: Some(NodeLocality {
                region: "r".into(),
                zone: "z".into(),
                sub_zone: "s".into(),
            }),
            ..Node::default()
        };
        let proxy = proxy_from_node(Some(&node)).unwrap();
        assert_eq!(proxy.id, "reviews-v1.default");
        assert_eq!(proxy.metadata.istio_version.as_deref(), Some("1.30.0"));
        assert_eq!(proxy.labels["app"], "reviews");
        assert_eq!(proxy.locality.zone, "z");
        assert_eq!(
            proxy.metadata.raw["LIST"],
            serde_json::json!([1.5, true, null])
        );
    }

    #[test]
    fn missing_or_bad_node_is_invalid_argument() {
        let err = proxy_from_node(None).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "missing node information");
        let empty = Node::default();
        assert_eq!(
            proxy_from_node(Some(&empty)).unwrap_err().message(),
            "missing node information"
        );
        let bad = Node {
            id: "sidecar~1.2.3.4~x".into(),
            ..Node::default()
        };
        let err = proxy_from_node(Some(&bad)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("expected 4 parts"),
            "{}",
            err.message()
        );
    }
}
