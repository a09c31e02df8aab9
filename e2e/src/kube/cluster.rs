//! [`KubeCluster`]: etcd, kube-apiserver and kube-controller-manager on
//! loopback, with their own certificates, ports and data directory.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::pidfile::{self, Recorded};
use super::pki::{self, Pki};
use super::ports::free_ports;
use super::process::KubeProcess;
use super::tools::KubeTools;
use crate::netns::Netns;
use crate::wait::{GiveUp, wait_until};
use crate::workdir::WorkDir;

/// Everything listens here (inside the chosen namespace, if any).
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// kubeadm's default: Istio's docs and our tests use VIPs from it.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Grace period for SIGTERM in [`KubeCluster::stop`].
const STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 40;
/// The issuer Kubernetes clusters commonly use; tokens carry it as `iss`.
const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Controllers that act on Node heartbeats. Without a kubelet no Node ever
/// reports, so they would mark every Node unreachable and its Pods not ready
/// about a minute after creation, behind the tests' back.
const DISABLED_CONTROLLERS: [&str; 3] = [
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "device-taint-eviction-controller",
];

/// How to start a [`KubeCluster`].
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// Run every process (and kubectl, helm) inside this network namespace, on
    /// its loopback; so pilot-discovery in the same namespace reaches the
    /// apiserver, and the apiserver its webhooks. The caller's namespace when
    /// `None`.
    pub netns: Option<Netns>,
    /// Keep certificates, kubeconfig, etcd data, logs and `pids` here (it must
    /// not hold a running control plane). A temporary directory, removed on
    /// drop unless a test is panicking, when `None`.
    pub dir: Option<PathBuf>,
    /// `--service-cluster-ip-range`; [`DEFAULT_SERVICE_CIDR`] when `None`.
    pub service_cidr: Option<String>,
    /// Appended to kube-apiserver's command line (later flags win).
    pub apiserver_args: Vec<String>,
    /// Appended to kube-controller-manager's command line.
    pub controller_manager_args: Vec<String>,
    /// The binaries; [`KubeTools::get`] when `None`.
    pub tools: Option<KubeTools>,
    /// How long to wait for the apiserver and the controllers; 180 s when `None`.
    pub ready_timeout: Option<Duration>,
    /// Outlive this process (for `scripts/kube-env`): own process group, and
    /// nothing stopped on drop. Stop it with [`pidfile::stop_recorded`].
    pub detached: bool,
}

/// A running control plane. Dropping it kills its processes (and removes its
/// temporary directory unless the thread is panicking, when the log tails are
/// printed and the directory kept); [`KubeCluster::stop`] does the same
/// gracefully and reports failures.
///
/// There is no kubelet: Pods stay where the API puts them. Give a Pod a
/// `spec.nodeName` of a Node made with [`KubeCluster::add_node`] and set its
/// status with [`KubeCluster::set_pod_status`]; the EndpointSlice controller
/// ignores Pods whose Node does not exist.
#[derive(Debug)]
pub struct KubeCluster {
    /// Start order: etcd, kube-apiserver, kube-controller-manager.
    processes: Vec<KubeProcess>,
    tools: KubeTools,
    netns: Option<Netns>,
    dir: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    pki: Option<Pki>,
    /// kube-apiserver's command line, to start it again.
    api_args: Vec<String>,
    /// How many times kube-apiserver was started (each run logs to its own file).
    api_runs: usize,
    detached: bool,
    stopped: bool,
    // Last, so the processes are gone before their directory is removed.
    _workdir: Option<WorkDir>,
}

