//! Envoy's matchers: regexes, `StringMatcher`, `HeaderMatcher` (every form, including the
//! deprecated direct fields) and `QueryParameterMatcher`.

use regex::{Regex, RegexBuilder};
use strait_proto::envoy::config::route::v3::{
    HeaderMatcher as PbHeaderMatcher, QueryParameterMatcher as PbQueryMatcher, header_matcher,
    query_parameter_matcher,
};
use strait_proto::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher as PbStringMatcher, string_matcher,
};

use crate::config::common::{
    HeaderMatch, HeaderMatcher, QueryParameterMatcher, StringMatch, StringMatcher,
};
use crate::config::error::{Ctx, Result};

/// Compiled-program budget per regex: generous for route tables, small enough that a
/// hostile pattern cannot make conversion slow or memory-hungry.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A regex as written (unanchored): for rewrites, which substitute every match.
pub fn regex(pattern: &str, ctx: &Ctx) -> Result<Regex> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            ctx.error(format!(
                "invalid regex '{pattern}': {}",
                first_line(&e.to_string())
            ))
        })
}

/// A regex compiled for a full match, which is what Envoy's `safe_regex` matchers do:
/// `is_match` on the result answers "does the whole value match".
pub fn full_match_regex(pattern: &str, ctx: &Ctx) -> Result<Regex> {
    // Validated on its own first: wrapping a broken pattern can make it parse (`a)|(b`).
    regex(pattern, ctx)?;
    regex(&format!("^(?:{pattern})$"), ctx)
}

/// The regex of a `RegexMatcher` (the engine choice is RE2's and carries no meaning here).
pub fn regex_matcher(m: &RegexMatcher, ctx: &Ctx) -> Result<Regex> {
    full_match_regex(&m.regex, &ctx.field("regex"))
}

