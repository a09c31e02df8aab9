//! One stage of the data-plane bench: network namespaces for a client pod and a server
//! pod joined by a bridge, pilot-discovery in the hub, and a pair of sidecars of one
//! kind (both Envoy, or both strait-proxy) configured by it, with Istio's traffic
//! capture:
//!
//! ```text
//! load generator ──► 10.96.0.20:8080 ─(iptables OUTPUT → :15001)─► client sidecar
//!   ─► pod IP:8080 over the bridge ─(iptables PREROUTING → :15006)─► server sidecar
//!   ─► pod IP:8080 from 127.0.0.6 ─► upstream server
//! ```
//!
//! The load generator and upstream server run in this process (their sockets made
//! inside the namespaces); the sidecars and pilot-discovery are child processes.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use strait_e2e::envoy::parse_stat;
use strait_e2e::{AdsApi, Bootstrap, Envoy, Netns, Pilot, PilotOptions, SidecarNode, Topology};

use super::affinity::{self, Pinning};
use super::config::{self, HTTP1_PORT, HTTP2_PORT};
use super::loadgen::{self, Connector, Protocol};
use super::upstream::Upstream;
use crate::mesh::Scenario;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Envoy,
    Strait,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Envoy => "envoy",
            Kind::Strait => "strait",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Binaries {
    pub envoy: PathBuf,
    pub strait_proxy: PathBuf,
    pub pilot: PathBuf,
}

impl Binaries {
    pub fn proxy(&self, kind: Kind) -> &Path {
        match kind {
            Kind::Envoy => &self.envoy,
            Kind::Strait => &self.strait_proxy,
        }
    }
}

#[derive(Clone, Debug)]
pub struct StageOptions {
    pub ads: AdsApi,
    pub body_bytes: usize,
    pub pinning: Option<Pinning>,
    /// How long the sidecars may take to become ready, or to take a config change.
    pub config_timeout: Duration,
}

/// The processes and namespaces of one stage; dropping it stops them all.
pub struct Stage {
    pub kind: Kind,
    // Drop order: the processes first, then the namespaces they live in.
    pub client: Envoy,
    pub server: Envoy,
    pub upstream: Upstream,
    pub pilot: Pilot,
    pub client_ns: Netns,
    pub server_ns: Netns,
    pub topology: Topology,
}

/// What the memory figure's config change took.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConfigChange {
    /// Clusters each sidecar (client, server) should hold afterwards, and holds.
    pub want: [u64; 2],
    pub clusters: [u64; 2],
    /// From the files appearing to the last push both sidecars ACKed.
    pub took: Duration,
}

