//! CORS policies: the CORS filter's per-route `CorsPolicy` and the deprecated
//! `cors` fields of routes and virtual hosts. `None` means the policy is switched off
//! (`filter_enabled` at 0 %).

use strait_proto::envoy::config::core::v3::RuntimeFractionalPercent;
use strait_proto::envoy::config::route::v3::{
    CorsPolicy as RouteCors, cors_policy::EnabledSpecifier,
};
use strait_proto::envoy::extensions::filters::http::cors::v3::CorsPolicy as FilterCors;
use strait_proto::envoy::r#type::matcher::v3::StringMatcher as PbStringMatcher;
use strait_proto::google::protobuf::BoolValue;

use super::{matcher, wkt};
use crate::config::common::PartsPerMillion;
use crate::config::error::{Ctx, Result};
use crate::config::route::CorsPolicy;

/// The per-filter config form (`envoy.extensions.filters.http.cors.v3.CorsPolicy`).
pub fn filter_cors(c: &FilterCors, ctx: &Ctx) -> Result<Option<CorsPolicy>> {
    build(
        Fields {
            origins: &c.allow_origin_string_match,
            methods: &c.allow_methods,
            headers: &c.allow_headers,
            expose: &c.expose_headers,
            max_age: &c.max_age,
            credentials: c.allow_credentials.as_ref(),
            forward: c.forward_not_matching_preflights.as_ref(),
            enabled: c.filter_enabled.as_ref(),
        },
        ctx,
        "filter_enabled",
    )
}

/// The deprecated `cors` field of a route action or virtual host.
pub fn route_cors(c: &RouteCors, ctx: &Ctx) -> Result<Option<CorsPolicy>> {
    let EnabledSpecifier::FilterEnabled(enabled) = c
        .enabled_specifier
        .as_ref()
        .map_or(EnabledSpecifier::FilterEnabled(full()), Clone::clone);
    build(
        Fields {
            origins: &c.allow_origin_string_match,
            methods: &c.allow_methods,
            headers: &c.allow_headers,
            expose: &c.expose_headers,
            max_age: &c.max_age,
            credentials: c.allow_credentials.as_ref(),
            forward: c.forward_not_matching_preflights.as_ref(),
            enabled: Some(&enabled),
        },
        ctx,
        "filter_enabled",
    )
}

fn full() -> RuntimeFractionalPercent {
    RuntimeFractionalPercent {
        default_value: Some(strait_proto::envoy::r#type::v3::FractionalPercent {
            numerator: 100,
            denominator: 0,
        }),
        runtime_key: String::new(),
    }
}

struct Fields<'a> {
    origins: &'a [PbStringMatcher],
    methods: &'a str,
    headers: &'a str,
    expose: &'a str,
    max_age: &'a str,
    credentials: Option<&'a BoolValue>,
    forward: Option<&'a BoolValue>,
    enabled: Option<&'a RuntimeFractionalPercent>,
}

fn build(f: Fields<'_>, ctx: &Ctx, enabled_field: &str) -> Result<Option<CorsPolicy>> {
    let allow_origins = f
        .origins
        .iter()
        .enumerate()
        .map(|(i, m)| matcher::string_matcher(m, &ctx.field("allow_origin_string_match").index(i)))
        .collect::<Result<Vec<_>>>()?;
    // Only a policy enabled for nobody is treated as off; partial runtime fractions have
    // no runtime here and count as on.
    if let Some(enabled) = f.enabled {
        let ectx = ctx.field(enabled_field);
        let dv = enabled.default_value.as_ref().ok_or_else(|| {
            ectx.field("default_value")
                .error("default_value is required")
        })?;
        if wkt::fraction(dv, &ectx.field("default_value"))? == PartsPerMillion::NONE {
            return Ok(None);
        }
    }
    Ok(Some(CorsPolicy {
        allow_origins,
        allow_methods: f.methods.to_string(),
        allow_headers: f.headers.to_string(),
        expose_headers: f.expose.to_string(),
        max_age: f.max_age.to_string(),
        allow_credentials: f.credentials.map(|b| b.value),
        forward_not_matching_preflights: wkt::bool_or(f.forward, true),
    }))
}
