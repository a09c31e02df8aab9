//! Protobuf `oneof` groups in JSON: every member is an optional property of the object and at
//! most one of them may be present. Deserialisation rejects two members; the CRD schema states
//! the same rule the way Istio's CRDs do (`oneOf` of `required` lists, value validation only).

use schemars::Schema;
use serde_json::{Value, json};

/// Err when more than one of the named members is present (`present[i]` says whether
/// `names[i]` was set).
pub(crate) fn at_most_one(names: &[&str], present: &[bool]) -> Result<(), String> {
    let set: Vec<&str> = names
        .iter()
        .zip(present)
        .filter(|(_, p)| **p)
        .map(|(n, _)| *n)
        .collect();
    if set.len() <= 1 {
        return Ok(());
    }
    let all = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let found = set
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" and ");
    Err(format!("only one of {all} may be set, found {found}"))
}

/// Adds Istio-style oneof constraints for the given groups to an object schema.
pub(crate) fn constrain(schema: &mut Schema, groups: &[&[&str]]) {
    let rules: Vec<Value> = groups.iter().map(|g| group_rule(g)).collect();
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    match rules.as_slice() {
        [] => {}
        [single] => {
            if let Some(one_of) = single.get("oneOf") {
                obj.insert("oneOf".into(), one_of.clone());
            }
        }
        many => {
            obj.insert("allOf".into(), Value::Array(many.to_vec()));
        }
    }
}

fn group_rule(names: &[&str]) -> Value {
    let required: Vec<Value> = names.iter().map(|n| json!({ "required": [n] })).collect();
    let mut branches = vec![json!({ "not": { "anyOf": required.clone() } })];
    branches.extend(required);
    json!({ "oneOf": branches })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_names_the_clash() {
        assert!(at_most_one(&["a", "b"], &[false, false]).is_ok());
        assert!(at_most_one(&["a", "b"], &[true, false]).is_ok());
        let err = at_most_one(&["a", "b", "c"], &[true, false, true]).unwrap_err();
        assert_eq!(
            err,
            "only one of `a`, `b`, `c` may be set, found `a` and `c`"
        );
    }

    #[test]
    fn constrain_shapes_like_istio() {
        let mut s = schemars::json_schema!({ "type": "object" });
        constrain(&mut s, &[&["x", "y"]]);
        assert_eq!(
            s.as_value()["oneOf"],
            json!([
                { "not": { "anyOf": [ { "required": ["x"] }, { "required": ["y"] } ] } },
                { "required": ["x"] },
                { "required": ["y"] }
            ])
        );
        let mut s = schemars::json_schema!({ "type": "object" });
        constrain(&mut s, &[&["x"], &["y", "z"]]);
        assert_eq!(s.as_value()["allOf"].as_array().map(Vec::len), Some(2));
    }
}
