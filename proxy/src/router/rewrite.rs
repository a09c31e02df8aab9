//! Path and host rewrites of forwarded requests (and of redirect paths).

use regex::Regex;

use crate::config::route::{ForwardAction, PathMatch};

use super::re2;
use super::request::path_only;

/// How much of the path (from its start) a route's path condition "matched", which is
/// what `prefix_rewrite` replaces: the configured prefix or exact path (by length, so a
/// case-insensitive match replaces the request's own spelling), or the whole path
/// without query for regex routes.
pub fn matched_len(m: &PathMatch, path: &str) -> usize {
    match m {
        PathMatch::Prefix(p) | PathMatch::Exact(p) | PathMatch::PathSeparatedPrefix(p) => p.len(),
        PathMatch::Regex(_) => path_only(path).len(),
    }
}

/// `prefix_rewrite`: the matched part of the path is replaced; the rest, query included,
/// is kept. `None` when the rewrite is empty (unset).
pub fn prefix_rewrite(m: &PathMatch, rewrite: &str, path: &str) -> Option<String> {
    if rewrite.is_empty() {
        return None;
    }
    let rest = path.get(matched_len(m, path)..)?;
    Some(format!("{rewrite}{rest}"))
}

/// `regex_rewrite`: every match in the path (without query) is substituted, the query is
/// kept. An empty result means no rewrite, as in Envoy.
pub fn regex_rewrite(re: &Regex, substitution: &str, path: &str) -> Option<String> {
    let only = path_only(path);
    let new = re2::replace_all(re, only, substitution);
    if new.is_empty() {
        return None;
    }
    Some(format!("{new}{}", &path[only.len()..]))
}

/// The upstream `:path` of a forwarded request, or `None` when it keeps the original.
pub fn rewrite_path(m: &PathMatch, action: &ForwardAction, path: &str) -> Option<String> {
    if let Some(p) = action.prefix_rewrite.as_deref() {
        return prefix_rewrite(m, p, path);
    }
    if let Some((re, substitution)) = &action.regex_rewrite {
        return regex_rewrite(re, substitution, path);
    }
    None
}

/// The literal upstream authority (`host_rewrite_literal`), if any.
pub fn rewrite_host(action: &ForwardAction) -> Option<&str> {
    action.host_rewrite.as_deref().filter(|h| !h.is_empty())
}

/// `auto_host_rewrite`: the authority becomes the chosen upstream host's hostname (the
/// DNS name of STRICT/LOGICAL_DNS hosts, or an endpoint's `hostname`); hosts without one
/// leave the authority alone.
pub fn auto_host(action: &ForwardAction, upstream_hostname: Option<&str>) -> Option<String> {
    if !action.auto_host_rewrite {
        return None;
    }
    upstream_hostname
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// The authority of a mirrored request: `-shadow` appended to the host name, before any
/// port (`reviews:9080` → `reviews-shadow:9080`), so upstream logs tell mirrors apart.
pub fn shadow_authority(authority: &str) -> String {
    match authority.split_once(':') {
        Some((host, port)) if !port.contains(':') => format!("{host}-shadow:{port}"),
        _ => format!("{authority}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::testutil::forward;

    #[test]
    fn prefix_rewrite_replaces_the_matched_prefix() {
        let m = PathMatch::Prefix("/old/".into());
        assert_eq!(
            prefix_rewrite(&m, "/new/", "/old/page?x=1").as_deref(),
            Some("/new/page?x=1")
        );
        assert_eq!(prefix_rewrite(&m, "/", "/old/a/b").as_deref(), Some("/a/b"));
        assert_eq!(prefix_rewrite(&m, "", "/old/a"), None);
        // Case-insensitive match: the request's own spelling is what gets replaced.
        assert_eq!(
            prefix_rewrite(&m, "/new/", "/OLD/x").as_deref(),
            Some("/new/x")
        );
    }

    #[test]
    fn exact_and_path_separated_routes_replace_their_path() {
        let exact = PathMatch::Exact("/login".into());
        assert_eq!(
            prefix_rewrite(&exact, "/auth/login", "/login?next=/").as_deref(),
            Some("/auth/login?next=/")
        );
        let sep = PathMatch::PathSeparatedPrefix("/api".into());
        assert_eq!(
            prefix_rewrite(&sep, "/v2", "/api/x").as_deref(),
            Some("/v2/x")
        );
    }

    #[test]
    fn regex_routes_replace_the_whole_path_but_keep_the_query() {
        let m = PathMatch::Regex(Regex::new("^(?:/v[0-9]+/.*)$").unwrap());
        assert_eq!(
            prefix_rewrite(&m, "/latest", "/v1/items?q=1").as_deref(),
            Some("/latest?q=1")
        );
    }

    #[test]
    fn regex_rewrite_substitutes_in_the_path_only() {
        let re = Regex::new("^/service/([^/]+)(/.*)$").unwrap();
        assert_eq!(
            regex_rewrite(
                &re,
                "${2}/instance/${1}",
                "/service/foo/v1/api?x=/service/a/b"
            )
            .as_deref(),
            Some("/v1/api/instance/foo?x=/service/a/b")
        );
        let all = Regex::new("/+").unwrap();
        assert_eq!(regex_rewrite(&all, "/", "//a///b").as_deref(), Some("/a/b"));
        let everything = Regex::new(".*").unwrap();
        assert_eq!(
            regex_rewrite(&everything, "", "/a"),
            None,
            "empty result: no rewrite"
        );
    }

    #[test]
    fn mirrored_authorities() {
        assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_authority("reviews"), "reviews-shadow");
    }

    #[test]
    fn action_level_choices() {
        let m = PathMatch::Prefix("/old/".into());
        let mut a = forward("c");
        assert_eq!(rewrite_path(&m, &a, "/old/x"), None);
        a.prefix_rewrite = Some("/new/".into());
        assert_eq!(rewrite_path(&m, &a, "/old/x").as_deref(), Some("/new/x"));
        a.prefix_rewrite = None;
        a.regex_rewrite = Some((Regex::new("old").unwrap(), "new".into()));
        assert_eq!(rewrite_path(&m, &a, "/old/x").as_deref(), Some("/new/x"));

        assert_eq!(rewrite_host(&a), None);
        a.host_rewrite = Some("details.prod".into());
        assert_eq!(rewrite_host(&a), Some("details.prod"));

        assert_eq!(auto_host(&a, Some("api.example.com")), None);
        a.auto_host_rewrite = true;
        assert_eq!(
            auto_host(&a, Some("api.example.com")).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(auto_host(&a, None), None);
    }
}
