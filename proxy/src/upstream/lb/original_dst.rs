//! ORIGINAL_DST: the host is the connection's original destination (from
//! `SO_ORIGINAL_DST`, or the `x-envoy-original-dst-host` header where the listener uses
//! it — the caller puts it in [`LbContext::original_dst`]).
//!
//! Hosts are made on first use and shared by later connections to the same address, so
//! their counters and breakers work as for any host. [`OriginalDstLb::cleanup`], run every
//! `cleanup_interval` (Envoy's default 5 s), drops hosts nothing picked since the previous
//! run; connections still using one keep their `Arc`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

use super::{LbContext, LoadBalancer};
use crate::upstream::host::Host;

pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct OriginalDstLb {
    hosts: RwLock<HashMap<SocketAddr, Entry>>,
}

#[derive(Debug)]
struct Entry {
    host: Arc<Host>,
    used: AtomicBool,
}

impl OriginalDstLb {
    pub fn new() -> Self {
        OriginalDstLb::default()
    }

    /// Removes hosts not picked since the last cleanup; returns how many went.
    pub fn cleanup(&self) -> usize {
        let mut hosts = self.hosts.write();
        let before = hosts.len();
        hosts.retain(|_, entry| entry.used.swap(false, Ordering::Relaxed));
        before - hosts.len()
    }

    pub fn hosts(&self) -> Vec<Arc<Host>> {
        self.hosts.read().values().map(|e| e.host.clone()).collect()
    }
}

impl LoadBalancer for OriginalDstLb {
    fn choose(&self, ctx: &LbContext<'_>, _attempt: u32) -> Option<Arc<Host>> {
        let address = ctx.original_dst?;
        if let Some(entry) = self.hosts.read().get(&address) {
            entry.used.store(true, Ordering::Relaxed);
            return Some(entry.host.clone());
        }
        let mut hosts = self.hosts.write();
        let entry = hosts.entry(address).or_insert_with(|| Entry {
            host: Arc::new(Host::on_demand(address)),
            used: AtomicBool::new(true),
        });
        entry.used.store(true, Ordering::Relaxed);
        Some(entry.host.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::test_util::addr;

    fn to(address: &str) -> LbContext<'static> {
        LbContext {
            original_dst: Some(addr(address)),
            ..LbContext::default()
        }
    }

    #[test]
    fn picks_the_original_destination_and_reuses_hosts() {
        let lb = OriginalDstLb::new();
        assert!(lb.pick(&LbContext::default()).is_none());
        let a = lb.pick(&to("10.1.2.3:8080")).unwrap();
        assert_eq!(a.address(), addr("10.1.2.3:8080"));
        let again = lb.pick(&to("10.1.2.3:8080")).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(
            lb.pick(&to("10.9.9.9:80")).unwrap().address(),
            addr("10.9.9.9:80")
        );
        assert_eq!(lb.hosts().len(), 2);
    }

    #[test]
    fn cleanup_drops_hosts_unused_for_a_whole_interval() {
        let lb = OriginalDstLb::new();
        lb.pick(&to("10.0.0.1:80"));
        lb.pick(&to("10.0.0.2:80"));
        // Both were used during the first interval.
        assert_eq!(lb.cleanup(), 0);
        lb.pick(&to("10.0.0.1:80"));
        assert_eq!(lb.cleanup(), 1);
        let left: Vec<_> = lb.hosts().iter().map(|h| h.address()).collect();
        assert_eq!(left, [addr("10.0.0.1:80")]);
        assert_eq!(lb.cleanup(), 1);
        assert!(lb.hosts().is_empty());
    }
}
