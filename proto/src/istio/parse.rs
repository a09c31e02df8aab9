//! Turning JSON (usually YAML read into `serde_json::Value`) into typed specs, with errors that
//! name the JSON path of the offending field.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A spec that could not be decoded: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecError {
    path: String,
    message: String,
}

impl SpecError {
    pub(crate) fn new(path: impl Into<String>, message: impl fmt::Display) -> Self {
        SpecError {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// JSON path of the offending field, e.g. `spec.http[0].route[0].weight`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Decodes the `spec` of an Istio object. Unknown fields, wrong types and two members of one
/// oneof are rejected; the error names the path, e.g.
/// `spec.http[0].route[0].weight: invalid type: string "x", expected i32`.
pub fn parse_spec<T: DeserializeOwned>(value: Value) -> Result<T, SpecError> {
    parse_at("spec", value)
}

pub(crate) fn parse_at<T: DeserializeOwned>(root: &str, value: Value) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let full = if path == "." {
            root.to_owned()
        } else {
            format!("{root}.{path}")
        };
        SpecError::new(full, e.into_inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::istio::{DestinationRule, VirtualService};
    use serde_json::json;

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse_spec::<VirtualService>(json!({
            "hosts": ["r"],
            "http": [{"route": [{"destination": {"host": "r"}, "weight": "x"}]}]
        }))
        .unwrap_err();
        assert_eq!(err.path(), "spec.http[0].route[0].weight");
        assert_eq!(
            err.to_string(),
            "spec.http[0].route[0].weight: invalid type: string \"x\", expected i32"
        );
    }

    #[test]
    fn unknown_field_names_the_field() {
        let err = parse_spec::<VirtualService>(json!({"hosts": ["r"], "http": [{"foo": 1}]}))
            .unwrap_err();
        assert_eq!(err.path(), "spec.http[0].foo");
        assert!(err.message().starts_with("unknown field `foo`"), "{err}");
    }

    #[test]
    fn root_errors_say_spec() {
        let err = parse_spec::<DestinationRule>(json!("nope")).unwrap_err();
        assert_eq!(err.path(), "spec");
        let err = parse_spec::<DestinationRule>(json!({})).unwrap_err();
        assert_eq!(err.to_string(), "spec: missing field `host`");
    }
}
