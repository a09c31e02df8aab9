//! Running the pinned kubectl and helm against a [`KubeCluster`].

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;

use super::KubeCluster;

/// A bound on one kubectl or helm run, so a wedged apiserver fails the test
/// instead of hanging it.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

impl KubeCluster {
    /// `kubectl args..` against this cluster; its stdout. A non-zero exit is an
    /// error carrying stderr (e.g. the apiserver's validation message).
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        checked("kubectl", args, self.kubectl_output(args, None).await?)
    }

    /// Like [`kubectl`](Self::kubectl), with `stdin` fed to the process
    /// (`-f -`).
    pub async fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        checked(
            "kubectl",
            args,
            self.kubectl_output(args, Some(stdin)).await?,
        )
    }

    /// `kubectl apply -f -` of `yaml` (one or more documents).
    pub async fn apply(&self, yaml: &str) -> Result<String> {
        self.kubectl_stdin(&["apply", "-f", "-"], yaml).await
    }

    /// `kubectl apply -f <path>`.
    pub async fn apply_file(&self, path: &Path) -> Result<String> {
        let path = path
            .to_str()
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        self.kubectl(&["apply", "-f", path]).await
    }

    /// Runs kubectl to completion whatever its exit status.
    pub async fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let kubeconfig = format!("--kubeconfig={}", self.kubeconfig_path().display());
        // Per cluster: a discovery cache shared by clusters that reuse a port
        // would describe another cluster's CRDs.
        let cache = format!("--cache-dir={}", self.dir().join("kubectl-cache").display());
        let mut cmd = self.command(&self.tools().kubectl());
        cmd.arg(kubeconfig).arg(cache).args(args);
        run(cmd, "kubectl", args, stdin).await
    }

    /// `helm args..` against this cluster, with Helm's cache, config and data
    /// kept in the cluster directory; its stdout, or an error with stderr.
    pub async fn helm(&self, args: &[&str]) -> Result<String> {
        let home = self.dir().join("helm");
        let mut cmd = self.command(&self.tools().helm());
        cmd.env("KUBECONFIG", self.kubeconfig_path())
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .args(args);
        checked("helm", args, run(cmd, "helm", args, None).await?)
    }

    /// `program`, inside the cluster's namespace if it has one.
    fn command(&self, program: &Path) -> tokio::process::Command {
        let std_cmd = match self.netns() {
            Some(ns) => ns.command(program),
            None => std::process::Command::new(program),
        };
        let mut cmd = tokio::process::Command::from(std_cmd);
        cmd.kill_on_drop(true);
        cmd
    }
}

async fn run(
    mut cmd: tokio::process::Command,
    name: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {name} {}", args.join(" ")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .with_context(|| format!("writing to {name}'s stdin"))?;
        // Dropping the pipe closes it: the end of `-f -`.
    }
    match tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.with_context(|| format!("waiting for {name} {}", args.join(" "))),
        Err(_) => bail!(
            "{name} {} did not finish within {RUN_TIMEOUT:?}",
            args.join(" ")
        ),
    }
}

fn checked(name: &str, args: &[&str], output: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{name} {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!("\nstdout: {}", stdout.trim())
            }
        );
    }
    Ok(stdout)
}
