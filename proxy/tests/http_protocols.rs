//! Codecs and connections: HTTP/1.1 limits and keep-alive, HTTP/2 on both legs, gRPC
//! trailers, WebSocket upgrades, bad input and upstream resets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use http_support::*;
use strait_proxy::http::pool;

async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn oversized_headers_get_431_and_bad_requests_400() {
    let be = backend("be").await;
    let cm = clusters(vec![cluster("be", &[be.addr])]);
    let p = proxy(
        inline(vec![vhost(&["*"], vec![to("/", forward("be"))])]),
        cm,
    )
    .await;

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let big = "a".repeat(70 * 1024);
    let request = format!("GET / HTTP/1.1\r\nhost: svc\r\nx-big: {big}\r\n\r\n");
    let _ = s.write_all(request.as_bytes()).await;
    let reply = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let reply = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"));
    assert_eq!(be.requests(), 0);
    // The proxy still serves.
    assert_eq!(get(p.addr, "svc", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_closed() {
    let cm = clusters(vec![]);
    let mut config = inline(vec![vhost(&["*"], vec![to("/", forward("be"))])]);
    config.request_headers_timeout = Some(Duration::from_millis(300));
    let p = proxy(config, cm).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: svc\r\nx-half: ")
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let closed = read_to_close(&mut s, Duration::from_secs(3)).await;
    assert!(closed.is_some(), "the connection was not closed");
    assert!(start.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn http1_upstream_connections_are_reused_and_bounded() {
    let be = backend("be").await;
    let cm = clusters(vec![cluster("be", &[be.addr])]);
    let p = proxy(
        inline(vec![vhost(&["*"], vec![to("/", forward("be"))])]),
        cm,
    )
    .await;
    for _ in 0..10 {
        assert_eq!(get(p.addr, "svc", "/", &[]).await.status, 200);
    }
    assert_eq!(be.connections(), 1, "one keep-alive upstream connection");

    // Five clients at a time: at most five upstream connections, all pooled afterwards.
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = H1::connect(addr).await;
            for _ in 0..20 {
                assert_eq!(client.get("svc", "/slow/2", &[]).await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(be.requests(), 110);
    assert!(be.connections() <= 5, "{} connections", be.connections());
    let host = p.clusters.get("be").unwrap().hosts().hosts()[0].clone();
    assert!(host.stats().active_connections() <= 5);
    assert_eq!(host.stats().active_requests(), 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(pool::idle_http1_connections() <= 5);
    assert_eq!(
        pool::idle_http1_connections() as u64,
        host.stats().active_connections()
    );
}

#[tokio::test]
async fn max_requests_per_connection_rotates_upstream_connections() {
    let be = backend("be").await;
    let mut c = cluster("be", &[be.addr]);
    c.http.max_requests_per_connection = Some(2);
    let cm = clusters(vec![c]);
    let p = proxy(
        inline(vec![vhost(&["*"], vec![to("/", forward("be"))])]),
        cm,
    )
    .await;
    let mut client = H1::connect(p.addr).await;
    for _ in 0..6 {
        assert_eq!(client.get("svc", "/", &[]).await.status, 200);
    }
    assert_eq!(be.connections(), 3);
}

#[tokio::test]
async fn http2_downstream_and_upstream() {
    let be = h2_backend("h2be").await;
    let cm = clusters(vec![h2_cluster("h2be", &[be.addr])]);
    let p = proxy(
        inline(vec![vhost(&["*"], vec![to("/", forward("h2be"))])]),
        cm,
    )
    .await;
    let client = H2::connect(p.addr).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut c = H2 {
            send: client.send.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let req = Request::get(format!("http://svc/item/{i}"))
                .body(Full::new(Bytes::new()).map_err(|n| match n {}).boxed())
                .unwrap();
            c.send(req).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "h2be");
    }
    assert_eq!(be.connections(), 1, "one multiplexed upstream connection");
    let seen = be.last();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert!(seen.host.as_deref().is_some_and(|h| h == "svc"));
    let log = p.log.wait_for(20).await;
    assert_eq!(log[0].protocol_str(), "HTTP/2");
}

/// A gRPC-shaped HTTP/2 server: answers a message, then `grpc-status` trailers.
async fn grpc_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let te = req.headers().get("te").cloned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    trailers.insert("grpc-message", HeaderValue::from_static("fine"));
                    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                        vec![Ok(Frame::data(body)), Ok(Frame::trailers(trailers))];
                    let mut resp = Response::new(StreamBody::new(tokio_stream::iter(frames)));
                    resp.headers_mut()
                        .insert("content-type", HeaderValue::from_static("application/grpc"));
                    if let Some(te) = te {
                        resp.headers_mut().insert("x-seen-te", te);
                    }
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn grpc_request(uri: &str) -> Request<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(
            Full::new(Bytes::from_static(b"\0\0\0\0\x05hello"))
                .map_err(|n| match n {})
                .boxed(),
        )
        .unwrap()
}

#[tokio::test]
async fn grpc_trailers_pass_through_and_local_replies_are_trailers_only() {
    let grpc = grpc_backend().await;
    let cm = clusters(vec![
        h2_cluster("grpc", &[grpc]),
        h2_cluster("dead", &[dead_address()]),
    ]);
    let p = proxy(
        inline(vec![vhost(
            &["*"],
            vec![
                to("/dead.Service/", forward("dead")),
                to("/", forward("grpc")),
            ],
        )]),
        cm,
    )
    .await;
    let mut client = H2::connect(p.addr).await;
    let r = client
        .send(grpc_request("http://greeter/hello.Greeter/Say"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"\0\0\0\0\x05hello");
    let trailers = r.trailers.clone().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    assert_eq!(r.header("x-seen-te"), Some("trailers"));
    let log = p.log.wait_for(1).await;
    assert_eq!(log[0].grpc_status, Some(0));

    let r = client
        .send(grpc_request("http://greeter/dead.Service/Call"))
        .await;
    assert_eq!(r.status, 200, "gRPC local replies are HTTP 200");
    assert_eq!(r.header("grpc-status"), Some("14"));
    assert!(
        r.header("grpc-message")
            .unwrap()
            .starts_with("upstream connect error")
    );
    assert!(r.body.is_empty());
}

/// A WebSocket-ish upstream: answers `101` and echoes every byte.
async fn echo_upgrade_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|mut req: Request<hyper::body::Incoming>| async move {
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(up) = upgrade.await {
                            let mut io = TokioIo::new(up);
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    });
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    resp.headers_mut()
                        .insert("connection", HeaderValue::from_static("upgrade"));
                    resp.headers_mut()
                        .insert("upgrade", HeaderValue::from_static("websocket"));
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled() {
    let ws = echo_upgrade_backend().await;
    let cm = clusters(vec![cluster("ws", &[ws])]);
    let p = proxy(
        inline(vec![vhost(&["*"], vec![to("/", forward("ws"))])]),
        cm,
    )
    .await;
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::get("/chat")
        .header("host", "svc")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], "websocket");
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    io.write_all(b"hello over the tunnel").await.unwrap();
    let mut buf = vec![0u8; 21];
    tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello over the tunnel");
    drop(io);
    let log = p.log.wait_for(1).await;
    assert_eq!(log[0].status, Some(101));
    assert_eq!(log[0].bytes_sent, 21);

    // Upgrades the HCM does not allow are refused.
    let mut strict = inline(vec![vhost(&["*"], vec![to("/", forward("ws"))])]);
    strict.upgrade_types.clear();
    let cm = clusters(vec![cluster("ws", &[ws])]);
    let p = proxy(strict, cm).await;
    let r = get(
        p.addr,
        "svc",
        "/chat",
        &[("connection", "upgrade"), ("upgrade", "websocket")],
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn an_upstream_that_resets_is_503_uc_and_nothing_leaks() {
    // Reads the request, then closes without answering.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    let cm = clusters(vec![cluster("rst", &[addr])]);
    let p = proxy(
        inline(vec![vhost(&["*"], vec![to("/", forward("rst"))])]),
        cm,
    )
    .await;
    for _ in 0..20 {
        let r = get(p.addr, "svc", "/", &[]).await;
        assert_eq!(r.status, 503);
        assert_eq!(
            r.text(),
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
        );
    }
    let log = p.log.wait_for(20).await;
    assert_eq!(log[0].response_flags.to_string(), "UC");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cluster = p.clusters.get("rst").unwrap();
    let host = cluster.hosts().hosts()[0].clone();
    assert_eq!(host.stats().active_connections(), 0);
    assert_eq!(host.stats().active_requests(), 0);
    assert_eq!(cluster.breakers().stats().connections, 0);
    assert_eq!(cluster.breakers().stats().requests, 0);
}

#[tokio::test]
async fn connections_served_on_a_worker_thread_pool_there() {
    let be = backend("be").await;
    let cm = clusters(vec![cluster("be", &[be.addr])]);
    let service = strait_proxy::http::HttpService::new(strait_proxy::http::new_route_table(), cm);
    let hcm = std::sync::Arc::new(inline(vec![vhost(&["*"], vec![to("/", forward("be"))])]));
    let workers = strait_proxy::worker::Workers::start(1).unwrap();
    let worker = workers.iter().next().unwrap().clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    worker.spawn(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        while let Ok((s, peer)) = listener.accept().await {
            let (service, hcm) = (service.clone(), hcm.clone());
            tokio::spawn(async move { service.serve_connection(s, peer, addr, hcm).await });
        }
    });
    for _ in 0..5 {
        assert_eq!(get(addr, "svc", "/", &[]).await.text(), "be");
    }
    assert_eq!(be.connections(), 1);
    // Nothing was pooled on this (the client's) thread.
    assert_eq!(pool::idle_http1_connections(), 0);
}
