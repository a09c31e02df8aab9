//! `envoy.filters.network.tcp_proxy`: pick a cluster and host, connect, and copy bytes
//! both ways until both sides are done, the idle timeout passes or a drain deadline
//! comes. What happened is written into a [`TcpSession`] for stats and access logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::config::listener::{ClusterSpecifier, TcpProxy};
use crate::http::ResponseFlag;
use crate::telemetry::{DrainWatch, TcpEnd, TcpSession};
use crate::upstream::cluster_state::ClusterState;
use crate::upstream::host::Host;
use crate::upstream::lb::LbContext;
use crate::upstream::manager::ClusterManager;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TcpProxyError {
    #[error("cluster {0:?} not found")]
    NoCluster(String),
    #[error("cluster {0:?}: connection limit reached (circuit breaker)")]
    Overflow(String),
    #[error("cluster {0:?}: no healthy upstream")]
    NoHealthyUpstream(String),
    #[error("connecting to {host} of cluster {cluster:?}: {reason}")]
    ConnectFailed {
        cluster: String,
        host: SocketAddr,
        reason: String,
    },
}

/// Bytes moved, for stats and access logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transferred {
    pub downstream_to_upstream: u64,
    pub upstream_to_downstream: u64,
}

/// Picks a cluster name: the single one, or one of the weighted ones by `random`.
pub fn pick_cluster(spec: &ClusterSpecifier, random: u64) -> Option<&str> {
    match spec {
        ClusterSpecifier::Cluster(name) => Some(name),
        ClusterSpecifier::Weighted(clusters) => {
            let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
            if total == 0 {
                return None;
            }
            let mut point = random % total;
            for c in clusters {
                let w = u64::from(c.weight);
                if point < w {
                    return Some(&c.name);
                }
                point -= w;
            }
            None
        }
    }
}

/// Serves one downstream connection through the tcp_proxy filter, outside any listener.
pub async fn serve(
    downstream: TcpStream,
    config: &TcpProxy,
    original_dst: Option<SocketAddr>,
    clusters: &ClusterManager,
) -> Result<Transferred, TcpProxyError> {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut session = TcpSession::new(
        downstream.peer_addr().unwrap_or(unspecified),
        downstream.local_addr().unwrap_or(unspecified),
    );
    serve_session(
        downstream,
        config,
        original_dst,
        clusters,
        &mut session,
        DrainWatch::never(),
    )
    .await?;
    Ok(Transferred {
        downstream_to_upstream: session.bytes_received,
        upstream_to_downstream: session.bytes_sent,
    })
}

/// Serves one downstream connection, recording what happened in `session`; a started
/// `drain` closes the connection at its deadline.
pub async fn serve_session(
    downstream: TcpStream,
    config: &TcpProxy,
    original_dst: Option<SocketAddr>,
    clusters: &ClusterManager,
    session: &mut TcpSession,
    drain: DrainWatch,
) -> Result<(), TcpProxyError> {
    let Some(name) = pick_cluster(&config.cluster, rand::random()).map(str::to_string) else {
        session.flags.insert(ResponseFlag::NoClusterFound);
        return Err(TcpProxyError::NoCluster(String::new()));
    };
    session.upstream_cluster = Some(name.clone());
    let Some(cluster) = clusters.get(&name) else {
        session.flags.insert(ResponseFlag::NoClusterFound);
        return Err(TcpProxyError::NoCluster(name));
    };
    let Some(_breaker) = cluster.breakers().try_acquire_connection() else {
        session.flags.insert(ResponseFlag::UpstreamOverflow);
        return Err(TcpProxyError::Overflow(name));
    };
    let (upstream, host) = connect(&cluster, original_dst, session).await?;
    let _open = host.start_connection();
    let (moved, end) = pipe_until(downstream, upstream, config.idle_timeout, drain).await;
    let stats = cluster.stats();
    stats
        .upstream_cx_tx_bytes_total
        .fetch_add(moved.downstream_to_upstream, Ordering::Relaxed);
    stats
        .upstream_cx_rx_bytes_total
        .fetch_add(moved.upstream_to_downstream, Ordering::Relaxed);
    session.bytes_received = moved.downstream_to_upstream;
    session.bytes_sent = moved.upstream_to_downstream;
    session.end = end;
    Ok(())
}

