//! `envoy.filters.network.tcp_proxy`: pick a cluster and host, connect, and copy bytes
//! both ways until both sides are done or the idle timeout passes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::config::listener::{ClusterSpecifier, TcpProxy};
use crate::upstream::cluster_state::ClusterState;
use crate::upstream::lb::LbContext;
use crate::upstream::manager::ClusterManager;
use crate::upstream::outlier::Outcome;

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

/// Serves one downstream connection through the tcp_proxy filter.
pub async fn serve(
    downstream: TcpStream,
    config: &TcpProxy,
    original_dst: Option<SocketAddr>,
    clusters: &ClusterManager,
) -> Result<Transferred, TcpProxyError> {
    let name = pick_cluster(&config.cluster, rand::random())
        .ok_or_else(|| TcpProxyError::NoCluster(String::new()))?
        .to_string();
    let cluster = clusters
        .get(&name)
        .ok_or_else(|| TcpProxyError::NoCluster(name.clone()))?;
    let _breaker = cluster
        .breakers()
        .try_acquire_connection()
        .ok_or_else(|| TcpProxyError::Overflow(name.clone()))?;
    let upstream = connect(&cluster, original_dst).await?;
    Ok(pipe(downstream, upstream, config.idle_timeout).await)
}

async fn connect(
    cluster: &ClusterState,
    original_dst: Option<SocketAddr>,
) -> Result<TcpStream, TcpProxyError> {
    let ctx = LbContext {
        original_dst,
        ..LbContext::default()
    };
    let host = cluster
        .choose_host(&ctx)
        .map_err(|_| TcpProxyError::NoHealthyUpstream(cluster.name().to_string()))?;
    let address = host.address();
    let config = cluster.config();
    let fail = |reason: String| TcpProxyError::ConnectFailed {
        cluster: cluster.name().to_string(),
        host: address,
        reason,
    };
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| fail(e.to_string()))?;
    if let Some(source) = config.upstream_bind {
        socket
            .bind(source)
            .map_err(|e| fail(format!("binding source {source}: {e}")))?;
    }
    let _ = socket.set_nodelay(true);
    match tokio::time::timeout(config.connect_timeout, socket.connect(address)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => {
            cluster.report_outcome(&host, Outcome::ConnectFailed, std::time::Instant::now());
            Err(fail(e.to_string()))
        }
        Err(_) => {
            cluster.report_outcome(&host, Outcome::ConnectFailed, std::time::Instant::now());
            Err(fail(format!(
                "timed out after {:?}",
                config.connect_timeout
            )))
        }
    }
}

/// Copies both directions, passing half-closes along, until both are done or nothing
/// moved for `idle`.
pub async fn pipe(a: TcpStream, b: TcpStream, idle: Option<Duration>) -> Transferred {
    let (mut a_read, mut a_write) = a.into_split();
    let (mut b_read, mut b_write) = b.into_split();
    let mut a_buf = vec![0u8; 16 * 1024];
    let mut b_buf = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    let mut moved = Transferred::default();
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
                        break;
                    }
                    moved.upstream_to_downstream += n as u64;
                    deadline = Instant::now() + idle;
                }
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    moved
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
