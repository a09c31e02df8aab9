//! Network namespaces: a hub namespace with a Linux bridge, and workload
//! namespaces attached to it by veth pairs.
//!
//! Every namespace is named `strait-e2e-<pid>-<n>-<role>`, so parallel test
//! threads (different `n`) and successive test binaries (different pid) never
//! collide. Interfaces live only inside those namespaces (`br0` and `vh<N>` in
//! the hub, `eth0` in a workload), so their short names never clash either.

mod manage;
mod topology;

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};
use nix::unistd::Pid;

pub use manage::{list_names, sweep_stale_namespaces};
pub use topology::Topology;

/// Runs `ip` with `args` and returns its stdout; the error carries stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    run_checked(Command::new("ip").args(args))
}

pub(crate) fn run_checked(cmd: &mut Command) -> Result<String> {
    let output = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A named network namespace. Cheap to clone; the [`Topology`] that created it
/// owns its lifetime, and operations fail once the topology is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
}

impl Netns {
    /// The namespace name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This namespace's address on the topology's bridge.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The hub's address: the default gateway of a workload namespace.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Moves the calling thread into this namespace for good; only for threads
    /// the harness spawns and owns.
    pub(crate) fn enter_current_thread(&self) -> Result<()> {
        let path = self.path();
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        setns(&file, CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace {}", self.name))
    }

    /// Runs `f` on a fresh OS thread that has entered this namespace and returns
    /// its result. Sockets created by `f` stay in this namespace for their whole
    /// life, so a std listener or stream made here can be handed to tokio.
    /// A panic in `f` is propagated to the caller.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("netns-{}", self.name))
                .spawn_scoped(scope, || -> Result<T> {
                    self.enter_current_thread()?;
                    Ok(f())
                })
                .context("spawning a namespace thread")?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A command that runs `program` inside this namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args..` inside this namespace to completion; returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        run_checked(self.command(program).args(args))
    }

    /// Pids of the processes whose network namespace is this one.
    pub fn pids(&self) -> Result<Vec<Pid>> {
        netns_pids(&self.name)
    }
}

pub(super) fn netns_pids(name: &str) -> Result<Vec<Pid>> {
    let out = ip(&["netns", "pids", name])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .map(Pid::from_raw)
        .collect())
}
