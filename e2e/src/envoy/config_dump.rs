//! Reading names out of Envoy's `/config_dump` (envoy.admin.v3.ConfigDump).

use serde_json::Value;

pub const LISTENERS_DUMP: &str = "type.googleapis.com/envoy.admin.v3.ListenersConfigDump";
pub const CLUSTERS_DUMP: &str = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump";
pub const ROUTES_DUMP: &str = "type.googleapis.com/envoy.admin.v3.RoutesConfigDump";

/// The `configs[]` entry of type `type_url`.
pub fn section<'a>(dump: &'a Value, type_url: &str) -> Option<&'a Value> {
    dump.get("configs")?
        .as_array()?
        .iter()
        .find(|c| c.get("@type").and_then(Value::as_str) == Some(type_url))
}

/// Names of static listeners and of dynamic listeners in any state (active,
/// warming, draining), sorted and deduplicated.
pub fn listener_names(dump: &Value) -> Vec<String> {
    let Some(section) = section(dump, LISTENERS_DUMP) else {
        return Vec::new();
    };
    let mut names = collect(section, "static_listeners", &["listener", "name"]);
    names.extend(collect(section, "dynamic_listeners", &["name"]));
    sorted(names)
}

/// Names of static, dynamic active and dynamic warming clusters.
pub fn cluster_names(dump: &Value) -> Vec<String> {
    let Some(section) = section(dump, CLUSTERS_DUMP) else {
        return Vec::new();
    };
    let mut names = collect(section, "static_clusters", &["cluster", "name"]);
    names.extend(collect(
        section,
        "dynamic_active_clusters",
        &["cluster", "name"],
    ));
    names.extend(collect(
        section,
        "dynamic_warming_clusters",
        &["cluster", "name"],
    ));
    sorted(names)
}

/// Names of static and dynamic (RDS) route configurations.
pub fn route_config_names(dump: &Value) -> Vec<String> {
    let Some(section) = section(dump, ROUTES_DUMP) else {
        return Vec::new();
    };
    let mut names = collect(section, "static_route_configs", &["route_config", "name"]);
    names.extend(collect(
        section,
        "dynamic_route_configs",
        &["route_config", "name"],
    ));
    sorted(names)
}

/// The active config of dynamic listener `name`, if present.
pub fn dynamic_listener<'a>(dump: &'a Value, name: &str) -> Option<&'a Value> {
    section(dump, LISTENERS_DUMP)?
        .get("dynamic_listeners")?
        .as_array()?
        .iter()
        .find(|l| l.get("name").and_then(Value::as_str) == Some(name))?
        .pointer("/active_state/listener")
}

/// The config of cluster `name` (static or dynamic active), if present.
pub fn cluster<'a>(dump: &'a Value, name: &str) -> Option<&'a Value> {
    let section = section(dump, CLUSTERS_DUMP)?;
    ["static_clusters", "dynamic_active_clusters"]
        .iter()
        .filter_map(|key| section.get(*key)?.as_array())
        .flatten()
        .filter_map(|c| c.get("cluster"))
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

/// The route configuration `name` (static or dynamic), if present.
pub fn route_config<'a>(dump: &'a Value, name: &str) -> Option<&'a Value> {
    let section = section(dump, ROUTES_DUMP)?;
    ["static_route_configs", "dynamic_route_configs"]
        .iter()
        .filter_map(|key| section.get(*key)?.as_array())
        .flatten()
        .filter_map(|c| c.get("route_config"))
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

fn collect(section: &Value, list: &str, path: &[&str]) -> Vec<String> {
    section
        .get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            path.iter()
                .try_fold(entry, |v, key| v.get(*key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_come_from_static_and_dynamic_entries() {
        let dump = json!({ "configs": [
            { "@type": LISTENERS_DUMP,
              "static_listeners": [{ "listener": { "name": "s" } }],
              "dynamic_listeners": [{ "name": "virtualOutbound", "active_state": { "listener": { "name": "virtualOutbound" } } }] },
            { "@type": CLUSTERS_DUMP,
              "static_clusters": [{ "cluster": { "name": "xds-grpc" } }],
              "dynamic_active_clusters": [{ "cluster": { "name": "outbound|80||a" } }],
              "dynamic_warming_clusters": [{ "cluster": { "name": "w" } }] },
            { "@type": ROUTES_DUMP,
              "dynamic_route_configs": [{ "route_config": { "name": "80" } }] },
        ]});
        assert_eq!(listener_names(&dump), ["s", "virtualOutbound"]);
        assert_eq!(cluster_names(&dump), ["outbound|80||a", "w", "xds-grpc"]);
        assert_eq!(route_config_names(&dump), ["80"]);
        assert!(dynamic_listener(&dump, "virtualOutbound").is_some());
        assert!(cluster(&dump, "outbound|80||a").is_some());
        assert!(cluster(&dump, "w").is_none());
        assert!(route_config(&dump, "80").is_some());
    }
}
