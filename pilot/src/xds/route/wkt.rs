//! Small constructors for the protobuf well-known types embedded in Envoy messages, and the
//! config-origin metadata Istio attaches to routes and filter chains.

use std::collections::HashMap;

use strait_proto::envoy::config::core::v3::Metadata;
use strait_proto::google::protobuf::{self as pb, value::Kind};
use strait_proto::istio;

use crate::model::ConfigMeta;

/// A protobuf `Duration` from a standard one; saturates rather than wrapping on overflow.
pub fn duration(d: std::time::Duration) -> pb::Duration {
    pb::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf `Duration` from an Istio config duration.
pub fn istio_duration(d: &istio::Duration) -> pb::Duration {
    duration(d.as_std())
}

/// `0s`: Envoy reads it as "no timeout" in the places Istio uses it.
pub fn zero_duration() -> pb::Duration {
    pb::Duration::default()
}

pub fn bool_value(value: bool) -> pb::BoolValue {
    pb::BoolValue { value }
}

pub fn u32_value(value: u32) -> pb::UInt32Value {
    pb::UInt32Value { value }
}

/// `filter_metadata.istio.config = /apis/networking.istio.io/v1/namespaces/<ns>/<kind>/<name>`,
/// which istioctl and telemetry read to tell which object produced a route or chain.
pub fn config_metadata(kind_kebab: &str, meta: &ConfigMeta) -> Metadata {
    let path = format!(
        "/apis/networking.istio.io/v1/namespaces/{}/{}/{}",
        meta.namespace, kind_kebab, meta.name
    );
    let fields = HashMap::from([(
        "config".to_string(),
        pb::Value {
            kind: Some(Kind::StringValue(path)),
        },
    )]);
    Metadata {
        filter_metadata: HashMap::from([("istio".to_string(), pb::Struct { fields })]),
        ..Default::default()
    }
}

/// The metadata of a route or chain that came from a VirtualService.
pub fn virtual_service_metadata(meta: &ConfigMeta) -> Metadata {
    config_metadata("virtual-service", meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_convert() {
        let d = duration(std::time::Duration::from_millis(1500));
        assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
        assert_eq!(
            zero_duration(),
            pb::Duration {
                seconds: 0,
                nanos: 0
            }
        );
    }

    #[test]
    fn metadata_names_the_object() {
        let meta = ConfigMeta {
            name: "reviews".into(),
            namespace: "default".into(),
            ..Default::default()
        };
        let md = virtual_service_metadata(&meta);
        let value = &md.filter_metadata["istio"].fields["config"];
        assert_eq!(
            value.kind,
            Some(Kind::StringValue(
                "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews".into()
            ))
        );
    }
}
