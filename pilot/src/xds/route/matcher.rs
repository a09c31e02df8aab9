//! `HTTPMatchRequest` → Envoy's `RouteMatch`: path, headers, query parameters.

use strait_proto::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier, route_match::PathSpecifier,
};
use strait_proto::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use strait_proto::istio::{HttpMatchRequest, StringMatch};

use super::wkt;

const METHOD: &str = ":method";
const AUTHORITY: &str = ":authority";
const SCHEME: &str = ":scheme";
/// Header names Istio turns into JWT-claim metadata matchers (needs Istio's authn filter).
const JWT_CLAIM_PREFIX: &str = "@request.auth.claims";

/// The match of a route; `None` means "everything" (`prefix: /`, as Istio's default).
pub fn route_match(m: Option<&HttpMatchRequest>) -> Result<RouteMatch, String> {
    let mut out = RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
        ..Default::default()
    };
    let Some(m) = m else {
        return Ok(out);
    };
    for (name, value) in &m.headers {
        out.headers.push(header_matcher(name, value)?);
    }
    for (name, value) in &m.without_headers {
        let mut matcher = header_matcher(name, value)?;
        matcher.invert_match = true;
        // Envoy rejects treat_missing_header_as_empty together with present_match.
        matcher.treat_missing_header_as_empty = !is_present_match(value);
        out.headers.push(matcher);
    }
    out.headers.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(uri) = &m.uri {
        out.path_specifier = Some(path_specifier(uri)?);
    }
    out.case_sensitive = Some(wkt::bool_value(!m.ignore_uri_case));
    for (name, value) in [
        (METHOD, &m.method),
        (AUTHORITY, &m.authority),
        (SCHEME, &m.scheme),
    ] {
        if let Some(value) = value {
            out.headers.push(header_matcher(name, value)?);
        }
    }
    for (name, value) in &m.query_params {
        out.query_parameters.push(query_matcher(name, value)?);
    }
    Ok(out)
}

fn path_specifier(uri: &StringMatch) -> Result<PathSpecifier, String> {
    Ok(match uri {
        StringMatch::Exact(p) => PathSpecifier::Path(p.clone()),
        StringMatch::Prefix(p) => PathSpecifier::Prefix(p.clone()),
        StringMatch::Regex(r) => PathSpecifier::SafeRegex(regex_matcher(r)?),
        StringMatch::Any => PathSpecifier::Prefix("/".to_string()),
    })
}

/// `regex: "*"` (not a valid RE2) and an empty match mean "the header is present".
fn is_present_match(m: &StringMatch) -> bool {
    matches!(m, StringMatch::Any) || m.regex() == Some("*")
}

pub fn header_matcher(name: &str, value: &StringMatch) -> Result<HeaderMatcher, String> {
    if name.is_empty() {
        return Err("empty header name".to_string());
    }
    if name.starts_with(JWT_CLAIM_PREFIX) {
        return Err(format!(
            "header {name:?}: JWT claim matching needs Istio's authn filter, which this proxy lacks"
        ));
    }
    let specifier = if is_present_match(value) {
        HeaderMatchSpecifier::PresentMatch(true)
    } else {
        match string_matcher(value).map_err(|e| format!("header {name:?}: {e}"))? {
            Some(m) => HeaderMatchSpecifier::StringMatch(m),
            None => HeaderMatchSpecifier::PresentMatch(true),
        }
    };
    Ok(HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    })
}

fn query_matcher(name: &str, value: &StringMatch) -> Result<QueryParameterMatcher, String> {
    if name.is_empty() {
        return Err("empty query parameter name".to_string());
    }
    let specifier = if is_present_match(value) {
        QueryParameterMatchSpecifier::PresentMatch(true)
    } else {
        match string_matcher(value).map_err(|e| format!("query parameter {name:?}: {e}"))? {
            Some(m) => QueryParameterMatchSpecifier::StringMatch(m),
            None => QueryParameterMatchSpecifier::PresentMatch(true),
        }
    };
    Ok(QueryParameterMatcher {
        name: name.to_string(),
        query_parameter_match_specifier: Some(specifier),
    })
}

