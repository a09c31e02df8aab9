//! Redirect responses: the `location` a `RedirectAction` sends a request to.

use crate::config::route::{PathMatch, RedirectAction, RedirectPath, RedirectScheme};

use super::request::RequestView;
use super::rewrite;

/// The request's authority for the new URI: its port is dropped when a port redirect
/// replaces it, or when the scheme changes away from the port's default
/// (`http://a:80` → `https://a`).
fn request_host<'a>(req: &RequestView<'a>, new_scheme: &str, new_port: &str) -> &'a str {
    let host = req.authority.unwrap_or("");
    if host.is_empty() {
        return host;
    }
    let port_at = if host.starts_with('[') {
        host.rfind("]:").map(|i| i + 1)
    } else {
        host.rfind(':')
    };
    let Some(at) = port_at else {
        return host;
    };
    let port = &host[at..];
    let proto = req.forwarded_proto();
    let mut remove = !new_port.is_empty();
    if !new_scheme.eq_ignore_ascii_case(proto) {
        remove |= proto.eq_ignore_ascii_case("https") && port == ":443";
        remove |= proto.eq_ignore_ascii_case("http") && port == ":80";
    }
    if remove { &host[..at] } else { host }
}

/// The redirect's `location`. `path_match` is the route's own path condition, which a
/// prefix rewrite replaces.
pub fn location(action: &RedirectAction, path_match: &PathMatch, req: &RequestView<'_>) -> String {
    let scheme = match &action.scheme {
        RedirectScheme::Keep => req.scheme,
        RedirectScheme::Https => "https",
        RedirectScheme::Http => "http",
        RedirectScheme::Other(s) => s.as_str(),
    };
    let port = action.port.map(|p| format!(":{p}")).unwrap_or_default();
    let host = match action.host.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => h,
        None => request_host(req, scheme, &port),
    };

    // A path redirect carrying its own query keeps it, whatever `strip_query` says.
    let mut keep_query = !action.strip_query;
    let mut path = match &action.path {
        RedirectPath::Keep => req.path.to_string(),
        RedirectPath::Path(p) if p.contains('?') => {
            keep_query = true;
            p.clone()
        }
        RedirectPath::Path(p) => match req.path.find('?') {
            Some(q) => format!("{p}{}", &req.path[q..]),
            None => p.clone(),
        },
        RedirectPath::PrefixRewrite(prefix) => {
            rewrite::prefix_rewrite(path_match, prefix, req.path)
                .unwrap_or_else(|| req.path.to_string())
        }
        RedirectPath::RegexRewrite(re, substitution) => {
            rewrite::regex_rewrite(re, substitution, req.path)
                .unwrap_or_else(|| req.path.to_string())
        }
    };
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if !keep_query && let Some(q) = path.find('?') {
        path.truncate(q);
    }
    format!("{scheme}://{host}{port}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::testutil::parts;
    use regex::Regex;

    fn action() -> RedirectAction {
        RedirectAction {
            scheme: RedirectScheme::Keep,
            host: None,
            port: None,
            path: RedirectPath::Keep,
            status: 301,
            strip_query: false,
        }
    }

    fn loc(a: &RedirectAction, m: &PathMatch, uri: &str, headers: &[(&str, &str)]) -> String {
        let p = parts("GET", uri, headers);
        location(a, m, &RequestView::from_parts(&p, false, None))
    }

    fn prefix() -> PathMatch {
        PathMatch::Prefix("/old/".into())
    }

    #[test]
    fn https_redirect_drops_the_default_http_port() {
        let mut a = action();
        a.scheme = RedirectScheme::Https;
        let h = [
            ("host", "bookinfo.example.com:80"),
            ("x-forwarded-proto", "http"),
        ];
        assert_eq!(
            loc(&a, &prefix(), "/old/page?x=1", &h),
            "https://bookinfo.example.com/old/page?x=1"
        );
        let h = [
            ("host", "bookinfo.example.com:8080"),
            ("x-forwarded-proto", "http"),
        ];
        assert_eq!(
            loc(&a, &prefix(), "/p", &h),
            "https://bookinfo.example.com:8080/p"
        );
    }

    #[test]
    fn host_port_and_path_redirects() {
        let mut a = action();
        a.host = Some("new.example.com".into());
        a.path = RedirectPath::Path("/landing".into());
        assert_eq!(
            loc(&a, &prefix(), "/old/x?q=1", &[("host", "a:9080")]),
            "http://new.example.com/landing?q=1"
        );
        a.strip_query = true;
        assert_eq!(
            loc(&a, &prefix(), "/old/x?q=1", &[("host", "a:9080")]),
            "http://new.example.com/landing"
        );
        a.path = RedirectPath::Path("/landing?from=old".into());
        assert_eq!(
            loc(&a, &prefix(), "/old/x?q=1", &[("host", "a")]),
            "http://new.example.com/landing?from=old",
            "a path_redirect query wins over strip_query"
        );

        let mut p = action();
        p.port = Some(8443);
        assert_eq!(
            loc(&p, &prefix(), "/x", &[("host", "a.example.com:9080")]),
            "http://a.example.com:8443/x"
        );
        assert_eq!(
            loc(&p, &prefix(), "/x", &[("host", "[fd00::1]:9080")]),
            "http://[fd00::1]:8443/x"
        );
    }

    #[test]
    fn prefix_and_regex_rewrites() {
        let mut a = action();
        a.path = RedirectPath::PrefixRewrite("/new/".into());
        assert_eq!(
            loc(&a, &prefix(), "/old/page?x=1", &[("host", "a")]),
            "http://a/new/page?x=1"
        );
        a.strip_query = true;
        assert_eq!(
            loc(&a, &prefix(), "/old/page?x=1", &[("host", "a")]),
            "http://a/new/page"
        );

        let mut r = action();
        r.path = RedirectPath::RegexRewrite(Regex::new("^/v1/(.*)$").unwrap(), "/v2/${1}".into());
        assert_eq!(
            loc(&r, &prefix(), "/v1/items?id=3", &[("host", "a")]),
            "http://a/v2/items?id=3"
        );
        let mut s = action();
        s.scheme = RedirectScheme::Other("ftp".into());
        assert_eq!(loc(&s, &prefix(), "/f", &[("host", "a")]), "ftp://a/f");
    }
}
