//! `kube-env up DIR` starts a Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager) that keeps running after this command exits, with
//! certificates, kubeconfig, etcd data, logs and pids in DIR, and prints the
//! shell lines that point kubectl and helm at it. `kube-env down DIR` stops it.
//! `scripts/kube-env` builds and runs this binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use strait_e2e::kube::{KubeCluster, KubeOptions, pidfile};

const USAGE: &str = "usage: kube-env up DIR | kube-env down DIR";
const DOWN_GRACE: Duration = Duration::from_secs(15);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-env: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> Result<()> {
    let [command, dir] = &args[..] else {
        bail!("{USAGE}");
    };
    let dir = PathBuf::from(dir);
    match command.as_str() {
        "up" => up(dir).await,
        "down" => down(&dir),
        _ => bail!("{USAGE}"),
    }
}

async fn up(dir: PathBuf) -> Result<()> {
    let cluster = KubeCluster::start(KubeOptions {
        dir: Some(dir),
        detached: true,
        ..KubeOptions::default()
    })
    .await?;
    let bin = cluster.tools().dir().to_owned();
    let kubeconfig = cluster.kubeconfig_path().to_owned();
    eprintln!(
        "kube-env: control plane up at {} (logs in {}/logs)",
        cluster.server_url(),
        cluster.dir().display()
    );
    let dir = cluster.detach();
    eprintln!(
        "kube-env: stop it with `scripts/kube-env down {}`",
        dir.display()
    );
    println!("export KUBECONFIG={}", shell_quote(&kubeconfig)?);
    println!("export PATH={}:\"$PATH\"", shell_quote(&bin)?);
    Ok(())
}

fn down(dir: &std::path::Path) -> Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let stopped = pidfile::stop_recorded(&dir, DOWN_GRACE)?;
    if stopped.is_empty() {
        eprintln!("kube-env: nothing running in {}", dir.display());
    } else {
        eprintln!("kube-env: stopped {}", stopped.join(", "));
    }
    Ok(())
}

/// Single-quotes `path` for a POSIX shell.
fn shell_quote(path: &std::path::Path) -> Result<String> {
    let s = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(format!("'{}'", s.replace('\'', r"'\''")))
}
