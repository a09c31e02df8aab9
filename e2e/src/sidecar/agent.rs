//! One `pilot-agent proxy sidecar` in a workload namespace, started as Istio's
//! injector would start it: as UID 1337, in a working directory holding
//! `etc/istio/pod/{labels,annotations}` (the downward API files) and
//! `etc/istio/proxy` (where the bootstrap goes), with the injector's environment.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::bins;
use crate::client::{HttpClient, RequestSpec, Response};
use crate::netns::Netns;
use crate::process::ManagedProcess;
use crate::wait::{GiveUp, wait_until};
use crate::workdir::WorkDir;

/// The proxy's user: the capture rules let its traffic through.
pub const PROXY_UID: u32 = 1337;
pub const ADMIN_PORT: u16 = 15000;
pub const STATUS_PORT: u16 = 15020;
pub const ENVOY_STATUS_PORT: u16 = 15021;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Which proxy the agent runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyKind {
    /// strait-proxy, the agent's default.
    #[default]
    Strait,
    /// A stock Envoy, through `--proxy-binary`.
    Envoy,
}

/// How to start one agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    pub pod: String,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// pilot-discovery's plaintext xDS address (`discoveryAddress`).
    pub discovery: Option<SocketAddr>,
    pub proxy: ProxyKind,
    /// Merged into the `PROXY_CONFIG` JSON.
    pub proxy_config: serde_json::Map<String, serde_json::Value>,
    /// Extra environment (e.g. `ISTIO_KUBE_APP_PROBERS`).
    pub env: Vec<(String, String)>,
    /// Extra flags after `proxy sidecar`.
    pub args: Vec<String>,
    /// Run as root instead of UID 1337.
    pub as_root: bool,
}

