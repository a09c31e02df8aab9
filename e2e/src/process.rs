//! A child process run inside a namespace, its output captured in a log file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::netns::Netns;

/// Lines of log quoted in error messages.
const LOG_TAIL_LINES: usize = 60;

/// A process started with `ip netns exec`, which execs the program in place, so
/// the child's pid is the program's own. Killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ManagedProcess {
    label: String,
    child: Mutex<Child>,
    log: PathBuf,
}

impl ManagedProcess {
    /// Starts `program args..` in `netns`, stdout and stderr appended to `log`.
    pub fn spawn(
        label: &str,
        netns: &Netns,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = netns.command(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {label}: {cmd:?}"))?;
        Ok(Self {
            label: label.to_owned(),
            child: Mutex::new(child),
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.lock().id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub fn logs(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()))
    }

    /// The last lines of the log, labelled, for error messages.
    pub fn log_tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!(
            "--- last {} lines of {} log ({}) ---\n{}",
            lines.len() - start,
            self.label,
            self.log.display(),
            lines[start..].join("\n")
        )
    }

    /// The exit status if the process has ended.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.lock().try_wait().ok().flatten()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Kills and reaps the process; harmless if it already ended.
    pub fn kill(&self) {
        let mut child = self.lock();
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Err(e) = child.kill() {
            eprintln!("strait-e2e: killing {}: {e}", self.label);
        }
        // A SIGKILLed process goes within milliseconds; the bound only guards
        // against an uninterruptible sleep hanging a test's teardown.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        eprintln!(
            "strait-e2e: {} (pid {}) did not exit",
            self.label,
            child.id()
        );
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}
