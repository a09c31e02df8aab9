//! The proxy process: its command line (Envoy's flags, which strait-proxy takes too),
//! starting it, passing signals on, and its exit status as the agent's.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::config::AgentConfig;
use crate::env::Env;

/// Envoy's command line for the bootstrap at `bootstrap`, as Istio's agent builds it.
pub fn command_line(cfg: &AgentConfig, bootstrap: &Path) -> Vec<String> {
    let mut args = vec![
        "-c".to_owned(),
        bootstrap.display().to_string(),
        "--drain-time-s".to_owned(),
        cfg.drain.drain_duration.as_secs().to_string(),
        "--drain-strategy".to_owned(),
        "immediate".to_owned(),
        "--local-address-ip-version".to_owned(),
        if cfg.ipv6_only() { "v6" } else { "v4" }.to_owned(),
        "--file-flush-interval-msec".to_owned(),
        "1000".to_owned(),
        "--disable-hot-restart".to_owned(),
        "--allow-unknown-static-fields".to_owned(),
        "-l".to_owned(),
        cfg.proxy_log_level.clone(),
    ];
    if !cfg.proxy_component_log_level.is_empty() {
        args.push("--component-log-level".to_owned());
        args.push(cfg.proxy_component_log_level.clone());
    }
    if let Some(n) = cfg.concurrency {
        args.push("--concurrency".to_owned());
        args.push(n.to_string());
    }
    args
}

/// A running proxy. Its output goes where the agent's goes, so one log has both.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    pid: Option<Pid>,
}

impl ProxyProcess {
    pub fn spawn(binary: &Path, args: &[String], env: &Env) -> std::io::Result<ProxyProcess> {
        let child = Command::new(binary)
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Ok(ProxyProcess { child, pid })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Passes `signal` on; a proxy that already exited is not an error.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid
            && let Err(e) = kill(pid, signal)
            && e != nix::errno::Errno::ESRCH
        {
            tracing::warn!("forwarding {signal} to the proxy: {e}");
        }
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Stops the proxy at once (SIGKILL, as Istio's agent ends Envoy after the drain)
    /// and reaps it.
    pub async fn kill(&mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!("stopping the proxy: {e}");
        }
    }
}

/// The agent's exit code for the proxy's exit: its code, or 128 + the signal that
/// ended it (as a shell reports it).
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    match status.signal() {
        Some(sig) => u8::try_from(128 + sig).unwrap_or(1),
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[tokio::test]
    async fn runs_and_reports_a_child() {
        let env: Env = [("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())].into();
        let mut p =
            ProxyProcess::spawn(Path::new("sh"), &["-c".into(), "exit 7".into()], &env).unwrap();
        assert_eq!(exit_code(p.wait().await.unwrap()), 7);
        let mut p = ProxyProcess::spawn(Path::new("sleep"), &["30".into()], &env).unwrap();
        p.signal(Signal::SIGTERM);
        assert_eq!(exit_code(p.wait().await.unwrap()), 143);
    }
}