impl AgentOptions {
    /// A pod in `default` with labels `app` and `version`.
    pub fn new(pod: &str, app: &str, version: &str) -> AgentOptions {
        AgentOptions {
            pod: pod.to_owned(),
            namespace: "default".to_owned(),
            labels: vec![
                ("app".to_owned(), app.to_owned()),
                ("version".to_owned(), version.to_owned()),
            ],
            ..AgentOptions::default()
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn proxy_config(mut self, key: &str, value: serde_json::Value) -> Self {
        self.proxy_config.insert(key.to_owned(), value);
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }
}

/// The downward API's `key="value"` lines.
fn downward_api(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}\n", serde_json::Value::String(v.clone())))
        .collect()
}

/// A running pilot-agent. Killed on drop (the namespace's teardown ends the proxy).
#[derive(Debug)]
pub struct PilotAgent {
    // Declared first so the process dies before its directory is removed.
    process: ManagedProcess,
    netns: Netns,
    client: HttpClient,
    dir: WorkDir,
}

impl PilotAgent {
    /// Starts the agent; does not wait for anything.
    pub fn start(netns: &Netns, options: &AgentOptions) -> Result<PilotAgent> {
        let agent = bins::strait("pilot-agent")?;
        let dir = WorkDir::new(&format!("agent-{}", options.pod))?;
        let pod_dir = dir.path().join("etc/istio/pod");
        let proxy_dir = dir.path().join("etc/istio/proxy");
        for d in [&pod_dir, &proxy_dir] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        std::fs::write(pod_dir.join("labels"), downward_api(&options.labels))?;
        std::fs::write(
            pod_dir.join("annotations"),
            downward_api(&options.annotations),
        )?;
        if !options.as_root {
            for d in [dir.path(), proxy_dir.as_path()] {
                std::os::unix::fs::chown(d, Some(PROXY_UID), Some(PROXY_UID))
                    .with_context(|| format!("chown {}", d.display()))?;
            }
        }

        let mut proxy_config = options.proxy_config.clone();
        if let Some(d) = options.discovery {
            proxy_config
                .entry("discoveryAddress")
                .or_insert(json!(d.to_string()));
        }
        let mut env = vec![
            ("INSTANCE_IP".to_owned(), netns.ip().to_string()),
            ("POD_NAME".to_owned(), options.pod.clone()),
            ("POD_NAMESPACE".to_owned(), options.namespace.clone()),
            ("SERVICE_ACCOUNT".to_owned(), "default".to_owned()),
            ("ISTIO_META_CLUSTER_ID".to_owned(), "Kubernetes".to_owned()),
            (
                "ISTIO_META_INTERCEPTION_MODE".to_owned(),
                "REDIRECT".to_owned(),
            ),
            ("ISTIO_META_WORKLOAD_NAME".to_owned(), options.pod.clone()),
            (
                "PROXY_CONFIG".to_owned(),
                serde_json::Value::Object(proxy_config).to_string(),
            ),
        ];
        env.extend(options.env.iter().cloned());

        let mut args: Vec<String> = Vec::new();
        let program: PathBuf = if options.as_root {
            PathBuf::from("env")
        } else {
            args.extend([
                format!("--reuid={PROXY_UID}"),
                format!("--regid={PROXY_UID}"),
                "--clear-groups".to_owned(),
                "env".to_owned(),
            ]);
            PathBuf::from("setpriv")
        };
        // `env -C` gives the agent its working directory; both wrappers exec in place,
        // so the process id is the agent's own.
        args.extend([
            "-C".to_owned(),
            path_string(dir.path())?,
            path_string(&agent)?,
            "proxy".to_owned(),
            "sidecar".to_owned(),
            "--concurrency".to_owned(),
            "1".to_owned(),
        ]);
        if options.proxy == ProxyKind::Envoy {
            args.extend(["--proxy-binary".to_owned(), path_string(&bins::envoy()?)?]);
        }
        args.extend(options.args.iter().cloned());
        let log = dir.path().join("pilot-agent.log");
        let process = ManagedProcess::spawn(
            &format!("pilot-agent {}", options.pod),
            netns,
            &program,
            &args,
            &env,
            &log,
        )?;
        Ok(PilotAgent {
            process,
            netns: netns.clone(),
            client: HttpClient::new(netns).with_timeout(REQUEST_TIMEOUT),
            dir,
        })
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The agent's log, which also holds the proxy's.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// The bootstrap the agent wrote.
    pub fn bootstrap_path(&self) -> PathBuf {
        self.dir.path().join("etc/istio/proxy/envoy-rev.json")
    }

    pub fn exited(&self) -> Option<ExitStatus> {
        self.process.exited()
    }

    fn check_running(&self) -> Result<()> {
        match self.exited() {
            Some(status) => Err(GiveUp(format!("pilot-agent exited: {status}")).into()),
            None => Ok(()),
        }
    }

    async fn get(&self, addr: SocketAddr, path: &str) -> Result<Response> {
        self.client.get(addr, "localhost", path).await
    }

    /// `GET` on the status port (15020), from inside the namespace.
    pub async fn status_get(&self, path: &str) -> Result<Response> {
        self.get(SocketAddr::from((Ipv4Addr::LOCALHOST, STATUS_PORT)), path)
            .await
    }

    /// `POST` on the status port from localhost.
    pub async fn status_post(&self, path: &str) -> Result<Response> {
        let spec = RequestSpec::get("localhost", path).method(http::Method::POST);
        self.client
            .send(SocketAddr::from((Ipv4Addr::LOCALHOST, STATUS_PORT)), &spec)
            .await
    }

    /// `GET /healthz/ready` on the proxy's 15021 at the pod IP, as kubelet probes it.
    pub async fn readiness(&self) -> Result<u16> {
        let addr = SocketAddr::from((self.netns.ip(), ENVOY_STATUS_PORT));
        Ok(self.get(addr, "/healthz/ready").await?.status)
    }

    /// `GET` on the proxy's admin (15000).
    pub async fn admin_get(&self, path: &str) -> Result<Response> {
        let r = self
            .get(SocketAddr::from((Ipv4Addr::LOCALHOST, ADMIN_PORT)), path)
            .await?;
        if r.status != 200 {
            bail!("admin {path} answered {}: {}", r.status, r.text());
        }
        Ok(r)
    }

    /// The proxy's `/stats`.
    pub async fn stats(&self) -> Result<String> {
        Ok(self.admin_get("/stats").await?.text())
    }

    /// Waits until 15021 answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        wait_until("the sidecar to be ready (15021)", timeout, || async {
            self.check_running()?;
            Ok(self.readiness().await? == 200)
        })
        .await
        .with_context(|| self.log_tail())
    }

    /// Waits until the log contains `text` `times` times.
    pub async fn wait_log(&self, text: &str, times: usize, timeout: Duration) -> Result<()> {
        wait_until(
            &format!("{times}× {text:?} in the agent log"),
            timeout,
            || async { Ok(self.logs().matches(text).count() >= times) },
        )
        .await
        .with_context(|| self.log_tail())
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = i32::try_from(self.pid()).context("pid")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("sending {signal}"))
    }

    /// Waits for the agent to exit.
    pub async fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "pilot-agent still running after {timeout:?}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The proxy the agent started (its only child).
    pub fn proxy_pid(&self) -> Option<u32> {
        children_of(self.pid()).into_iter().next()
    }
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The exit code, or 128 + the signal, as a shell reports it.
pub fn shell_code(status: ExitStatus) -> Option<i32> {
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}

fn path_string(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", p.display()))
}
