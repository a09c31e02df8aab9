//! strait-proxy against a stock Envoy, as a true differential: each scenario starts the
//! same mesh (pilot-discovery, the same config, the same iptables capture) once with an
//! Envoy sidecar and once with a strait-proxy sidecar, runs the same script through it,
//! and records what a client observes (status codes, which backend answered, the
//! response headers that are deterministic, bodies of local replies, gRPC statuses and
//! trailers, bytes echoed). The two records must be equal; a few expectations on the
//! reference keep a scenario from passing by breaking in both proxies alike.
//!
//! Each scenario runs with state-of-the-world and with delta ADS. The cases that
//! `pilot_envoy.rs` already runs against both proxies (weighted and header routing,
//! faults, timeouts, retries, rewrites, direct responses, config edits, EDS-only pushes,
//! bad config) are not repeated here. Needs root and Envoy 1.40.
//!
//! Two known differences are left out of the comparison, each where it is recorded:
//! hyper frames a bodiless reply to HEAD without Envoy's `transfer-encoding: chunked`, and
//! writes its own bodiless answer to a request head it cannot parse (Envoy's carries the
//! reason phrase as a body). Status lines and closed connections are still compared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http::{HeaderMap, Method};
use serde_json::{Value, json};
use strait_e2e::backend::grpc::{EchoRequest, GrpcBackend, GrpcEchoClient};
use strait_e2e::backend::tcp::{TcpMode, TcpServer};
use strait_e2e::capture;
use strait_e2e::mesh::{BookinfoMesh, MeshOptions, SidecarKind, single_pod_service};
use strait_e2e::{AdsApi, Backend, Netns, RequestSpec, Response, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CONFIGURED: Duration = Duration::from_secs(30);

/// What one run of a scenario observed, step by step.
type Observed = BTreeMap<String, Value>;

/// Each scenario runs with both ADS flavours; each run compares strait-proxy with Envoy.
macro_rules! differential {
    ($scenario:ident, $expect:ident) => {
        mod $scenario {
            use strait_e2e::AdsApi;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sotw() {
                super::compare(
                    stringify!($scenario),
                    AdsApi::Sotw,
                    super::$scenario,
                    super::$expect,
                )
                .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delta() {
                super::compare(
                    stringify!($scenario),
                    AdsApi::Delta,
                    super::$scenario,
                    super::$expect,
                )
                .await
            }
        }
    };
}

differential!(local_replies_and_response_headers, expect_local_replies);
differential!(websocket_echo, expect_websocket);
differential!(grpc_unary_and_streaming, expect_grpc);
differential!(tcp_proxy_and_passthrough, expect_tcp);
differential!(push_under_load, expect_push_under_load);
differential!(bad_requests_and_upstream_resets, expect_bad_requests);

async fn compare<S, F>(name: &str, api: AdsApi, scenario: S, expect: fn(&Observed))
where
    S: Fn(SidecarKind, AdsApi) -> F,
    F: Future<Output = Observed>,
{
    let envoy = scenario(SidecarKind::Envoy, api).await;
    let strait = scenario(SidecarKind::Strait, api).await;
    let keys: BTreeSet<&String> = envoy.keys().chain(strait.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| envoy.get(*k) != strait.get(*k))
        .map(|k| {
            let show = |o: &Observed| o.get(k).map_or("<missing>".into(), |v| v.to_string());
            format!(
                "  {k}:\n    envoy:  {}\n    strait: {}",
                show(&envoy),
                show(&strait)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{name} ({api:?}): strait-proxy differs from Envoy in {} step(s):\n{}",
        differences.len(),
        differences.join("\n")
    );
    expect(&envoy);
}

async fn start(sidecar: SidecarKind, api: AdsApi, options: MeshOptions) -> BookinfoMesh {
    let mesh = BookinfoMesh::start(MeshOptions {
        api,
        sidecar,
        ..options
    })
    .await
    .expect("mesh starts");
    let info = mesh.envoy.admin_get("/server_info").await.unwrap().text();
    assert_eq!(
        info.contains("strait-proxy"),
        sidecar == SidecarKind::Strait,
        "{sidecar:?} sidecar answered /server_info with {info}"
    );
    mesh.wait_configured(CONFIGURED)
        .await
        .expect("sidecar configured");
    mesh
}

// ---------------------------------------------------------------------------------------
// Observations: what a client sees, without what varies from one request to the next.

/// Header values that differ between runs (or between two identical requests): only
/// their presence is compared.
const VOLATILE: [&str; 8] = [
    "date",
    "x-request-id",
    "x-envoy-upstream-service-time",
    "sec-websocket-accept",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "traceparent",
];

fn headers(map: &HeaderMap, volatile_length: bool) -> Value {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (name, value) in map {
        let name = name.as_str();
        let value = if VOLATILE.contains(&name) || (volatile_length && name == "content-length") {
            "*".to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        match out.get_mut(name) {
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(existing) => *existing = json!([existing.clone(), value]),
            None => {
                out.insert(name.to_string(), Value::String(value));
            }
        }
    }
    json!(out)
}

/// A backend's JSON echo of the request it got, or `None` for anything else.
fn echo(r: &Response) -> Option<Value> {
    r.json().ok().filter(|v| v.get("name").is_some())
}

/// Status, headers, and either what the backend saw or the local reply's body.
fn http(r: &Response) -> Value {
    match echo(r) {
        Some(seen) => json!({
            "status": r.status,
            "version": format!("{:?}", r.version),
            "headers": headers(&r.headers, true),
            "backend": format!("{}-{}", seen["name"].as_str().unwrap_or(""), seen["version"].as_str().unwrap_or("")),
            "upstream": {
                "method": seen["method"],
                "path": seen["path"],
                "host": seen["host"],
                "protocol": seen["protocol"],
                "body_bytes": seen["body_bytes"],
            },
        }),
        None => json!({
            "status": r.status,
            "version": format!("{:?}", r.version),
            "headers": headers(&r.headers, false),
            "body": r.text(),
        }),
    }
}

fn outcome(r: anyhow::Result<Response>) -> Value {
    match r {
        Ok(r) => http(&r),
        Err(e) => json!({"error": format!("{e:#}")}),
    }
}

/// The request headers a backend saw, values of the volatile ones masked.
fn upstream_request_headers(seen: &Value) -> Value {
    let mut out = BTreeMap::new();
    for (name, value) in seen["headers"].as_object().cloned().unwrap_or_default() {
        let value = if VOLATILE.contains(&name.as_str()) {
            json!("*")
        } else {
            value
        };
        out.insert(name, value);
    }
    json!(out)
}

fn status_of(o: &Observed, step: &str) -> Option<u64> {
    o.get(step).and_then(|v| v["status"].as_u64())
}

// ---------------------------------------------------------------------------------------
// 404, 503 (no healthy upstream, connection refused, overflow), header mutations.

const DESTINATION_RULES: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details, namespace: default}
spec:
  host: details
  trafficPolicy:
    connectionPool:
      http: {http2MaxRequests: 1}
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage, namespace: default}
spec:
  host: productpage
  subsets:
  - {name: v9, labels: {version: v9}}
"#;

const ROUTES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v3}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - name: headers
    match: [{uri: {prefix: /v1/headers}}]
    headers:
      request:
        add: {x-req-added: route}
        set: {x-req-set: route}
        remove: [x-drop-me]
      response:
        add: {x-resp-added: route}
        set: {content-type: text/x-strait}
        remove: [x-backend]
    route:
    - destination: {host: ratings, subset: v1}
      headers:
        response:
          add: {x-dest-added: destination}
  - name: plain
    match: [{uri: {prefix: /v1}}]
    route: [{destination: {host: ratings, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage]
  http:
  - match: [{uri: {prefix: /v9}}]
    route: [{destination: {host: productpage, subset: v9}}]
  - match: [{uri: {prefix: /noretry}}]
    retries: {attempts: 0}
    route: [{destination: {host: productpage}}]
  - route: [{destination: {host: productpage}}]
"#;

async fn local_replies_and_response_headers(sidecar: SidecarKind, api: AdsApi) -> Observed {
    let mesh = start(
        sidecar,
        api,
        MeshOptions {
            extra_configs: vec![
                ("destination-rules.yaml".into(), DESTINATION_RULES.into()),
                ("virtual-services.yaml".into(), ROUTES.into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let ratings = BookinfoMesh::service_addr("ratings");
    let productpage = BookinfoMesh::service_addr("productpage");
    let details = BookinfoMesh::service_addr("details");
    let h1 = &mesh.client;
    let h2 = mesh.client.clone().h2c();
    let mut o = Observed::new();

    o.insert(
        "no route matches".into(),
        outcome(h1.get(ratings, "ratings", "/other").await),
    );
    o.insert(
        "no route matches (h2c)".into(),
        outcome(h2.get(ratings, "ratings", "/other").await),
    );
    let mut head = outcome(
        h1.send(
            ratings,
            &RequestSpec::get("ratings", "/other").method(Method::HEAD),
        )
        .await,
    );
    // Known difference: Envoy frames a bodiless reply to HEAD with `transfer-encoding:
    // chunked` (and sends no chunk); hyper's HTTP/1 encoder never writes that header for
    // HEAD. It carries nothing for a client, which reads no body after HEAD either way.
    if let Some(h) = head["headers"].as_object_mut() {
        h.remove("transfer-encoding");
    }
    o.insert("no route matches (HEAD)".into(), head);
    o.insert(
        "subset without endpoints".into(),
        outcome(h1.get(productpage, "productpage", "/v9").await),
    );
    o.insert(
        "subset without endpoints (h2c)".into(),
        outcome(h2.get(productpage, "productpage", "/v9").await),
    );
    // productpage's only endpoint is the client's own pod, where nothing listens.
    o.insert(
        "endpoint refuses connections".into(),
        outcome(h1.get(productpage, "productpage", "/").await),
    );
    o.insert(
        "endpoint refuses connections (no retries)".into(),
        outcome(h1.get(productpage, "productpage", "/noretry").await),
    );
    let headers_spec = RequestSpec::get("ratings", "/v1/headers")
        .header("x-drop-me", "1")
        .header("x-req-set", "client");
    let r = h1.send(ratings, &headers_spec).await.unwrap();
    o.insert("header mutations".into(), http(&r));
    let seen = echo(&r).unwrap_or_default();
    o.insert(
        "header mutations: upstream request headers".into(),
        json!({
            "x-req-added": seen["headers"]["x-req-added"],
            "x-req-set": seen["headers"]["x-req-set"],
            "x-drop-me": seen["headers"]["x-drop-me"],
        }),
    );
    o.insert(
        "header mutations (h2c)".into(),
        outcome(h2.send(ratings, &headers_spec).await),
    );
    let r = h1.get(ratings, "ratings", "/v1/plain?q=1").await.unwrap();
    o.insert("plain".into(), http(&r));
    o.insert(
        "plain: upstream request headers".into(),
        upstream_request_headers(&echo(&r).unwrap_or_default()),
    );
    let r = h2.get(ratings, "ratings", "/v1/plain").await.unwrap();
    o.insert("plain (h2c)".into(), http(&r));
    o.insert(
        "plain (h2c): upstream request headers".into(),
        upstream_request_headers(&echo(&r).unwrap_or_default()),
    );
    o.insert(
        "POST with a 100 KiB body".into(),
        outcome(
            h1.send(
                ratings,
                &RequestSpec::get("ratings", "/v1/upload")
                    .method(Method::POST)
                    .body(vec![b'x'; 100 * 1024]),
            )
            .await,
        ),
    );

    // max_requests 1: of three concurrent slow requests, one goes through, the others
    // overflow the circuit breaker.
    let slow = RequestSpec::get("details", "/delay/400");
    let (a, b, c) = tokio::join!(
        h1.send(details, &slow),
        h1.send(details, &slow),
        h1.send(details, &slow)
    );
    let mut overflow: Vec<String> = [a, b, c]
        .into_iter()
        .map(|r| outcome(r).to_string())
        .collect();
    overflow.sort();
    o.insert("circuit breaker overflow".into(), json!(overflow));

    let tally = h1
        .tally(
            BookinfoMesh::service_addr("reviews"),
            &RequestSpec::get("reviews", "/"),
            200,
        )
        .await;
    let v1 = tally.count("reviews-v1");
    o.insert(
        "80/20 split".into(),
        json!({
            "backends": tally.backends.keys().collect::<Vec<_>>(),
            "statuses": tally.statuses,
            "errors": tally.errors,
            "v1 share within 65-95%": (130..=190).contains(&v1),
        }),
    );
    o
}

fn expect_local_replies(o: &Observed) {
    assert_eq!(status_of(o, "no route matches"), Some(404), "{o:#?}");
    assert_eq!(
        status_of(o, "subset without endpoints"),
        Some(503),
        "{o:#?}"
    );
    assert_eq!(
        o["subset without endpoints"]["body"], "no healthy upstream",
        "{o:#?}"
    );
    assert_eq!(
        status_of(o, "endpoint refuses connections"),
        Some(503),
        "{o:#?}"
    );
    let mutated = &o["header mutations"]["headers"];
    assert_eq!(mutated["x-resp-added"], "route", "{o:#?}");
    assert_eq!(mutated["x-dest-added"], "destination", "{o:#?}");
    assert_eq!(mutated["content-type"], "text/x-strait", "{o:#?}");
    assert!(mutated.get("x-backend").is_none(), "{o:#?}");
    let upstream = &o["header mutations: upstream request headers"];
    assert_eq!(upstream["x-req-added"], "route");
    assert_eq!(upstream["x-req-set"], "route");
    assert!(upstream["x-drop-me"].is_null());
    let overflow = o["circuit breaker overflow"].to_string();
    assert!(
        overflow.contains("x-envoy-overloaded") && overflow.contains("details-v1"),
        "{overflow}"
    );
    assert_eq!(o["80/20 split"]["v1 share within 65-95%"], true, "{o:#?}");
}

// ---------------------------------------------------------------------------------------
// WebSocket.

/// ratings with a route timeout shorter than the pause in the WebSocket exchange: an
/// established tunnel is not a request waiting for its response.
const RATINGS_SHORT_TIMEOUT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings, subset: v1}}]
    timeout: 0.5s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage]
  http:
  - route: [{destination: {host: productpage, subset: v9}}]
"#;

async fn websocket_echo(sidecar: SidecarKind, api: AdsApi) -> Observed {
    let mesh = start(
        sidecar,
        api,
        MeshOptions {
            extra_configs: vec![
                ("destination-rules.yaml".into(), DESTINATION_RULES.into()),
                ("virtual-services.yaml".into(), RATINGS_SHORT_TIMEOUT.into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let mut o = Observed::new();
    let ratings = BookinfoMesh::service_addr("ratings");
    let stream = mesh.client.connect(ratings).await.unwrap();
    let request = "ws://ratings:9080/ws".into_client_request().unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_or_else(|e| panic!("{sidecar:?}: WebSocket handshake: {e}"));
    o.insert(
        "handshake".into(),
        json!({"status": response.status().as_u16(), "headers": headers(response.headers(), false)}),
    );
    let mut exchange = async |label: &str, message: Message| {
        let reply = match ws.send(message).await {
            Ok(()) => match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(m))) => {
                    json!({"kind": kind(&m), "len": m.len(), "text": m.to_text().ok().filter(|t| t.len() < 100)})
                }
                Ok(Some(Err(e))) => json!({"error": e.to_string()}),
                Ok(None) => json!("closed"),
                Err(_) => json!("timed out"),
            },
            Err(e) => json!({"send error": e.to_string()}),
        };
        o.insert(label.into(), reply);
    };
    exchange("text", Message::text("hello")).await;
    exchange("binary", Message::binary((0..=255u8).collect::<Vec<_>>())).await;
    exchange("100 KiB binary", Message::binary(vec![7u8; 100 * 1024])).await;
    exchange("ping", Message::Ping(b"are you there".to_vec().into())).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    exchange(
        "text after a pause longer than the route timeout",
        Message::text("still here"),
    )
    .await;
    let close = match ws.close(None).await {
        Ok(()) => match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(m))) => json!({"after close": kind(&m)}),
            Ok(Some(Err(e))) => json!({"after close error": e.to_string()}),
            Ok(None) => json!("closed"),
            Err(_) => json!("timed out"),
        },
        Err(e) => json!({"close error": e.to_string()}),
    };
    o.insert("close".into(), close);
    let backend = &mesh.backends["ratings-v1"];
    o.insert(
        "upgrade request at the backend".into(),
        json!(backend.request_count()),
    );

    // An upgrade to a subset without endpoints fails like any request.
    let productpage = BookinfoMesh::service_addr("productpage");
    let stream = mesh.client.connect(productpage).await.unwrap();
    let request = "ws://productpage:9080/ws".into_client_request().unwrap();
    let failed = match tokio_tungstenite::client_async(request, stream).await {
        Ok((_, r)) => json!({"unexpected upgrade": r.status().as_u16()}),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => json!({
            "status": r.status().as_u16(),
            "headers": headers(r.headers(), false),
            "body": String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()),
        }),
        Err(e) => json!({"error": e.to_string()}),
    };
    o.insert("upgrade to a subset without endpoints".into(), failed);
    o
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
        Message::Frame(_) => "frame",
    }
}

