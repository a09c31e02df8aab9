//! pilot-discovery, Strait's control plane, running in the hub namespace with
//! its file-based config store (`discovery --configDir`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bins;
use crate::client::{HttpClient, Response};
use crate::netns::Netns;
use crate::process::ManagedProcess;
use crate::wait::{GiveUp, wait_until};
use crate::workdir::WorkDir;

/// Plaintext xDS (gRPC).
pub const GRPC_PORT: u16 = 15010;
/// Debug and readiness (`/ready`, `/debug/...`).
pub const HTTP_PORT: u16 = 8080;
/// Prometheus `/metrics`.
pub const MONITORING_PORT: u16 = 15014;

const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start pilot-discovery.
#[derive(Debug, Clone, Default)]
pub struct PilotOptions {
    /// The executable; [`bins::strait`]`("pilot-discovery")` when `None`.
    pub binary: Option<PathBuf>,
    /// The `--configDir`; a fresh temporary directory when `None`.
    pub config_dir: Option<PathBuf>,
    /// Files written into the config directory before start: (file name, YAML).
    pub configs: Vec<(String, String)>,
    /// Appended to the command line.
    pub extra_args: Vec<String>,
    /// Added to the environment (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// How long to wait for `/ready`; 30 s when `None`.
    pub ready_timeout: Option<Duration>,
}

impl PilotOptions {
    pub fn config(mut self, file_name: &str, yaml: &str) -> Self {
        self.configs.push((file_name.to_owned(), yaml.to_owned()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A running `pilot-discovery discovery --configDir DIR --grpcAddr <hub>:15010
/// --httpAddr <hub>:8080 --monitoringAddr <hub>:15014`. Killed on drop; the log
/// is printed if the dropping thread is panicking.
#[derive(Debug)]
pub struct Pilot {
    // Declared first so the process dies before its directory is removed.
    process: ManagedProcess,
    netns: Netns,
    client: HttpClient,
    config_dir: PathBuf,
    _dir: WorkDir,
}

impl Pilot {
    /// Starts pilot-discovery in `netns` (the hub, normally) and waits until
    /// `/ready` answers 200.
    pub async fn start(netns: &Netns, options: PilotOptions) -> Result<Self> {
        let binary = match &options.binary {
            Some(b) => b.clone(),
            None => bins::strait("pilot-discovery")?,
        };
        let dir = WorkDir::new("pilot")?;
        let config_dir = match &options.config_dir {
            Some(d) => d.clone(),
            None => {
                let d = dir.path().join("config");
                std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
                d
            }
        };
        for (name, yaml) in &options.configs {
            write_atomically(&config_dir, name, yaml)?;
        }
        let ip = netns.ip();
        let mut args = vec![
            "discovery".to_owned(),
            "--configDir".to_owned(),
            config_dir
                .to_str()
                .with_context(|| format!("{} is not UTF-8", config_dir.display()))?
                .to_owned(),
            "--grpcAddr".to_owned(),
            SocketAddr::from((ip, GRPC_PORT)).to_string(),
            "--httpAddr".to_owned(),
            SocketAddr::from((ip, HTTP_PORT)).to_string(),
            "--monitoringAddr".to_owned(),
            SocketAddr::from((ip, MONITORING_PORT)).to_string(),
        ];
        args.extend(options.extra_args.iter().cloned());
        let log = dir.path().join("pilot-discovery.log");
        let process =
            ManagedProcess::spawn("pilot-discovery", netns, &binary, &args, &options.env, &log)?;
        let pilot = Self {
            process,
            netns: netns.clone(),
            client: HttpClient::new(netns).with_timeout(REQUEST_TIMEOUT),
            config_dir,
            _dir: dir,
        };
        pilot
            .wait_ready(options.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT))
            .await?;
        Ok(pilot)
    }

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

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
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

    /// Writes (or replaces) a config file; the write is atomic (temporary
    /// file, then rename), so the watcher never reads half a file.
    pub fn write_config(&self, file_name: &str, yaml: &str) -> Result<PathBuf> {
        write_atomically(&self.config_dir, file_name, yaml)
    }

    pub fn remove_config(&self, file_name: &str) -> Result<()> {
        let path = self.config_dir.join(file_name);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
    }

    fn check_running(&self) -> Result<()> {
        match self.process.exited() {
            Some(status) => Err(GiveUp(format!("pilot-discovery exited: {status}")).into()),
            None => Ok(()),
        }
    }

    /// `GET <path>` on the HTTP (debug) port, any status.
    pub async fn get(&self, path: &str) -> Result<Response> {
        self.client
            .get(self.http_addr(), &self.http_addr().to_string(), path)
            .await
    }

    /// `GET <path>` on the HTTP port; a non-2xx answer is an error.
    pub async fn get_text(&self, path: &str) -> Result<String> {
        let response = self.get(path).await?;
        if !(200..300).contains(&response.status) {
            bail!(
                "pilot {path} answered {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(response.text())
    }

    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let text = self.get_text(path).await?;
        serde_json::from_str(&text).with_context(|| format!("pilot {path} is not JSON: {text}"))
    }

    /// `/metrics` on the monitoring port.
    pub async fn metrics(&self) -> Result<String> {
        let addr = self.monitoring_addr();
        let response = self.client.get(addr, &addr.to_string(), "/metrics").await?;
        if response.status != 200 {
            bail!(
                "pilot /metrics answered {}: {}",
                response.status,
                response.text()
            );
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

fn write_atomically(dir: &Path, file_name: &str, contents: &str) -> Result<PathBuf> {
    if file_name.contains('/') || file_name.starts_with('.') {
        bail!("config file name {file_name:?} must be a plain, visible file name");
    }
    let path = dir.join(file_name);
    // A dot-file without a YAML extension: watchers ignore it.
    let tmp = dir.join(format!(".{file_name}.tmp"));
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}
