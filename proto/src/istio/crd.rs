//! CustomResourceDefinitions for the kinds, generated from the Rust types.
//!
//! schemars describes the JSON the types accept; Kubernetes wants a *structural* OpenAPI v3
//! schema: every node typed, no `$ref`, no `null` types, no defaults (the apiserver would apply
//! them), no `additionalProperties` beside `properties`, and `oneOf`/`allOf` only as value
//! validations carrying `required` lists. [`structural`] rewrites the one into the other.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::kind::{GROUP, Kind, STORAGE_VERSION, VERSIONS};
use super::{DestinationRule, ServiceEntry, Sidecar, VirtualService, WorkloadEntry};

/// The structural OpenAPI v3 schema of a kind's `spec`.
pub fn spec_schema(kind: Kind) -> Value {
    match kind {
        Kind::VirtualService => schema_for::<VirtualService>(),
        Kind::DestinationRule => schema_for::<DestinationRule>(),
        Kind::ServiceEntry => schema_for::<ServiceEntry>(),
        Kind::WorkloadEntry => schema_for::<WorkloadEntry>(),
        Kind::Sidecar => schema_for::<Sidecar>(),
    }
}

fn schema_for<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let root = generator.into_root_schema_for::<T>().to_value();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    structural(&root, &defs)
}

/// Keys Kubernetes' `JSONSchemaProps` understands and we emit.
const KEPT: &[&str] = &[
    "type",
    "format",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-validations",
];

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

