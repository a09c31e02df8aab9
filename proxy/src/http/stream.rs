//! One downstream request through the HTTP connection manager: the HCM's header work
//! (host port, path normalisation, `x-forwarded-*`, `x-request-id`, internal-only
//! `x-envoy-*`), routing, the fault filter's delay, then a local reply, an upgrade or
//! forwarding; the response leaves with a [`Completion`] that reports it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri, Version, header};
use hyper::body::Body;
use tokio::time::Instant;

use crate::config::listener::HttpConnectionManager;
use crate::router::downstream::{
    DownstreamConfig, DownstreamConnection, mutate_request_headers, strip_any_host_port,
};
use crate::router::local_reply::{ReplyTo, local_reply};
use crate::router::{Outcome, RequestView, RouterOptions};
use crate::upstream::ClusterManager;

use super::body::{self, BoxError, ProxyBody};
use super::forward::{self, Forwarded, StreamFacts};
use super::local;
use super::observer::{HeadText, RequestInfo, RequestObserver, ResponseFlag};
use super::path;
use super::progress::{Progress, TrackedBody};
use super::response::{self, BodyTimers, Completion};
use super::routes::{self, RouteTable};
use super::upgrade::{self, Upgraded};

/// What every stream of the service shares.
pub struct Shared {
    pub routes: RouteTable,
    pub clusters: Arc<ClusterManager>,
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// Requests currently delayed or aborted by the fault filter.
    pub active_faults: Arc<AtomicU32>,
}

/// What every stream of one connection shares.
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    pub hcm: Arc<HttpConnectionManager>,
    pub peer: SocketAddr,
    pub destination: SocketAddr,
    pub downstream: DownstreamConfig,
    pub router: RouterOptions,
    /// Held by each stream until it is done (the connection's idle timer watches it).
    pub streams: Arc<super::server::ActiveStreams>,
    /// The `server` header every response gets.
    pub server_header: HeaderValue,
}

struct FaultGuard(Arc<AtomicU32>);

impl Drop for FaultGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn set_authority(parts: &mut http::request::Parts, authority: &str) {
    if parts.uri.authority().is_some() {
        let mut uri = parts.uri.clone().into_parts();
        if let Ok(a) = authority.parse() {
            uri.authority = Some(a);
            if let Ok(u) = Uri::from_parts(uri) {
                parts.uri = u;
            }
        }
    }
    if parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority)
    {
        parts.headers.insert(header::HOST, v);
    }
}

fn set_path(parts: &mut http::request::Parts, path: &str) {
    let mut uri = parts.uri.clone().into_parts();
    if let Ok(pq) = path.parse() {
        uri.path_and_query = Some(pq);
        if let Ok(u) = Uri::from_parts(uri) {
            parts.uri = u;
        }
    }
}

/// The HCM's changes to the request head before routing.
fn prepare_head(ctx: &ConnCtx, parts: &mut http::request::Parts, upgrade: bool) {
    let hcm = &ctx.hcm;
    if hcm.strip_any_host_port {
        let view = RequestView::from_parts(parts, false, None);
        if let Some(a) = view.authority {
            let stripped = strip_any_host_port(a);
            if stripped.len() != a.len() {
                let stripped = stripped.to_string();
                set_authority(parts, &stripped);
            }
        }
    }
    let normal = parts
        .uri
        .path_and_query()
        .and_then(|pq| path::normalize(pq.as_str(), hcm.normalize_path, hcm.merge_slashes));
    if let Some(normal) = normal {
        set_path(parts, &normal);
    }
    let conn = DownstreamConnection {
        remote: ctx.peer,
        tls: false,
    };
    let mut rng = rand::rng();
    mutate_request_headers(
        &mut parts.headers,
        &ctx.downstream,
        &conn,
        upgrade,
        &mut rng,
    );
}

fn record_request(info: &mut RequestInfo, parts: &http::request::Parts, keep_headers: bool) {
    // As `RequestView` reads it: the URI's authority (HTTP/2, absolute-form HTTP/1),
    // else `Host`.
    info.authority = match parts.uri.authority() {
        Some(a) => Some(HeadText::Authority(a.clone())),
        None => parts
            .headers
            .get(header::HOST)
            .filter(|h| h.to_str().is_ok())
            .map(|h| HeadText::Header(h.clone())),
    };
    info.scheme = if parts.uri.scheme_str() == Some("https") {
        "https"
    } else {
        "http"
    };
    info.grpc_request = RequestView::from_parts(parts, false, None).is_grpc();
    if keep_headers {
        info.request_headers = parts.headers.clone();
    }
}

