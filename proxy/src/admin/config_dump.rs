//! `/config_dump`: Envoy's `envoy.admin.v3.ConfigDump` with proto field names, the
//! shape `istioctl proxy-config` reads.
//!
//! Each resource is rendered on its own, so one resource whose type the descriptor pool
//! does not know cannot fail the whole dump (it is printed with its `@type` only).

use std::time::{SystemTime, UNIX_EPOCH};

use regex::Regex;
use serde_json::{Map, Value as Json, json};
use strait_proto::xds::json::{FieldNames, to_json_any_with, to_json_with};

use super::source::{AdminSource, DumpedResource, ResourceDump};

const ADMIN: &str = "type.googleapis.com/envoy.admin.v3.";

/// `?resource=`, `?include_eds`, `?name_regex=` of `/config_dump`.
#[derive(Clone, Debug, Default)]
pub struct DumpParams {
    pub resource: Option<String>,
    pub include_eds: bool,
    pub name_regex: Option<Regex>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    #[error("{0} not found in config dump")]
    UnknownResource(String),
}

/// A protobuf `Timestamp` in proto3 JSON: RFC 3339 in UTC with 0, 3, 6 or 9 fraction
/// digits.
pub fn proto_timestamp(t: SystemTime) -> String {
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seconds = if nanos == 0 {
        "%S"
    } else if nanos.is_multiple_of(1_000_000) {
        "%E3S"
    } else if nanos.is_multiple_of(1_000) {
        "%E6S"
    } else {
        "%E9S"
    };
    crate::access_log::time::TimeFormat::parse(&format!("%Y-%m-%dT%H:%M:{seconds}Z")).format(t)
}

fn resource_json(r: &DumpedResource) -> Json {
    to_json_any_with(&r.resource, FieldNames::Proto)
        .unwrap_or_else(|_| json!({ "@type": r.resource.type_url }))
}

/// An object with the given fields, leaving out empty strings and arrays as proto3
/// JSON does.
fn object(fields: Vec<(&str, Json)>) -> Json {
    let mut map = Map::new();
    for (k, v) in fields {
        let empty = match &v {
            Json::String(s) => s.is_empty(),
            Json::Array(a) => a.is_empty(),
            Json::Null => true,
            _ => false,
        };
        if !empty {
            map.insert(k.to_string(), v);
        }
    }
    Json::Object(map)
}

fn updated(r: &DumpedResource) -> Json {
    r.last_updated
        .map_or(Json::Null, |t| Json::String(proto_timestamp(t)))
}

struct Dump<'a> {
    params: &'a DumpParams,
}

impl Dump<'_> {
    fn keep<'r>(&self, list: &'r [DumpedResource]) -> impl Iterator<Item = &'r DumpedResource> {
        let regex = self.params.name_regex.clone();
        list.iter()
            .filter(move |r| regex.as_ref().is_none_or(|re| re.is_match(&r.name)))
    }

    fn clusters(&self, d: &ResourceDump) -> Json {
        let (statics, dynamics) = self.entries(d, "cluster");
        object(vec![
            ("@type", json!(format!("{ADMIN}ClustersConfigDump"))),
            ("version_info", json!(d.version_info)),
            ("static_clusters", Json::Array(statics)),
            ("dynamic_active_clusters", Json::Array(dynamics)),
        ])
    }

    /// Static entries `{<key>, last_updated}` and dynamic ones `{version_info, <key>,
    /// last_updated}`: the shape clusters, endpoints and routes share.
    fn entries(&self, d: &ResourceDump, key: &str) -> (Vec<Json>, Vec<Json>) {
        let statics = self
            .keep(&d.static_resources)
            .map(|r| object(vec![(key, resource_json(r)), ("last_updated", updated(r))]))
            .collect();
        let dynamics = self
            .keep(&d.dynamic_resources)
            .map(|r| {
                object(vec![
                    ("version_info", json!(r.version)),
                    (key, resource_json(r)),
                    ("last_updated", updated(r)),
                ])
            })
            .collect();
        (statics, dynamics)
    }

    fn endpoints(&self, d: &ResourceDump) -> Json {
        let (statics, dynamics) = self.entries(d, "endpoint_config");
        object(vec![
            ("@type", json!(format!("{ADMIN}EndpointsConfigDump"))),
            ("static_endpoint_configs", Json::Array(statics)),
            ("dynamic_endpoint_configs", Json::Array(dynamics)),
        ])
    }

    fn listeners(&self, d: &ResourceDump) -> Json {
        let statics: Vec<Json> = self
            .keep(&d.static_resources)
            .map(|r| {
                object(vec![
                    ("listener", resource_json(r)),
                    ("last_updated", updated(r)),
                ])
            })
            .collect();
        let dynamics: Vec<Json> = self
            .keep(&d.dynamic_resources)
            .map(|r| {
                object(vec![
                    ("name", json!(r.name)),
                    (
                        "active_state",
                        object(vec![
                            ("version_info", json!(r.version)),
                            ("listener", resource_json(r)),
                            ("last_updated", updated(r)),
                        ]),
                    ),
                ])
            })
            .collect();
        object(vec![
            ("@type", json!(format!("{ADMIN}ListenersConfigDump"))),
            ("version_info", json!(d.version_info)),
            ("static_listeners", Json::Array(statics)),
            ("dynamic_listeners", Json::Array(dynamics)),
        ])
    }

    fn routes(&self, d: &ResourceDump) -> Json {
        let (statics, dynamics) = self.entries(d, "route_config");
        object(vec![
            ("@type", json!(format!("{ADMIN}RoutesConfigDump"))),
            ("static_route_configs", Json::Array(statics)),
            ("dynamic_route_configs", Json::Array(dynamics)),
        ])
    }
}