fn expect_websocket(o: &Observed) {
    assert_eq!(o["handshake"]["status"], 101, "{o:#?}");
    assert_eq!(
        o["handshake"]["headers"]["x-backend"], "ratings-v1",
        "{o:#?}"
    );
    assert_eq!(o["text"]["text"], "hello", "{o:#?}");
    assert_eq!(o["binary"]["len"], 256, "{o:#?}");
    assert_eq!(o["100 KiB binary"]["len"], 100 * 1024, "{o:#?}");
    assert_eq!(o["ping"]["kind"], "pong", "{o:#?}");
    assert_eq!(
        o["text after a pause longer than the route timeout"]["text"], "still here",
        "{o:#?}"
    );
    assert_eq!(
        o["upgrade to a subset without endpoints"]["status"], 503,
        "{o:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// gRPC over HTTP/2.

const GRPC_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const GRPC_PORT: u16 = 7070;

/// The DestinationRule and VirtualService of `grpc-echo` (its Service and Pod come from
/// [`single_pod_service`]).
const GRPC_ROUTING: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: grpc-echo, namespace: default}
spec:
  host: grpc-echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v9, labels: {version: v9}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: grpc-echo, namespace: default}
spec:
  hosts: [grpc-echo]
  http:
  - match: [{headers: {x-route: {exact: nowhere}}}]
    route: [{destination: {host: grpc-echo, subset: v9}}]
  - route: [{destination: {host: grpc-echo, subset: v1}}]
