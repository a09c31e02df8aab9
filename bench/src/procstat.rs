//! Resource use of a running process, read from /proc: resident memory (VmRSS, VmHWM)
//! and CPU time (utime + stime).

use std::time::Duration;

use anyhow::{Context, bail};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Resident set size, bytes.
    pub rss: u64,
    /// Peak resident set size so far, bytes.
    pub rss_peak: u64,
    /// User + system CPU time consumed so far.
    pub cpu: Duration,
    pub threads: u64,
}

/// Clock ticks per second for /proc/<pid>/stat. Linux has reported 100 (USER_HZ) to
/// user space on every architecture since 2.6; `getconf` confirms it when present.
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

pub fn read(pid: u32, ticks_per_sec: u64) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let (utime, stime) = parse_stat_cpu(&stat)?;
    let ticks = ticks_per_sec.max(1);
    Ok(Usage {
        rss: status_kib(&status, "VmRSS:").unwrap_or(0) * 1024,
        rss_peak: status_kib(&status, "VmHWM:").unwrap_or(0) * 1024,
        cpu: Duration::from_micros((utime + stime) * 1_000_000 / ticks),
        threads: status_kib(&status, "Threads:").unwrap_or(0),
    })
}

/// The first number after `field` (values are in kB for the Vm* fields).
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// utime and stime (fields 14 and 15). The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_stat_cpu(stat: &str) -> anyhow::Result<(u64, u64)> {
    let Some(close) = stat.rfind(')') else {
        bail!("unexpected /proc/<pid>/stat: {stat:?}");
    };
    // After ")" come fields 3.. ; utime is field 14, i.e. index 11 here.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let get = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("field {} missing in /proc/<pid>/stat", i + 3))
    };
    Ok((get(11)?, get(12)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat =
            "4242 (pilot (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu(stat).unwrap(), (250, 75));
        assert!(parse_stat_cpu("garbage").is_err());
    }

    #[test]
    fn parses_status_fields() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(status, "Threads:"), Some(7));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process() {
        let usage = read(std::process::id(), clock_ticks()).unwrap();
        assert!(usage.rss > 0);
        assert!(usage.rss_peak >= usage.rss);
        assert!(usage.threads >= 1);
    }
}
