//! `HTTPRoute.corsPolicy` → the CORS filter's per-route `CorsPolicy`.

use strait_proto::envoy::config::core::v3::RuntimeFractionalPercent;
use strait_proto::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use strait_proto::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use strait_proto::istio::{self, UnmatchedPreflights};

use super::fault::hundredths;
use super::matcher::string_matcher;
use super::{Problems, wkt};

pub fn translate_cors(cors: &istio::CorsPolicy, problems: &mut Problems) -> CorsPolicy {
    let allow_origin_string_match = if !cors.allow_origins.is_empty() {
        cors.allow_origins
            .iter()
            .filter_map(|m| match string_matcher(m) {
                Ok(matcher) => matcher,
                Err(e) => {
                    problems.push(format!("corsPolicy.allowOrigins: {e}; entry dropped"));
                    None
                }
            })
            .collect()
    } else {
        cors.allow_origin
            .iter()
            .map(|o| StringMatcher {
                match_pattern: Some(MatchPattern::Exact(o.clone())),
                ignore_case: false,
            })
            .collect()
    };
    CorsPolicy {
        allow_origin_string_match,
        allow_methods: cors.allow_methods.join(","),
        allow_headers: cors.allow_headers.join(","),
        expose_headers: cors.expose_headers.join(","),
        max_age: cors
            .max_age
            .map(|d| d.as_std().as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: cors.allow_credentials.map(wkt::bool_value),
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(hundredths(100)),
            runtime_key: String::new(),
        }),
        // Envoy before 1.30 forwarded unmatched preflights; Istio keeps that unless IGNORE.
        forward_not_matching_preflights: Some(wkt::bool_value(
            cors.unmatched_preflights != UnmatchedPreflights::Ignore,
        )),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::istio::{Duration, StringMatch};

    #[test]
    fn cors_policy_translates() {
        let cors = istio::CorsPolicy {
            allow_origins: vec![
                StringMatch::Exact("https://example.com".into()),
                StringMatch::Prefix("https://a".into()),
            ],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["x-a".into()],
            max_age: Some(Duration::from_secs(86400)),
            allow_credentials: Some(true),
            ..Default::default()
        };
        let out = translate_cors(&cors, &mut Problems::default());
        assert_eq!(out.allow_origin_string_match.len(), 2);
        assert_eq!(out.allow_methods, "GET,POST");
        assert_eq!(out.max_age, "86400");
        assert_eq!(out.allow_credentials, Some(wkt::bool_value(true)));
        assert_eq!(
            out.forward_not_matching_preflights,
            Some(wkt::bool_value(true))
        );
        assert_eq!(
            out.filter_enabled.unwrap().default_value.unwrap().numerator,
            100
        );
    }

    #[test]
    fn deprecated_allow_origin_is_exact() {
        let cors = istio::CorsPolicy {
            allow_origin: vec!["*".into()],
            unmatched_preflights: UnmatchedPreflights::Ignore,
            ..Default::default()
        };
        let out = translate_cors(&cors, &mut Problems::default());
        assert_eq!(
            out.allow_origin_string_match[0].match_pattern,
            Some(MatchPattern::Exact("*".into()))
        );
        assert_eq!(
            out.forward_not_matching_preflights,
            Some(wkt::bool_value(false))
        );
    }
}
