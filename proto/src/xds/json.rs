//! Proto3-JSON for the Envoy messages, through prost-reflect and the embedded descriptor
//! pool: `Any` printed with its `@type` and its content (nested `Any`s too), enums by
//! name, 64-bit integers as strings, durations as `"1s"`, and fields left at their default
//! value omitted, as both Envoy's `/config_dump` and istioctl do.

use prost::{Message, Name};
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

use super::XdsError;
use super::any::{self, Any};
use super::pool::message_descriptor;

/// How JSON field names are spelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldNames {
    /// lowerCamelCase (`connectTimeout`), the proto3-JSON default that istioctl and
    /// istiod's debug endpoints print.
    #[default]
    LowerCamel,
    /// The names written in the `.proto` files (`connect_timeout`), which Envoy's admin
    /// endpoints (`/config_dump`) print.
    Proto,
}

/// `message` as proto3 JSON with lowerCamelCase field names.
pub fn to_json<M: Message + Name>(message: &M) -> Result<Value, XdsError> {
    to_json_with(message, FieldNames::LowerCamel)
}

/// `message` as proto3 JSON with the given field names.
pub fn to_json_with<M: Message + Name>(message: &M, names: FieldNames) -> Result<Value, XdsError> {
    render(&M::full_name(), &message.encode_to_vec(), names)
}

/// The JSON of an `Any`: `{"@type": "<type url>", ...fields of the packed message}`.
pub fn to_json_any(any: &Any) -> Result<Value, XdsError> {
    to_json_any_with(any, FieldNames::LowerCamel)
}

/// [`to_json_any`] with the given field names.
pub fn to_json_any_with(any: &Any, names: FieldNames) -> Result<Value, XdsError> {
    // Checked up front so that the error names the missing type plainly.
    message_descriptor(any::type_name(&any.type_url))?;
    render(&Any::full_name(), &any.encode_to_vec(), names)
}

/// Reads an `M` from proto3 JSON. Both lowerCamelCase and proto field names are accepted;
/// an unknown field or enum value is an error that names it and where it was.
pub fn from_json<M: Message + Name + Default>(value: Value) -> Result<M, XdsError> {
    let type_name = M::full_name();
    let dynamic = read(message_descriptor(&type_name)?, value, &type_name)?;
    dynamic
        .transcode_to::<M>()
        .map_err(|source| XdsError::Decode { type_name, source })
}

/// Reads an `Any` from its JSON form (which must carry `@type`).
pub fn from_json_any(value: Value) -> Result<Any, XdsError> {
    from_json::<Any>(value)
}

fn render(type_name: &str, encoded: &[u8], names: FieldNames) -> Result<Value, XdsError> {
    let dynamic =
        DynamicMessage::decode(message_descriptor(type_name)?, encoded).map_err(|source| {
            XdsError::Decode {
                type_name: type_name.to_string(),
                source,
            }
        })?;
    let options = SerializeOptions::new()
        .skip_default_fields(true)
        .use_proto_field_name(names == FieldNames::Proto)
        .use_enum_numbers(false)
        .stringify_64_bit_integers(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| XdsError::Json {
            type_name: type_name.to_string(),
            message: e.to_string(),
        })
}

fn read(
    descriptor: MessageDescriptor,
    value: Value,
    type_name: &str,
) -> Result<DynamicMessage, XdsError> {
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    DynamicMessage::deserialize_with_options(descriptor, deserializer, &options).map_err(|e| {
        let path = track.path().to_string();
        let message = if path == "." {
            e.to_string()
        } else {
            format!("{path}: {e}")
        };
        XdsError::Json {
            type_name: type_name.to_string(),
            message,
        }
    })
}
