//! `typed_per_filter_config` of route configurations, virtual hosts, routes and weighted
//! clusters, read as a stock Envoy reads it: each entry is looked up by its type, not by
//! the filters in the chain. Fault and CORS configs are converted; configs for other
//! Envoy HTTP filters are accepted and ignored (strait-proxy's HCM conversion already
//! refuses any such filter that is not optional, so nothing would read them); types that
//! are no Envoy HTTP filter are rejected unless wrapped in an optional `FilterConfig`.

use std::collections::HashMap;

use strait_proto::envoy::config::route::v3::FilterConfig;
use strait_proto::envoy::extensions::filters::http::cors::v3::CorsPolicy as FilterCors;
use strait_proto::envoy::extensions::filters::http::fault::v3::HttpFault;
use strait_proto::google::protobuf::Any;
use strait_proto::xds::any;

use super::{cors, fault};
use crate::config::error::{Ctx, Result};
use crate::config::route::{CorsPolicy, FaultConfig};

const FAULT_FILTER: &str = "envoy.filters.http.fault";
const CORS_FILTER: &str = "envoy.filters.http.cors";
const ENVOY_HTTP_FILTER_PREFIX: &str = "envoy.extensions.filters.http.";

/// One level's say about a filter: nothing (defer to the enclosing level), switched off,
/// or a config.
#[derive(Clone, Debug, Default)]
pub enum Setting<T> {
    #[default]
    Inherit,
    Disabled,
    Set(T),
}

impl<T: Clone> Setting<T> {
    /// The effective config, most specific level first.
    pub fn resolve(levels: &[&Setting<T>]) -> Option<Option<T>> {
        levels.iter().find_map(|l| match l {
            Setting::Inherit => None,
            Setting::Disabled => Some(None),
            Setting::Set(v) => Some(Some(v.clone())),
        })
    }

    pub fn is_set(&self) -> bool {
        matches!(self, Setting::Set(_))
    }
}

#[derive(Clone, Debug, Default)]
pub struct PerFilter {
    pub fault: Setting<FaultConfig>,
    pub cors: Setting<CorsPolicy>,
}

pub fn per_filter(map: &HashMap<String, Any>, ctx: &Ctx) -> Result<PerFilter> {
    let mut out = PerFilter::default();
    // Sorted so the outcome (and the first error reported) does not depend on hashing.
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    // Envoy finds a route's config by the filter's name; strait-proxy has one fault and
    // one CORS filter, so the conventional names win over other keys of the same type.
    entries.sort_by_key(|(name, _)| name.as_str() == FAULT_FILTER || name.as_str() == CORS_FILTER);
    for (name, config) in entries {
        let ctx = ctx.field(&format!("typed_per_filter_config[{name:?}]"));
        entry(name, config, &ctx, &mut out)?;
    }
    Ok(out)
}

fn entry(name: &str, config: &Any, ctx: &Ctx, out: &mut PerFilter) -> Result<()> {
    let decode = |e: strait_proto::xds::XdsError| ctx.error(e.to_string());
    let (config, optional, inner_ctx) = if any::is::<FilterConfig>(config) {
        let fc: FilterConfig = any::unpack(config).map_err(decode)?;
        if fc.disabled {
            mark_disabled(name, out);
            return Ok(());
        }
        let Some(inner) = fc.config else {
            return Err(ctx.error(format!(
                "empty route/virtual host per filter configuration for {name} filter"
            )));
        };
        if inner.type_url.is_empty() {
            // An explicit "enabled" with no config of its own.
            return Ok(());
        }
        (inner, fc.is_optional, ctx.field("config"))
    } else {
        (config.clone(), false, ctx.clone())
    };
    let decode = |e: strait_proto::xds::XdsError| inner_ctx.error(e.to_string());
    if any::is::<HttpFault>(&config) {
        let f: HttpFault = any::unpack(&config).map_err(decode)?;
        out.fault = Setting::Set(fault::fault_config(&f, &inner_ctx)?);
    } else if any::is::<FilterCors>(&config) {
        let c: FilterCors = any::unpack(&config).map_err(decode)?;
        out.cors = match cors::filter_cors(&c, &inner_ctx)? {
            Some(c) => Setting::Set(c),
            None => Setting::Disabled,
        };
    } else if any::type_name(&config.type_url).starts_with(ENVOY_HTTP_FILTER_PREFIX) || optional {
        // Known to Envoy (or optional): nothing in strait-proxy reads it.
    } else {
        return Err(inner_ctx.error(format!(
            "didn't find a registered implementation for '{name}' with type URL '{}'",
            config.type_url
        )));
    }
    Ok(())
}

fn mark_disabled(name: &str, out: &mut PerFilter) {
    match name {
        FAULT_FILTER => out.fault = Setting::Disabled,
        CORS_FILTER => out.cors = Setting::Disabled,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::new("RouteConfiguration", "r")
            .field("virtual_hosts")
            .index(0)
    }

    #[test]
    fn unknown_types_follow_envoy() {
        let mut map = HashMap::new();
        map.insert(
            "envoy.filters.http.rbac".to_string(),
            Any {
                type_url: "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
                    .into(),
                value: vec![],
            },
        );
        assert!(!per_filter(&map, &ctx()).unwrap().fault.is_set());
        map.insert(
            "acme".to_string(),
            Any {
                type_url: "type.googleapis.com/acme.Thing".into(),
                value: vec![],
            },
        );
        let e = per_filter(&map, &ctx()).unwrap_err();
        assert_eq!(
            e.field,
            "virtual_hosts[0].typed_per_filter_config[\"acme\"]"
        );
        let optional = FilterConfig {
            config: Some(Any {
                type_url: "type.googleapis.com/acme.Thing".into(),
                value: vec![],
            }),
            is_optional: true,
            disabled: false,
        };
        map.insert("acme".to_string(), any::pack(&optional));
        assert!(per_filter(&map, &ctx()).is_ok());
    }

    #[test]
    fn disabled_blocks_inheritance() {
        let mut map = HashMap::new();
        map.insert(
            FAULT_FILTER.to_string(),
            any::pack(&FilterConfig {
                config: None,
                is_optional: false,
                disabled: true,
            }),
        );
        let pf = per_filter(&map, &ctx()).unwrap();
        let parent = Setting::Set(FaultConfig {
            delay: None,
            abort: None,
            max_active_faults: Some(1),
        });
        assert!(matches!(
            Setting::resolve(&[&pf.fault, &parent]),
            Some(None)
        ));
        assert!(matches!(
            Setting::resolve(&[&Setting::Inherit, &parent]),
            Some(Some(FaultConfig {
                max_active_faults: Some(1),
                ..
            }))
        ));
    }
}
