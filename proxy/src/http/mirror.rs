//! Request mirroring (`request_mirror_policies`): a fire-and-forget copy of the request
//! to another cluster, with `-shadow` appended to the host so the receiver can tell, and
//! its response thrown away. A mirror never changes the real response: it reads the body
//! copy without pulling it, and its failures go nowhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Uri, Version, header};
use http_body_util::BodyExt;

use crate::router::rewrite::shadow_authority;
use crate::upstream::{ClusterManager, LbContext};

use super::body::ProxyBody;
use super::forward::to_upstream_form;
use super::pool::{self, Protocol, Target};

/// A mirror without a route timeout still gives up eventually.
const DEFAULT_SHADOW_TIMEOUT: Duration = Duration::from_secs(60);

/// The head of a shadow request: the forwarded head with the authority's host suffixed.
pub fn shadow_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut head = Request::new(()).into_parts().0;
    head.method = parts.method.clone();
    head.uri = parts.uri.clone();
    head.headers = parts.headers.clone();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        });
    if let Some(a) = authority {
        let shadow = shadow_authority(&a);
        if head.uri.authority().is_some() {
            let mut uri = head.uri.clone().into_parts();
            if let Ok(auth) = shadow.parse() {
                uri.authority = Some(auth);
                if let Ok(u) = Uri::from_parts(uri) {
                    head.uri = u;
                }
            }
        }
        if let Ok(v) = HeaderValue::from_str(&shadow) {
            head.headers.insert(header::HOST, v);
        }
    }
    head
}

/// Sends a shadow copy in the background.
pub fn spawn(
    clusters: Arc<ClusterManager>,
    cluster_name: &str,
    parts: &http::request::Parts,
    body: ProxyBody,
    downstream: Version,
    timeout: Option<Duration>,
    destination: SocketAddr,
) {
    let mut head = shadow_head(parts);
    let cluster_name = cluster_name.to_string();
    tokio::spawn(async move {
        let Some(cluster) = clusters.get(&cluster_name) else {
            tracing::debug!(cluster = %cluster_name, "mirror cluster not found");
            return;
        };
        let ctx = LbContext {
            original_dst: Some(destination),
            ..LbContext::default()
        };
        let Ok(host) = cluster.choose_host(&ctx) else {
            return;
        };
        let Some(slot) = cluster.breakers().try_acquire_request() else {
            return;
        };
        let protocol = Protocol::for_cluster(&cluster.config().http, downstream);
        to_upstream_form(&mut head, protocol, false);
        let request = Request::from_parts(head, body);
        let target = Target {
            cluster: &cluster,
            host: &host,
            protocol,
        };
        let hold = pool::AttemptHold::new(slot, host.start_request(), None);
        let work = async {
            if let Ok(response) = pool::send(target, request, hold).await {
                let _ = response.into_body().collect().await;
            }
        };
        let _ = tokio::time::timeout(timeout.unwrap_or(DEFAULT_SHADOW_TIMEOUT), work).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_hosts_get_the_suffix_before_the_port() {
        let p = Request::builder()
            .uri("/x")
            .header("host", "reviews:9080")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(shadow_head(&p).headers["host"], "reviews-shadow:9080");
        let h2 = Request::builder()
            .uri("http://ratings/x")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let s = shadow_head(&h2);
        assert_eq!(s.uri.authority().unwrap().as_str(), "ratings-shadow");
        assert_eq!(s.headers["host"], "ratings-shadow");
    }
}
