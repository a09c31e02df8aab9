//! CORS (`envoy.filters.http.cors`): answering preflights and decorating responses to
//! cross-origin requests. The route's policy is consulted first and the virtual host's
//! fills in each setting the route leaves empty.

use http::{HeaderMap, HeaderValue, Method};

use crate::config::route::CorsPolicy;

use super::matchers::string_matches;
use super::request::RequestView;

const ALLOW_ORIGIN: &str = "access-control-allow-origin";
const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
const ALLOW_METHODS: &str = "access-control-allow-methods";
const ALLOW_HEADERS: &str = "access-control-allow-headers";
const MAX_AGE: &str = "access-control-max-age";
const EXPOSE_HEADERS: &str = "access-control-expose-headers";
const REQUEST_METHOD: &str = "access-control-request-method";
const REQUEST_HEADERS: &str = "access-control-request-headers";

/// The policies in force for a request, most specific first.
#[derive(Clone, Copy, Debug)]
pub struct CorsPolicies<'c> {
    policies: [Option<&'c CorsPolicy>; 2],
}

impl<'c> CorsPolicies<'c> {
    pub fn new(route: Option<&'c CorsPolicy>, vhost: Option<&'c CorsPolicy>) -> CorsPolicies<'c> {
        CorsPolicies {
            policies: [route, vhost],
        }
    }

    fn iter(&self) -> impl Iterator<Item = &'c CorsPolicy> {
        self.policies.into_iter().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    fn first_str(&self, f: impl Fn(&'c CorsPolicy) -> &'c str) -> &'c str {
        self.iter().map(f).find(|s| !s.is_empty()).unwrap_or("")
    }

    fn allow_credentials(&self) -> bool {
        self.iter()
            .find_map(|p| p.allow_credentials)
            .unwrap_or(false)
    }

    fn forward_not_matching_preflights(&self) -> bool {
        self.iter()
            .next()
            .is_none_or(|p| p.forward_not_matching_preflights)
    }

    /// Whether `origin` is allowed: any matcher of the first policy that has some matches
    /// it (or matches `*`).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.iter()
            .map(|p| &p.allow_origins)
            .find(|o| !o.is_empty())
            .is_some_and(|origins| {
                origins
                    .iter()
                    .any(|m| string_matches(m, "*") || string_matches(m, origin))
            })
    }
}

/// What the CORS filter does with a request.
#[derive(Clone, Debug, PartialEq)]
pub enum CorsOutcome {
    /// Not a cross-origin request (no policy or no `Origin`): nothing to do.
    None,
    /// A preflight to answer with 200 and these headers, without forwarding.
    Preflight(HeaderMap),
    /// Forward the request; set these headers on its response (empty when the origin is
    /// not allowed).
    Response(HeaderMap),
}

