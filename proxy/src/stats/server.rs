//! `server.*` stats and the server state they report (what `/ready` answers and
//! Istio's agent reads as `server.state`).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::store::{Collector, StatsSource};

/// Envoy's `ServerInfo.State`, numbered as the `server.state` gauge reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    Live = 0,
    Draining = 1,
    PreInitializing = 2,
    Initializing = 3,
}

impl ServerState {
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Live => "LIVE",
            ServerState::Draining => "DRAINING",
            ServerState::PreInitializing => "PRE_INITIALIZING",
            ServerState::Initializing => "INITIALIZING",
        }
    }

    fn from_u8(v: u8) -> ServerState {
        match v {
            0 => ServerState::Live,
            1 => ServerState::Draining,
            2 => ServerState::PreInitializing,
            _ => ServerState::Initializing,
        }
    }
}

/// The process-wide state behind `server.*`; shared by whoever changes the state (the
/// xDS readiness, `/healthcheck/fail`, draining) and the stats.
#[derive(Debug)]
pub struct ServerStats {
    start: Instant,
    state: AtomicU8,
    concurrency: u32,
    workers_started: AtomicBool,
}

impl ServerStats {
    pub fn new(concurrency: u32) -> ServerStats {
        ServerStats {
            start: Instant::now(),
            state: AtomicU8::new(ServerState::PreInitializing as u8),
            concurrency,
            workers_started: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> ServerState {
        ServerState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, state: ServerState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub fn set_workers_started(&self) {
        self.workers_started.store(true, Ordering::Release);
    }

    pub fn uptime(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Resident memory of this process (`VmRSS`), the nearest equivalent of Envoy's
/// allocator statistics.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl StatsSource for ServerStats {
    fn collect(&self, out: &mut Collector<'_>) {
        let state = self.state();
        out.gauge("server.live", u64::from(state == ServerState::Live));
        out.gauge("server.state", state as u64);
        out.gauge("server.uptime", self.uptime().as_secs());
        out.gauge("server.concurrency", u64::from(self.concurrency));
        out.gauge("server.hot_restart_epoch", 0);
        let memory = resident_memory_bytes().unwrap_or(0);
        out.gauge("server.memory_allocated", memory);
        out.gauge("server.memory_physical_size", memory);
        out.gauge(
            "listener_manager.workers_started",
            u64::from(self.workers_started.load(Ordering::Acquire)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Store;
    use std::sync::Arc;

    #[test]
    fn state_and_gauges() {
        let store = Store::default();
        let server = Arc::new(ServerStats::new(2));
        store.add_source(server.clone());
        let snap = store.snapshot();
        assert_eq!(snap.value("server.state"), Some(2));
        assert_eq!(snap.value("server.live"), Some(0));
        assert_eq!(snap.value("server.concurrency"), Some(2));
        server.set_state(ServerState::Live);
        server.set_workers_started();
        let snap = store.snapshot();
        assert_eq!(snap.value("server.state"), Some(0));
        assert_eq!(snap.value("server.live"), Some(1));
        assert_eq!(snap.value("listener_manager.workers_started"), Some(1));
        assert!(resident_memory_bytes().unwrap() > 0);
        assert_eq!(ServerState::PreInitializing.name(), "PRE_INITIALIZING");
    }
}
