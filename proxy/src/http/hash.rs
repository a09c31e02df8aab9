//! The request hash for consistent-hash load balancing (the route's `hash_policy`), with
//! the hash function and combination the upstream balancers expect.

use crate::config::route::HashPolicy;
use crate::router::RequestView;
use crate::upstream::hash::{combine, xxhash64};

/// The value of one cookie in a `Cookie` header.
fn cookie<'a>(view: &RequestView<'a>, name: &str) -> Option<&'a str> {
    view.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn query_param<'a>(view: &RequestView<'a>, name: &str) -> Option<&'a str> {
    view.query()?
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Envoy's hash of a request: each policy that yields a value contributes its xxHash64,
/// folded together in order; `None` when none applies (the balancer then picks at random).
pub fn request_hash(policies: &[HashPolicy], view: &RequestView<'_>) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for policy in policies {
        let one = match policy {
            HashPolicy::Header(name) => {
                let mut values: Vec<&[u8]> = view
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect();
                if values.is_empty() {
                    match name.as_str() {
                        ":authority" => values.extend(view.authority.map(str::as_bytes)),
                        ":path" => values.push(view.path.as_bytes()),
                        ":method" => values.push(view.method.as_str().as_bytes()),
                        _ => {}
                    }
                }
                // Several values hash in sorted order, each seeded with the previous.
                values.sort_unstable();
                let mut it = values.into_iter();
                it.next()
                    .map(|first| it.fold(xxhash64(first, 0), |seed, v| xxhash64(v, seed)))
            }
            HashPolicy::Cookie { name, .. } => {
                cookie(view, name).map(|v| xxhash64(v.as_bytes(), 0))
            }
            HashPolicy::SourceIp => view
                .downstream_addr
                .map(|a| xxhash64(a.ip().to_string().as_bytes(), 0)),
            HashPolicy::QueryParameter(name) => {
                query_param(view, name).map(|v| xxhash64(v.as_bytes(), 0))
            }
        };
        if let Some(h) = one {
            hash = Some(match hash {
                Some(acc) => combine(acc, h),
                None => h,
            });
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn header_cookie_query_and_source_ip() {
        let p = parts(
            "/x?user=alice&b=2",
            &[("x-user", "alice"), ("cookie", "a=1; session=\"s1\"")],
        );
        let view = RequestView::from_parts(&p, false, Some("10.0.0.9:1234".parse().unwrap()));
        let h = |p: HashPolicy| request_hash(&[p], &view);
        assert_eq!(
            h(HashPolicy::Header("x-user".into())),
            Some(xxhash64(b"alice", 0))
        );
        assert_eq!(h(HashPolicy::Header("x-none".into())), None);
        assert_eq!(
            h(HashPolicy::Cookie {
                name: "session".into(),
                ttl: None,
                path: String::new()
            }),
            Some(xxhash64(b"s1", 0))
        );
        assert_eq!(
            h(HashPolicy::QueryParameter("user".into())),
            Some(xxhash64(b"alice", 0))
        );
        assert_eq!(h(HashPolicy::SourceIp), Some(xxhash64(b"10.0.0.9", 0)));
        let both = request_hash(
            &[HashPolicy::Header("x-user".into()), HashPolicy::SourceIp],
            &view,
        );
        assert_eq!(
            both,
            Some(combine(xxhash64(b"alice", 0), xxhash64(b"10.0.0.9", 0)))
        );
        assert_eq!(request_hash(&[], &view), None);
    }
}
