//! Envoy's `StringMatcher`, `HeaderMatcher` and `QueryParameterMatcher` evaluated
//! against a request.

use crate::config::common::{
    HeaderMatch, HeaderMatcher, QueryParameterMatcher, StringMatch, StringMatcher,
};

use super::re2;
use super::request::RequestView;

/// `ignore_case` compares ASCII case-insensitively and does not apply to regexes.
pub fn string_matches(m: &StringMatcher, value: &str) -> bool {
    let ic = m.ignore_case;
    match &m.pattern {
        StringMatch::Exact(s) => {
            if ic {
                value.eq_ignore_ascii_case(s)
            } else {
                value == s
            }
        }
        StringMatch::Prefix(p) => {
            if ic {
                value
                    .get(..p.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(p))
            } else {
                value.starts_with(p.as_str())
            }
        }
        StringMatch::Suffix(s) => {
            if ic {
                value.len() >= s.len()
                    && value
                        .get(value.len() - s.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(s))
            } else {
                value.ends_with(s.as_str())
            }
        }
        StringMatch::Contains(s) => {
            if ic {
                value.to_ascii_lowercase().contains(&s.to_ascii_lowercase())
            } else {
                value.contains(s.as_str())
            }
        }
        StringMatch::Regex(re) => re2::full_match(re, value),
    }
}

/// One header condition. A missing header fails every form except `present_match`, unless
/// `treat_missing_as_empty` (then it is matched as ""); `invert` flips the result of a
/// present header (and of `present_match`).
pub fn header_matches(m: &HeaderMatcher, req: &RequestView<'_>) -> bool {
    let value = req.header(&m.name);
    if let HeaderMatch::Present(want) = m.matcher {
        let present = value.is_some();
        return (present == want) != m.invert;
    }
    let value = match value {
        Some(v) => v,
        None if m.treat_missing_as_empty => "".into(),
        None => return false,
    };
    let matched = match &m.matcher {
        HeaderMatch::String(sm) => string_matches(sm, &value),
        HeaderMatch::Range { start, end } => value
            .trim()
            .parse::<i64>()
            .is_ok_and(|n| n >= *start && n < *end),
        HeaderMatch::Present(_) => true,
    };
    matched != m.invert
}

/// All header conditions hold.
pub fn headers_match(matchers: &[HeaderMatcher], req: &RequestView<'_>) -> bool {
    matchers.iter().all(|m| header_matches(m, req))
}

/// A query parameter condition, against the first value of the parameter; the query
/// string is not URL-decoded (Envoy's `parseQueryString`). A parameter without `=` has
/// the value "".
pub fn query_matches(m: &QueryParameterMatcher, query: Option<&str>) -> bool {
    let Some(value) = first_query_value(query.unwrap_or(""), &m.name) else {
        return false;
    };
    match &m.matcher {
        None => true,
        Some(sm) => string_matches(sm, value),
    }
}

pub fn queries_match(matchers: &[QueryParameterMatcher], query: Option<&str>) -> bool {
    matchers.iter().all(|m| query_matches(m, query))
}

