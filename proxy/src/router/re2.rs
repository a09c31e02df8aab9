//! Regex semantics as Envoy (RE2) has them, over the conversion layer's compiled forms:
//! matcher regexes are anchored for a full match, rewrite regexes are as written and
//! their substitutions already translated from RE2's `\1` to the regex crate's `${1}`.

use regex::Regex;

/// Whether `re` matches the whole of `s`. Matcher regexes come anchored (`^(?:...)$`);
/// the span check keeps this right for any other regex whose leftmost match is the
/// full one.
pub fn full_match(re: &Regex, s: &str) -> bool {
    re.find(s)
        .is_some_and(|m| m.start() == 0 && m.end() == s.len())
}

/// Envoy's `replaceAll`: every non-overlapping match of `re` in `text` replaced by
/// `substitution` (regex-crate syntax, as stored in the config).
pub fn replace_all(re: &Regex, text: &str, substitution: &str) -> String {
    re.replace_all(text, substitution).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_match_needs_the_whole_string() {
        let anchored = Regex::new("^(?:/api/v[0-9]+)$").unwrap();
        assert!(full_match(&anchored, "/api/v1"));
        assert!(!full_match(&anchored, "/api/v1/x"));
        let bare = Regex::new("/api/v[0-9]+").unwrap();
        assert!(full_match(&bare, "/api/v12"));
        assert!(!full_match(&bare, "x/api/v12"));
    }

    #[test]
    fn substitutions_as_the_conversion_stores_them() {
        // RE2 `\2/instance/\1`, translated.
        let re = Regex::new("^/service/([^/]+)(/.*)$").unwrap();
        assert_eq!(
            replace_all(&re, "/service/foo/v1/api", "${2}/instance/${1}"),
            "/v1/api/instance/foo"
        );
        // A literal `$` arrives escaped as `$$`.
        let re = Regex::new("a").unwrap();
        assert_eq!(replace_all(&re, "banana", "$$"), "b$n$n$");
    }

    #[test]
    fn replaces_every_match() {
        let re = Regex::new("one").unwrap();
        assert_eq!(replace_all(&re, "/one/two/one", "1"), "/1/two/1");
    }
}