/// Resolves `$ref`s and drops the `null` alternatives schemars uses for `Option`, merging the
/// remaining schema into the node (the node's own keys, e.g. a field description, win).
fn flatten_node(mut obj: Map<String, Value>, defs: &Map<String, Value>) -> Map<String, Value> {
    loop {
        let mut changed = false;
        if let Some(Value::String(r)) = obj.remove("$ref") {
            changed = true;
            let name = r.rsplit('/').next().unwrap_or_default();
            if let Some(Value::Object(target)) = defs.get(name) {
                for (k, v) in target {
                    obj.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        for key in ["anyOf", "oneOf"] {
            let Some(Value::Array(branches)) = obj.get(key) else {
                continue;
            };
            let rest: Vec<Value> = branches
                .iter()
                .filter(|b| !is_null_schema(b))
                .cloned()
                .collect();
            if rest.len() == branches.len() {
                continue;
            }
            changed = true;
            obj.remove(key);
            if let [only] = rest.as_slice() {
                if let Value::Object(o) = only {
                    for (k, v) in o {
                        obj.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            } else {
                obj.insert(key.into(), Value::Array(rest));
            }
        }
        if !changed {
            return obj;
        }
    }
}

/// Documented unit enums come out of schemars as `oneOf` of `const`s; Kubernetes wants one
/// `enum` list.
fn collapse_string_enum(obj: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = obj.get("oneOf") else {
        return;
    };
    let mut values = Vec::new();
    for b in branches {
        if let Some(c) = b.get("const") {
            values.push(c.clone());
        } else if let Some(Value::Array(e)) = b.get("enum") {
            values.extend(e.iter().cloned());
        } else {
            return;
        }
    }
    obj.remove("oneOf");
    obj.insert("type".into(), json!("string"));
    obj.insert("enum".into(), Value::Array(values));
}

/// Rewrites a schemars (JSON Schema 2020-12) schema into a Kubernetes structural schema.
pub(crate) fn structural(node: &Value, defs: &Map<String, Value>) -> Value {
    let Value::Object(obj) = node else {
        // `true` (anything) is the only boolean schema schemars emits for our types.
        return json!({ "x-kubernetes-preserve-unknown-fields": true });
    };
    let mut obj = flatten_node(obj.clone(), defs);
    collapse_string_enum(&mut obj);
    if let Some(c) = obj.remove("const") {
        obj.insert("enum".into(), json!([c]));
    }
    if let Some(Value::Array(types)) = obj.get("type") {
        let kept: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        match kept.as_slice() {
            [one] => {
                obj.insert("type".into(), one.clone());
            }
            _ => {
                obj.remove("type");
                obj.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            }
        }
    }
    match obj.get("format").and_then(Value::as_str) {
        Some("uint32") => {
            obj.remove("format");
            obj.insert("minimum".into(), json!(0));
            obj.insert("maximum".into(), json!(u32::MAX));
        }
        Some("uint64" | "uint" | "uint16" | "uint8") => {
            obj.remove("format");
            obj.insert("minimum".into(), json!(0));
        }
        Some("float") => {
            obj.insert("format".into(), json!("double"));
        }
        _ => {}
    }
    if obj
        .get("additionalProperties")
        .is_some_and(Value::is_boolean)
    {
        obj.remove("additionalProperties");
    }
    if obj
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        obj.remove("required");
    }
    let mut out = Map::new();
    for (k, v) in obj {
        if !KEPT.contains(&k.as_str()) {
            continue;
        }
        let v = match k.as_str() {
            "properties" => match v {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(name, s)| (name.clone(), structural(s, defs)))
                        .collect(),
                ),
                other => other,
            },
            "items" | "additionalProperties" | "not" => structural(&v, defs),
            "oneOf" | "anyOf" | "allOf" => match v {
                Value::Array(branches) => Value::Array(branches.iter().map(junctor).collect()),
                other => other,
            },
            _ => v,
        };
        out.insert(k, v);
    }
    if out.contains_key("properties") && !out.contains_key("type") {
        out.insert("type".into(), json!("object"));
    }
    Value::Object(out)
}

/// Branches of `oneOf`/`anyOf`/`allOf`/`not` may only carry value validations.
fn junctor(node: &Value) -> Value {
    let Value::Object(obj) = node else {
        return node.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "required" => {
                out.insert(k.clone(), v.clone());
            }
            "not" => {
                out.insert(k.clone(), junctor(v));
            }
            "oneOf" | "anyOf" | "allOf" => {
                let branches = v
                    .as_array()
                    .map(|bs| bs.iter().map(junctor).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Array(branches));
            }
            _ => {}
        }
    }
    Value::Object(out)
}

fn column(name: &str, ty: &str, path: &str, description: &str) -> Value {
    json!({ "name": name, "type": ty, "jsonPath": path, "description": description })
}

fn age() -> Value {
    column(
        "Age",
        "date",
        ".metadata.creationTimestamp",
        "Time the object was created (metadata.creationTimestamp, RFC3339 UTC).",
    )
}

fn printer_columns(kind: Kind) -> Vec<Value> {
    match kind {
        Kind::VirtualService => vec![
            column(
                "Gateways",
                "string",
                ".spec.gateways",
                "The gateways and sidecars that apply these routes",
            ),
            column(
                "Hosts",
                "string",
                ".spec.hosts",
                "The destination hosts of the traffic",
            ),
            age(),
        ],
        Kind::DestinationRule => vec![
            column(
                "Host",
                "string",
                ".spec.host",
                "The service the rule applies to",
            ),
            age(),
        ],
        Kind::ServiceEntry => vec![
            column("Hosts", "string", ".spec.hosts", "The hosts of the service"),
            column(
                "Location",
                "string",
                ".spec.location",
                "Whether the service is part of the mesh (MESH_INTERNAL) or not (MESH_EXTERNAL)",
            ),
            column(
                "Resolution",
                "string",
                ".spec.resolution",
                "How endpoints are found (NONE, STATIC, DNS, ...)",
            ),
            age(),
        ],
        Kind::WorkloadEntry => vec![
            age(),
            column(
                "Address",
                "string",
                ".spec.address",
                "Address of the workload",
            ),
        ],
        // Istio defines none for Sidecars; kubectl then shows NAME and AGE.
        Kind::Sidecar => vec![],
    }
}

fn strip_descriptions(v: &mut Value) {
    match v {
        Value::Object(o) => {
            // Inside `properties` a key named "description" is a field, not documentation.
            if o.get("description").is_some_and(Value::is_string) {
                o.remove("description");
            }
            o.values_mut().for_each(strip_descriptions);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

/// The CustomResourceDefinition of a kind, as JSON.
pub fn crd(kind: Kind) -> Value {
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": spec_schema(kind),
            "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
        },
    });
    // Same validation for every version; only the storage version carries descriptions,
    // which keeps the largest CRD (DestinationRule) under the 256 KiB that client-side
    // `kubectl apply` can store in its last-applied annotation.
    let mut bare = schema.clone();
    strip_descriptions(&mut bare);
    let versions: Vec<Value> = VERSIONS
        .iter()
        .map(|v| {
            let storage = *v == STORAGE_VERSION;
            let mut version = json!({
                "name": v,
                "served": true,
                "storage": storage,
                "schema": { "openAPIV3Schema": if storage { schema.clone() } else { bare.clone() } },
                "subresources": { "status": {} },
            });
            let columns = printer_columns(kind);
            if !columns.is_empty()
                && let Some(o) = version.as_object_mut()
            {
                o.insert("additionalPrinterColumns".into(), Value::Array(columns));
            }
            version
        })
        .collect();
    let mut names = json!({
        "kind": kind.name(),
        "listKind": kind.list_kind(),
        "plural": kind.plural(),
        "singular": kind.singular(),
        "categories": kind.categories(),
    });
    if !kind.short_names().is_empty()
        && let Some(n) = names.as_object_mut()
    {
        n.insert("shortNames".into(), json!(kind.short_names()));
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name(),
            "annotations": { "helm.sh/resource-policy": "keep" },
            "labels": {
                "app": "istio-pilot",
                "chart": "istio",
                "heritage": "Tiller",
                "release": "istio",
            },
        },
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced",
            "versions": versions,
        },
    })
}

