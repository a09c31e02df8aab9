//! CPU pinning and priority: on this 2-core machine the proxies share one core and the
//! load generator and upstream server the other, so neither side steals the other's
//! CPU and each proxy's CPU time is its own; and everything the bench starts runs at
//! nice -20, so other work on the machine (compilers) barely competes with it.

use anyhow::Context;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// Which cores the two sides run on; `None` leaves the scheduler free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pinning {
    /// The load generator, upstream server, pilot-discovery and the bench itself.
    pub load: usize,
    /// Both sidecars.
    pub proxies: usize,
}

impl Pinning {
    /// Core 0 for the load side and core 1 for the proxies, when there are two cores
    /// and `STRAIT_BENCH_PIN` is not `0`/`off`.
    pub fn choose(cores: usize, knob: Option<&str>) -> Option<Pinning> {
        if matches!(knob, Some("0" | "off" | "false" | "no")) || cores < 2 {
            return None;
        }
        Some(Pinning {
            load: 0,
            proxies: 1,
        })
    }
}

fn set_of(core: usize) -> anyhow::Result<CpuSet> {
    let mut set = CpuSet::new();
    set.set(core).with_context(|| format!("core {core}"))?;
    Ok(set)
}

/// Pins the calling thread; threads and processes it starts afterwards inherit it.
pub fn pin_current_thread(core: usize) -> anyhow::Result<()> {
    sched_setaffinity(Pid::from_raw(0), &set_of(core)?)
        .with_context(|| format!("pinning this thread to core {core}"))
}

/// Pins every thread of process `pid` (threads it starts later inherit it).
pub fn pin_process(pid: u32, core: usize) -> anyhow::Result<usize> {
    let set = set_of(core)?;
    let dir = format!("/proc/{pid}/task");
    let mut pinned = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A thread may have exited between the listing and now.
        if sched_setaffinity(Pid::from_raw(tid), &set).is_ok() {
            pinned += 1;
        }
    }
    Ok(pinned)
}

/// Sets the calling thread's nice value (`renice`; on Linux it applies to the one
/// thread whose id is given, here the main thread, whose id is the pid). Threads and
/// processes started from it afterwards inherit it.
pub fn renice_main_thread(nice: i32) -> anyhow::Result<()> {
    let status = std::process::Command::new("renice")
        .args([
            "-n",
            &nice.to_string(),
            "-p",
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running renice")?;
    anyhow::ensure!(status.success(), "renice -n {nice} failed: {status}");
    Ok(())
}

/// Puts the calling (main) thread under the real-time round-robin policy at
/// `priority` (`chrt -r`); threads and processes started from it afterwards inherit
/// it, so ordinary work on the machine (compilers) cannot delay them. The kernel's RT
/// throttling still leaves others 5 % of each second.
pub fn round_robin_main_thread(priority: u8) -> anyhow::Result<()> {
    let status = std::process::Command::new("chrt")
        .args([
            "-r",
            "-p",
            &priority.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running chrt")?;
    anyhow::ensure!(status.success(), "chrt -r {priority} failed: {status}");
    Ok(())
}

/// The scheduling policy of a process's main thread (field 41 of /proc/<pid>/stat:
/// 0 normal, 1 FIFO, 2 round robin).
pub fn policy_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(38)?.parse().ok()
}

/// The nice value of a process's main thread (field 19 of /proc/<pid>/stat).
pub fn nice_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(16)?.parse().ok()
}

/// The cores a process may run on, from `Cpus_allowed_list` in /proc.
pub fn allowed_cores(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_two_sides_only_with_two_cores() {
        assert_eq!(
            Pinning::choose(2, None),
            Some(Pinning {
                load: 0,
                proxies: 1
            })
        );
        assert_eq!(Pinning::choose(1, None), None);
        assert_eq!(Pinning::choose(8, Some("off")), None);
    }

    #[test]
    fn pins_a_thread_and_reads_it_back() {
        // A fresh thread, so the test runner's threads keep their affinity.
        std::thread::spawn(|| {
            pin_current_thread(0).unwrap();
            let tid = std::fs::read_link("/proc/thread-self")
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .parse::<u32>()
                .unwrap();
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
            assert!(status.contains("Cpus_allowed_list:\t0\n"), "{status}");
        })
        .join()
        .unwrap();
        assert!(allowed_cores(std::process::id()).is_some());
    }

    #[test]
    fn reads_the_nice_value() {
        let child = Guard(
            std::process::Command::new("nice")
                .args(["-n", "7", "sleep", "5"])
                .spawn()
                .unwrap(),
        );
        let mut seen = None;
        for _ in 0..100 {
            seen = nice_of(child.0.id());
            if seen == Some(7) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(seen, Some(7));
    }

    #[test]
    fn reads_the_policy() {
        assert_eq!(policy_of(std::process::id()), Some(0));
        let child = Guard(
            std::process::Command::new("chrt")
                .args(["-r", "5", "sleep", "5"])
                .spawn()
                .unwrap(),
        );
        let mut seen = None;
        for _ in 0..100 {
            seen = policy_of(child.0.id());
            if seen == Some(2) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(seen, Some(2));
    }

    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
