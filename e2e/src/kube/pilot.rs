//! pilot-discovery watching a [`KubeCluster`]: started in the cluster's network
//! namespace with `discovery --kubeconfig <the cluster's>` and no config directory, so
//! services, endpoints and Istio config all come from the API server.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::KubeCluster;
use crate::bins;
use crate::client::{HttpClient, Response};
use crate::netns::Netns;
use crate::pilot::{GRPC_PORT, HTTP_PORT, MONITORING_PORT};
use crate::process::ManagedProcess;
use crate::wait::{GiveUp, wait_until};
use crate::workdir::WorkDir;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
pub struct KubePilotOptions {
    /// Appended to the command line.
    pub extra_args: Vec<String>,
    /// Added to the environment (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Return as soon as the process runs instead of waiting for `/ready`.
    pub no_wait: bool,
}

/// A running pilot-discovery; killed on drop, its log printed if the dropping
/// thread is panicking.
#[derive(Debug)]
pub struct KubePilot {
    // Declared first so the process dies before its directory is removed.
    process: ManagedProcess,
    netns: Netns,
    client: HttpClient,
    _dir: WorkDir,
}

impl KubeCluster {
    /// Starts pilot-discovery against this cluster, in its network namespace (it
    /// must have one: the API server is on that namespace's loopback), serving
    /// xDS, debug and monitoring on the namespace's address.
    pub async fn start_pilot(&self, options: KubePilotOptions) -> Result<KubePilot> {
        let Some(netns) = self.netns().cloned() else {
            bail!("start the cluster in a network namespace to run pilot-discovery beside it");
        };
        let binary = bins::strait("pilot-discovery")?;
        let dir = WorkDir::new("kube-pilot")?;
        let ip = netns.ip();
        let mut args = vec![
            "discovery".to_owned(),
            format!("--kubeconfig={}", self.kubeconfig_path().display()),
            format!("--grpcAddr={}", SocketAddr::from((ip, GRPC_PORT))),
            format!("--httpAddr={}", SocketAddr::from((ip, HTTP_PORT))),
            format!(
                "--monitoringAddr={}",
                SocketAddr::from((ip, MONITORING_PORT))
            ),
            // No mesh config file: Istio's defaults.
            format!("--meshConfig={}", dir.path().join("absent").display()),
        ];
        args.extend(options.extra_args.iter().cloned());
        let log = dir.path().join("pilot-discovery.log");
        let process = ManagedProcess::spawn(
            "pilot-discovery",
            &netns,
            &binary,
            &args,
            &options.env,
            &log,
        )?;
        let pilot = KubePilot {
            process,
            client: HttpClient::new(&netns).with_timeout(REQUEST_TIMEOUT),
            netns,
            _dir: dir,
        };
        if !options.no_wait {
            pilot.wait_ready(DEFAULT_READY_TIMEOUT).await?;
        }
        Ok(pilot)
    }
}

impl KubePilot {
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Where sidecars connect for ADS.
    pub fn grpc_addr(&self) -> SocketAddr {
        SocketAddr::from((self.netns.ip(), GRPC_PORT))
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.netns.ip(), HTTP_PORT))
    }

    pub fn monitoring_addr(&self) -> SocketAddr {
        SocketAddr::from((self.netns.ip(), MONITORING_PORT))
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    fn check_running(&self) -> Result<()> {
        match self.process.exited() {
            Some(status) => Err(GiveUp(format!("pilot-discovery exited: {status}")).into()),
            None => Ok(()),
        }
    }

    /// `GET <path>` on the HTTP (debug) port, any status.
    pub async fn get(&self, path: &str) -> Result<Response> {
        let addr = self.http_addr();
        self.client.get(addr, &addr.to_string(), path).await
    }

    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let response = self.get(path).await?;
        if response.status != 200 {
            bail!(
                "pilot {path} answered {}: {}",
                response.status,
                response.text()
            );
        }
        let text = response.text();
        serde_json::from_str(&text).with_context(|| format!("pilot {path} is not JSON: {text}"))
    }

    /// `/metrics` on the monitoring port.
    pub async fn metrics(&self) -> Result<String> {
        let addr = self.monitoring_addr();
        let response = self.client.get(addr, &addr.to_string(), "/metrics").await?;
        if response.status != 200 {
            bail!("pilot /metrics answered {}", response.status);
        }
        Ok(response.text())
    }

    /// Waits until `/ready` answers 200; fails at once if the process exits.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        wait_until("pilot-discovery /ready", timeout, || async move {
            self.check_running()?;
            Ok(self.get("/ready").await?.status == 200)
        })
        .await
        .with_context(|| self.log_tail())
    }
}
