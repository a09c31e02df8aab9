//! The facts about a downstream request that routing decisions read.

use std::borrow::Cow;
use std::net::SocketAddr;

use http::{HeaderMap, Method};

/// A borrowed view of a request's head: what route selection, rewrites and the other
/// decisions look at. Pseudo-headers are separate fields, as in an `http::request::Parts`.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// `:scheme` of the downstream request: `http` or `https`.
    pub scheme: &'a str,
    /// `:authority`, or `Host` for HTTP/1; `None` when the request carries neither.
    pub authority: Option<&'a str>,
    /// `:path`: path and query, as received (after any HCM normalisation).
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// Peer address of the downstream connection.
    pub downstream_addr: Option<SocketAddr>,
}

impl<'a> RequestView<'a> {
    /// The view of a request as hyper hands it over; `tls` says whether the downstream
    /// connection is TLS, for requests whose URI has no scheme (HTTP/1 origin form).
    pub fn from_parts(
        parts: &'a http::request::Parts,
        tls: bool,
        downstream_addr: Option<SocketAddr>,
    ) -> RequestView<'a> {
        let scheme = parts
            .uri
            .scheme_str()
            .unwrap_or(if tls { "https" } else { "http" });
        let authority = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let path = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        RequestView {
            method: &parts.method,
            scheme,
            authority,
            path,
            headers: &parts.headers,
            downstream_addr,
        }
    }

    /// The path without query string or fragment: what path matchers and regex rewrites see.
    pub fn path_only(&self) -> &'a str {
        path_only(self.path)
    }

    /// The raw query string (after `?`), not URL-decoded.
    pub fn query(&self) -> Option<&'a str> {
        self.path.split_once('?').map(|(_, q)| q)
    }

    /// A header's value as header matchers see it: every value of the header joined with
    /// `,` (Envoy's `getAllOfHeaderAsString`). Pseudo-headers and `host` read the request
    /// head; non-UTF-8 bytes are replaced.
    pub fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        match name {
            ":authority" | "host" => return self.authority.map(Cow::Borrowed),
            ":path" => return Some(Cow::Borrowed(self.path)),
            ":method" => return Some(Cow::Borrowed(self.method.as_str())),
            ":scheme" => return Some(Cow::Borrowed(self.scheme)),
            _ => {}
        }
        header_joined(self.headers, name)
    }

    /// The first value of a header, if it is valid UTF-8.
    pub fn first(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Envoy's `isGrpcRequestHeaders`: content-type `application/grpc`, optionally followed
    /// by `+subtype` or `;params` (gRPC-Web is not gRPC here).
    pub fn is_grpc(&self) -> bool {
        self.first("content-type").is_some_and(is_grpc_content_type)
    }

    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// `x-forwarded-proto` when present, else the request's scheme.
    pub fn forwarded_proto(&self) -> &'a str {
        self.first("x-forwarded-proto").unwrap_or(self.scheme)
    }
}

pub fn path_only(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(i) => &path[..i],
        None => path,
    }
}

pub fn is_grpc_content_type(ct: &str) -> bool {
    const GRPC: &str = "application/grpc";
    ct.strip_prefix(GRPC)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'))
}

/// Every value of `name` joined with `,`; `None` when the header is absent.
pub fn header_joined<'a>(headers: &'a HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let first = String::from_utf8_lossy(first.as_bytes());
    let Some(second) = values.next() else {
        return Some(first);
    };
    let mut joined = first.into_owned();
    for v in std::iter::once(second).chain(values) {
        joined.push(',');
        joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Some(Cow::Owned(joined))
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
    fn from_http1_parts_reads_host_and_defaults_scheme() {
        let p = parts("/a/b?x=1", &[("host", "Reviews:9080")]);
        let v = RequestView::from_parts(&p, false, None);
        assert_eq!(v.scheme, "http");
        assert_eq!(v.authority, Some("Reviews:9080"));
        assert_eq!(v.path, "/a/b?x=1");
        assert_eq!(v.path_only(), "/a/b");
        assert_eq!(v.query(), Some("x=1"));
        let tls = RequestView::from_parts(&p, true, None);
        assert_eq!(tls.scheme, "https");
    }

    #[test]
    fn from_http2_parts_prefers_uri_authority() {
        let p = parts("https://ratings:9080/x", &[("host", "other")]);
        let v = RequestView::from_parts(&p, false, None);
        assert_eq!(v.scheme, "https");
        assert_eq!(v.authority, Some("ratings:9080"));
        assert_eq!(v.header("host").as_deref(), Some("ratings:9080"));
    }

    #[test]
    fn repeated_headers_are_joined_with_commas() {
        let p = parts(
            "/",
            &[("x-a", "1"), ("x-a", "2"), ("x-a", "3"), ("x-b", "z")],
        );
        let v = RequestView::from_parts(&p, false, None);
        assert_eq!(v.header("x-a").as_deref(), Some("1,2,3"));
        assert_eq!(v.header("x-b").as_deref(), Some("z"));
        assert_eq!(v.header("x-c"), None);
        assert_eq!(v.header(":method").as_deref(), Some("GET"));
        assert_eq!(v.header(":path").as_deref(), Some("/"));
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc_content_type("application/grpc"));
        assert!(is_grpc_content_type("application/grpc+proto"));
        assert!(is_grpc_content_type("application/grpc;charset=utf-8"));
        assert!(!is_grpc_content_type("application/grpc-web"));
        assert!(!is_grpc_content_type("application/json"));
    }

    #[test]
    fn path_only_drops_fragment_too() {
        assert_eq!(path_only("/a#frag"), "/a");
        assert_eq!(path_only("/a?q#f"), "/a");
        assert_eq!(path_only("/a"), "/a");
    }
}