fn first_query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .find_map(|p| match p.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if p == name => Some(""),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn sm(pattern: StringMatch, ignore_case: bool) -> StringMatcher {
        StringMatcher {
            pattern,
            ignore_case,
        }
    }

    fn hm(name: &str, matcher: HeaderMatch) -> HeaderMatcher {
        HeaderMatcher {
            name: name.into(),
            matcher,
            invert: false,
            treat_missing_as_empty: false,
        }
    }

    fn with_view<T>(headers: &[(&str, &str)], f: impl FnOnce(&RequestView<'_>) -> T) -> T {
        let mut b = http::Request::builder().uri("/productpage?u=jason");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (p, _) = b.body(()).unwrap().into_parts();
        f(&RequestView::from_parts(&p, false, None))
    }

    #[test]
    fn string_forms_and_ignore_case() {
        assert!(string_matches(
            &sm(StringMatch::Exact("Jason".into()), true),
            "jason"
        ));
        assert!(!string_matches(
            &sm(StringMatch::Exact("Jason".into()), false),
            "jason"
        ));
        assert!(string_matches(
            &sm(StringMatch::Prefix("/API".into()), true),
            "/api/v1"
        ));
        assert!(!string_matches(
            &sm(StringMatch::Prefix("/API".into()), false),
            "/api/v1"
        ));
        assert!(string_matches(
            &sm(StringMatch::Suffix(".JPG".into()), true),
            "a.jpg"
        ));
        assert!(!string_matches(
            &sm(StringMatch::Suffix("long-suffix".into()), true),
            "x"
        ));
        assert!(string_matches(
            &sm(StringMatch::Contains("MOZ".into()), true),
            "Mozilla/5.0"
        ));
        let re = Regex::new("^(?:v[0-9]+)$").unwrap();
        assert!(string_matches(
            &sm(StringMatch::Regex(re.clone()), false),
            "v2"
        ));
        assert!(!string_matches(&sm(StringMatch::Regex(re), false), "v2x"));
    }

    #[test]
    fn end_user_jason() {
        let m = hm(
            "end-user",
            HeaderMatch::String(sm(StringMatch::Exact("jason".into()), false)),
        );
        assert!(with_view(&[("end-user", "jason")], |v| header_matches(
            &m, v
        )));
        assert!(!with_view(&[("end-user", "json")], |v| header_matches(
            &m, v
        )));
        assert!(!with_view(&[], |v| header_matches(&m, v)));
    }

    #[test]
    fn invert_and_missing_headers() {
        let mut m = hm(
            "end-user",
            HeaderMatch::String(sm(StringMatch::Exact("jason".into()), false)),
        );
        m.invert = true;
        assert!(with_view(&[("end-user", "bob")], |v| header_matches(&m, v)));
        assert!(!with_view(&[("end-user", "jason")], |v| header_matches(
            &m, v
        )));
        // A missing header fails even an inverted matcher...
        assert!(!with_view(&[], |v| header_matches(&m, v)));
        // ...unless it is treated as empty.
        m.treat_missing_as_empty = true;
        assert!(with_view(&[], |v| header_matches(&m, v)));
    }

    #[test]
    fn present_match_and_its_inversion() {
        let present = hm("x-debug", HeaderMatch::Present(true));
        let absent = hm("x-debug", HeaderMatch::Present(false));
        assert!(with_view(&[("x-debug", "")], |v| header_matches(
            &present, v
        )));
        assert!(!with_view(&[], |v| header_matches(&present, v)));
        assert!(with_view(&[], |v| header_matches(&absent, v)));
        let mut inverted = present.clone();
        inverted.invert = true;
        assert!(with_view(&[], |v| header_matches(&inverted, v)));
    }

    #[test]
    fn range_is_half_open_and_needs_an_integer() {
        let m = hm("x-shard", HeaderMatch::Range { start: 10, end: 20 });
        assert!(with_view(&[("x-shard", "10")], |v| header_matches(&m, v)));
        assert!(with_view(&[("x-shard", "19")], |v| header_matches(&m, v)));
        assert!(!with_view(&[("x-shard", "20")], |v| header_matches(&m, v)));
        assert!(!with_view(&[("x-shard", "1x")], |v| header_matches(&m, v)));
        assert!(with_view(&[("x-shard", "-5")], |v| !header_matches(&m, v)));
    }

    #[test]
    fn multiple_values_are_matched_joined() {
        let m = hm(
            "x-tag",
            HeaderMatch::String(sm(StringMatch::Exact("a,b".into()), false)),
        );
        assert!(with_view(&[("x-tag", "a"), ("x-tag", "b")], |v| {
            header_matches(&m, v)
        }));
        assert!(!with_view(&[("x-tag", "a")], |v| header_matches(&m, v)));
    }

    #[test]
    fn pseudo_headers_are_matchable() {
        let m = hm(
            ":method",
            HeaderMatch::String(sm(StringMatch::Exact("GET".into()), false)),
        );
        assert!(with_view(&[], |v| header_matches(&m, v)));
        let p = hm(
            ":path",
            HeaderMatch::String(sm(StringMatch::Prefix("/productpage".into()), false)),
        );
        assert!(with_view(&[], |v| header_matches(&p, v)));
    }

    #[test]
    fn query_parameters_first_value_undecoded() {
        let q = |name: &str, m: Option<StringMatcher>| QueryParameterMatcher {
            name: name.into(),
            matcher: m,
        };
        let exact = |s: &str| Some(sm(StringMatch::Exact(s.into()), false));
        assert!(query_matches(
            &q("u", exact("jason")),
            Some("u=jason&u=bob")
        ));
        assert!(!query_matches(&q("u", exact("bob")), Some("u=jason&u=bob")));
        assert!(query_matches(&q("flag", None), Some("a=1&flag")));
        assert!(query_matches(&q("flag", exact("")), Some("flag")));
        assert!(!query_matches(&q("flag", None), Some("flagged=1")));
        assert!(!query_matches(&q("u", None), None));
        // Not URL-decoded: the raw bytes are compared.
        assert!(query_matches(&q("n", exact("a%20b")), Some("n=a%20b")));
        assert!(!query_matches(&q("n", exact("a b")), Some("n=a%20b")));
    }
}
