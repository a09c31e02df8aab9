//! Route selection inside a virtual host: the first route whose match holds wins.

use std::sync::Arc;

use crate::config::common::PartsPerMillion;
use crate::config::route::{PathMatch, Route, RouteMatch, VirtualHost};

use super::matchers;
use super::re2;
use super::request::RequestView;

/// Envoy's runtime-fraction check against the request's random value.
pub fn fraction_hit(fraction: PartsPerMillion, random: u64) -> bool {
    random % 1_000_000 < u64::from(fraction.0)
}

/// Whether the path (without query string) satisfies the route's path condition.
/// `case_sensitive` applies to prefix, exact and path-separated prefixes, never to regexes.
pub fn path_matches(m: &PathMatch, case_sensitive: bool, path_only: &str) -> bool {
    let starts = |p: &str| {
        if case_sensitive {
            path_only.starts_with(p)
        } else {
            path_only
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        }
    };
    match m {
        PathMatch::Prefix(p) => starts(p),
        PathMatch::Exact(p) => {
            if case_sensitive {
                path_only == p
            } else {
                path_only.eq_ignore_ascii_case(p)
            }
        }
        PathMatch::Regex(re) => re2::full_match(re, path_only),
        // The prefix must end at a segment boundary: `/api` matches `/api` and `/api/x`,
        // not `/apis`.
        PathMatch::PathSeparatedPrefix(p) => {
            starts(p) && matches!(path_only.as_bytes().get(p.len()), None | Some(b'/'))
        }
    }
}

/// All of a route's conditions, in Envoy's order (runtime fraction, gRPC, headers, query
/// parameters, path).
pub fn route_matches(m: &RouteMatch, req: &RequestView<'_>, random: u64) -> bool {
    if m.fraction.is_some_and(|f| !fraction_hit(f, random)) {
        return false;
    }
    if m.grpc && !req.is_grpc() {
        return false;
    }
    if !matchers::headers_match(&m.headers, req) {
        return false;
    }
    if !m.query_parameters.is_empty() && !matchers::queries_match(&m.query_parameters, req.query())
    {
        return false;
    }
    path_matches(&m.path, m.case_sensitive, req.path_only())
}

