//! The pinned Kubernetes binaries, built by `e2e/kube/build.sh` into the cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};

/// The build script; compiled-in, so a test binary finds it in its own clone.
const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/kube/build.sh");

/// Names build.sh installs; also the order [`KubeTools::check`] reports.
const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "helm",
];

/// The directory holding etcd, kube-apiserver, kube-controller-manager, kubectl
/// and helm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeTools {
    dir: PathBuf,
}

impl KubeTools {
    /// Binaries already built in `dir`, e.g. from `$STRAIT_KUBE_BIN`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Result<Self> {
        let tools = Self { dir: dir.into() };
        tools.check()?;
        Ok(tools)
    }

    /// `$STRAIT_KUBE_BIN` if set; else runs build.sh (a no-op when the cache is
    /// current; a cold build takes many minutes) once per process and uses the
    /// directory it prints. Its progress goes to stderr.
    pub fn get() -> Result<Self> {
        static BUILT: OnceLock<Result<KubeTools, String>> = OnceLock::new();
        BUILT
            .get_or_init(|| {
                let found = match std::env::var_os("STRAIT_KUBE_BIN") {
                    Some(dir) => Self::in_dir(PathBuf::from(dir)),
                    None => build().and_then(Self::in_dir),
                };
                found.map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(|e| anyhow!(e))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }

    pub fn kube_apiserver(&self) -> PathBuf {
        self.dir.join("kube-apiserver")
    }

    pub fn kube_controller_manager(&self) -> PathBuf {
        self.dir.join("kube-controller-manager")
    }

    pub fn kubectl(&self) -> PathBuf {
        self.dir.join("kubectl")
    }

    pub fn helm(&self) -> PathBuf {
        self.dir.join("helm")
    }

    fn check(&self) -> Result<()> {
        let missing: Vec<&str> = BINARIES
            .into_iter()
            .filter(|name| !self.dir.join(name).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} lacks {}; run {BUILD_SCRIPT} (or unset STRAIT_KUBE_BIN)",
                self.dir.display(),
                missing.join(", ")
            );
        }
        Ok(())
    }
}

fn build() -> Result<PathBuf> {
    let output = Command::new("bash")
        .arg(BUILD_SCRIPT)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| anyhow!("running {BUILD_SCRIPT}: {e}"))?;
    if !output.status.success() {
        bail!(
            "{BUILD_SCRIPT} failed ({}); its output is above",
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last() {
        Some(dir) if !dir.trim().is_empty() => Ok(PathBuf::from(dir.trim())),
        _ => bail!("{BUILD_SCRIPT} printed no binary directory"),
    }
}
