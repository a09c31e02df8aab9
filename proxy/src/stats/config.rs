//! The bootstrap's `stats_config` → how the store names and filters stats.

use strait_proto::envoy::config::metrics::v3::{
    StatsConfig as PbStatsConfig, stats_matcher, tag_specifier,
};
use strait_proto::envoy::r#type::matcher::v3::{StringMatcher as PbStringMatcher, string_matcher};

use super::matcher::{NameMatcher, NamePattern, StatsMatcher};
use super::tags::{TagProducer, TagSpecifier};
use crate::config::{ConfigError, Ctx};

/// How a [`Store`](super::Store) names and filters its stats.
#[derive(Debug, Default)]
pub struct StatsConfig {
    pub tags: TagProducer,
    pub matcher: StatsMatcher,
}

impl StatsConfig {
    /// A bootstrap without `stats_config`: Envoy's built-in tags, every stat kept.
    pub fn envoy_default() -> StatsConfig {
        StatsConfig {
            tags: TagProducer::envoy_default(),
            matcher: StatsMatcher::AcceptAll,
        }
    }

    /// What Istio's sidecar bootstrap configures by default.
    pub fn istio_default() -> StatsConfig {
        StatsConfig {
            tags: TagProducer::istio(),
            matcher: StatsMatcher::istio_default(),
        }
    }

    /// Converts the bootstrap's `stats_config` (`None`: Envoy's defaults). Histogram
    /// bucket settings are not applied (Envoy's default buckets are used).
    pub fn from_proto(config: Option<&PbStatsConfig>) -> Result<StatsConfig, ConfigError> {
        let Some(config) = config else {
            return Ok(StatsConfig::envoy_default());
        };
        let ctx = Ctx::new("Bootstrap", "").field("stats_config");
        let specs: Vec<TagSpecifier> = config
            .stats_tags
            .iter()
            .map(|t| match &t.tag_value {
                Some(tag_specifier::TagValue::Regex(r)) if !r.is_empty() => TagSpecifier::Regex {
                    name: t.tag_name.clone(),
                    regex: r.clone(),
                },
                Some(tag_specifier::TagValue::FixedValue(v)) => TagSpecifier::Fixed {
                    name: t.tag_name.clone(),
                    value: v.clone(),
                },
                _ => TagSpecifier::Default(t.tag_name.clone()),
            })
            .collect();
        let use_defaults = config.use_all_default_tags.as_ref().is_none_or(|b| b.value);
        let tags = TagProducer::new(&specs, use_defaults)
            .map_err(|e| ctx.field("stats_tags").error(e.to_string()))?;
        let matcher_ctx = ctx.field("stats_matcher");
        let matcher = match config
            .stats_matcher
            .as_ref()
            .and_then(|m| m.stats_matcher.as_ref())
        {
            None => StatsMatcher::AcceptAll,
            Some(stats_matcher::StatsMatcher::RejectAll(true)) => StatsMatcher::RejectAll,
            Some(stats_matcher::StatsMatcher::RejectAll(false)) => StatsMatcher::AcceptAll,
            Some(stats_matcher::StatsMatcher::InclusionList(l)) => StatsMatcher::Inclusion(
                name_matchers(&l.patterns, &matcher_ctx.field("inclusion_list"))?,
            ),
            Some(stats_matcher::StatsMatcher::ExclusionList(l)) => StatsMatcher::Exclusion(
                name_matchers(&l.patterns, &matcher_ctx.field("exclusion_list"))?,
            ),
        };
        Ok(StatsConfig { tags, matcher })
    }
}

fn name_matchers(list: &[PbStringMatcher], ctx: &Ctx) -> Result<Vec<NameMatcher>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, m)| name_matcher(m, &ctx.field("patterns").index(i)))
        .collect()
}

fn name_matcher(m: &PbStringMatcher, ctx: &Ctx) -> Result<NameMatcher, ConfigError> {
    use string_matcher::MatchPattern as P;
    let pattern = match &m.match_pattern {
        Some(P::Exact(s)) => NamePattern::Exact(s.clone()),
        Some(P::Prefix(s)) => NamePattern::Prefix(s.clone()),
        Some(P::Suffix(s)) => NamePattern::Suffix(s.clone()),
        Some(P::Contains(s)) => NamePattern::Contains(s.clone()),
        Some(P::SafeRegex(r)) => NamePattern::Regex(
            regex::Regex::new(&format!("^(?:{})$", r.regex))
                .map_err(|e| ctx.field("safe_regex").error(e.to_string()))?,
        ),
        Some(P::Custom(_)) => return Err(ctx.error("custom string matchers are not supported")),
        None => return Err(ctx.error("no match pattern")),
    };
    Ok(NameMatcher {
        pattern,
        ignore_case: m.ignore_case,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::envoy::config::metrics::v3::{StatsMatcher as PbStatsMatcher, TagSpecifier};
    use strait_proto::envoy::r#type::matcher::v3::{ListStringMatcher, RegexMatcher};
    use strait_proto::google::protobuf::BoolValue;

    #[test]
    fn istio_like_stats_config() {
        let config = PbStatsConfig {
            stats_tags: vec![TagSpecifier {
                tag_name: "cluster_name".into(),
                tag_value: Some(tag_specifier::TagValue::Regex(
                    r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)".into(),
                )),
            }],
            use_all_default_tags: Some(BoolValue { value: false }),
            stats_matcher: Some(PbStatsMatcher {
                stats_matcher: Some(stats_matcher::StatsMatcher::InclusionList(
                    ListStringMatcher {
                        patterns: vec![
                            PbStringMatcher {
                                match_pattern: Some(string_matcher::MatchPattern::Prefix(
                                    "server".into(),
                                )),
                                ignore_case: false,
                            },
                            PbStringMatcher {
                                match_pattern: Some(string_matcher::MatchPattern::SafeRegex(
                                    RegexMatcher {
                                        regex: r"vhost\..*".into(),
                                        engine_type: None,
                                    },
                                )),
                                ignore_case: false,
                            },
                        ],
                    },
                )),
            }),
            ..Default::default()
        };
        let c = StatsConfig::from_proto(Some(&config)).unwrap();
        assert!(c.matcher.accepts("server.live"));
        assert!(c.matcher.accepts("vhost.a.route.b.upstream_rq_total"));
        assert!(!c.matcher.accepts("cluster.a.upstream_rq_total"));
        let (name, tags) = c
            .tags
            .produce("cluster.a.b.svc.cluster.local.upstream_rq_200");
        assert_eq!(name, "cluster.upstream_rq_200");
        assert_eq!(tags[0].value, "a.b.svc.cluster.local");

        let bad = PbStatsConfig {
            stats_tags: vec![TagSpecifier {
                tag_name: "x".into(),
                tag_value: Some(tag_specifier::TagValue::Regex("(".into())),
            }],
            ..Default::default()
        };
        let e = StatsConfig::from_proto(Some(&bad)).unwrap_err();
        assert_eq!(e.field, "stats_config.stats_tags");
        assert!(
            StatsConfig::from_proto(None)
                .unwrap()
                .matcher
                .accepts("anything")
        );
    }
}