impl KubeCluster {
    /// Starts etcd and kube-apiserver, waits for `/readyz`, then starts
    /// kube-controller-manager and waits until it has made the `default`
    /// ServiceAccount (Pods cannot be created before). Builds the binaries
    /// first if the cache lacks them.
    pub async fn start(options: KubeOptions) -> Result<Self> {
        let tools = match options.tools.clone() {
            Some(t) => t,
            None => tokio::task::spawn_blocking(KubeTools::get).await??,
        };
        let (dir, workdir) = match &options.dir {
            Some(dir) => (prepare_dir(dir)?, None),
            None => {
                pidfile::sweep_stale(&workdir_base());
                let w = WorkDir::new("kube")?;
                (w.path().to_owned(), Some(w))
            }
        };
        let kubeconfig = dir.join("kubeconfig");
        let mut cluster = Self {
            processes: Vec::new(),
            tools,
            netns: options.netns.clone(),
            dir,
            kubeconfig,
            server: String::new(),
            pki: None,
            api_args: Vec::new(),
            api_runs: 0,
            detached: options.detached,
            stopped: false,
            _workdir: workdir,
        };
        // From here on, an error drops `cluster`, which kills what was started.
        cluster.launch(&options).await?;
        Ok(cluster)
    }

    async fn launch(&mut self, options: &KubeOptions) -> Result<()> {
        let service_cidr = options
            .service_cidr
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVICE_CIDR.to_owned());
        let service_ip = first_service_ip(&service_cidr)?;
        let [etcd_port, peer_port, api_port] = free_ports(self.netns.as_ref(), LOOPBACK, 3)?[..]
        else {
            bail!("free_ports returned the wrong number of ports");
        };
        let pki = Pki::generate(&self.dir.join("pki"), LOOPBACK, service_ip)?;
        self.server = format!("https://{LOOPBACK}:{api_port}");
        std::fs::write(&self.kubeconfig, pki::kubeconfig(&self.server, &pki)?)
            .with_context(|| format!("writing {}", self.kubeconfig.display()))?;
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let timeout = options.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT);

        let etcd_url = format!("http://{LOOPBACK}:{etcd_port}");
        let peer_url = format!("http://{LOOPBACK}:{peer_port}");
        let etcd_args = vec![
            "--name=strait".to_owned(),
            format!("--data-dir={}", self.dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=strait={peer_url}"),
            // Test data is disposable; fsync is most of etcd's latency on a
            // busy disk.
            "--unsafe-no-fsync".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let etcd = self.tools.etcd();
        self.spawn("etcd", &etcd, &etcd_args, &logs)?;

        let mut api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={LOOPBACK}"),
            format!("--advertise-address={LOOPBACK}"),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", self.dir.join("pki").display()),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            format!("--service-account-issuer={SA_ISSUER}"),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ),
            format!("--service-cluster-ip-range={service_cidr}"),
            "--authorization-mode=RBAC".to_owned(),
            // Sidecar injection adds privileged init containers.
            "--allow-privileged=true".to_owned(),
            // The `kubernetes` Service would get the loopback address as its
            // endpoint, which Endpoints validation rejects; leave it without.
            "--endpoint-reconciler-type=none".to_owned(),
            "--profiling=false".to_owned(),
        ];
        api_args.extend(options.apiserver_args.iter().cloned());
        self.api_args = api_args;
        self.launch_apiserver(timeout).await?;

        let mut kcm_args = vec![
            format!("--kubeconfig={}", self.kubeconfig.display()),
            "--leader-elect=false".to_owned(),
            // No serving endpoint: one port fewer to allocate per cluster.
            "--secure-port=0".to_owned(),
            format!(
                "--controllers=*,{}",
                DISABLED_CONTROLLERS.map(|c| format!("-{c}")).join(",")
            ),
            format!(
                "--service-account-private-key-file={}",
                pki.sa_key.display()
            ),
            format!("--root-ca-file={}", pki.ca_cert.display()),
            // Its default, /usr/libexec/kubernetes/..., would be created on the host.
            format!(
                "--flex-volume-plugin-dir={}",
                self.dir.join("flexvolume").display()
            ),
        ];
        kcm_args.extend(options.controller_manager_args.iter().cloned());
        let kcm = self.tools.kube_controller_manager();
        self.spawn("kube-controller-manager", &kcm, &kcm_args, &logs)?;
        self.wait_ready(
            "the default ServiceAccount (kube-controller-manager running)",
            timeout,
            &[
                "get",
                "serviceaccount",
                "default",
                "--namespace=default",
                "--output=name",
            ],
            |out| out.trim() == "serviceaccount/default",
        )
        .await?;
        self.pki = Some(pki);
        Ok(())
    }

    /// Starts kube-apiserver with [`Self::api_args`] and waits for `/readyz`.
    async fn launch_apiserver(&mut self, timeout: Duration) -> Result<()> {
        let apiserver = self.tools.kube_apiserver();
        let args = self.api_args.clone();
        let logs = self.dir.join("logs");
        self.api_runs += 1;
        if self.api_runs == 1 {
            self.spawn("kube-apiserver", &apiserver, &args, &logs)?;
        } else {
            let log = logs.join(format!("kube-apiserver.{}.log", self.api_runs));
            let process = KubeProcess::spawn(
                "kube-apiserver",
                self.netns.as_ref(),
                &apiserver,
                &args,
                &log,
                self.detached,
            )?;
            match self
                .processes
                .iter()
                .position(|p| p.label() == "kube-apiserver")
            {
                Some(i) => self.processes[i] = process,
                None => self.processes.insert(1, process),
            }
            pidfile::write(&self.dir, &self.recorded())?;
        }
        self.wait_ready(
            "kube-apiserver /readyz",
            timeout,
            &["get", "--raw=/readyz"],
            |out| out.trim() == "ok",
        )
        .await
    }

    /// Stops kube-apiserver alone (SIGTERM, SIGKILL after `grace`; zero kills at
    /// once): etcd keeps the objects, watches on the apiserver break.
    pub fn stop_apiserver(&self, grace: Duration) -> Result<()> {
        match self
            .processes
            .iter()
            .find(|p| p.label() == "kube-apiserver")
        {
            Some(p) => p.stop(grace),
            None => bail!("no kube-apiserver in this cluster"),
        }
    }

    /// Starts kube-apiserver again after [`Self::stop_apiserver`], with the same
    /// flags, port and etcd, and waits until it is ready. Its log is
    /// `logs/kube-apiserver.<run>.log`.
    pub async fn start_apiserver(&mut self) -> Result<()> {
        if self
            .processes
            .iter()
            .any(|p| p.label() == "kube-apiserver" && p.exited().is_none())
        {
            bail!("kube-apiserver is running; stop it first");
        }
        self.launch_apiserver(DEFAULT_READY_TIMEOUT).await
    }

    fn spawn(&mut self, label: &str, program: &Path, args: &[String], logs: &Path) -> Result<()> {
        let log = logs.join(format!("{label}.log"));
        let process = KubeProcess::spawn(
            label,
            self.netns.as_ref(),
            program,
            args,
            &log,
            self.detached,
        )?;
        self.processes.push(process);
        pidfile::write(&self.dir, &self.recorded())
    }

    /// Polls `kubectl args` until its output satisfies `ready`; gives up at once
    /// if a process exits, quoting the log tails.
    async fn wait_ready(
        &self,
        what: &str,
        timeout: Duration,
        args: &[&str],
        ready: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let result = wait_until(what, timeout, || {
            let dead = self.dead_process();
            let probe = self.kubectl_output(args, None);
            let ready = &ready;
            async move {
                if let Some(dead) = dead {
                    return Err(GiveUp(dead).into());
                }
                let output = probe.await?;
                Ok(output.status.success() && ready(&String::from_utf8_lossy(&output.stdout)))
            }
        })
        .await;
        result.map_err(|e| e.context(self.log_tails()))
    }

    fn dead_process(&self) -> Option<String> {
        self.processes.iter().find_map(|p| {
            p.exited()
                .map(|status| format!("{} exited ({status})", p.label()))
        })
    }

    fn recorded(&self) -> Vec<Recorded> {
        self.processes
            .iter()
            .map(|p| Recorded {
                label: p.label().to_owned(),
                pid: p.pid(),
                exe: p.exe().to_owned(),
            })
            .collect()
    }

    /// The admin kubeconfig (`system:masters`, via a client certificate).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// Certificates and keys; the CA signs the serving and admin certificates.
    pub fn pki(&self) -> Option<&Pki> {
        self.pki.as_ref()
    }

    /// Where certificates, kubeconfig, etcd data, `logs/` and `pids` live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    pub fn tools(&self) -> &KubeTools {
        &self.tools
    }

    /// (label, pid) of each process, in start order.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .iter()
            .map(|p| (p.label().to_owned(), p.pid()))
            .collect()
    }

    /// The log file of `label` (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`).
    pub fn log_path(&self, label: &str) -> Option<&Path> {
        self.processes
            .iter()
            .find(|p| p.label() == label)
            .map(KubeProcess::log_path)
    }

    /// The last lines of every process's log, for failure messages.
    pub fn log_tails(&self) -> String {
        self.processes
            .iter()
            .map(|p| p.log_tail(LOG_TAIL_LINES))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Leaves the processes running after this handle is gone (the
    /// `scripts/kube-env up` case) and returns the directory holding `pids`.
    pub fn detach(mut self) -> PathBuf {
        self.detached = true;
        self.dir.clone()
    }

    /// Stops kube-controller-manager, kube-apiserver and etcd in that order
    /// (SIGTERM, SIGKILL after 10 s) and removes the temporary directory.
    pub fn stop(mut self) -> Result<()> {
        self.stopped = true;
        self.stop_processes(STOP_GRACE)
    }

    fn stop_processes(&mut self, grace: Duration) -> Result<()> {
        let mut errors = Vec::new();
        for p in self.processes.iter().rev() {
            if let Err(e) = p.stop(grace) {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            // Nothing left for `scripts/kube-env down` or the stale sweep.
            let _ = std::fs::rename(self.dir.join("pids"), self.dir.join("pids.stopped"));
            Ok(())
        } else {
            bail!("stopping the control plane: {}", errors.join("; "))
        }
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        if self.detached || self.stopped {
            return;
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
        if let Err(e) = self.stop_processes(Duration::ZERO) {
            eprintln!("strait-e2e: {e:#}");
        }
    }
}

/// Where [`WorkDir`] makes its directories (it does not say).
fn workdir_base() -> PathBuf {
    std::env::var_os("STRAIT_E2E_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("strait-e2e"))
}

/// Refuses a directory whose recorded control plane still runs.
fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    if let Some(p) = pidfile::read(&dir)?.iter().find(|p| pidfile::is_running(p)) {
        bail!(
            "{} already runs a control plane ({} is pid {}); stop it first",
            dir.display(),
            p.label,
            p.pid
        );
    }
    // A previous run's etcd data would resurrect its objects.
    let etcd = dir.join("etcd");
    if etcd.exists() {
        std::fs::remove_dir_all(&etcd).with_context(|| format!("removing {}", etcd.display()))?;
    }
    Ok(dir)
}

/// The address the apiserver gives the `kubernetes` Service: the range's first.
fn first_service_ip(cidr: &str) -> Result<Ipv4Addr> {
    let (net, len) = cidr
        .split_once('/')
        .with_context(|| format!("service CIDR {cidr:?} has no prefix length"))?;
    let net: Ipv4Addr = net
        .parse()
        .with_context(|| format!("service CIDR {cidr:?}: bad address"))?;
    let len: u32 = len
        .parse()
        .with_context(|| format!("service CIDR {cidr:?}: bad prefix length"))?;
    if !(1..=30).contains(&len) {
        bail!("service CIDR {cidr:?}: prefix length must be 1..=30");
    }
    let mask = u32::MAX << (32 - len);
    Ok(Ipv4Addr::from((u32::from(net) & mask) + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_service_ip_is_the_range_start_plus_one() {
        assert_eq!(
            first_service_ip("10.96.0.0/12").unwrap(),
            Ipv4Addr::new(10, 96, 0, 1)
        );
        assert_eq!(
            first_service_ip("10.100.7.9/16").unwrap(),
            Ipv4Addr::new(10, 100, 0, 1)
        );
        assert!(first_service_ip("10.96.0.0").is_err());
        assert!(first_service_ip("10.96.0.0/0").is_err());
    }
}
