//! A stock Envoy running as a sidecar inside a workload namespace.

mod bootstrap;
pub mod config_dump;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub use bootstrap::{
    AdsApi, Bootstrap, DEFAULT_ADMIN_PORT, SidecarNode, XDS_CLUSTER, static_cluster,
    static_http_listener,
};

use crate::bins;
use crate::client::{HttpClient, Response};
use crate::netns::{Netns, run_checked};
use crate::process::ManagedProcess;
use crate::wait::{GiveUp, wait_until};
use crate::workdir::WorkDir;

/// How long [`Envoy::start`] waits for the admin endpoint.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// An Envoy process in a namespace (`ip netns exec <ns> envoy -c <bootstrap>
/// --disable-hot-restart --concurrency 1 --log-level info --drain-time-s 1`).
/// Its admin endpoint is reached from inside the namespace. Killed on drop;
/// the log is printed if the dropping thread is panicking.
#[derive(Debug)]
pub struct Envoy {
    // Declared first so the process dies before its directory is removed.
    process: ManagedProcess,
    netns: Netns,
    admin: SocketAddr,
    admin_client: HttpClient,
    bootstrap_path: PathBuf,
    _dir: WorkDir,
}

impl Envoy {
    /// Writes `bootstrap`, starts Envoy in `netns` and waits until its admin
    /// endpoint answers (not until it is LIVE: see [`Envoy::wait_live`]).
    pub async fn start(netns: &Netns, bootstrap: &Bootstrap) -> Result<Self> {
        Self::start_with_args(netns, bootstrap, &[]).await
    }

    /// [`Envoy::start`] with extra command-line arguments (e.g. a component
    /// log level: `["--component-log-level", "upstream:debug"]`).
    pub async fn start_with_args(
        netns: &Netns,
        bootstrap: &Bootstrap,
        extra_args: &[&str],
    ) -> Result<Self> {
        Self::start_binary(netns, bootstrap, &bins::envoy()?, extra_args).await
    }

    /// Starts another Envoy-compatible proxy (strait-proxy) with Envoy's flags.
    pub async fn start_binary(
        netns: &Netns,
        bootstrap: &Bootstrap,
        binary: &std::path::Path,
        extra_args: &[&str],
    ) -> Result<Self> {
        let binary = binary.to_path_buf();
        let dir = WorkDir::new("envoy")?;
        let bootstrap_path = dir.write("bootstrap.yaml", &bootstrap.to_yaml()?)?;
        let mut args: Vec<String> = [
            "-c",
            path_str(&bootstrap_path)?,
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "info",
            "--drain-time-s",
            "1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        let log = dir.path().join("envoy.log");
        let process = ManagedProcess::spawn("envoy", netns, &binary, &args, &[], &log)?;
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, bootstrap.admin_port));
        let envoy = Self {
            process,
            netns: netns.clone(),
            admin,
            admin_client: HttpClient::new(netns).with_timeout(ADMIN_REQUEST_TIMEOUT),
            bootstrap_path,
            _dir: dir,
        };
        let this = &envoy;
        wait_until("the Envoy admin endpoint", ADMIN_TIMEOUT, || async move {
            this.check_running()?;
            this.admin_get("/server_info").await.map(|_| true)
        })
        .await
        .with_context(|| envoy.log_tail())?;
        Ok(envoy)
    }

    /// Runs `envoy --mode validate` on `bootstrap`: Envoy's own verdict on
    /// whether it would accept the file, without starting a server.
    pub fn validate(bootstrap: &Bootstrap) -> Result<()> {
        let binary = bins::envoy()?;
        let dir = WorkDir::new("envoy-validate")?;
        let path = dir.write("bootstrap.yaml", &bootstrap.to_yaml()?)?;
        run_checked(
            Command::new(binary)
                .args(["--mode", "validate", "--disable-hot-restart", "-c"])
                .arg(&path),
        )
        .map(|_| ())
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// `127.0.0.1:<admin port>`, valid inside the namespace.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn bootstrap_path(&self) -> &Path {
        &self.bootstrap_path
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The whole Envoy log so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// The end of the log, for error messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    fn check_running(&self) -> Result<()> {
        match self.process.exited() {
            Some(status) => Err(GiveUp(format!("envoy exited: {status}")).into()),
            None => Ok(()),
        }
    }

    /// `GET <path>` on the admin endpoint; a non-2xx answer is an error.
    pub async fn admin_get(&self, path: &str) -> Result<Response> {
        let response = self.admin_client.get(self.admin, "localhost", path).await?;
        if !(200..300).contains(&response.status) {
            bail!(
                "admin {path} answered {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(response)
    }

    /// `POST <path>` on the admin endpoint (e.g. `/reset_counters`,
    /// `/logging?level=debug`).
    pub async fn admin_post(&self, path: &str) -> Result<Response> {
        let spec = crate::client::RequestSpec::get("localhost", path).method(http::Method::POST);
        let response = self.admin_client.send(self.admin, &spec).await?;
        if !(200..300).contains(&response.status) {
            bail!(
                "admin POST {path} answered {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(response)
    }

    /// `/config_dump` (without EDS).
    pub async fn config_dump(&self) -> Result<Value> {
        self.admin_get("/config_dump").await?.json()
    }

    /// `/config_dump?include_eds`: also the endpoints Envoy holds.
    pub async fn config_dump_with_eds(&self) -> Result<Value> {
        self.admin_get("/config_dump?include_eds").await?.json()
    }

    /// `/stats` as text, one `name: value` per line.
    pub async fn stats(&self) -> Result<String> {
        Ok(self.admin_get("/stats").await?.text())
    }

    /// The value of counter or gauge `name`, `None` if Envoy has no such stat.
    pub async fn stat(&self, name: &str) -> Result<Option<u64>> {
        Ok(parse_stat(&self.stats().await?, name))
    }

    pub async fn listener_names(&self) -> Result<Vec<String>> {
        Ok(config_dump::listener_names(&self.config_dump().await?))
    }

    pub async fn cluster_names(&self) -> Result<Vec<String>> {
        Ok(config_dump::cluster_names(&self.config_dump().await?))
    }

    pub async fn route_config_names(&self) -> Result<Vec<String>> {
        Ok(config_dump::route_config_names(&self.config_dump().await?))
    }

    /// Polls `/config_dump` until `predicate` holds and returns that dump. On
    /// timeout the error names `what` and quotes the end of Envoy's log.
    pub async fn wait_for<F>(
        &self,
        what: &str,
        timeout: Duration,
        mut predicate: F,
    ) -> Result<Value>
    where
        F: FnMut(&Value) -> bool,
    {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            self.check_running()
                .with_context(|| format!("waiting for {what}"))
                .with_context(|| self.log_tail())?;
            match self.config_dump().await {
                Ok(dump) if predicate(&dump) => return Ok(dump),
                Ok(_) => {}
                Err(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                let last = last_error
                    .map(|e| format!("; last error: {e:#}"))
                    .unwrap_or_default();
                bail!(
                    "timed out after {timeout:?} waiting for {what}{last}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until `/ready` says `LIVE`: initial xDS fetches (if any) are done
    /// and workers are serving listeners.
    pub async fn wait_live(&self, timeout: Duration) -> Result<()> {
        wait_until("Envoy to be LIVE", timeout, || async move {
            self.check_running()?;
            let response = self
                .admin_client
                .get(self.admin, "localhost", "/ready")
                .await?;
            Ok(response.status == 200 && response.text().trim() == "LIVE")
        })
        .await
        .with_context(|| self.log_tail())
    }
}

/// Finds `name: <integer>` in `/stats` text.
pub fn parse_stat(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}
