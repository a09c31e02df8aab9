//! A process's memory from /proc: resident (VmRSS), its peak (VmHWM) and the
//! proportional set size (Pss from smaps_rollup), which shares each shared page
//! (the binary's text, shared libraries) among the processes that map it.

use anyhow::Context;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    pub rss_peak: u64,
    /// `None` where the kernel has no smaps_rollup.
    pub pss: Option<u64>,
}

pub fn read(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok();
    Ok(Memory {
        rss: kib_field(&status, "VmRSS:").unwrap_or(0) * 1024,
        rss_peak: kib_field(&status, "VmHWM:").unwrap_or(0) * 1024,
        pss: rollup
            .as_deref()
            .and_then(|r| kib_field(r, "Pss:"))
            .map(|k| k * 1024),
    })
}

/// The number after `field` at the start of a line (kB for these files).
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rollup_and_status() {
        let rollup = "55d0-7ff [rollup]\nRss:  2048 kB\nPss:  1500 kB\nPss_Anon: 1000 kB\n";
        assert_eq!(kib_field(rollup, "Pss:"), Some(1500));
        assert_eq!(kib_field(rollup, "Rss:"), Some(2048));
        assert_eq!(kib_field("VmRSS:\t  12 kB\n", "VmRSS:"), Some(12));
        assert_eq!(kib_field("", "Pss:"), None);
    }

    #[test]
    fn reads_this_process() {
        let m = read(std::process::id()).unwrap();
        assert!(m.rss > 0 && m.rss_peak >= m.rss);
        if let Some(pss) = m.pss {
            assert!(pss > 0 && pss <= m.rss + 4096, "{m:?}");
        }
    }
}