fn insert(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

pub fn evaluate(policies: CorsPolicies<'_>, req: &RequestView<'_>) -> CorsOutcome {
    if policies.is_empty() {
        return CorsOutcome::None;
    }
    let Some(origin) = req.first("origin").filter(|o| !o.is_empty()) else {
        return CorsOutcome::None;
    };
    let allowed = policies.origin_allowed(origin);
    let request_method = req.first(REQUEST_METHOD).unwrap_or("");
    let preflight = *req.method == Method::OPTIONS && !request_method.is_empty();

    if !preflight || (!allowed && policies.forward_not_matching_preflights()) {
        let mut h = HeaderMap::new();
        if allowed {
            insert(&mut h, ALLOW_ORIGIN, origin);
            if policies.allow_credentials() {
                insert(&mut h, ALLOW_CREDENTIALS, "true");
            }
            let expose = policies.first_str(|p| &p.expose_headers);
            if !expose.is_empty() {
                insert(&mut h, EXPOSE_HEADERS, expose);
            }
        }
        return CorsOutcome::Response(h);
    }

    let mut h = HeaderMap::new();
    if allowed {
        insert(&mut h, ALLOW_ORIGIN, origin);
    }
    if policies.allow_credentials() {
        insert(&mut h, ALLOW_CREDENTIALS, "true");
    }
    let methods = policies.first_str(|p| &p.allow_methods);
    match methods {
        "" => {}
        "*" => insert(&mut h, ALLOW_METHODS, request_method),
        m => insert(&mut h, ALLOW_METHODS, m),
    }
    let headers = policies.first_str(|p| &p.allow_headers);
    match headers {
        "" => {}
        "*" => insert(
            &mut h,
            ALLOW_HEADERS,
            req.first(REQUEST_HEADERS).unwrap_or(""),
        ),
        v => insert(&mut h, ALLOW_HEADERS, v),
    }
    let max_age = policies.first_str(|p| &p.max_age);
    if !max_age.is_empty() {
        insert(&mut h, MAX_AGE, max_age);
    }
    CorsOutcome::Preflight(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::{StringMatch, StringMatcher};
    use crate::router::testutil::parts;

    fn istio_policy() -> CorsPolicy {
        CorsPolicy {
            allow_origins: vec![StringMatcher {
                pattern: StringMatch::Exact("https://bookinfo.example.com".into()),
                ignore_case: false,
            }],
            allow_methods: "GET,POST".into(),
            allow_headers: "x-custom".into(),
            expose_headers: "x-trace".into(),
            max_age: "86400".into(),
            allow_credentials: Some(true),
            forward_not_matching_preflights: true,
        }
    }

    fn run(policies: CorsPolicies<'_>, method: &str, headers: &[(&str, &str)]) -> CorsOutcome {
        let p = parts(method, "/productpage", headers);
        evaluate(policies, &RequestView::from_parts(&p, false, None))
    }

    fn preflight_headers(origin: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-custom"),
        ]
    }

    #[test]
    fn allowed_preflight_is_answered() {
        let p = istio_policy();
        let out = run(
            CorsPolicies::new(Some(&p), None),
            "OPTIONS",
            &preflight_headers("https://bookinfo.example.com"),
        );
        let CorsOutcome::Preflight(h) = out else {
            panic!("{out:?}")
        };
        assert_eq!(h[ALLOW_ORIGIN], "https://bookinfo.example.com");
        assert_eq!(h[ALLOW_METHODS], "GET,POST");
        assert_eq!(h[ALLOW_HEADERS], "x-custom");
        assert_eq!(h[MAX_AGE], "86400");
        assert_eq!(h[ALLOW_CREDENTIALS], "true");
        assert!(!h.contains_key(EXPOSE_HEADERS));
    }

    #[test]
    fn preflight_from_other_origins() {
        let mut p = istio_policy();
        let out = run(
            CorsPolicies::new(Some(&p), None),
            "OPTIONS",
            &preflight_headers("https://evil.example"),
        );
        assert_eq!(
            out,
            CorsOutcome::Response(HeaderMap::new()),
            "forwarded untouched"
        );
        p.forward_not_matching_preflights = false;
        let out = run(
            CorsPolicies::new(Some(&p), None),
            "OPTIONS",
            &preflight_headers("https://evil.example"),
        );
        let CorsOutcome::Preflight(h) = out else {
            panic!("{out:?}")
        };
        assert!(!h.contains_key(ALLOW_ORIGIN));
        assert_eq!(h[ALLOW_METHODS], "GET,POST");
    }

    #[test]
    fn simple_requests_get_response_headers() {
        let p = istio_policy();
        let out = run(
            CorsPolicies::new(Some(&p), None),
            "GET",
            &[("origin", "https://bookinfo.example.com")],
        );
        let CorsOutcome::Response(h) = out else {
            panic!("{out:?}")
        };
        assert_eq!(h[ALLOW_ORIGIN], "https://bookinfo.example.com");
        assert_eq!(h[ALLOW_CREDENTIALS], "true");
        assert_eq!(h[EXPOSE_HEADERS], "x-trace");
        assert!(!h.contains_key(ALLOW_METHODS));

        assert_eq!(
            run(CorsPolicies::new(Some(&p), None), "GET", &[]),
            CorsOutcome::None
        );
        assert_eq!(
            run(CorsPolicies::new(None, None), "GET", &[("origin", "x")]),
            CorsOutcome::None
        );
        // OPTIONS without access-control-request-method is not a preflight.
        assert!(matches!(
            run(
                CorsPolicies::new(Some(&p), None),
                "OPTIONS",
                &[("origin", "https://bookinfo.example.com")]
            ),
            CorsOutcome::Response(_)
        ));
    }

    #[test]
    fn wildcards_and_fallback_to_the_virtual_host() {
        let route = CorsPolicy {
            allow_methods: "*".into(),
            allow_headers: "*".into(),
            ..Default::default()
        };
        let vhost = CorsPolicy {
            allow_origins: vec![StringMatcher {
                pattern: StringMatch::Exact("*".into()),
                ignore_case: false,
            }],
            max_age: "60".into(),
            ..istio_policy()
        };
        let out = run(
            CorsPolicies::new(Some(&route), Some(&vhost)),
            "OPTIONS",
            &preflight_headers("https://anything.example"),
        );
        let CorsOutcome::Preflight(h) = out else {
            panic!("{out:?}")
        };
        assert_eq!(h[ALLOW_ORIGIN], "https://anything.example");
        assert_eq!(h[ALLOW_METHODS], "POST", "echoes the requested method");
        assert_eq!(h[ALLOW_HEADERS], "x-custom", "echoes the requested headers");
        assert_eq!(h[MAX_AGE], "60", "from the virtual host");
        assert_eq!(h[ALLOW_CREDENTIALS], "true", "from the virtual host");
    }
}
