//! Creating and deleting named namespaces, and ending what runs inside them.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{ip, netns_pids};
use crate::unique::NETNS_PREFIX;

/// `ip netns add` mounts /run/netns on first use; concurrent first uses race,
/// so namespace creation and deletion are serialised within the process.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    NETNS_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Names of all named network namespaces on the machine (`ip netns list`).
pub fn list_names() -> Result<Vec<String>> {
    // Lines look like "name (id: 3)" or just "name".
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Creates `name`, first removing a namespace of the same name that a previous
/// process with the same pid may have left behind.
pub(super) fn create_netns(name: &str) -> Result<()> {
    if list_names()?.iter().any(|n| n == name) {
        kill_processes_in(name);
        delete_netns(name)?;
    }
    let _guard = lock();
    ip(&["netns", "add", name]).map(|_| ())
}

pub(super) fn delete_netns(name: &str) -> Result<()> {
    let _guard = lock();
    ip(&["netns", "del", name])
        .map(|_| ())
        .with_context(|| format!("deleting network namespace {name}"))
}

/// SIGKILLs every process in the namespace (never this one) and waits briefly
/// for them to go. Errors are reported, not raised: this runs from Drop.
pub(super) fn kill_processes_in(name: &str) {
    let me = Pid::this();
    let pids = match netns_pids(name) {
        Ok(pids) => pids,
        Err(e) => {
            eprintln!("strait-e2e: listing processes in {name}: {e:#}");
            return;
        }
    };
    let targets: Vec<Pid> = pids.into_iter().filter(|p| *p != me).collect();
    for pid in &targets {
        // ESRCH just means it already exited.
        let _ = kill(*pid, Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while targets.iter().any(|p| is_running(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while the process exists and is not a zombie (a zombie holds nothing
/// but its exit status, and only its parent can reap it).
fn is_running(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself
        // contain spaces or parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Removes harness namespaces left behind by test processes that died without
/// running their destructors (killed, aborted); live processes' namespaces are
/// never touched. Runs once per process before the first [`Topology`].
pub fn sweep_stale_namespaces() {
    let names = match list_names() {
        Ok(names) => names,
        Err(e) => {
            eprintln!("strait-e2e: listing network namespaces: {e:#}");
            return;
        }
    };
    for name in names {
        let Some(owner) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let owner = Pid::from_raw(owner);
        if owner == Pid::this() || is_running(owner) {
            continue;
        }
        kill_processes_in(&name);
        if let Err(e) = delete_netns(&name) {
            eprintln!("strait-e2e: removing stale namespace: {e:#}");
        }
    }
}