/// The repeated fields `?resource=` may name, with the type of their elements.
const RESOURCE_FIELDS: &[(&str, &str)] = &[
    ("static_clusters", "ClustersConfigDump.StaticCluster"),
    (
        "dynamic_active_clusters",
        "ClustersConfigDump.DynamicCluster",
    ),
    (
        "dynamic_warming_clusters",
        "ClustersConfigDump.DynamicCluster",
    ),
    (
        "static_endpoint_configs",
        "EndpointsConfigDump.StaticEndpointConfig",
    ),
    (
        "dynamic_endpoint_configs",
        "EndpointsConfigDump.DynamicEndpointConfig",
    ),
    ("static_listeners", "ListenersConfigDump.StaticListener"),
    ("dynamic_listeners", "ListenersConfigDump.DynamicListener"),
    (
        "inline_scoped_route_configs",
        "ScopedRoutesConfigDump.InlineScopedRouteConfigs",
    ),
    (
        "dynamic_scoped_route_configs",
        "ScopedRoutesConfigDump.DynamicScopedRouteConfigs",
    ),
    ("static_route_configs", "RoutesConfigDump.StaticRouteConfig"),
    (
        "dynamic_route_configs",
        "RoutesConfigDump.DynamicRouteConfig",
    ),
    ("static_secrets", "SecretsConfigDump.StaticSecret"),
    ("dynamic_active_secrets", "SecretsConfigDump.DynamicSecret"),
    ("dynamic_warming_secrets", "SecretsConfigDump.DynamicSecret"),
];

/// The whole `/config_dump` answer.
pub fn config_dump(source: &dyn AdminSource, params: &DumpParams) -> Result<Json, DumpError> {
    let d = Dump { params };
    let mut configs = Vec::new();
    if let Some((bootstrap, loaded)) = source.bootstrap() {
        let rendered = to_json_with(&bootstrap, FieldNames::Proto).unwrap_or_else(|_| json!({}));
        configs.push(object(vec![
            ("@type", json!(format!("{ADMIN}BootstrapConfigDump"))),
            ("bootstrap", rendered),
            ("last_updated", json!(proto_timestamp(loaded))),
        ]));
    }
    configs.push(d.clusters(&source.clusters_dump()));
    if params.include_eds {
        configs.push(d.endpoints(&source.endpoints_dump()));
    }
    configs.push(d.listeners(&source.listeners_dump()));
    configs.push(json!({ "@type": format!("{ADMIN}ScopedRoutesConfigDump") }));
    configs.push(d.routes(&source.routes_dump()));
    configs.push(json!({ "@type": format!("{ADMIN}SecretsConfigDump") }));

    let Some(resource) = &params.resource else {
        return Ok(json!({ "configs": configs }));
    };
    let (_, element_type) = RESOURCE_FIELDS
        .iter()
        .find(|(field, _)| field == resource)
        .ok_or_else(|| DumpError::UnknownResource(resource.clone()))?;
    let mut picked = Vec::new();
    for config in configs {
        if let Some(Json::Array(items)) = config.get(resource.as_str()) {
            for item in items {
                let mut with_type = Map::new();
                with_type.insert("@type".into(), json!(format!("{ADMIN}{element_type}")));
                if let Json::Object(fields) = item {
                    with_type.extend(fields.clone());
                }
                picked.push(Json::Object(with_type));
            }
        }
    }
    Ok(json!({ "configs": picked }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_use_proto3_precision() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(proto_timestamp(t), "2023-11-14T22:13:20Z");
        assert_eq!(
            proto_timestamp(t + Duration::from_millis(5)),
            "2023-11-14T22:13:20.005Z"
        );
        assert_eq!(
            proto_timestamp(t + Duration::from_micros(5)),
            "2023-11-14T22:13:20.000005Z"
        );
        assert_eq!(
            proto_timestamp(t + Duration::from_nanos(5)),
            "2023-11-14T22:13:20.000000005Z"
        );
    }
}
