//! strait-proxy fed bad input many times over, then checked for leaks: malformed
//! requests (400), request headers over the HCM's 60 KiB limit (431), clients that never
//! finish their headers (closed after the connection idle timeout), upstreams that reset
//! or close before or during their response (503, or the downstream connection cut),
//! and, on a second strait-proxy, an xDS resource it must NACK on every push. Afterwards
//! its open descriptors and active downstream connections are back where they were after
//! warm-up, its memory has not grown past a bound, and it still serves.
//!
//! The single-shot versions of these cases, compared with Envoy, are in `proxy_diff.rs`
//! (`bad_requests_and_upstream_resets`); the NACK of a stock Envoy is in
//! `pilot_envoy.rs` (`nacking_proxy_is_reported_and_others_keep_receiving`). Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures::StreamExt;
use strait_e2e::backend::tcp::{TcpMode, TcpServer};
use strait_e2e::client::{RawEnd, RawReply};
use strait_e2e::envoy::{static_cluster, static_http_listener};
use strait_e2e::mesh::{BookinfoMesh, MeshOptions, SidecarKind, single_pod_service};
use strait_e2e::{AdsApi, Bootstrap, Envoy, HttpClient, SidecarNode, wait_until};

const CONFIGURED: Duration = Duration::from_secs(30);
/// Iterations of each kind of bad input.
const ITERATIONS: usize = 500;
/// Requests in flight at once while iterating.
const CONCURRENCY: usize = 16;
/// The sidecar's connection idle timeout (`IDLE_TIMEOUT` node metadata); with Istio's
/// config (no request headers timeout, stream idle timeout disabled) it is what bounds a
/// client that never finishes its headers.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const STALLED_CLIENTS: usize = 200;

const FLAKY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 22);

/// What the process holds.
#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    rss_kib: u64,
    active_connections: u64,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Downstream connections open on the proxy's listeners (admin's excluded).
async fn active_connections(proxy: &Envoy) -> u64 {
    let stats = proxy.stats().await.unwrap();
    stats
        .lines()
        .filter(|l| l.starts_with("listener.") && !l.starts_with("listener.admin"))
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.ends_with(".downstream_cx_active"))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

async fn usage(proxy: &Envoy) -> Usage {
    Usage {
        fds: open_fds(proxy.pid()),
        rss_kib: rss_kib(proxy.pid()),
        active_connections: active_connections(proxy).await,
    }
}

/// Runs `n` exchanges, `CONCURRENCY` at a time, and checks each reply.
async fn iterate<F, Fut>(what: &str, n: usize, exchange: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let failures: Vec<String> = futures::stream::iter(0..n)
        .map(exchange)
        .buffer_unordered(CONCURRENCY)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    eprintln!("{what}: {n} iterations in {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{what}: {} of {n} failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Malformed requests the listener takes for HTTP/1 (a first line it does not recognise
/// would be passed through as TCP, as Istio does; `proxy_diff.rs` covers that).
fn malformed(i: usize) -> &'static [u8] {
    const CASES: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: reviews:9080\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : reviews:9080\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: reviews:9080\r\ncontent-length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: reviews:9080\r\nx-bad: a\x01b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: reviews:9080\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n\r\n",
    ];
    CASES[i % CASES.len()]
}