"#;

fn grpc_status(s: &tonic::Status) -> Value {
    json!({
        "code": format!("{:?}", s.code()),
        "message": s.message(),
        "metadata": headers(&s.metadata().clone().into_headers(), false),
    })
}

fn echo_request(text: &str, count: u32, code: i32) -> EchoRequest {
    EchoRequest {
        text: text.into(),
        count,
        code,
    }
}

async fn stream_outcome(client: &mut GrpcEchoClient, request: EchoRequest) -> Value {
    let response = match client.stream(request).await {
        Ok(r) => r,
        Err(s) => return json!({"status": grpc_status(&s)}),
    };
    let head = headers(&response.metadata().clone().into_headers(), false);
    let mut stream = response.into_inner();
    let mut indexes = Vec::new();
    let end = loop {
        match stream.message().await {
            Ok(Some(m)) => indexes.push(format!("{}#{}:{}", m.backend, m.index, m.text)),
            Ok(None) => {
                let trailers = stream.trailers().await.ok().flatten();
                break json!({"trailers": trailers.map(|t| headers(&t.into_headers(), false))});
            }
            Err(s) => break json!({"status": grpc_status(&s)}),
        }
    };
    json!({"headers": head, "messages": indexes, "end": end})
}

async fn grpc_unary_and_streaming(sidecar: SidecarKind, api: AdsApi) -> Observed {
    let mesh = start(
        sidecar,
        api,
        MeshOptions {
            extra_workloads: vec!["grpc-echo-v1".into()],
            extra_configs: vec![
                (
                    "grpc-echo.yaml".into(),
                    single_pod_service("grpc-echo", GRPC_VIP, "grpc", GRPC_PORT),
                ),
                ("grpc-echo-routing.yaml".into(), GRPC_ROUTING.into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let backend =
        GrpcBackend::start(&mesh.pods["grpc-echo-v1"], GRPC_PORT, "grpc-echo", "v1").unwrap();
    let vip = SocketAddr::from((GRPC_VIP, GRPC_PORT));
    let authority = "grpc-echo:7070";
    wait_until(
        "a gRPC call through the sidecar",
        Duration::from_secs(15),
        || async {
            let mut c = GrpcEchoClient::connect(&mesh.client, vip, authority).await?;
            Ok(c.unary(echo_request("ready?", 0, 0), &[]).await.is_ok())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{sidecar:?}: {e:#}\n{}", mesh.envoy.log_tail()));
    let mut client = GrpcEchoClient::connect(&mesh.client, vip, authority)
        .await
        .unwrap();
    let mut o = Observed::new();
    let mut unary = async |label: &str, request: EchoRequest, meta: &[(&'static str, &str)]| {
        let before = backend.calls();
        let result = match client.unary(request, meta).await {
            Ok(r) => json!({
                "headers": headers(&r.metadata().clone().into_headers(), false),
                "reply": format!("{}:{}", r.get_ref().backend, r.get_ref().text),
            }),
            Err(s) => json!({"status": grpc_status(&s)}),
        };
        o.insert(
            label.into(),
            json!({"result": result, "calls at the backend": backend.calls() - before}),
        );
    };
    unary("unary", echo_request("hi", 0, 0), &[]).await;
    unary("unary failing NOT_FOUND", echo_request("nf", 0, 5), &[]).await;
    // UNAVAILABLE is retried by Istio's default retry policy.
    unary(
        "unary failing UNAVAILABLE",
        echo_request("down", 0, 14),
        &[],
    )
    .await;
    unary(
        "unary to a subset without endpoints",
        echo_request("nowhere", 0, 0),
        &[("x-route", "nowhere")],
    )
    .await;
    o.insert(
        "stream of 5".into(),
        stream_outcome(&mut client, echo_request("s", 5, 0)).await,
    );
    o.insert(
        "stream of 3 then FAILED_PRECONDITION".into(),
        stream_outcome(&mut client, echo_request("e", 3, 9)).await,
    );
    o.insert(
        "stream failing at once".into(),
        stream_outcome(&mut client, echo_request("z", 0, 7)).await,
    );
    o.insert(
        "stream of 1000".into(),
        json!(
            stream_outcome(&mut client, echo_request("many", 1000, 0)).await["messages"]
                .as_array()
                .map(Vec::len)
        ),
    );
    // Many calls in flight at once on one HTTP/2 connection.
    let calls = (0..20).map(|i| {
        let mut c = client.clone();
        async move {
            c.unary(echo_request(&format!("c{i}"), 0, 0), &[])
                .await
                .map(|r| r.into_inner().text)
                .map_err(|s| s.code())
        }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    o.insert("20 concurrent unary calls".into(), json!({"ok": ok}));
    o
}

fn expect_grpc(o: &Observed) {
    assert_eq!(o["unary"]["result"]["reply"], "grpc-echo-v1:hi", "{o:#?}");
    assert_eq!(
        o["unary failing NOT_FOUND"]["result"]["status"]["code"], "NotFound",
        "{o:#?}"
    );
    assert_eq!(
        o["unary failing UNAVAILABLE"]["calls at the backend"], 3,
        "{o:#?}"
    );
    assert_eq!(
        o["unary to a subset without endpoints"]["result"]["status"]["code"], "Unavailable",
        "{o:#?}"
    );
    assert_eq!(
        o["stream of 5"]["messages"].as_array().map(Vec::len),
        Some(5),
        "{o:#?}"
    );
    let failed = &o["stream of 3 then FAILED_PRECONDITION"];
    assert_eq!(
        failed["messages"].as_array().map(Vec::len),
        Some(3),
        "{o:#?}"
    );
    assert_eq!(
        failed["end"]["status"]["code"], "FailedPrecondition",
        "{o:#?}"
    );
    assert_eq!(o["stream of 1000"], 1000, "{o:#?}");
    assert_eq!(o["20 concurrent unary calls"]["ok"], 20, "{o:#?}");
}

// ---------------------------------------------------------------------------------------
// TCP: tcp_proxy for a TCP service, and the passthrough to a destination outside the mesh.

const TCP_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 21);
const TCP_PORT: u16 = 9000;
/// A port no service of the mesh uses: no listener of its own.
const OUTSIDE_TCP_PORT: u16 = 9999;
/// The client's second address: connections from it to `outside` are captured; the
/// sidecar's own connections (from the first address) are not, so they leave.
const CAPTURED_SOURCE_HOST: u8 = 250;

/// Greeting, echo of a large payload, and the half-close passed both ways.
async fn tcp_echo(mut stream: TcpStream) -> Value {
    let mut greeting = Vec::new();
    let mut byte = [0u8; 1];
    // The server speaks first: the proxy must not wait for the client.
    let greeted = tokio::time::timeout(Duration::from_secs(3), async {
        while stream.read(&mut byte).await.ok() == Some(1) {
            if byte[0] == b'\n' {
                break;
            }
            greeting.push(byte[0]);
        }
    })
    .await
    .is_ok();
    let payload: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let ok = write.write_all(&payload).await.is_ok();
        // Half-close: the echo server answers with its own once it has sent everything.
        let _ = write.shutdown().await;
        (ok, write)
    });
    let mut echoed = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut echoed))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let (written, _write) = writer.await.unwrap();
    let expected: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    json!({
        "greeting": if greeted { String::from_utf8_lossy(&greeting).into_owned() } else { "none".into() },
        "written": written,
        "echoed intact": echoed == expected,
        "echoed bytes": echoed.len(),
        "eof after half-close": eof,
    })
}

/// A connection from the client's captured second address.
async fn connect_from(ns: &Netns, source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = ns.run(TcpSocket::new_v4).unwrap().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

async fn tcp_proxy_and_passthrough(sidecar: SidecarKind, api: AdsApi) -> Observed {
    let mesh = start(
        sidecar,
        api,
        MeshOptions {
            extra_workloads: vec!["tcp-echo-v1".into(), "outside".into()],
            extra_configs: vec![(
                "tcp-echo.yaml".into(),
                single_pod_service("tcp-echo", TCP_VIP, "tcp-echo", TCP_PORT),
            )],
            ..Default::default()
        },
    )
    .await;
    let _echo = TcpServer::start(
        &mesh.pods["tcp-echo-v1"],
        TCP_PORT,
        TcpMode::Echo {
            greeting: "tcp-echo-v1".into(),
        },
    )
    .unwrap();
    let outside = &mesh.pods["outside"];
    let _outside_tcp = TcpServer::start(
        outside,
        OUTSIDE_TCP_PORT,
        TcpMode::Echo {
            greeting: "outside".into(),
        },
    )
    .unwrap();
    let _outside_http = Backend::start(outside, 9080, "outside", "v1").unwrap();

    let client_ns = mesh.client.netns().clone();
    let [a, b, c, _] = client_ns.ip().octets();
    let source = Ipv4Addr::new(a, b, c, CAPTURED_SOURCE_HOST);
    client_ns
        .exec(
            "ip",
            &["addr", "add", &format!("{source}/32"), "dev", "eth0"],
        )
        .unwrap();
    capture::iptables(
        &client_ns,
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-s",
            &source.to_string(),
            "-d",
            &outside.ip().to_string(),
            "-j",
            "REDIRECT",
            "--to-ports",
            "15001",
        ],
    )
    .unwrap();

    let vip = SocketAddr::from((TCP_VIP, TCP_PORT));
    wait_until(
        "the TCP service's listener",
        Duration::from_secs(15),
        || async {
            let mut s = mesh.client.connect(vip).await?;
            let mut buf = [0u8; 12];
            Ok(
                tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf))
                    .await
                    .is_ok_and(|r| r.is_ok())
                    && &buf == b"tcp-echo-v1\n",
            )
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{sidecar:?}: {e:#}\n{}", mesh.envoy.log_tail()));

    let stat = async |name: &str| mesh.envoy.stat(name).await.unwrap().unwrap_or(0);
    let passthrough_before = stat("cluster.PassthroughCluster;.upstream_cx_total").await;
    let tcp_cluster =
        "cluster.outbound|9000||tcp-echo.default.svc.cluster.local;.upstream_cx_total";
    let tcp_before = stat(tcp_cluster).await;

    let mut o = Observed::new();
    o.insert(
        "TCP service".into(),
        tcp_echo(mesh.client.connect(vip).await.unwrap()).await,
    );
    let outside_tcp = SocketAddr::from((outside.ip(), OUTSIDE_TCP_PORT));
    o.insert(
        "TCP outside the mesh".into(),
        tcp_echo(connect_from(&client_ns, source, outside_tcp).await).await,
    );
    // HTTP to an address outside the mesh, on a port the mesh has an HTTP listener for.
    let stream = connect_from(&client_ns, source, SocketAddr::from((outside.ip(), 9080))).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let request = http::Request::builder()
        .uri("/outside")
        .header("host", "outside.example:9080")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await;
    let http_outside = match response {
        Ok(r) => {
            let status = r.status().as_u16();
            let h = headers(r.headers(), true);
            json!({"status": status, "headers": h})
        }
        Err(e) => json!({"error": e.to_string()}),
    };
    conn.abort();
    o.insert("HTTP outside the mesh".into(), http_outside);
    o.insert(
        "PassthroughCluster used".into(),
        json!(stat("cluster.PassthroughCluster;.upstream_cx_total").await > passthrough_before),
    );
    o.insert(
        "tcp-echo cluster used".into(),
        json!(stat(tcp_cluster).await > tcp_before),
    );
    o
}

fn expect_tcp(o: &Observed) {
    for step in ["TCP service", "TCP outside the mesh"] {
        assert_eq!(o[step]["echoed intact"], true, "{step}: {o:#?}");
        assert_eq!(o[step]["eof after half-close"], true, "{step}: {o:#?}");
    }
    assert_eq!(o["TCP service"]["greeting"], "tcp-echo-v1", "{o:#?}");
    assert_eq!(o["TCP outside the mesh"]["greeting"], "outside", "{o:#?}");
    assert_eq!(o["HTTP outside the mesh"]["status"], 200, "{o:#?}");
    assert_eq!(
        o["HTTP outside the mesh"]["headers"]["x-backend"], "outside-v1",
        "{o:#?}"
    );
    assert_eq!(o["PassthroughCluster used"], true, "{o:#?}");
    assert_eq!(o["tcp-echo cluster used"], true, "{o:#?}");
}

// ---------------------------------------------------------------------------------------
// Pushes while many keep-alive connections send requests.

const CONNECTIONS: usize = 50;

fn reviews_to(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]\n"
    )
}

#[derive(Default)]
struct Load {
    stop: AtomicBool,
    sent: AtomicU64,
    reconnects: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
    last: std::sync::Mutex<Vec<String>>,
}

async fn push_under_load(sidecar: SidecarKind, api: AdsApi) -> Observed {
    let mesh = start(
        sidecar,
        api,
        MeshOptions {
            extra_configs: vec![("virtual-services.yaml".into(), reviews_to("v1"))],
            ..Default::default()
        },
    )
    .await;
    let addr = BookinfoMesh::service_addr("reviews");
    let load = Arc::new(Load {
        last: std::sync::Mutex::new(vec![String::new(); CONNECTIONS]),
        ..Default::default()
    });
    let mut tasks = Vec::new();
    for i in 0..CONNECTIONS {
        let load = load.clone();
        let client = mesh.client.clone();
        tasks.push(tokio::spawn(async move {
            let spec = RequestSpec::get("reviews", "/");
            let mut conn = None;
            while !load.stop.load(Ordering::Relaxed) {
                let c = match &mut conn {
                    Some(c) if !strait_e2e::client::KeepAlive::is_closed(c) => c,
                    _ => {
                        if conn.is_some() {
                            load.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        match client.keep_alive(addr).await {
                            Ok(c) => conn.insert(c),
                            Err(e) => {
                                load.failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("connect: {e:#}"));
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        }
                    }
                };
                load.sent.fetch_add(1, Ordering::Relaxed);
                match c.send(&spec).await {
                    Ok(r) if r.status == 200 => {
                        load.last.lock().unwrap()[i] = r.backend().unwrap_or_default().to_string();
                    }
                    Ok(r) => load.failures.lock().unwrap().push(format!(
                        "status {}: {}",
                        r.status,
                        r.text()
                    )),
                    Err(e) => {
                        load.failures.lock().unwrap().push(format!("{e:#}"));
                        conn = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let all_on = async |backend: &str| {
        wait_until(
            &format!("every connection answered by {backend}"),
            Duration::from_secs(15),
            || async { Ok(load.last.lock().unwrap().iter().all(|b| b == backend)) },
        )
        .await
        .is_ok()
    };
    let mut moved = vec![all_on("reviews-v1").await];
    for subset in ["v2", "v3", "v1"] {
        mesh.pilot
            .write_config("virtual-services.yaml", &reviews_to(subset))
            .unwrap();
        moved.push(all_on(&format!("reviews-{subset}")).await);
    }
    load.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = load.failures.lock().unwrap().clone();
    let sent = load.sent.load(Ordering::Relaxed);
    eprintln!(
        "{sidecar:?} {api:?}: {sent} requests on {CONNECTIONS} keep-alive connections, {} reconnects, {} failures",
        load.reconnects.load(Ordering::Relaxed),
        failures.len()
    );
    let mut o = Observed::new();
    o.insert(
        "traffic followed v1, v2, v3, v1 on every connection".into(),
        json!(moved),
    );
    o.insert(
        "failed requests".into(),
        json!({"count": failures.len(), "first": failures.iter().take(5).collect::<Vec<_>>()}),
    );
    o.insert(
        "enough requests were sent".into(),
        json!(sent > (CONNECTIONS * 20) as u64),
    );
    o
}

fn expect_push_under_load(o: &Observed) {
    assert_eq!(
        o["traffic followed v1, v2, v3, v1 on every connection"],
        json!([true, true, true, true]),
        "{o:#?}"
    );
    assert_eq!(o["failed requests"]["count"], 0, "{o:#?}");
    assert_eq!(o["enough requests were sent"], true, "{o:#?}");
}

// ---------------------------------------------------------------------------------------
// Malformed requests, oversized headers, upstreams that reset.

const FLAKY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 22);

/// Requests as they go on the wire, by name.
fn bad_requests() -> Vec<(&'static str, Vec<u8>)> {
    let big = |n: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: ratings:9080\r\nx-big: {}\r\nconnection: close\r\n\r\n",
            "a".repeat(n)
        )
        .into_bytes()
    };
    vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "unknown HTTP version",
            b"GET / HTTP/9.9\r\nHost: ratings:9080\r\n\r\n".to_vec(),
        ),
        (
            "header line without a colon",
            b"GET / HTTP/1.1\r\nHost: ratings:9080\r\nno colon here\r\n\r\n".to_vec(),
        ),
        (
            "space before the colon",
            b"GET / HTTP/1.1\r\nHost : ratings:9080\r\n\r\n".to_vec(),
        ),
        (
            "content-length not a number",
            b"POST / HTTP/1.1\r\nHost: ratings:9080\r\ncontent-length: abc\r\n\r\n".to_vec(),
        ),
        (
            "control character in a header value",
            b"GET / HTTP/1.1\r\nHost: ratings:9080\r\nx-bad: a\x01b\r\n\r\n".to_vec(),
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: ratings:9080\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
        ),
        ("headers over 60 KiB", big(61 * 1024)),
        ("headers just under 60 KiB", big(58 * 1024)),
    ]
}

/// Requests whose first line the listener's HTTP inspector does not take for HTTP/1: the
/// listener's passthrough chain carries them to the original destination, as Istio's
/// does for any protocol it cannot detect.
const NOT_HTTP: [&str; 2] = ["garbage request line", "unknown HTTP version"];

/// Bad request heads that the HTTP codec rejects before anything is routed.
const HEAD_CODEC_ERRORS: [&str; 5] = [
    "header line without a colon",
    "space before the colon",
    "content-length not a number",
    "control character in a header value",
    "headers over 60 KiB",
];

/// What a raw exchange returned, reduced to what is deterministic.
fn raw_outcome(reply: &strait_e2e::client::RawReply) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in reply.headers() {
        let v = if VOLATILE.contains(&k.as_str())
            || k == "content-length" && reply.status() == Some(200)
        {
            "*".into()
        } else {
            v
        };
        headers.insert(k, v);
    }
    let body = reply.body();
    json!({
        "status line": reply.status_line(),
        "headers": headers,
        "body": if reply.status() == Some(200) { format!("{} bytes", body.len()) } else { String::from_utf8_lossy(body).into_owned() },
        "connection": format!("{:?}", reply.end),
    })
}

async fn bad_requests_and_upstream_resets(sidecar: SidecarKind, api: AdsApi) -> Observed {
    let mesh = start(
        sidecar,
        api,
        MeshOptions {
            extra_workloads: vec!["flaky-v1".into()],
            extra_configs: vec![(
                "flaky.yaml".into(),
                single_pod_service("flaky", FLAKY_VIP, "http", 9080),
            )],
            ..Default::default()
        },
    )
    .await;
    let flaky = TcpServer::start(
        &mesh.pods["flaky-v1"],
        9080,
        TcpMode::FlakyHttp {
            name: "flaky-v1".into(),
        },
    )
    .unwrap();
    let flaky_vip = SocketAddr::from((FLAKY_VIP, 9080));
    wait_until(
        "the flaky service's route",
        Duration::from_secs(15),
        || async {
            Ok(mesh.client.get(flaky_vip, "flaky", "/").await?.backend() == Some("flaky-v1"))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{sidecar:?}: {e:#}\n{}", mesh.envoy.log_tail()));

    let mut o = Observed::new();
    let ratings = BookinfoMesh::service_addr("ratings");
    for (name, bytes) in bad_requests() {
        // Bytes that are not HTTP/1 go to PassthroughCluster, whose connection to the
        // service address hangs here (nothing routes it): nothing comes back.
        let wait = if NOT_HTTP.contains(&name) {
            Duration::from_millis(1000)
        } else {
            Duration::from_secs(3)
        };
        let reply = mesh.client.raw(ratings, &bytes, wait).await.unwrap();
        let mut seen = raw_outcome(&reply);
        if HEAD_CODEC_ERRORS.contains(&name)
            && let Some(seen) = seen.as_object_mut()
        {
            // Known difference: for a request head it cannot parse, Envoy's codec answers
            // with the reason phrase as a text/plain body and `server: envoy`; hyper
            // writes that answer itself, bodiless. The status and the closed connection
            // are compared.
            seen.remove("headers");
            seen.remove("body");
        }
        o.insert(name.into(), seen);
    }
    for path in ["/reset-before", "/close-before", "/reset-mid"] {
        let before = flaky.requests();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: flaky:9080\r\nconnection: close\r\n\r\n");
        let reply = mesh
            .client
            .raw(flaky_vip, request.as_bytes(), Duration::from_secs(5))
            .await
            .unwrap();
        o.insert(
            format!("upstream {path}"),
            json!({"reply": raw_outcome(&reply), "attempts": flaky.requests() - before}),
        );
    }
    let r = mesh.client.get(flaky_vip, "flaky", "/").await;
    o.insert("a normal request afterwards".into(), outcome(r));
    o
}

fn expect_bad_requests(o: &Observed) {
    for name in NOT_HTTP {
        assert_eq!(o[name]["status line"], "", "{name}: {o:#?}");
        assert_eq!(o[name]["connection"], "Open", "{name}: {o:#?}");
    }
    for name in HEAD_CODEC_ERRORS {
        assert_eq!(o[name]["connection"], "Closed", "{name}: {o:#?}");
    }
    assert!(
        o["header line without a colon"]["status line"]
            .as_str()
            .unwrap()
            .contains(" 400 "),
        "{o:#?}"
    );
    assert!(
        o["bad chunk size"]["status line"]
            .as_str()
            .unwrap()
            .contains(" 400 "),
        "{o:#?}"
    );
    assert!(
        o["headers over 60 KiB"]["status line"]
            .as_str()
            .unwrap()
            .contains(" 431 "),
        "{o:#?}"
    );
    assert!(
        o["headers just under 60 KiB"]["status line"]
            .as_str()
            .unwrap()
            .contains(" 200 "),
        "{o:#?}"
    );
    assert!(
        o["upstream /reset-before"]["reply"]["status line"]
            .as_str()
            .unwrap()
            .contains(" 503 "),
        "{o:#?}"
    );
    assert_eq!(o["a normal request afterwards"]["status"], 200, "{o:#?}");
}
