//! Running a pilot-discovery (Strait's or Istio's) as a child process on loopback ports,
//! with its logs in a file, until it reports ready.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::http;
use crate::procstat::{self, Usage};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Strait,
    Istio,
}

impl Flavor {
    pub fn label(self) -> &'static str {
        match self {
            Flavor::Strait => "strait",
            Flavor::Istio => "istio",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub flavor: Flavor,
    pub binary: PathBuf,
    pub config_dir: PathBuf,
    /// Working directory; Istio resolves `./etc/...` and `./var/...` against it.
    pub work_dir: PathBuf,
}

#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub monitoring: SocketAddr,
    pub https: SocketAddr,
    pub secure_grpc: SocketAddr,
}

impl Ports {
    /// Free loopback ports, found by binding port 0 and releasing it.
    pub fn free() -> anyhow::Result<Ports> {
        let pick = || -> anyhow::Result<SocketAddr> {
            let l = TcpListener::bind("127.0.0.1:0")?;
            Ok(l.local_addr()?)
        };
        // Hold none of them: the child binds right after.
        Ok(Ports {
            grpc: pick()?,
            http: pick()?,
            monitoring: pick()?,
            https: pick()?,
            secure_grpc: pick()?,
        })
    }
}

pub struct Server {
    pub spec: ServerSpec,
    pub ports: Ports,
    pub log: PathBuf,
    pub started_at: Instant,
    child: Child,
    pid: u32,
    ticks: u64,
}

impl ServerSpec {
    fn args(&self, ports: &Ports) -> Vec<String> {
        let nowhere = self.work_dir.join("absent");
        let mut args = vec![
            "discovery".to_string(),
            format!("--configDir={}", self.config_dir.display()),
            format!("--grpcAddr={}", ports.grpc),
            format!("--httpAddr={}", ports.http),
            format!("--monitoringAddr={}", ports.monitoring),
            format!("--meshConfig={}", nowhere.join("mesh").display()),
            "--domain=cluster.local".to_string(),
        ];
        if self.flavor == Flavor::Istio {
            args.extend([
                // No platform registry: services come from ServiceEntries only, and no
                // Kubernetes client is created.
                "--registries=".to_string(),
                format!("--httpsAddr={}", ports.https),
                format!("--secureGRPCAddr={}", ports.secure_grpc),
                format!(
                    "--networksConfig={}",
                    nowhere.join("meshNetworks").display()
                ),
                "--log_output_level=default:warn".to_string(),
                // ControlZ would otherwise take the fixed localhost:9876.
                "--ctrlz_port=0".to_string(),
            ]);
        } else {
            args.push("--log_output_level=warn".to_string());
        }
        args
    }

    fn envs(&self) -> Vec<(&'static str, String)> {
        match self.flavor {
            Flavor::Strait => vec![],
            Flavor::Istio => vec![
                // See bench/istio/strait_bench_fakekube.go: pilot-discovery needs a
                // Kubernetes client to start; this gives it Istio's in-memory one.
                ("STRAIT_BENCH_FAKE_KUBE", "true".to_string()),
                ("POD_NAMESPACE", "istio-system".to_string()),
                ("POD_NAME", "istiod-bench".to_string()),
                ("REVISION", "default".to_string()),
                // Only the plaintext xDS port is used; the CA would need Kubernetes
                // secrets or files we do not provide.
                ("ENABLE_CA_SERVER", "false".to_string()),
                ("PILOT_ENABLE_ANALYSIS", "false".to_string()),
                ("ISTIOD_CUSTOM_HOST", "localhost".to_string()),
            ],
        }
    }

    /// The command line, for the report.
    pub fn command_line(&self, ports: &Ports) -> String {
        let env: Vec<String> = self
            .envs()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut parts = env;
        parts.push(self.binary.display().to_string());
        parts.extend(self.args(ports));
        parts.join(" ")
    }
}

impl Server {
    pub async fn start(spec: ServerSpec) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&spec.work_dir)?;
        let ports = Ports::free()?;
        let log = spec.work_dir.join(format!("{}.log", spec.flavor.label()));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&spec.binary);
        cmd.args(spec.args(&ports))
            .envs(spec.envs())
            .current_dir(&spec.work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let started_at = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        let pid = child.id().context("child exited at once")?;
        Ok(Server {
            spec,
            ports,
            log,
            started_at,
            child,
            pid,
            ticks: procstat::clock_ticks(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn usage(&self) -> anyhow::Result<Usage> {
        procstat::read(self.pid, self.ticks)
    }

    /// Polls `/ready` on the HTTP port until it answers 200; returns the time since spawn.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        wait_http_ready(
            &mut self.child,
            self.started_at,
            self.ports.http,
            &self.log,
            self.spec.flavor.label(),
            timeout,
        )
        .await
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

/// Polls `/ready` on `http_addr` until it answers 200, failing early (with the log's
/// tail) if the process exits; returns the time since `started_at`.
pub(crate) async fn wait_http_ready(
    child: &mut Child,
    started_at: Instant,
    http_addr: SocketAddr,
    log: &Path,
    label: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let deadline = started_at + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{label} exited with {status} before ready; log: {}",
                tail(log, 30)
            );
        }
        if let Ok(200) = http::get_status(http_addr, "/ready", Duration::from_millis(500)).await {
            return Ok(started_at.elapsed());
        }
        if Instant::now() > deadline {
            bail!(
                "{label} not ready after {timeout:?}; log: {}",
                tail(log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