async fn connect(
    cluster: &ClusterState,
    original_dst: Option<SocketAddr>,
    session: &mut TcpSession,
) -> Result<(TcpStream, Arc<Host>), TcpProxyError> {
    let ctx = LbContext {
        original_dst,
        ..LbContext::default()
    };
    let Ok(host) = cluster.choose_host(&ctx) else {
        session.flags.insert(ResponseFlag::NoHealthyUpstream);
        return Err(TcpProxyError::NoHealthyUpstream(cluster.name().to_string()));
    };
    let address = host.address();
    session.upstream_host = Some(address);
    let config = cluster.config();
    let fail = |reason: String, session: &mut TcpSession| {
        cluster.report_tcp_connect_failure(&host, std::time::Instant::now());
        // One connect attempt (Envoy's default `max_connect_attempts`), and it failed.
        session
            .flags
            .insert(ResponseFlag::UpstreamConnectionFailure);
        session
            .flags
            .insert(ResponseFlag::UpstreamRetryLimitExceeded);
        // `%UPSTREAM_TRANSPORT_FAILURE_REASON%` comes from a transport socket (TLS); a
        // plain TCP connect failure has none in Envoy.
        TcpProxyError::ConnectFailed {
            cluster: cluster.name().to_string(),
            host: address,
            reason,
        }
    };
    let socket = match if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    } {
        Ok(s) => s,
        Err(e) => return Err(fail(e.to_string(), session)),
    };
    if let Some(source) = config.upstream_bind
        && let Err(e) = socket.bind(source)
    {
        return Err(fail(format!("binding source {source}: {e}"), session));
    }
    let _ = socket.set_nodelay(true);
    match tokio::time::timeout(config.connect_timeout, socket.connect(address)).await {
        Ok(Ok(stream)) => Ok((stream, host.clone())),
        Ok(Err(e)) => Err(fail(describe(&e), session)),
        Err(_) => {
            cluster
                .stats()
                .upstream_cx_connect_timeout
                .fetch_add(1, Ordering::Relaxed);
            Err(fail(
                format!("timed out after {:?}", config.connect_timeout),
                session,
            ))
        }
    }
}

/// Envoy's wording for a failed connect (`delayed connect error: 111`).
fn describe(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(errno) => format!("delayed connect error: {errno}"),
        None => format!("delayed connect error: {e}"),
    }
}

/// Copies both directions, passing half-closes along, until both are done or nothing
/// moved for `idle`.
pub async fn pipe(a: TcpStream, b: TcpStream, idle: Option<Duration>) -> Transferred {
    pipe_until(a, b, idle, DrainWatch::never()).await.0
}

