//! Messages shared by several Istio kinds (`istio.networking.v1alpha3`).
//!
//! Field conventions, which follow proto3: message, wrapper (`BoolValue`, `UInt32Value`, ...)
//! and duration fields are `Option`; plain scalars, strings, lists and maps use their zero
//! value for "unset" and are omitted from JSON when zero.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use super::oneof;

pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// How to match a string (`exact`, `prefix` or `regex`, RE2 syntax).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "StringMatchJson", into = "StringMatchJson")]
pub enum StringMatch {
    /// `{}`: no constraint on the value. For headers and query parameters this means
    /// "present with any value".
    #[default]
    Any,
    /// `{exact: "..."}`
    Exact(String),
    /// `{prefix: "..."}`
    Prefix(String),
    /// `{regex: "..."}`, RE2 syntax, whole-string match.
    Regex(String),
}

#[derive(Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    rename = "StringMatch",
    description = "Describes how to match a given string; at most one of `exact`, `prefix`, `regex`.",
    transform = string_match_oneof
)]
struct StringMatchJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    /// RE2 style regex-based match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
}

fn string_match_oneof(s: &mut Schema) {
    oneof::constrain(s, &[&["exact", "prefix", "regex"]]);
}

impl TryFrom<StringMatchJson> for StringMatch {
    type Error = String;
    fn try_from(j: StringMatchJson) -> Result<Self, String> {
        oneof::at_most_one(
            &["exact", "prefix", "regex"],
            &[j.exact.is_some(), j.prefix.is_some(), j.regex.is_some()],
        )?;
        Ok(match (j.exact, j.prefix, j.regex) {
            (Some(v), _, _) => StringMatch::Exact(v),
            (_, Some(v), _) => StringMatch::Prefix(v),
            (_, _, Some(v)) => StringMatch::Regex(v),
            _ => StringMatch::Any,
        })
    }
}

impl From<StringMatch> for StringMatchJson {
    fn from(m: StringMatch) -> Self {
        let mut j = StringMatchJson::default();
        match m {
            StringMatch::Any => {}
            StringMatch::Exact(v) => j.exact = Some(v),
            StringMatch::Prefix(v) => j.prefix = Some(v),
            StringMatch::Regex(v) => j.regex = Some(v),
        }
        j
    }
}

impl StringMatch {
    /// The regex, if this is a regex match.
    pub fn regex(&self) -> Option<&str> {
        match self {
            StringMatch::Regex(r) => Some(r),
            _ => None,
        }
    }
}

/// A percentage in `[0.0, 100.0]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

/// Selects a port by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    /// Valid port number.
    #[serde(default)]
    pub number: u32,
}

/// A service (and optionally a subset and port of it) that traffic is sent to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    /// The name of a service from the service registry.
    pub host: String,
    /// The name of a subset within the service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// Specifies the port on the host that is being addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// Selects workloads by labels (`networking.v1alpha3.WorkloadSelector`: key `labels`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSelector {
    /// One or more labels that indicate a specific set of pods/VMs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Selects workloads by labels (`type.v1beta1.WorkloadSelector`: key `matchLabels`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadMatchSelector {
    /// One or more labels that indicate a specific set of pods/VMs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// Header manipulation for requests and responses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// Headers to overwrite, append and remove.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderOperations {
    /// Overwrite the headers specified by key with the given values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append the given values to the headers specified by keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove the specified headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_match_shapes() {
        let m: StringMatch = serde_json::from_value(json!({"exact": "x"})).unwrap();
        assert_eq!(m, StringMatch::Exact("x".into()));
        let m: StringMatch = serde_json::from_value(json!({})).unwrap();
        assert_eq!(m, StringMatch::Any);
        assert_eq!(
            serde_json::to_value(StringMatch::Regex("a.*".into())).unwrap(),
            json!({"regex": "a.*"})
        );
        assert_eq!(serde_json::to_value(StringMatch::Any).unwrap(), json!({}));
        let err = serde_json::from_value::<StringMatch>(json!({"exact": "a", "prefix": "b"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("only one of"), "{err}");
        assert!(serde_json::from_value::<StringMatch>(json!({"suffix": "a"})).is_err());
    }

    #[test]
    fn destination_requires_host() {
        let err = serde_json::from_value::<Destination>(json!({"subset": "v1"})).unwrap_err();
        assert!(err.to_string().contains("missing field `host`"), "{err}");
    }
}
