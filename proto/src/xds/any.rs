//! Packing messages into `google.protobuf.Any` and back.
//!
//! `Any` here is `envoy_types::pb::google::protobuf::Any`, the type every `Any` field of
//! the Envoy messages uses (envoy-types generates its own well-known types rather than
//! reusing `prost_types`).

use prost::{Message, Name};

pub use envoy_types::pb::google::protobuf::Any;

use super::XdsError;

/// Wraps `message` in an `Any` whose type URL is `type.googleapis.com/<full name>`.
pub fn pack<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// Whether `any` holds an `M`. Per the protobuf spec only the part after the last `/` of
/// the URL identifies the type, so other prefixes than `type.googleapis.com/` match too.
pub fn is<M: Name>(any: &Any) -> bool {
    type_name(&any.type_url) == M::full_name()
}

/// Decodes the `M` inside `any`; fails if `any` holds another type or bad bytes.
pub fn unpack<M: Message + Name + Default>(any: &Any) -> Result<M, XdsError> {
    if !is::<M>(any) {
        return Err(XdsError::TypeMismatch {
            expected: M::full_name(),
            actual: any.type_url.clone(),
        });
    }
    M::decode(any.value.as_slice()).map_err(|source| XdsError::Decode {
        type_name: M::full_name(),
        source,
    })
}

/// The fully qualified message name a type URL refers to.
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}