fn expect_status(reply: &RawReply, status: u16) -> Result<(), String> {
    if reply.status() == Some(status) && reply.end != RawEnd::Open {
        Ok(())
    } else {
        Err(format!(
            "expected {status} and a closed connection, got {:?} ({:?}) after {:?}",
            reply.status_line(),
            reply.end,
            reply.elapsed
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_leaks_nothing() {
    let mesh = BookinfoMesh::start(MeshOptions {
        api: AdsApi::Sotw,
        sidecar: SidecarKind::Strait,
        extra_workloads: vec!["flaky-v1".into()],
        extra_configs: vec![(
            "flaky.yaml".into(),
            single_pod_service("flaky", FLAKY_VIP, "http", 9080),
        )],
        sidecar_metadata: vec![(
            "IDLE_TIMEOUT".into(),
            format!("{}s", IDLE_TIMEOUT.as_secs()),
        )],
        ..Default::default()
    })
    .await
    .expect("mesh starts");
    mesh.wait_configured(CONFIGURED)
        .await
        .expect("sidecar configured");
    let flaky = TcpServer::start(
        &mesh.pods["flaky-v1"],
        9080,
        TcpMode::FlakyHttp {
            name: "flaky-v1".into(),
        },
    )
    .unwrap();
    let flaky_vip = SocketAddr::from((FLAKY_VIP, 9080));
    let reviews = BookinfoMesh::service_addr("reviews");
    let client = &mesh.client;
    wait_until(
        "the flaky service's route",
        Duration::from_secs(15),
        || async { Ok(client.get(flaky_vip, "flaky", "/").await?.backend() == Some("flaky-v1")) },
    )
    .await
    .unwrap();

    let wait = Duration::from_secs(5);
    let oversized = format!(
        "GET / HTTP/1.1\r\nHost: reviews:9080\r\nx-big: {}\r\n\r\n",
        "a".repeat(61 * 1024)
    );
    let reset = |i: usize| {
        let path = ["/reset-before", "/close-before", "/reset-mid"][i % 3];
        format!("GET {path} HTTP/1.1\r\nHost: flaky:9080\r\nconnection: close\r\n\r\n")
    };
    let round = async |n: usize| {
        iterate("malformed requests", n, |i| async move {
            let reply = client.raw(reviews, malformed(i), wait).await.unwrap();
            expect_status(&reply, 400)
        })
        .await;
        iterate("headers over 60 KiB", n, |_| async {
            let reply = client
                .raw(reviews, oversized.as_bytes(), wait)
                .await
                .unwrap();
            expect_status(&reply, 431)
        })
        .await;
        iterate("upstream resets", n, |i| async move {
            let reply = client
                .raw(flaky_vip, reset(i).as_bytes(), wait)
                .await
                .unwrap();
            match i % 3 {
                // Cut in the middle of the body: the head went out, the rest cannot.
                2 => (reply.status() == Some(200)
                    && reply.body().len() < 1000
                    && reply.end != RawEnd::Open)
                    .then_some(())
                    .ok_or_else(|| {
                        format!("reset mid-body: {:?} {:?}", reply.status_line(), reply.end)
                    }),
                _ => expect_status(&reply, 503),
            }
        })
        .await;
    };

    // Warm-up: every path once, so lazily built state (pools, caches) exists.
    round(10).await;
    let proxy = &mesh.envoy;
    // Waits until no downstream connection is open and the descriptors are down to
    // `fds`; returns whether that happened, and the last reading.
    let settled = async |fds: usize| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now = usage(proxy).await;
            if now.active_connections == 0 && now.fds <= fds {
                return (true, now);
            }
            if Instant::now() > deadline {
                return (false, now);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (ok, baseline) = settled(usize::MAX).await;
    assert!(ok, "connections still open after warm-up: {baseline:?}");
    eprintln!("after warm-up: {baseline:?}");

    round(ITERATIONS).await;
    stalled_clients_are_closed(client, reviews).await;

    let (ok, after) = settled(baseline.fds + 4).await;
    eprintln!("after {ITERATIONS} iterations: {after:?}");
    assert!(
        ok,
        "descriptors or connections leaked: {baseline:?} -> {after:?}"
    );
    let rss_bound = baseline.rss_kib + (baseline.rss_kib / 2).max(16 * 1024);
    assert!(
        after.rss_kib <= rss_bound,
        "memory grew from {} KiB to {} KiB (bound {rss_bound} KiB)",
        baseline.rss_kib,
        after.rss_kib
    );
    assert!(
        proxy.admin_get("/ready").await.is_ok(),
        "{}",
        proxy.log_tail()
    );
    let r = client.get(reviews, "reviews", "/").await.unwrap();
    assert_eq!(r.status, 200, "still serving: {}", r.text());
    assert!(
        flaky.requests() >= ITERATIONS as u64,
        "the resets reached the upstream"
    );
}

/// Clients that send part of a request head and then nothing: each connection is closed
/// by the proxy once the idle timeout has passed, none sooner than that, none left open.
async fn stalled_clients_are_closed(client: &HttpClient, addr: SocketAddr) {
    let started = Instant::now();
    let partial = b"GET / HTTP/1.1\r\nHost: reviews:9080\r\nx-partial: ";
    let limit = IDLE_TIMEOUT * 3;
    let replies: Vec<RawReply> = futures::stream::iter(0..STALLED_CLIENTS)
        .map(|_| async { client.raw(addr, partial, limit).await.unwrap() })
        .buffer_unordered(STALLED_CLIENTS)
        .collect()
        .await;
    eprintln!(
        "{STALLED_CLIENTS} stalled clients done in {:?}",
        started.elapsed()
    );
    let still_open = replies.iter().filter(|r| r.end == RawEnd::Open).count();
    assert_eq!(still_open, 0, "stalled clients left open after {limit:?}");
    let early = replies
        .iter()
        .filter(|r| r.elapsed < IDLE_TIMEOUT - Duration::from_millis(200))
        .count();
    assert_eq!(early, 0, "closed before the idle timeout");
    let answered: Vec<String> = replies
        .iter()
        .filter(|r| !r.data.is_empty() && r.status() != Some(408))
        .map(RawReply::status_line)
        .collect();
    assert!(
        answered.is_empty(),
        "a stalled client gets at most a 408: {answered:?}"
    );
}

/// A second strait-proxy whose bootstrap already owns 0.0.0.0:15001 must NACK pilot's
/// virtualOutbound on every listener push, keep serving its own listener and the rest of
/// the config, and hold no more resources after many NACKs than after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_nacks_keep_the_last_good_config_and_leak_nothing() {
    let mesh = BookinfoMesh::start(MeshOptions {
        api: AdsApi::Sotw,
        sidecar: SidecarKind::Strait,
        ..Default::default()
    })
    .await
    .expect("mesh starts");
    mesh.wait_configured(CONFIGURED)
        .await
        .expect("sidecar configured");
    let details = &mesh.pods["details-v1"];
    let squat = static_cluster("squat", &[mesh.backends["details-v1"].addr()]);
    let node = SidecarNode::new(details.ip(), "details-v1", "default").label("app", "details");
    let bootstrap = Bootstrap::new(node)
        // State of the world: every listener push carries virtualOutbound again, and with
        // it the conflict (a delta push would carry only what changed).
        .with_ads(mesh.pilot.grpc_addr(), AdsApi::Sotw)
        .with_static_listener(static_http_listener("squatter", 15001, "squat"))
        .with_static_cluster(squat);
    let nacker = Envoy::start_binary(
        details,
        &bootstrap,
        &strait_e2e::bins::strait("strait-proxy").unwrap(),
        &[],
    )
    .await
    .unwrap();
    let p = &mesh.pilot;
    let nacked = async || {
        let syncz = p.get_json("/debug/syncz").await.unwrap();
        syncz
            .as_array()
            .into_iter()
            .flatten()
            .find(|proxy| proxy["proxy"].as_str() == Some("details-v1.default"))
            .map(|proxy| proxy["resources"].to_string())
            .unwrap_or_default()
    };
    wait_until(
        "the NACK to show in /debug/syncz",
        Duration::from_secs(15),
        || async { Ok(nacked().await.contains("15001")) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", nacker.log_tail()));
    let rejects = async || {
        let metrics = p.metrics().await.unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("pilot_total_xds_rejects{type=\"lds\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let squatter = SocketAddr::from((Ipv4Addr::LOCALHOST, 15001));
    let nacker_client = HttpClient::new(details);
    let serves = async || {
        nacker_client
            .get(squatter, "squat", "/")
            .await
            .ok()
            .and_then(|r| r.backend().map(str::to_owned))
    };
    assert_eq!(serves().await.as_deref(), Some("details-v1"));
    let warm = (open_fds(nacker.pid()), rss_kib(nacker.pid()));

    // Each new Service adds listeners and clusters: a push whose listeners the nacker
    // rejects again, while it takes the clusters.
    const PUSHES: u32 = 20;
    for i in 0..PUSHES {
        let before = rejects().await;
        let port = 7100 + i;
        let service = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: extra, namespace: default}}\nspec:\n  clusterIP: 10.96.1.1\n  selector: {{app: details}}\n  ports:\n  - {{name: tcp-extra, port: {port}, targetPort: 9080}}\n"
        );
        p.write_config("extra-service.yaml", &service).unwrap();
        wait_until(
            "pilot to count another LDS NACK",
            Duration::from_secs(10),
            || async { Ok(rejects().await > before) },
        )
        .await
        .unwrap_or_else(|e| panic!("push {i}: {e:#}\n{}", nacker.log_tail()));
    }
    let last_cluster = format!(
        "outbound|{}||extra.default.svc.cluster.local",
        7100 + PUSHES - 1
    );
    // Not checked: that the valid listeners of a NACKed response are applied. Envoy does
    // that; strait-proxy keeps its whole previous listener set (see the applier).
    nacker
        .wait_for(
            "the nacker to take the clusters",
            Duration::from_secs(10),
            |dump| dump.to_string().contains(&last_cluster),
        )
        .await
        .unwrap();
    assert!(nacked().await.contains("15001"), "the error stays visible");
    assert_eq!(
        serves().await.as_deref(),
        Some("details-v1"),
        "the nacker keeps its listener"
    );
    let after = (open_fds(nacker.pid()), rss_kib(nacker.pid()));
    eprintln!("nacker (fds, RSS KiB) after warm-up {warm:?}, after {PUSHES} NACKs {after:?}");
    assert!(after.0 <= warm.0 + 4, "descriptors: {warm:?} -> {after:?}");
    assert!(
        after.1 <= warm.1 + (warm.1 / 2).max(16 * 1024),
        "memory: {warm:?} -> {after:?}"
    );
    // The healthy sidecar is unaffected.
    let r = mesh
        .client
        .get(BookinfoMesh::service_addr("details"), "details", "/")
        .await
        .unwrap();
    assert_eq!(r.backend(), Some("details-v1"));
}