/// Sorted keys make the output independent of serde_json's `preserve_order` feature, which
/// another crate in the build may switch on.
fn to_yaml_value(v: &Value) -> serde_yaml::Value {
    match v {
        Value::Null => serde_yaml::Value::Null,
        Value::Bool(b) => serde_yaml::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_u64() {
                serde_yaml::Value::Number(i.into())
            } else if let Some(i) = n.as_i64() {
                serde_yaml::Value::Number(i.into())
            } else {
                serde_yaml::Value::Number(n.as_f64().unwrap_or_default().into())
            }
        }
        Value::String(s) => serde_yaml::Value::String(s.clone()),
        Value::Array(a) => serde_yaml::Value::Sequence(a.iter().map(to_yaml_value).collect()),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let mut m = serde_yaml::Mapping::new();
            for k in keys {
                m.insert(serde_yaml::Value::String(k.clone()), to_yaml_value(&o[k]));
            }
            serde_yaml::Value::Mapping(m)
        }
    }
}

/// All CRDs as one multi-document YAML stream (what `charts/base/files/crd-all.gen.yaml` holds).
pub fn crd_manifests() -> String {
    let mut out =
        String::from("# Generated by `cargo run -p strait-proto --bin gen-crds`. DO NOT EDIT.\n");
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match serde_yaml::to_string(&to_yaml_value(&crd(kind))) {
            Ok(doc) => out.push_str(&doc),
            // Serialising a plain YAML tree cannot fail; keep the stream parseable regardless.
            Err(e) => out.push_str(&format!("# {kind}: {e}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks every schema node; junctor branches (`oneOf`/`anyOf`/`allOf`/`not`) are value
    /// validations and may not carry types.
    fn assert_structural(path: &str, node: &Value) {
        let obj = node
            .as_object()
            .unwrap_or_else(|| panic!("{path}: not an object"));
        assert!(!obj.contains_key("$ref"), "{path}: $ref left");
        assert!(!obj.contains_key("default"), "{path}: default left");
        let typed = obj.get("type").and_then(Value::as_str).is_some();
        let open = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))
            || obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
        assert!(typed || open, "{path}: no type");
        if obj.contains_key("properties") {
            assert_eq!(obj["type"], "object", "{path}");
            assert!(
                !obj.contains_key("additionalProperties"),
                "{path}: properties + additionalProperties"
            );
        }
        for (k, v) in obj {
            match k.as_str() {
                "properties" => {
                    for (name, s) in v.as_object().unwrap() {
                        assert_structural(&format!("{path}.{name}"), s);
                    }
                }
                "items" | "additionalProperties" => assert_structural(&format!("{path}[]"), v),
                "oneOf" | "anyOf" | "allOf" | "not" => assert_junctor(&format!("{path}.{k}"), v),
                _ => {}
            }
        }
    }

    fn assert_junctor(path: &str, v: &Value) {
        match v {
            Value::Array(bs) => bs.iter().for_each(|b| assert_junctor(path, b)),
            Value::Object(o) => {
                for (k, inner) in o {
                    assert!(
                        matches!(k.as_str(), "required" | "not" | "oneOf" | "anyOf" | "allOf"),
                        "{path}: {k} not allowed in a junctor"
                    );
                    if k != "required" {
                        assert_junctor(path, inner);
                    }
                }
            }
            other => panic!("{path}: unexpected {other}"),
        }
    }

    #[test]
    fn every_crd_schema_is_structural() {
        for kind in Kind::ALL {
            let crd = crd(kind);
            let versions = crd["spec"]["versions"].as_array().unwrap();
            assert_eq!(versions.len(), 3);
            for v in versions {
                assert_structural(kind.name(), &v["schema"]["openAPIV3Schema"]);
            }
            let text = serde_json::to_string(&crd).unwrap();
            assert!(
                !text.contains("$ref") && !text.contains("\"null\""),
                "{kind}"
            );
        }
    }

    #[test]
    fn schema_shapes_follow_istio() {
        let vs = spec_schema(Kind::VirtualService);
        let http = &vs["properties"]["http"]["items"]["properties"];
        let uri = &http["match"]["items"]["properties"]["uri"];
        assert_eq!(uri["type"], "object");
        assert_eq!(uri["properties"]["exact"]["type"], "string");
        assert_eq!(uri["oneOf"].as_array().map(Vec::len), Some(4));
        assert_eq!(
            http["timeout"],
            json!({"type": "string", "description": "Timeout for HTTP requests, default is disabled."})
        );
        assert_eq!(http["route"]["items"]["required"], json!(["destination"]));
        assert_eq!(
            http["route"]["items"]["properties"]["weight"]["format"],
            "int32"
        );
        assert_eq!(
            http["match"]["items"]["properties"]["headers"]["additionalProperties"]["type"],
            "object"
        );
        assert_eq!(http["mirror_percent"]["nullable"], true);
        assert_eq!(http["mirrorPercent"]["maximum"], u32::MAX);

        let dr = spec_schema(Kind::DestinationRule);
        assert_eq!(dr["required"], json!(["host"]));
        let lb = &dr["properties"]["trafficPolicy"]["properties"]["loadBalancer"];
        assert!(lb["oneOf"].is_array());
        let simple = &lb["properties"]["simple"];
        assert_eq!(simple["type"], "string");
        assert!(
            simple["enum"]
                .as_array()
                .unwrap()
                .contains(&json!("ROUND_ROBIN"))
        );
        assert_eq!(
            lb["properties"]["consistentHash"]["allOf"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );

        let se = spec_schema(Kind::ServiceEntry);
        assert_eq!(
            se["properties"]["resolution"]["enum"]
                .as_array()
                .map(Vec::len),
            Some(5)
        );
        assert_eq!(
            se["properties"]["ports"]["items"]["required"],
            json!(["number", "name"])
        );
    }

    #[test]
    fn crd_metadata() {
        let vs = crd(Kind::VirtualService);
        assert_eq!(
            vs["metadata"]["name"],
            "virtualservices.networking.istio.io"
        );
        assert_eq!(vs["spec"]["names"]["shortNames"], json!(["vs"]));
        assert_eq!(
            vs["spec"]["names"]["categories"],
            json!(["istio-io", "networking-istio-io"])
        );
        let versions = vs["spec"]["versions"].as_array().unwrap();
        let storage: Vec<&str> = versions
            .iter()
            .filter(|v| v["storage"] == true)
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(storage, vec!["v1"]);
        assert!(
            versions
                .iter()
                .all(|v| v["served"] == true && v["subresources"]["status"] == json!({}))
        );
        let cols: Vec<&str> = versions[0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cols, vec!["Gateways", "Hosts", "Age"]);
        let sidecar = crd(Kind::Sidecar);
        assert!(sidecar["spec"]["names"].get("shortNames").is_none());
        assert!(
            sidecar["spec"]["versions"][0]
                .get("additionalPrinterColumns")
                .is_none()
        );
    }

    #[test]
    fn each_crd_fits_a_kubectl_apply_annotation() {
        for kind in Kind::ALL {
            let size = serde_json::to_string(&crd(kind)).unwrap().len();
            assert!(size < 262_144, "{kind}: {size} bytes");
        }
        let dr = crd(Kind::DestinationRule);
        let versions = dr["spec"]["versions"].as_array().unwrap();
        assert!(
            versions[0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["description"]
                .is_string()
        );
        assert!(
            versions[1]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                .get("description")
                .is_none()
        );
    }

    #[test]
    fn manifests_parse_back() {
        let text = crd_manifests();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 5);
        assert_eq!(docs[0], crd(Kind::VirtualService));
    }
}
