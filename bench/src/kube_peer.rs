//! A pilot-discovery — Strait's or Istio's — watching a real kube-apiserver through
//! a kubeconfig, as a child process on free loopback ports, for the Kubernetes
//! benchmark (`benches/kube.rs`). Unlike [`crate::server`] there is no config
//! directory: every Service, EndpointSlice and Istio resource comes from the API.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::procstat::{self, Usage};
use crate::server::{Flavor, Ports, tail, wait_http_ready};

/// Where Istio's pilot-discovery runs as itself (its default `POD_NAMESPACE`); the
/// benchmark creates it so leader election and the `istio` ConfigMap watch have a
/// namespace to look in.
pub const ISTIO_NAMESPACE: &str = "istio-system";

#[derive(Clone, Debug)]
pub struct KubePilotSpec {
    pub flavor: Flavor,
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    /// Log file and working directory; Istio resolves `./etc/...` and `./var/...`
    /// against it.
    pub work_dir: PathBuf,
}

impl KubePilotSpec {
    pub fn args(&self, ports: &Ports) -> Vec<String> {
        let nowhere = self.work_dir.join("absent");
        let mut args = vec![
            "discovery".to_string(),
            format!("--kubeconfig={}", self.kubeconfig.display()),
            format!("--grpcAddr={}", ports.grpc),
            format!("--httpAddr={}", ports.http),
            format!("--monitoringAddr={}", ports.monitoring),
            // No mesh config file: both use their defaults (and Istio also the
            // `istio` ConfigMap, which does not exist).
            format!("--meshConfig={}", nowhere.join("mesh").display()),
            "--domain=cluster.local".to_string(),
        ];
        match self.flavor {
            Flavor::Strait => args.push("--log_output_level=warn".to_string()),
            Flavor::Istio => args.extend([
                // Free ports instead of the fixed defaults (15017, 15012, 9876), so
                // nothing else on the machine collides with it.
                format!("--httpsAddr={}", ports.https),
                format!("--secureGRPCAddr={}", ports.secure_grpc),
                format!(
                    "--networksConfig={}",
                    nowhere.join("meshNetworks").display()
                ),
                "--ctrlz_port=0".to_string(),
                "--log_output_level=default:warn".to_string(),
            ]),
        }
        args
    }

    pub fn envs(&self) -> Vec<(&'static str, String)> {
        match self.flavor {
            Flavor::Strait => vec![],
            // The Kubernetes registry is Istio's default (`--registries=Kubernetes`),
            // so, unlike the file-mode benchmark, no fake client: it lists and
            // watches the apiserver itself. CRDs it knows but the cluster lacks
            // (Gateway API, security, telemetry) are watched lazily, so the five
            // networking CRDs both control planes read are enough.
            Flavor::Istio => vec![
                ("POD_NAMESPACE", ISTIO_NAMESPACE.to_string()),
                ("POD_NAME", "istiod-bench".to_string()),
                ("REVISION", "default".to_string()),
                // Only the plaintext xDS port is measured; the CA would want its
                // root secret and a signing key.
                ("ENABLE_CA_SERVER", "false".to_string()),
                ("PILOT_ENABLE_ANALYSIS", "false".to_string()),
                ("ISTIOD_CUSTOM_HOST", "localhost".to_string()),
            ],
        }
    }

    /// The command line, for the report.
    pub fn command_line(&self, ports: &Ports) -> String {
        let mut parts: Vec<String> = self
            .envs()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.push(self.binary.display().to_string());
        parts.extend(self.args(ports));
        parts.join(" ")
    }
}

pub struct KubePilot {
    pub spec: KubePilotSpec,
    pub ports: Ports,
    pub log: PathBuf,
    pub started_at: Instant,
    child: Child,
    pid: u32,
    ticks: u64,
}

impl KubePilot {
    /// Spawns the process; its output goes to `<work_dir>/<flavor>-<label>.log`.
    pub fn start(spec: KubePilotSpec, label: &str) -> anyhow::Result<KubePilot> {
        std::fs::create_dir_all(&spec.work_dir)?;
        let ports = Ports::free()?;
        let log = spec
            .work_dir
            .join(format!("{}-{label}.log", spec.flavor.label()));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let started_at = Instant::now();
        let child = Command::new(&spec.binary)
            .args(spec.args(&ports))
            .envs(spec.envs())
            .current_dir(&spec.work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        let pid = child.id().context("child exited at once")?;
        Ok(KubePilot {
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

    pub fn command_line(&self) -> String {
        self.spec.command_line(&self.ports)
    }

    /// Polls `/ready` until it answers 200 (every watch listed once); returns the
    /// time since spawn.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(flavor: Flavor) -> KubePilotSpec {
        KubePilotSpec {
            flavor,
            binary: "/bin/pilot-discovery".into(),
            kubeconfig: "/k/kubeconfig".into(),
            work_dir: "/w".into(),
        }
    }

    #[test]
    fn both_watch_the_apiserver_on_the_given_ports() {
        let ports = Ports::free().unwrap();
        for flavor in [Flavor::Strait, Flavor::Istio] {
            let args = spec(flavor).args(&ports);
            assert!(args.contains(&"--kubeconfig=/k/kubeconfig".to_string()));
            assert!(args.contains(&format!("--grpcAddr={}", ports.grpc)));
            assert!(!args.iter().any(|a| a.starts_with("--configDir")));
            assert!(!args.iter().any(|a| a.starts_with("--registries")));
        }
        let istio = spec(Flavor::Istio);
        assert!(
            istio
                .args(&ports)
                .contains(&format!("--httpsAddr={}", ports.https))
        );
        let env = istio.envs();
        assert!(env.contains(&("POD_NAMESPACE", ISTIO_NAMESPACE.to_string())));
        assert!(!env.iter().any(|(k, _)| *k == "STRAIT_BENCH_FAKE_KUBE"));
        assert!(spec(Flavor::Strait).envs().is_empty());
    }
}