/// The first route of `vhost` matching the request. `random` is the request's random
/// value (Envoy's stream id), shared by runtime fractions and weighted-cluster picks.
pub fn find_route<'v>(
    vhost: &'v VirtualHost,
    req: &RequestView<'_>,
    random: u64,
) -> Option<&'v Arc<Route>> {
    vhost
        .routes
        .iter()
        .find(|r| route_matches(&r.route_match, req, random))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::{HeaderMatch, HeaderMatcher, StringMatch, StringMatcher};
    use crate::config::route::{DirectResponseAction, RouteAction};
    use regex::Regex;

    fn route(name: &str, path: PathMatch) -> Route {
        Route {
            name: name.into(),
            route_match: RouteMatch {
                path,
                case_sensitive: true,
                headers: vec![],
                query_parameters: vec![],
                fraction: None,
                grpc: false,
            },
            action: RouteAction::DirectResponse(DirectResponseAction {
                status: 200,
                body: None,
            }),
            headers: Default::default(),
            response_headers: Default::default(),
            fault: None,
            cors: None,
            operation: None,
        }
    }

    fn find(vh: &VirtualHost, uri: &str, headers: &[(&str, &str)], random: u64) -> Option<String> {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (p, _) = b.body(()).unwrap().into_parts();
        let view = RequestView::from_parts(&p, false, None);
        find_route(vh, &view, random).map(|r| r.name.to_string())
    }

    fn reviews_vhost() -> VirtualHost {
        let mut jason = route("jason", PathMatch::Prefix("/".into()));
        jason.route_match.headers.push(HeaderMatcher {
            name: "end-user".into(),
            matcher: HeaderMatch::String(StringMatcher {
                pattern: StringMatch::Exact("jason".into()),
                ignore_case: false,
            }),
            invert: false,
            treat_missing_as_empty: false,
        });
        VirtualHost {
            name: "reviews.default.svc.cluster.local:9080".into(),
            domains: vec!["reviews".into()],
            routes: vec![
                Arc::new(jason),
                Arc::new(route("default", PathMatch::Prefix("/".into()))),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn first_match_wins() {
        let vh = reviews_vhost();
        assert_eq!(
            find(&vh, "/reviews/0", &[("end-user", "jason")], 0).as_deref(),
            Some("jason")
        );
        assert_eq!(find(&vh, "/reviews/0", &[], 0).as_deref(), Some("default"));
    }

    #[test]
    fn path_forms_ignore_the_query() {
        let exact = PathMatch::Exact("/productpage".into());
        assert!(path_matches(&exact, true, "/productpage"));
        assert!(!path_matches(&exact, true, "/productpage/x"));
        assert!(!path_matches(&exact, true, "/ProductPage"));
        assert!(path_matches(&exact, false, "/ProductPage"));
        let vh = VirtualHost {
            routes: vec![Arc::new(route("exact", exact))],
            ..Default::default()
        };
        assert_eq!(
            find(&vh, "/productpage?u=normal", &[], 0).as_deref(),
            Some("exact")
        );

        let prefix = PathMatch::Prefix("/api/".into());
        assert!(path_matches(&prefix, true, "/api/v1"));
        assert!(!path_matches(&prefix, true, "/API/v1"));
        assert!(path_matches(&prefix, false, "/API/v1"));
        assert!(!path_matches(&prefix, false, "/ap"));
    }

    #[test]
    fn regex_matches_the_whole_path_without_query() {
        let re = PathMatch::Regex(Regex::new("^(?:/reviews/[0-9]+)$").unwrap());
        let vh = VirtualHost {
            routes: vec![Arc::new(route("re", re))],
            ..Default::default()
        };
        assert_eq!(find(&vh, "/reviews/12?x=y", &[], 0).as_deref(), Some("re"));
        assert_eq!(find(&vh, "/reviews/12/x", &[], 0), None);
        assert_eq!(find(&vh, "/v1/reviews/12", &[], 0), None);
    }

    #[test]
    fn path_separated_prefix_stops_at_segment_boundaries() {
        let m = PathMatch::PathSeparatedPrefix("/api".into());
        assert!(path_matches(&m, true, "/api"));
        assert!(path_matches(&m, true, "/api/"));
        assert!(path_matches(&m, true, "/api/v1"));
        assert!(!path_matches(&m, true, "/apis"));
        assert!(!path_matches(&m, true, "/ap"));
        assert!(path_matches(&m, false, "/API/v1"));
    }

    #[test]
    fn runtime_fraction_uses_the_request_random() {
        let mut canary = route("canary", PathMatch::Prefix("/".into()));
        canary.route_match.fraction = Some(PartsPerMillion(250_000));
        let vh = VirtualHost {
            routes: vec![
                Arc::new(canary),
                Arc::new(route("rest", PathMatch::Prefix("/".into()))),
            ],
            ..Default::default()
        };
        assert_eq!(find(&vh, "/", &[], 249_999).as_deref(), Some("canary"));
        assert_eq!(find(&vh, "/", &[], 250_000).as_deref(), Some("rest"));
        assert_eq!(
            find(&vh, "/", &[], 1_000_000 + 10).as_deref(),
            Some("canary")
        );
        let hits = (0..10_000u64)
            .filter(|i| {
                find(&vh, "/", &[], i.wrapping_mul(2_654_435_761)).as_deref() == Some("canary")
            })
            .count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }

    #[test]
    fn grpc_routes_need_grpc_requests() {
        let mut g = route("grpc", PathMatch::Prefix("/".into()));
        g.route_match.grpc = true;
        let vh = VirtualHost {
            routes: vec![Arc::new(g)],
            ..Default::default()
        };
        assert_eq!(
            find(
                &vh,
                "/pkg.Svc/Call",
                &[("content-type", "application/grpc")],
                0
            )
            .as_deref(),
            Some("grpc")
        );
        assert_eq!(
            find(&vh, "/pkg.Svc/Call", &[("content-type", "text/plain")], 0),
            None
        );
        assert_eq!(find(&vh, "/pkg.Svc/Call", &[], 0), None);
    }

    #[test]
    fn query_conditions_apply() {
        let mut q = route("q", PathMatch::Prefix("/".into()));
        q.route_match
            .query_parameters
            .push(crate::config::common::QueryParameterMatcher {
                name: "version".into(),
                matcher: Some(StringMatcher {
                    pattern: StringMatch::Exact("v2".into()),
                    ignore_case: false,
                }),
            });
        let vh = VirtualHost {
            routes: vec![Arc::new(q)],
            ..Default::default()
        };
        assert_eq!(find(&vh, "/x?version=v2", &[], 0).as_deref(), Some("q"));
        assert_eq!(find(&vh, "/x?version=v1", &[], 0), None);
        assert_eq!(find(&vh, "/x", &[], 0), None);
    }
}
