//! Upgrades (WebSocket over HTTP/1.1): the request goes to the upstream on a connection
//! of its own with its `Connection: upgrade` / `Upgrade` headers; when the upstream
//! answers `101 Switching Protocols`, both upgraded connections are joined and bytes
//! copied both ways until both sides close or the stream idle timeout passes.

use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::router::ForwardDecision;
use crate::upstream::Outcome as Observed;
use crate::upstream::breaker::OVERFLOW_BODY;

use super::body::{self, ProxyBody};
use super::forward::{
    Forwarded, StreamFacts, choose_host, strip_response_hop_by_hop, to_upstream_form,
};
use super::local;
use super::observer::ResponseFlag;
use super::pool::{self, AttemptHold, Protocol, Target};
use super::reset::reset_body;
use super::response::{BodyTimers, Completion};

/// The upgrade type a request asks for (`Connection: upgrade` plus `Upgrade: <type>`),
/// lowercased. HTTP/2 cleartext upgrades are not upgrades here (clients use prior
/// knowledge), as in Envoy.
pub fn requested(headers: &HeaderMap) -> Option<String> {
    let connection_upgrade = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let kind = headers
        .get(http::header::UPGRADE)?
        .to_str()
        .ok()?
        .trim()
        .to_ascii_lowercase();
    (connection_upgrade && !kind.is_empty() && kind != "h2c").then_some(kind)
}

pub enum Upgraded {
    /// No tunnel: a local reply or an upstream that declined the upgrade.
    Response(Forwarded),
    /// The upstream switched protocols; join the two sides.
    Tunnel {
        response: Response<ProxyBody>,
        upstream: OnUpgrade,
        hold: AttemptHold,
        idle: Option<Duration>,
    },
}

fn local_reply(reply: crate::router::LocalReply, completion: &mut Completion) -> Upgraded {
    completion.info_mut().response_code_details = reply.details.into();
    Upgraded::Response(Forwarded {
        response: local::into_response(reply),
        timers: BodyTimers::default(),
    })
}

pub async fn forward(
    decision: &ForwardDecision<'_>,
    facts: &StreamFacts,
    mut parts: http::request::Parts,
    completion: &mut Completion,
) -> Upgraded {
    let to = facts.reply_to;
    let idle = decision.action.idle_timeout.or(facts.stream_idle);
    let found = facts.clusters.get(decision.cluster);
    completion.info_mut().upstream_cluster = Some(match &found {
        Some(c) => c.shared_name().clone(),
        None => std::sync::Arc::from(decision.cluster),
    });
    let Some(cluster) = found else {
        completion.flag(ResponseFlag::NoClusterFound);
        return local_reply(
            local::failure(503, "", to, "cluster_not_found", |_| {}),
            completion,
        );
    };
    if let Err(e) = decision.apply_to_parts(&mut parts) {
        return local_reply(
            local::failure(500, &e.to_string(), to, "invalid_rewrite", |_| {}),
            completion,
        );
    }
    let Some(host) = choose_host(&cluster, decision, facts.hash, facts.destination, &[]) else {
        completion.flag(ResponseFlag::NoHealthyUpstream);
        return local_reply(
            local::failure(
                503,
                "no healthy upstream",
                to,
                "no_healthy_upstream",
                |_| {},
            ),
            completion,
        );
    };
    completion.info_mut().upstream_host = Some(host.address());
    completion.info_mut().attempt_count = 1;
    let Some(slot) = cluster.breakers().try_acquire_request() else {
        completion.flag(ResponseFlag::UpstreamOverflow);
        return local_reply(
            local::overloaded(OVERFLOW_BODY, to, decision.suppress_envoy_headers),
            completion,
        );
    };
    let target = Target {
        cluster: &cluster,
        host: &host,
        protocol: Protocol::Http1,
    };
    let hold = AttemptHold::new(slot, host.start_request(), None);
    let sent = async {
        let mut send = pool::open_upgradable(&target).await?;
        to_upstream_form(&mut parts, Protocol::Http1, true);
        let request = Request::from_parts(parts, body::empty());
        send.send_request(request)
            .await
            .map_err(|e| super::reset::AttemptError::send(&e, true))
    };
    let result = tokio::select! {
        r = sent => r,
        _ = facts.progress.after_end(decision.timeouts.global) => {
            completion.flag(ResponseFlag::UpstreamRequestTimeout);
            return local_reply(
                local::failure(504, "upstream request timeout", to, "response_timeout", |_| {}),
                completion,
            );
        }
    };
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            if e.kind != crate::router::ResetKind::ConnectFailure {
                cluster.report_outcome(&host, Observed::Reset, std::time::Instant::now());
            }
            completion.flag(e.reason.response_flag());
            completion.info_mut().upstream_transport_failure_reason = e.transport_failure.clone();
            let text = reset_body(&e, false);
            let reply = local_reply(
                local::failure(
                    e.reason.status(),
                    &text,
                    to,
                    super::reset::UPSTREAM_RESET_DETAILS,
                    |_| {},
                ),
                completion,
            );
            completion.info_mut().response_code_details = super::reset::reset_details(&e).into();
            return reply;
        }
    };
    cluster.report_outcome(
        &host,
        Observed::Status(response.status().as_u16()),
        std::time::Instant::now(),
    );
    completion.info_mut().response_code_details = "via_upstream".into();
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upstream = switching.then(|| hyper::upgrade::on(&mut response));
    let (mut head, incoming) = response.into_parts();
    strip_response_hop_by_hop(&mut head.headers, switching);
    decision.apply_to_response(&mut head.headers, None);
    match upstream {
        Some(upstream) => Upgraded::Tunnel {
            response: Response::from_parts(head, body::empty()),
            upstream,
            hold,
            idle,
        },
        None => Upgraded::Response(Forwarded {
            response: Response::from_parts(head, body::boxed(incoming)),
            timers: BodyTimers {
                idle,
                deadline: None,
            },
        }),
    }
}

