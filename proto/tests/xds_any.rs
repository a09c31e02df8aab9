#![allow(clippy::unwrap_used, clippy::expect_used)]
use prost::{Message, Name};
use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::listener::v3::Listener;
use strait_proto::google::protobuf::Duration;
use strait_proto::xds::XdsError;
use strait_proto::xds::any::{self, Any};
use strait_proto::xds::type_url;

fn cluster() -> Cluster {
    Cluster {
        name: "outbound|9080||reviews.default.svc.cluster.local".to_string(),
        connect_timeout: Some(Duration {
            seconds: 10,
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[test]
fn pack_sets_the_type_url_and_encodes_the_message() {
    let packed = any::pack(&cluster());
    assert_eq!(packed.type_url, type_url::CLUSTER);
    assert_eq!(packed.value, cluster().encode_to_vec());
}

#[test]
fn unpack_returns_the_packed_message() {
    let packed = any::pack(&cluster());
    assert!(any::is::<Cluster>(&packed));
    let unpacked: Cluster = any::unpack(&packed).unwrap();
    assert_eq!(unpacked, cluster());
}

#[test]
fn unpack_accepts_any_url_prefix() {
    let packed = Any {
        type_url: "example.com/types/envoy.config.cluster.v3.Cluster".to_string(),
        value: cluster().encode_to_vec(),
    };
    assert_eq!(any::unpack::<Cluster>(&packed).unwrap(), cluster());
}

#[test]
fn unpack_of_another_type_names_both_types() {
    let packed = any::pack(&cluster());
    assert!(!any::is::<Listener>(&packed));
    let err = any::unpack::<Listener>(&packed).unwrap_err();
    assert!(matches!(err, XdsError::TypeMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("envoy.config.listener.v3.Listener"), "{text}");
    assert!(text.contains(type_url::CLUSTER), "{text}");
}

#[test]
fn unpack_of_bad_bytes_is_a_decode_error_naming_the_type() {
    let packed = Any {
        type_url: Cluster::type_url(),
        value: vec![0x0a, 0x05, b'a'],
    };
    let err = any::unpack::<Cluster>(&packed).unwrap_err();
    assert!(matches!(err, XdsError::Decode { .. }), "{err:?}");
    assert!(
        err.to_string().contains("envoy.config.cluster.v3.Cluster"),
        "{err}"
    );
}

#[test]
fn type_name_strips_the_prefix() {
    assert_eq!(
        any::type_name(type_url::CLUSTER),
        "envoy.config.cluster.v3.Cluster"
    );
    assert_eq!(any::type_name("no.prefix.Type"), "no.prefix.Type");
}