/// [`pipe`], also ending at the deadline of a started drain.
pub async fn pipe_until(
    a: TcpStream,
    b: TcpStream,
    idle: Option<Duration>,
    mut drain: DrainWatch,
) -> (Transferred, TcpEnd) {
    let (mut a_read, mut a_write) = a.into_split();
    let (mut b_read, mut b_write) = b.into_split();
    let mut a_buf = vec![0u8; 16 * 1024];
    let mut b_buf = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    let mut moved = Transferred::default();
    let idle = idle.unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
    let mut deadline = Instant::now() + idle;
    let mut drain_deadline: Option<Instant> = None;
    let mut end = TcpEnd::Closed;
    while a_open || b_open {
        tokio::select! {
            r = a_read.read(&mut a_buf), if a_open => match r {
                Ok(0) | Err(_) => {
                    a_open = false;
                    let _ = b_write.shutdown().await;
                }
                Ok(n) => {
                    if b_write.write_all(&a_buf[..n]).await.is_err() {
                        end = TcpEnd::Broken;
                        break;
                    }
                    moved.downstream_to_upstream += n as u64;
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
                        end = TcpEnd::Broken;
                        break;
                    }
                    moved.upstream_to_downstream += n as u64;
                    deadline = Instant::now() + idle;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                end = TcpEnd::IdleTimeout;
                break;
            }
            at = drain.started(), if drain_deadline.is_none() => drain_deadline = Some(at),
            _ = sleep_until_some(drain_deadline), if drain_deadline.is_some() => {
                end = TcpEnd::Drained;
                break;
            }
        }
    }
    (moved, end)
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::cluster::{Cluster, Discovery, HttpProtocolOptions, LbPolicy, Thresholds};
    use crate::config::endpoint::{Health, LbEndpoint};
    use crate::config::listener::WeightedCluster;
    use crate::upstream::random::ThreadRandom;

    fn cluster(name: &str, endpoints: Vec<SocketAddr>, discovery_static: bool) -> Arc<Cluster> {
        let endpoints = endpoints
            .into_iter()
            .map(|address| LbEndpoint {
                address,
                weight: 1,
                health: Health::Healthy,
                locality: Default::default(),
                priority: 0,
                locality_weight: None,
                metadata: Default::default(),
            })
            .collect();
        Arc::new(Cluster {
            name: name.into(),
            discovery: if discovery_static {
                Discovery::Static(endpoints)
            } else {
                Discovery::OriginalDst
            },
            lb_policy: if discovery_static {
                LbPolicy::RoundRobin
            } else {
                LbPolicy::ClusterProvided
            },
            connect_timeout: Duration::from_secs(1),
            thresholds: Thresholds {
                max_connections: 1,
                ..Thresholds::default()
            },
            http: HttpProtocolOptions::default(),
            upstream_bind: None,
            outlier_detection: None,
            healthy_panic_threshold: 50.0,
            stat_name: None,
            has_transport_socket: false,
            cleanup_interval: None,
            source_ip: None,
        })
    }

    fn proxy_config(cluster: &str) -> TcpProxy {
        TcpProxy {
            stat_prefix: "test".into(),
            cluster: ClusterSpecifier::Cluster(cluster.into()),
            idle_timeout: Some(Duration::from_secs(5)),
            access_log: vec![],
        }
    }

    /// An upstream that answers each line with the line reversed.
    async fn reverse_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let _ = s.read_to_end(&mut buf).await;
                    buf.reverse();
                    let _ = s.write_all(&buf).await;
                });
            }
        });
        addr
    }

    /// Runs the proxy for one accepted connection and returns what the client read back.
    async fn through_proxy(
        config: TcpProxy,
        clusters: Arc<ClusterManager>,
        original: Option<SocketAddr>,
    ) -> (Vec<u8>, Result<Transferred, TcpProxyError>) {
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let proxy = tokio::spawn(async move {
            let (s, _) = front.accept().await.unwrap();
            serve(s, &config, original, &clusters).await
        });
        let mut client = TcpStream::connect(front_addr).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        (out, proxy.await.unwrap())
    }

    #[tokio::test]
    async fn static_cluster_round_trip_with_half_close() {
        let upstream = reverse_server().await;
        let clusters = Arc::new(ClusterManager::new(ThreadRandom::shared()));
        clusters.update_clusters([cluster("backend", vec![upstream], true)]);
        let (out, result) = through_proxy(proxy_config("backend"), clusters, None).await;
        assert_eq!(out, b"olleh");
        assert_eq!(
            result.unwrap(),
            Transferred {
                downstream_to_upstream: 5,
                upstream_to_downstream: 5
            }
        );
    }

    #[tokio::test]
    async fn original_destination_cluster_goes_where_the_client_meant() {
        let upstream = reverse_server().await;
        let clusters = Arc::new(ClusterManager::new(ThreadRandom::shared()));
        clusters.update_clusters([cluster("PassthroughCluster", vec![], false)]);
        let (out, _) =
            through_proxy(proxy_config("PassthroughCluster"), clusters, Some(upstream)).await;
        assert_eq!(out, b"olleh");
    }

    #[tokio::test]
    async fn errors_close_the_connection() {
        let clusters = Arc::new(ClusterManager::new(ThreadRandom::shared()));
        let (out, result) = through_proxy(proxy_config("missing"), clusters.clone(), None).await;
        assert!(out.is_empty());
        assert_eq!(
            result.unwrap_err(),
            TcpProxyError::NoCluster("missing".into())
        );

        // A port nobody listens on: connect fails, the error names host and cluster.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        clusters.update_clusters([cluster("dead", vec![dead], true)]);
        let (_, result) = through_proxy(proxy_config("dead"), clusters, None).await;
        assert!(
            matches!(result, Err(TcpProxyError::ConnectFailed { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn failed_connects_and_drains_end_sessions() {
        let clusters = Arc::new(ClusterManager::new(ThreadRandom::shared()));
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let upstream = reverse_server().await;
        clusters.update_clusters([
            cluster("dead", vec![dead], true),
            cluster("backend", vec![upstream], true),
        ]);
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();

        let _client = TcpStream::connect(front_addr).await.unwrap();
        let (s, peer) = front.accept().await.unwrap();
        let mut session = TcpSession::new(peer, front_addr);
        let result = serve_session(
            s,
            &proxy_config("missing"),
            None,
            &clusters,
            &mut session,
            DrainWatch::never(),
        )
        .await;
        assert!(result.is_err());
        assert_eq!(session.flags.to_string(), "NC");

        let _client = TcpStream::connect(front_addr).await.unwrap();
        let (s, peer) = front.accept().await.unwrap();
        let mut session = TcpSession::new(peer, front_addr);
        let result = serve_session(
            s,
            &proxy_config("dead"),
            None,
            &clusters,
            &mut session,
            DrainWatch::never(),
        )
        .await;
        assert!(matches!(result, Err(TcpProxyError::ConnectFailed { .. })));
        assert_eq!(session.flags.to_string(), "UF,URX");
        assert_eq!(session.upstream_host, Some(dead));
        let stats = clusters.get("dead").unwrap();
        assert_eq!(
            stats
                .stats()
                .upstream_cx_connect_fail
                .load(Ordering::Relaxed),
            1
        );
        assert_eq!(stats.stats().upstream_cx_total.load(Ordering::Relaxed), 1);

        // An open connection ends at the drain deadline.
        let mut client = TcpStream::connect(front_addr).await.unwrap();
        let (s, peer) = front.accept().await.unwrap();
        let drain = crate::telemetry::Drain::default();
        let watch = drain.watch();
        let clusters2 = clusters.clone();
        let proxy = tokio::spawn(async move {
            let mut session = TcpSession::new(peer, front_addr);
            let r = serve_session(
                s,
                &proxy_config("backend"),
                None,
                &clusters2,
                &mut session,
                watch,
            )
            .await;
            (r, session)
        });
        client.write_all(b"abc").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let backend = clusters.get("backend").unwrap();
        assert_eq!(
            backend.stats().upstream_cx_active.load(Ordering::Relaxed),
            1
        );
        drain.start(Instant::now() + Duration::from_millis(20));
        let (r, session) = tokio::time::timeout(Duration::from_secs(5), proxy)
            .await
            .unwrap()
            .unwrap();
        r.unwrap();
        assert_eq!(session.end, TcpEnd::Drained);
        assert_eq!(session.bytes_received, 3);
        assert_eq!(
            backend.stats().upstream_cx_active.load(Ordering::Relaxed),
            0
        );
        assert_eq!(
            backend.stats().upstream_cx_destroy.load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn weighted_pick() {
        let spec = ClusterSpecifier::Weighted(vec![
            WeightedCluster {
                name: "a".into(),
                weight: 80,
            },
            WeightedCluster {
                name: "zero".into(),
                weight: 0,
            },
            WeightedCluster {
                name: "b".into(),
                weight: 20,
            },
        ]);
        let picks: Vec<&str> = (0..100).filter_map(|r| pick_cluster(&spec, r)).collect();
        assert_eq!(picks.iter().filter(|p| **p == "a").count(), 80);
        assert_eq!(picks.iter().filter(|p| **p == "b").count(), 20);
        assert!(pick_cluster(&ClusterSpecifier::Weighted(vec![]), 3).is_none());
    }
}