fn first_line(s: &str) -> String {
    // The regex crate's errors are multi-line ASCII art; a NACK detail wants one line.
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn string_matcher(m: &PbStringMatcher, ctx: &Ctx) -> Result<StringMatcher> {
    use string_matcher::MatchPattern;
    let non_empty = |s: &String, field: &str| -> Result<String> {
        if s.is_empty() {
            Err(ctx.field(field).error("must not be empty"))
        } else {
            Ok(s.clone())
        }
    };
    let pattern = match &m.match_pattern {
        Some(MatchPattern::Exact(s)) => StringMatch::Exact(s.clone()),
        Some(MatchPattern::Prefix(s)) => StringMatch::Prefix(non_empty(s, "prefix")?),
        Some(MatchPattern::Suffix(s)) => StringMatch::Suffix(non_empty(s, "suffix")?),
        Some(MatchPattern::Contains(s)) => StringMatch::Contains(non_empty(s, "contains")?),
        Some(MatchPattern::SafeRegex(r)) => {
            StringMatch::Regex(regex_matcher(r, &ctx.field("safe_regex"))?)
        }
        Some(MatchPattern::Custom(c)) => {
            return Err(ctx.field("custom").error(format!(
                "custom string matcher '{}' is not supported",
                c.name
            )));
        }
        None => return Err(ctx.error("match_pattern is required")),
    };
    Ok(StringMatcher {
        pattern,
        ignore_case: m.ignore_case,
    })
}

pub fn header_matcher(m: &PbHeaderMatcher, ctx: &Ctx) -> Result<HeaderMatcher> {
    use header_matcher::HeaderMatchSpecifier as S;
    let name = header_name(&m.name, &ctx.field("name"))?;
    let exact = |s: &String, ignore_case| StringMatcher {
        pattern: StringMatch::Exact(s.clone()),
        ignore_case,
    };
    let non_empty =
        |s: &String, field: &str, make: fn(String) -> StringMatch| -> Result<HeaderMatch> {
            if s.is_empty() {
                return Err(ctx.field(field).error("must not be empty"));
            }
            Ok(HeaderMatch::String(StringMatcher {
                pattern: make(s.clone()),
                ignore_case: false,
            }))
        };
    let matcher = match &m.header_match_specifier {
        Some(S::ExactMatch(s)) => HeaderMatch::String(exact(s, false)),
        Some(S::SafeRegexMatch(r)) => HeaderMatch::String(StringMatcher {
            pattern: StringMatch::Regex(regex_matcher(r, &ctx.field("safe_regex_match"))?),
            ignore_case: false,
        }),
        Some(S::RangeMatch(r)) => {
            if r.start >= r.end {
                return Err(ctx
                    .field("range_match")
                    .error(format!("empty range [{}, {})", r.start, r.end)));
            }
            HeaderMatch::Range {
                start: r.start,
                end: r.end,
            }
        }
        Some(S::PresentMatch(p)) => HeaderMatch::Present(*p),
        Some(S::PrefixMatch(s)) => non_empty(s, "prefix_match", StringMatch::Prefix)?,
        Some(S::SuffixMatch(s)) => non_empty(s, "suffix_match", StringMatch::Suffix)?,
        Some(S::ContainsMatch(s)) => non_empty(s, "contains_match", StringMatch::Contains)?,
        Some(S::StringMatch(sm)) => {
            HeaderMatch::String(string_matcher(sm, &ctx.field("string_match"))?)
        }
        // Envoy matches on presence when no specifier is set.
        None => HeaderMatch::Present(true),
    };
    Ok(HeaderMatcher {
        name,
        matcher,
        invert: m.invert_match,
        treat_missing_as_empty: m.treat_missing_header_as_empty,
    })
}

pub fn header_matchers(list: &[PbHeaderMatcher], ctx: &Ctx) -> Result<Vec<HeaderMatcher>> {
    list.iter()
        .enumerate()
        .map(|(i, m)| header_matcher(m, &ctx.index(i)))
        .collect()
}

/// A header name to match on: lowercased; pseudo-headers (`:authority`) are allowed.
fn header_name(name: &str, ctx: &Ctx) -> Result<String> {
    let bare = name.strip_prefix(':').unwrap_or(name);
    if bare.is_empty() || http::HeaderName::from_bytes(bare.as_bytes()).is_err() {
        return Err(ctx.error(format!("'{name}' is not a valid header name")));
    }
    Ok(name.to_ascii_lowercase())
}

pub fn query_parameter_matcher(m: &PbQueryMatcher, ctx: &Ctx) -> Result<QueryParameterMatcher> {
    use query_parameter_matcher::QueryParameterMatchSpecifier as S;
    if m.name.is_empty() {
        return Err(ctx.field("name").error("must not be empty"));
    }
    let matcher = match &m.query_parameter_match_specifier {
        Some(S::StringMatch(sm)) => Some(string_matcher(sm, &ctx.field("string_match"))?),
        Some(S::PresentMatch(true)) | None => None,
        Some(S::PresentMatch(false)) => {
            return Err(ctx
                .field("present_match")
                .error("present_match: false (match on absence) is not supported"));
        }
    };
    Ok(QueryParameterMatcher {
        name: m.name.clone(),
        matcher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::new("RouteConfiguration", "r")
            .field("headers")
            .index(0)
    }

    #[test]
    fn regexes_match_whole_values_and_bad_ones_are_named() {
        let r = full_match_regex("/api/v[0-9]+", &ctx()).unwrap();
        assert!(r.is_match("/api/v2"));
        assert!(!r.is_match("/api/v2/x"));
        assert!(full_match_regex("a)|(b", &ctx()).is_err());
        let e = full_match_regex("(unclosed", &ctx().field("safe_regex")).unwrap_err();
        assert_eq!(e.field, "headers[0].safe_regex");
        assert!(e.reason.starts_with("invalid regex '(unclosed'"), "{e}");
        assert!(!e.reason.contains('\n'));
    }

    #[test]
    fn header_matcher_forms() {
        let hm = |spec| PbHeaderMatcher {
            name: "End-User".into(),
            header_match_specifier: spec,
            ..Default::default()
        };
        use header_matcher::HeaderMatchSpecifier as S;
        let m = header_matcher(&hm(Some(S::ExactMatch("jason".into()))), &ctx()).unwrap();
        assert_eq!(m.name, "end-user");
        assert!(
            matches!(&m.matcher, HeaderMatch::String(StringMatcher { pattern: StringMatch::Exact(s), ignore_case: false }) if s == "jason")
        );
        let m = header_matcher(&hm(None), &ctx()).unwrap();
        assert!(matches!(m.matcher, HeaderMatch::Present(true)));
        let sm = PbStringMatcher {
            ignore_case: true,
            match_pattern: Some(string_matcher::MatchPattern::Prefix("ja".into())),
        };
        let m = header_matcher(&hm(Some(S::StringMatch(sm))), &ctx()).unwrap();
        assert!(matches!(
            &m.matcher,
            HeaderMatch::String(StringMatcher {
                pattern: StringMatch::Prefix(_),
                ignore_case: true
            })
        ));
        let e = header_matcher(&hm(Some(S::PrefixMatch(String::new()))), &ctx()).unwrap_err();
        assert_eq!(e.field, "headers[0].prefix_match");
        let bad = PbHeaderMatcher {
            name: "bad name".into(),
            ..Default::default()
        };
        assert_eq!(
            header_matcher(&bad, &ctx()).unwrap_err().field,
            "headers[0].name"
        );
        let pseudo = PbHeaderMatcher {
            name: ":authority".into(),
            header_match_specifier: Some(S::PresentMatch(false)),
            invert_match: true,
            ..Default::default()
        };
        let m = header_matcher(&pseudo, &ctx()).unwrap();
        assert_eq!(m.name, ":authority");
        assert!(m.invert);
    }
}
