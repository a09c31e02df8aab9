//! Whether this process may change the network stack (CAP_NET_ADMIN), read
//! from /proc so it can be checked before anything is written.

const CAP_NET_ADMIN: u32 = 12;

/// `None` when the effective set cannot be read (not Linux, no /proc).
pub fn has_net_admin() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    effective_has(&status, CAP_NET_ADMIN)
}

fn effective_has(status: &str, capability: u32) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let mask = u64::from_str_radix(hex, 16).ok()?;
    Some(mask & (1 << capability) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_set() {
        assert_eq!(
            effective_has("Name:\tx\nCapEff:\t0000000000001000\n", 12),
            Some(true)
        );
        assert_eq!(
            effective_has("CapEff:\t0000000000000000\n", 12),
            Some(false)
        );
        assert_eq!(effective_has("CapPrm:\t0000000000001000\n", 12), None);
    }
}
