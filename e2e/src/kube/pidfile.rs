//! `DIR/pids`: which processes a control plane runs, so that another process
//! can stop it (`scripts/kube-env down DIR`, or the clean-up of clusters whose
//! test binary was killed before it could stop them).
//!
//! One line per process, in start order: `<label> <pid> <executable>`, the
//! executable's path canonical. A pid is only signalled while `/proc/<pid>/exe`
//! is still that executable, so a pid reused by an unrelated process is left
//! alone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::unique;

const FILE: &str = "pids";

/// One recorded process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub label: String,
    pub pid: u32,
    pub exe: PathBuf,
}

/// Rewrites `dir/pids` with `processes`.
pub fn write(dir: &Path, processes: &[Recorded]) -> Result<()> {
    let mut text = String::new();
    for p in processes {
        writeln!(text, "{} {} {}", p.label, p.pid, p.exe.display())?;
    }
    let path = dir.join(FILE);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// The processes recorded in `dir/pids`; empty if there is no such file.
pub fn read(dir: &Path) -> Result<Vec<Recorded>> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let (Some(label), Some(pid), Some(exe)) = (parts.next(), parts.next(), parts.next())
            else {
                anyhow::bail!("{}: malformed line {line:?}", path.display());
            };
            Ok(Recorded {
                label: label.to_owned(),
                pid: pid
                    .parse()
                    .with_context(|| format!("{}: bad pid in {line:?}", path.display()))?,
                exe: PathBuf::from(exe),
            })
        })
        .collect()
}

/// Whether `p` still runs (not a zombie) as the recorded executable.
pub fn is_running(p: &Recorded) -> bool {
    // A binary rebuilt since the process started shows as "<path> (deleted)".
    let same_exe = std::fs::read_link(format!("/proc/{}/exe", p.pid)).is_ok_and(|exe| {
        let exe = exe.to_string_lossy();
        exe.strip_suffix(" (deleted)").unwrap_or(&exe) == p.exe.to_string_lossy()
    });
    same_exe && is_alive(p.pid)
}

/// Whether `pid` exists and has not finished exiting. An exiting process loses
/// its `exe` link before it becomes a zombie, so only the state tells.
fn is_alive(pid: u32) -> bool {
    // The state follows the parenthesised command name, which may hold spaces.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x'))
    })
}

/// Stops the processes recorded in `dir`, last started first: SIGTERM, then
/// SIGKILL for any still there after `grace`. Returns the labels of those that
/// were running. Afterwards the file is renamed `pids.stopped`, so that a later
/// sweep never signals pids that the system has since reused.
pub fn stop_recorded(dir: &Path, grace: Duration) -> Result<Vec<String>> {
    let recorded = read(dir)?;
    let mut stopped = Vec::new();
    for p in recorded.iter().rev() {
        if !is_running(p) {
            continue;
        }
        stopped.push(p.label.clone());
        let pid = Pid::from_raw(i32::try_from(p.pid)?);
        let _ = kill(pid, Signal::SIGTERM);
        if !wait_gone(p, grace) {
            let _ = kill(pid, Signal::SIGKILL);
            if !wait_gone(p, Duration::from_secs(10)) {
                anyhow::bail!("{} (pid {}) did not exit after SIGKILL", p.label, p.pid);
            }
        }
    }
    if !recorded.is_empty() {
        let from = dir.join(FILE);
        let to = dir.join(format!("{FILE}.stopped"));
        std::fs::rename(&from, &to)
            .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
    }
    Ok(stopped)
}

fn wait_gone(p: &Recorded, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_alive(p.pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Once per process: stops control planes left running by test binaries that
/// died without cleaning up (their directories, `<base>/kube-<pid>-<n>`, name an
/// owner pid that no longer exists). The directories themselves are kept: they
/// hold the logs of the failed run.
pub fn sweep_stale(base: &Path) {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| {
        let Ok(entries) = std::fs::read_dir(base) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(owner) = name
                .to_str()
                .and_then(|n| n.strip_prefix("kube-"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if owner == unique::pid() || Path::new(&format!("/proc/{owner}")).exists() {
                continue;
            }
            if let Err(e) = stop_recorded(&entry.path(), Duration::ZERO) {
                eprintln!(
                    "strait-e2e: cleaning up stale control plane {}: {e:#}",
                    entry.path().display()
                );
            }
        }
    });
}