/// Joins the two upgraded connections in the background; the completion reports when
/// the tunnel closes.
pub fn spawn_tunnel(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    idle: Option<Duration>,
    mut completion: Completion,
    hold: AttemptHold,
) {
    tokio::spawn(async move {
        let _hold = hold;
        let (down, up) = tokio::join!(downstream, upstream);
        let (Ok(down), Ok(up)) = (down, up) else {
            completion.flag(ResponseFlag::UpstreamConnectionTermination);
            return;
        };
        let (to_up, to_down) = pipe(TokioIo::new(down), TokioIo::new(up), idle).await;
        let info = completion.info_mut();
        info.bytes_received += to_up;
        info.bytes_sent += to_down;
        completion.mark_finished();
    });
}

/// Copies both ways, passing half-closes on, until both directions are done or nothing
/// moved for `idle`. Returns the bytes moved (a → b, b → a).
pub async fn pipe<A, B>(a: A, b: B, idle: Option<Duration>) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let mut a_buf = vec![0u8; 16 * 1024];
    let mut b_buf = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    let (mut a_to_b, mut b_to_a) = (0u64, 0u64);
    let idle = idle.unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
    let mut deadline = Instant::now() + idle;
    while a_open || b_open {
        tokio::select! {
            r = a_read.read(&mut a_buf), if a_open => match r {
                Ok(0) | Err(_) => {
                    a_open = false;
                    let _ = b_write.shutdown().await;
                }
                Ok(n) => {
                    if b_write.write_all(&a_buf[..n]).await.is_err() {
                        break;
                    }
                    a_to_b += n as u64;
                    deadline = Instant::now() + idle;
                }
            },
            r = b_read.read(&mut b_buf), if b_open => match r {
                Ok(0) | Err(_) => {
                    b_open = false;
                    let _ = a_write.shutdown().await;
                }
                Ok(n) => {
                    if a_write.write_all(&b_buf[..n]).await.is_err() {
                        break;
                    }
                    b_to_a += n as u64;
                    deadline = Instant::now() + idle;
                }
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    (a_to_b, b_to_a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn websocket_requests_are_upgrades_h2c_is_not() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert("upgrade", HeaderValue::from_static("WebSocket"));
        assert_eq!(requested(&h).as_deref(), Some("websocket"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        assert_eq!(requested(&h), None);
        h.remove("connection");
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(requested(&h), None);
    }

    #[tokio::test]
    async fn pipe_copies_both_ways_and_counts() {
        let (a_client, a_server) = tokio::io::duplex(64);
        let (b_client, b_server) = tokio::io::duplex(64);
        let piping = tokio::spawn(pipe(a_server, b_server, None));
        let (mut a_client, mut b_client) = (a_client, b_client);
        a_client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b_client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b_client.write_all(b"pong!").await.unwrap();
        let mut buf = [0u8; 5];
        a_client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong!");
        drop(a_client);
        drop(b_client);
        assert_eq!(piping.await.unwrap(), (4, 5));
    }
}
