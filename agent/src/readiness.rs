//! `/healthz/ready`: ready once the proxy has received and applied its first CDS and
//! LDS updates, is LIVE and has started its workers. Each half is remembered once it
//! has passed, as Istio does: the proxy does not go back, and the probe stays cheap.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::admin::{AdminClient, READY_STATS, UPDATE_STATS};

/// Envoy's `ServerInfo.State` LIVE, as the `server.state` gauge reports it.
const LIVE: u64 = 0;

/// Why the proxy is not ready yet; `None` means ready.
pub fn config_received(stats: &BTreeMap<String, u64>, discovery: &str) -> Option<String> {
    let get = |name: &str| stats.get(name).copied().unwrap_or(0);
    let cds = get("cluster_manager.cds.update_success");
    let lds = get("listener_manager.lds.update_success");
    if cds > 0 && lds > 0 {
        return None;
    }
    Some(format!(
        "config not received from the control plane (is pilot-discovery at {discovery} running?): \
         cds updates: {cds} successful, {} rejected; lds updates: {lds} successful, {} rejected",
        get("cluster_manager.cds.update_rejected"),
        get("listener_manager.lds.update_rejected"),
    ))
}

/// Why the proxy is not serving yet; `None` means LIVE with workers started.
pub fn server_live(stats: &BTreeMap<String, u64>) -> Option<String> {
    match stats.get("server.state") {
        None => return Some("server.state is not yet reported".into()),
        Some(&LIVE) => {}
        Some(other) => return Some(format!("server is not live, current state is {other}")),
    }
    match stats.get("listener_manager.workers_started") {
        Some(1) => None,
        _ => Some("workers have not yet started".into()),
    }
}

#[derive(Debug, Default)]
struct Passed {
    config: bool,
    live: bool,
}

/// The readiness check against the proxy's admin endpoint.
#[derive(Debug)]
pub struct Readiness {
    admin: AdminClient,
    discovery: String,
    passed: Mutex<Passed>,
    /// Set while the proxy cannot be started (e.g. the bootstrap cannot be written).
    startup_problem: Mutex<Option<String>>,
}

impl Readiness {
    pub fn new(admin: AdminClient, discovery: &str) -> Readiness {
        Readiness {
            admin,
            discovery: discovery.to_owned(),
            passed: Mutex::new(Passed::default()),
            startup_problem: Mutex::new(None),
        }
    }

    fn passed(&self) -> std::sync::MutexGuard<'_, Passed> {
        self.passed.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_startup_problem(&self, problem: Option<String>) {
        *self
            .startup_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = problem;
    }

    /// `Ok(())` when ready, else the reason.
    pub async fn check(&self) -> Result<(), String> {
        if let Some(p) = self
            .startup_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(format!("the proxy is not running: {p}"));
        }
        if !self.passed().config {
            let stats = self
                .admin
                .stats(UPDATE_STATS)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(reason) = config_received(&stats, &self.discovery) {
                return Err(reason);
            }
            self.passed().config = true;
        }
        if !self.passed().live {
            let stats = self
                .admin
                .stats(READY_STATS)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(reason) = server_live(&stats) {
                return Err(reason);
            }
            self.passed().live = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::parse_stats;

    #[test]
    fn needs_both_cds_and_lds() {
        let none = parse_stats("");
        let reason = config_received(&none, "10.0.0.1:15010").unwrap();
        assert!(
            reason.contains("10.0.0.1:15010") && reason.contains("cds updates: 0 successful"),
            "{reason}"
        );
        let cds_only = parse_stats(
            "cluster_manager.cds.update_success: 1\nlistener_manager.lds.update_rejected: 2\n",
        );
        let reason = config_received(&cds_only, "x").unwrap();
        assert!(
            reason.contains("lds updates: 0 successful, 2 rejected"),
            "{reason}"
        );
        let both = parse_stats(
            "cluster_manager.cds.update_success: 1\nlistener_manager.lds.update_success: 1\n",
        );
        assert_eq!(config_received(&both, "x"), None);
    }

    #[test]
    fn needs_live_and_workers() {
        assert!(
            server_live(&parse_stats(""))
                .unwrap()
                .contains("server.state")
        );
        assert!(
            server_live(&parse_stats(
                "server.state: 2\nlistener_manager.workers_started: 1\n"
            ))
            .unwrap()
            .contains("not live")
        );
        assert!(
            server_live(&parse_stats(
                "server.state: 0\nlistener_manager.workers_started: 0\n"
            ))
            .unwrap()
            .contains("workers")
        );
        assert_eq!(
            server_live(&parse_stats(
                "server.state: 0\nlistener_manager.workers_started: 1\n"
            )),
            None
        );
    }
}