impl Stage {
    pub async fn start(kind: Kind, bins: &Binaries, opts: &StageOptions) -> anyhow::Result<Stage> {
        let topology = Topology::new()?;
        let client_ns = topology.add_workload("client")?;
        let server_ns = topology.add_workload("server")?;
        let listeners = server_ns.run(|| {
            [HTTP1_PORT, HTTP2_PORT]
                .into_iter()
                .map(|p| std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)))
                .collect::<std::io::Result<Vec<_>>>()
        })??;
        let upstream = Upstream::start(listeners, opts.body_bytes)?;

        let mut pilot_options = PilotOptions {
            binary: Some(bins.pilot.clone()),
            ..PilotOptions::default()
        };
        for (name, text) in config::files(client_ns.ip(), server_ns.ip()) {
            pilot_options = pilot_options.config(&name, &text);
        }
        let pilot = Pilot::start(topology.hub(), pilot_options).await?;

        strait_e2e::capture::redirect_outbound(
            &client_ns,
            config::SERVICE_CIDR,
            config::OUTBOUND_CAPTURE_PORT,
        )?;
        for port in [HTTP1_PORT, HTTP2_PORT] {
            strait_e2e::capture::iptables(
                &server_ns,
                &[
                    "-t",
                    "nat",
                    "-A",
                    "PREROUTING",
                    "-p",
                    "tcp",
                    "--dport",
                    &port.to_string(),
                    "-j",
                    "REDIRECT",
                    "--to-ports",
                    &config::INBOUND_CAPTURE_PORT.to_string(),
                ],
            )?;
        }

        let binary = bins.proxy(kind);
        let client = start_sidecar(
            &client_ns,
            config::CLIENT_POD,
            config::CLIENT_APP,
            pilot.grpc_addr(),
            opts.ads,
            binary,
        )
        .await
        .context("client sidecar")?;
        let server = start_sidecar(
            &server_ns,
            config::SERVER_POD,
            config::SERVICE,
            pilot.grpc_addr(),
            opts.ads,
            binary,
        )
        .await
        .context("server sidecar")?;
        if let Some(p) = opts.pinning {
            affinity::pin_process(client.pid(), p.proxies)?;
            affinity::pin_process(server.pid(), p.proxies)?;
        }
        let stage = Stage {
            kind,
            client,
            server,
            upstream,
            pilot,
            client_ns,
            server_ns,
            topology,
        };
        stage.wait_serving(opts.config_timeout).await?;
        Ok(stage)
    }

    /// Both sidecars' pids: client, server.
    pub fn pids(&self) -> [u32; 2] {
        [self.client.pid(), self.server.pid()]
    }

    /// Opens connections from the client pod to the service VIP on `port`.
    pub fn connector(&self, port: u16) -> Connector {
        let ns = self.client_ns.clone();
        let addr: SocketAddr = config::target(port);
        Arc::new(move || {
            match ns.run(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))) {
                Ok(r) => r,
                Err(e) => Err(std::io::Error::other(e)),
            }
        })
    }

    /// Until both sidecars are ready and a request of each protocol makes it through
    /// both of them to the upstream server.
    async fn wait_serving(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.check_serving().await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} sidecars not serving after {timeout:?}: {last}\n{}\n{}",
                    self.kind.label(),
                    self.client.log_tail(),
                    self.server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn check_serving(&self) -> anyhow::Result<()> {
        for sidecar in [&self.client, &self.server] {
            let ready = sidecar.admin_get("/ready").await?;
            if ready.status != 200 {
                bail!("/ready answered {}", ready.status);
            }
        }
        for (protocol, port) in [(Protocol::Http1, HTTP1_PORT), (Protocol::Http2, HTTP2_PORT)] {
            let connect = self.connector(port);
            let status = tokio::task::spawn_blocking(move || {
                loadgen::probe(
                    protocol,
                    connect,
                    &config::authority(port),
                    "/",
                    Duration::from_secs(5),
                )
            })
            .await??;
            if status != 200 {
                bail!("{} probe answered {status}", protocol.label());
            }
        }
        let c = self.upstream.counters();
        let (all, via) = (
            c.connections.load(Ordering::Relaxed),
            c.connections_from_sidecar.load(Ordering::Relaxed),
        );
        if via == 0 || via != all {
            bail!("{via} of {all} upstream connections came from the server sidecar");
        }
        Ok(())
    }

    /// `cluster_manager.active_clusters` and `…warming_clusters` of a sidecar.
    pub async fn clusters(sidecar: &Envoy) -> anyhow::Result<(u64, u64)> {
        let text = sidecar
            .admin_get("/stats?filter=cluster_manager.")
            .await?
            .text();
        Ok((
            parse_stat(&text, "cluster_manager.active_clusters").unwrap_or(0),
            parse_stat(&text, "cluster_manager.warming_clusters").unwrap_or(0),
        ))
    }

    /// Adds `scenario`'s services to pilot-discovery's config directory (each kind's
    /// files renamed in at once) and waits until pilot-discovery has pushed new
    /// clusters and routes to both sidecars, they have ACKed every type, and nothing
    /// more went out for a second. Only pilot is asked: polling a sidecar's `/stats`
    /// would leave its allocations in the memory that is measured next. Check what
    /// the sidecars hold afterwards with [`Stage::verify_clusters`].
    pub async fn add_services(
        &self,
        scenario: &Scenario,
        timeout: Duration,
    ) -> anyhow::Result<ConfigChange> {
        let before = [
            Self::clusters(&self.client).await?.0,
            Self::clusters(&self.server).await?.0,
        ];
        let first = nonces(&self.pilot.get_json("/debug/syncz").await?);
        let config_dir = self.pilot.config_dir().to_path_buf();
        let staging = config_dir
            .parent()
            .context("config dir has no parent")?
            .join("staging");
        scenario.write(&staging)?;
        let started = Instant::now();
        for sub in ["serviceentries", "destinationrules", "virtualservices"] {
            std::fs::rename(staging.join(sub), config_dir.join(sub))
                .with_context(|| format!("moving {sub} into {}", config_dir.display()))?;
        }
        let added = scenario.services + 2 * scenario.destination_rules.min(scenario.services);
        let want = [before[0] + added as u64, before[1] + added as u64];
        let deadline = started + timeout;
        let mut previous: Option<Vec<String>> = None;
        let mut took = Duration::ZERO;
        loop {
            let sync = self.pilot.get_json("/debug/syncz").await?;
            let now = nonces(&sync);
            let pushed = pushed_again(&first, &now);
            if all_acked(&sync, 2) && pushed {
                if previous.as_ref() == Some(&now) {
                    return Ok(ConfigChange {
                        want,
                        clusters: [0; 2],
                        took,
                    });
                }
                took = started.elapsed();
                previous = Some(now);
            } else {
                previous = None;
            }
            if Instant::now() > deadline {
                bail!(
                    "the {} new services were not pushed and ACKed within {timeout:?}",
                    scenario.services
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// After [`Stage::add_services`]: the clusters both sidecars hold, an error if
    /// fewer than it expected or some still warming.
    pub async fn verify_clusters(&self, change: &mut ConfigChange) -> anyhow::Result<()> {
        for (i, sidecar) in [&self.client, &self.server].into_iter().enumerate() {
            let (active, warming) = Self::clusters(sidecar).await?;
            change.clusters[i] = active;
            if active < change.want[i] || warming > 0 {
                bail!(
                    "sidecar {i} holds {active} clusters ({warming} warming), want {}",
                    change.want[i]
                );
            }
        }
        Ok(())
    }
}

/// Whether every connection got a new CDS and RDS push since `before` (nonces as
/// [`nonces`] lists them: 8 per connection, cluster first, route fifth).
fn pushed_again(before: &[String], now: &[String]) -> bool {
    before.len() == now.len()
        && !now.is_empty()
        && now
            .chunks(8)
            .zip(before.chunks(8))
            .all(|(n, b)| n.len() == 8 && n[0] != b[0] && n[4] != b[4])
}

const XDS_KINDS: [&str; 4] = ["cluster", "listener", "route", "endpoint"];

/// Every connection's sent and ACKed nonces, to tell whether anything went out.
fn nonces(syncz: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in syncz.as_array().into_iter().flatten() {
        for k in XDS_KINDS {
            for side in ["sent", "acked"] {
                out.push(
                    p[format!("{k}_{side}")]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    out
}

/// pilot's `/debug/syncz`: `proxies` connections, each with every type's last sent
/// nonce ACKed.
fn all_acked(syncz: &Value, proxies: usize) -> bool {
    let Some(list) = syncz.as_array() else {
        return false;
    };
    list.len() == proxies
        && list.iter().all(|p| {
            XDS_KINDS.iter().all(|k| {
                let sent = &p[format!("{k}_sent")];
                sent.as_str().is_some_and(|s| !s.is_empty()) && *sent == p[format!("{k}_acked")]
            })
        })
}

async fn start_sidecar(
    ns: &Netns,
    pod: &str,
    app: &str,
    pilot: SocketAddr,
    api: AdsApi,
    binary: &Path,
) -> anyhow::Result<Envoy> {
    let node = SidecarNode::new(ns.ip(), pod, config::NAMESPACE)
        .label("app", app)
        .label("version", "v1");
    let bootstrap = Bootstrap::new(node).with_ads(pilot, api);
    // Envoy::start_binary passes Envoy's flags, `--concurrency 1` included.
    Envoy::start_binary(ns, &bootstrap, binary, &[]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn syncz_all_acked() {
        let p = |sent: &str, acked: &str| {
            json!({"cluster_sent": "a", "cluster_acked": "a", "listener_sent": "b",
                   "listener_acked": "b", "route_sent": sent, "route_acked": acked,
                   "endpoint_sent": "d", "endpoint_acked": "d"})
        };
        assert!(all_acked(&json!([p("c", "c"), p("e", "e")]), 2));
        assert!(!all_acked(&json!([p("c", "c"), p("e", "d")]), 2));
        assert!(!all_acked(&json!([p("c", "c")]), 2));
        assert!(!all_acked(&json!([p("", "")]), 1));
        assert!(!all_acked(&json!({}), 0));
        assert_ne!(nonces(&json!([p("c", "c")])), nonces(&json!([p("e", "e")])));
        assert_eq!(nonces(&json!([p("c", "c")])).len(), 8);
        let before = nonces(&json!([p("c", "c"), p("c", "c")]));
        let routes_only = nonces(&json!([p("x", "x"), p("x", "x")]));
        assert!(!pushed_again(&before, &routes_only), "clusters unchanged");
        let mut both = json!([p("x", "x"), p("x", "x")]);
        for c in both.as_array_mut().unwrap() {
            c["cluster_sent"] = json!("n");
        }
        assert!(pushed_again(&before, &nonces(&both)));
        assert!(!pushed_again(&before, &nonces(&json!([p("x", "x")]))));
    }
}