fn finish(
    mut response: Response<ProxyBody>,
    completion: Completion,
    timers: BodyTimers,
    ctx: &ConnCtx,
    version: Version,
) -> Response<ProxyBody> {
    *response.version_mut() = match version {
        Version::HTTP_2 => Version::HTTP_2,
        Version::HTTP_10 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    set_server(&mut response, ctx);
    response::finish(response, completion, timers)
}

/// Envoy's default `server_header_transformation` (OVERWRITE), upgrades included.
fn set_server(response: &mut Response<ProxyBody>, ctx: &ConnCtx) {
    response
        .headers_mut()
        .insert(header::SERVER, ctx.server_header.clone());
}

/// Serves one request whose body is `B`: hyper's for HTTP/1, the `h2` crate's for
/// HTTP/2.
pub async fn handle<B>(ctx: Arc<ConnCtx>, mut request: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    let upgrade_type =
        upgrade::requested(request.headers()).filter(|_| request.version() != Version::HTTP_2);
    let on_upgrade = upgrade_type
        .as_ref()
        .map(|_| hyper::upgrade::on(&mut request));
    let (mut parts, incoming) = request.into_parts();
    let version = parts.version;
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut info = RequestInfo::new(
        parts.method.clone(),
        path,
        version,
        ctx.peer,
        ctx.destination,
    );
    info.connection_manager = Some(ctx.hcm.clone());
    let observer = ctx.shared.observer.clone();
    let keep_headers = observer.as_ref().is_some_and(|o| o.wants_headers());
    let mut completion = Completion::new(info, start, observer);
    completion.hold_stream(ctx.streams.start());
    let progress = Progress::new(start);
    completion.set_progress(progress.clone());
    let body = body::boxed(TrackedBody::new(incoming, progress.clone()));

    prepare_head(&ctx, &mut parts, upgrade_type.is_some());
    record_request(completion.info_mut(), &parts, keep_headers);

    let Some(table) = routes::resolve(&ctx.hcm.route_source, &ctx.shared.routes) else {
        let view = RequestView::from_parts(&parts, false, Some(ctx.peer));
        let to = ReplyTo {
            grpc: view.is_grpc(),
            head: view.is_head(),
        };
        completion.flag(ResponseFlag::NoRouteFound);
        completion.info_mut().response_code_details = "route_not_found".into();
        let reply = local_reply(
            404,
            bytes::Bytes::new(),
            None,
            to,
            "route_not_found",
            |_| {},
        );
        return finish(
            local::into_response(reply),
            completion,
            BodyTimers::default(),
            &ctx,
            version,
        );
    };

    let view = RequestView::from_parts(&parts, false, Some(ctx.peer));
    let reply_to = ReplyTo {
        grpc: view.is_grpc(),
        head: view.is_head(),
    };
    let options = RouterOptions {
        active_faults: ctx.shared.active_faults.load(Ordering::Acquire),
        ..ctx.router
    };
    let decision = {
        let mut rng = rand::rng();
        table.route_request(&view, &options, &mut rng)
    };
    let hash = match &decision.outcome {
        Outcome::Forward(fd) => super::hash::request_hash(&fd.action.hash_policy, &view),
        _ => None,
    };
    completion.info_mut().route_name = decision.route.map(|r| r.name.clone());
    if decision.fault_active {
        ctx.shared.active_faults.fetch_add(1, Ordering::AcqRel);
        completion.hold(FaultGuard(ctx.shared.active_faults.clone()));
    }
    if let Some(delay) = decision.delay {
        completion.flag(ResponseFlag::DelayInjected);
        tokio::time::sleep(delay).await;
    }

    let facts = StreamFacts {
        clusters: ctx.shared.clusters.clone(),
        version,
        destination: ctx.destination,
        reply_to,
        hash,
        stream_idle: ctx.hcm.stream_idle_timeout,
        request_timeout: ctx.hcm.request_timeout,
        progress,
    };
    let upgrade_requested = upgrade_type.is_some();
    let mut forwarded = match decision.outcome {
        Outcome::Direct { reason, reply } => {
            if let Some(flag) = reason.response_flag().and_then(ResponseFlag::from_code) {
                completion.flag(flag);
            }
            completion.info_mut().response_code_details = reply.details.into();
            Forwarded {
                response: local::into_response(reply),
                timers: BodyTimers::default(),
            }
        }
        Outcome::Redirect { reply, .. } => {
            completion.info_mut().response_code_details = reply.details.into();
            Forwarded {
                response: local::into_response(reply),
                timers: BodyTimers::default(),
            }
        }
        Outcome::Forward(fd) => match (upgrade_type, on_upgrade) {
            (Some(kind), Some(on_upgrade)) => {
                let allowed = ctx.hcm.upgrade_types.contains(&kind)
                    || fd.action.upgrade_types.contains(&kind);
                if !allowed {
                    completion.info_mut().response_code_details = "upgrade_failed".into();
                    let reply = local_reply(
                        403,
                        bytes::Bytes::new(),
                        None,
                        reply_to,
                        "upgrade_failed",
                        |_| {},
                    );
                    Forwarded {
                        response: local::into_response(reply),
                        timers: BodyTimers::default(),
                    }
                } else {
                    match upgrade::forward(&fd, &facts, parts, &mut completion).await {
                        Upgraded::Response(f) => f,
                        Upgraded::Tunnel {
                            mut response,
                            upstream,
                            hold,
                            idle,
                        } => {
                            *response.version_mut() = Version::HTTP_11;
                            set_server(&mut response, &ctx);
                            completion.response_started(&response);
                            upgrade::spawn_tunnel(on_upgrade, upstream, idle, completion, hold);
                            return response;
                        }
                    }
                }
            }
            _ => forward::forward(&fd, &facts, parts, body, &mut completion).await,
        },
    };
    if upgrade_requested {
        // As Envoy's HTTP/1 codec: after an upgrade that did not happen, the connection
        // is in an unknown state, so it closes.
        forwarded
            .response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    finish(
        forwarded.response,
        completion,
        forwarded.timers,
        &ctx,
        version,
    )
}
