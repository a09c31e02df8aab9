//! One control-plane process (etcd, kube-apiserver, kube-controller-manager)
//! with its output in a log file.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::Netns;

/// A started process. It is not killed on drop: the owning
/// [`KubeCluster`](super::KubeCluster) decides (a detached cluster outlives
/// its starter).
#[derive(Debug)]
pub struct KubeProcess {
    label: String,
    exe: PathBuf,
    child: Mutex<Child>,
    log: PathBuf,
}

impl KubeProcess {
    /// Starts `program args..` (in `netns` when given), output to `log`. A
    /// `detached` process gets its own process group, so a Ctrl-C meant for the
    /// starter does not reach it.
    pub fn spawn(
        label: &str,
        netns: Option<&Netns>,
        program: &Path,
        args: &[String],
        log: &Path,
        detached: bool,
    ) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        // `ip netns exec` execs the program in place: the pid stays the program's.
        let mut cmd = match netns {
            Some(ns) => ns.command(program),
            None => Command::new(program),
        };
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        if detached {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {label}: {cmd:?}"))?;
        Ok(Self {
            label: label.to_owned(),
            // As /proc/<pid>/exe will show it: symlinks resolved.
            exe: program
                .canonicalize()
                .unwrap_or_else(|_| program.to_owned()),
            child: Mutex::new(child),
            log: log.to_owned(),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The executable's canonical path.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    pub fn pid(&self) -> u32 {
        self.lock().id()
    }

    fn lock(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has ended.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.lock().try_wait().ok().flatten()
    }

    /// The last `lines` lines of the log, labelled, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let logs = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()));
        let all: Vec<&str> = logs.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "--- last {} lines of the {} log ({}) ---\n{}",
            all.len() - start,
            self.label,
            self.log.display(),
            all[start..].join("\n")
        )
    }

    /// SIGTERM, then SIGKILL if the process is still there after `grace`
    /// (zero: SIGKILL at once); reaps it. Harmless if it already ended.
    pub fn stop(&self, grace: Duration) -> Result<()> {
        if self.exited().is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.pid())?);
        if !grace.is_zero() {
            // ESRCH only means it ended meanwhile.
            let _ = kill(pid, Signal::SIGTERM);
            if self.wait_for_exit(grace) {
                return Ok(());
            }
        }
        let _ = kill(pid, Signal::SIGKILL);
        // SIGKILL takes milliseconds; the bound only guards against an
        // uninterruptible sleep hanging a test's teardown.
        if self.wait_for_exit(Duration::from_secs(10)) {
            return Ok(());
        }
        bail!("{} (pid {pid}) did not exit after SIGKILL", self.label)
    }

    fn wait_for_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lock().try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