/// Istio's `ConvertToEnvoyMatch`; `None` for a match with no type. Values Envoy's validation
/// rejects (empty prefix, bad regex) are errors.
pub fn string_matcher(m: &StringMatch) -> Result<Option<StringMatcher>, String> {
    let pattern = match m {
        StringMatch::Any => return Ok(None),
        StringMatch::Exact(v) => MatchPattern::Exact(v.clone()),
        StringMatch::Prefix(v) if v.is_empty() => return Err("empty prefix".to_string()),
        StringMatch::Prefix(v) => MatchPattern::Prefix(v.clone()),
        StringMatch::Regex(r) => MatchPattern::SafeRegex(regex_matcher(r)?),
    };
    Ok(Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    }))
}

/// A RE2 matcher; Envoy's default engine is RE2, so none is named (as Istio does). The
/// syntax is checked here because a bad regex would make Envoy reject the whole resource.
pub fn regex_matcher(regex: &str) -> Result<RegexMatcher, String> {
    if regex.is_empty() {
        return Err("empty regex".to_string());
    }
    regex::Regex::new(regex).map_err(|e| format!("invalid regex {regex:?}: {e}"))?;
    Ok(RegexMatcher {
        regex: regex.to_string(),
        engine_type: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn no_match_is_prefix_slash() {
        let m = route_match(None).unwrap();
        assert_eq!(m.path_specifier, Some(PathSpecifier::Prefix("/".into())));
        assert!(m.case_sensitive.is_none());
    }

    #[test]
    fn uri_headers_and_query() {
        let m = HttpMatchRequest {
            uri: Some(StringMatch::Regex("/api/v[0-9]+/.*".into())),
            ignore_uri_case: true,
            headers: BTreeMap::from([
                ("end-user".into(), StringMatch::Exact("jason".into())),
                ("x-any".into(), StringMatch::Regex("*".into())),
            ]),
            without_headers: BTreeMap::from([("a-debug".into(), StringMatch::Prefix("y".into()))]),
            method: Some(StringMatch::Exact("GET".into())),
            query_params: BTreeMap::from([("v".into(), StringMatch::Exact("1".into()))]),
            ..Default::default()
        };
        let out = route_match(Some(&m)).unwrap();
        match &out.path_specifier {
            Some(PathSpecifier::SafeRegex(r)) => assert_eq!(r.regex, "/api/v[0-9]+/.*"),
            other => panic!("{other:?}"),
        }
        assert_eq!(out.case_sensitive, Some(wkt::bool_value(false)));
        let names: Vec<_> = out.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["a-debug", "end-user", "x-any", ":method"]);
        assert!(out.headers[0].invert_match && out.headers[0].treat_missing_header_as_empty);
        assert_eq!(
            out.headers[1].header_match_specifier,
            Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
                match_pattern: Some(MatchPattern::Exact("jason".into())),
                ignore_case: false
            }))
        );
        assert_eq!(
            out.headers[2].header_match_specifier,
            Some(HeaderMatchSpecifier::PresentMatch(true))
        );
        assert_eq!(out.query_parameters[0].name, "v");
    }

    #[test]
    fn exact_and_prefix_paths() {
        let exact = HttpMatchRequest {
            uri: Some(StringMatch::Exact("/productpage".into())),
            ..Default::default()
        };
        assert_eq!(
            route_match(Some(&exact)).unwrap().path_specifier,
            Some(PathSpecifier::Path("/productpage".into()))
        );
        let prefix = HttpMatchRequest {
            uri: Some(StringMatch::Prefix("/api".into())),
            ..Default::default()
        };
        assert_eq!(
            route_match(Some(&prefix)).unwrap().path_specifier,
            Some(PathSpecifier::Prefix("/api".into()))
        );
    }

    #[test]
    fn invalid_values_are_errors() {
        let bad = HttpMatchRequest {
            uri: Some(StringMatch::Regex("(".into())),
            ..Default::default()
        };
        assert!(route_match(Some(&bad)).is_err());
        let empty = HttpMatchRequest {
            headers: BTreeMap::from([("x".into(), StringMatch::Prefix(String::new()))]),
            ..Default::default()
        };
        assert!(route_match(Some(&empty)).is_err());
    }
}
