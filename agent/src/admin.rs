//! The proxy's admin endpoint, as the agent uses it: the stats readiness and draining
//! depend on, `drain_listeners` and `quitquitquit`. Works the same against Envoy and
//! strait-proxy, which answer these endpoints alike.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::http::{Call, HttpError, Reply, encode_query_value, send};

/// The stats readiness needs first: did CDS and LDS arrive?
pub const UPDATE_STATS: &str =
    r"^(cluster_manager\.cds|listener_manager\.lds)\.(update_success|update_rejected)$";
/// Then: is the server LIVE with its workers started?
pub const READY_STATS: &str = r"^(server\.state|listener_manager\.workers_started)";
/// Open downstream connections, for exit-on-zero draining.
pub const ACTIVE_CONNECTIONS_STATS: &str = "downstream_cx_active$";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("proxy admin: {0}")]
    Http(#[from] HttpError),
    #[error("proxy admin {path} answered {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
}

/// The admin endpoint at `127.0.0.1:<port>` (or `[::1]`).
#[derive(Debug, Clone, Copy)]
pub struct AdminClient {
    addr: SocketAddr,
}

impl AdminClient {
    pub fn new(localhost: IpAddr, port: u16) -> AdminClient {
        AdminClient {
            addr: SocketAddr::new(localhost, port),
        }
    }

    async fn call(&self, call: Call) -> Result<Reply, AdminError> {
        let path = call.path.clone();
        let reply = send(self.addr, &call.timeout(REQUEST_TIMEOUT)).await?;
        if reply.status != 200 {
            return Err(AdminError::Status {
                path,
                status: reply.status,
                body: reply.text().trim().to_owned(),
            });
        }
        Ok(reply)
    }

    /// `/stats?usedonly&filter=<regex>` parsed into name → value.
    pub async fn stats(&self, filter: &str) -> Result<BTreeMap<String, u64>, AdminError> {
        let path = format!("/stats?usedonly&filter={}", encode_query_value(filter));
        let reply = self.call(Call::get(path)).await?;
        Ok(parse_stats(&reply.text()))
    }

    /// `POST /drain_listeners?graceful[&inboundonly][&skip_exit]`.
    pub async fn drain_listeners(
        &self,
        inbound_only: bool,
        skip_exit: bool,
    ) -> Result<(), AdminError> {
        let mut path = String::from("/drain_listeners?graceful");
        if inbound_only {
            path.push_str("&inboundonly");
        }
        if skip_exit {
            path.push_str("&skip_exit");
        }
        self.call(Call::post(path)).await.map(|_| ())
    }

    /// `POST /quitquitquit`.
    pub async fn quit(&self) -> Result<(), AdminError> {
        self.call(Call::post("/quitquitquit")).await.map(|_| ())
    }
}

/// `name: value` lines with integer values; histograms and text stats are skipped.
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Open connections on business listeners: the sum of `listener.*.downstream_cx_active`
/// without per-worker copies and without the admin, readiness and Prometheus
/// listeners. `None` when the proxy reports no such stat at all (nothing was ever
/// accepted, or the stat is not kept), as Istio treats it.
pub fn active_connections(stats: &BTreeMap<String, u64>, excluded_ports: &[u16]) -> Option<u64> {
    let mut found = false;
    let mut total = 0;
    for (name, value) in stats {
        let Some(listener) = name
            .strip_prefix("listener.")
            .and_then(|n| n.strip_suffix(".downstream_cx_active"))
        else {
            continue;
        };
        found = true;
        if listener.contains("worker_") || listener == "admin" || listener.starts_with("admin.") {
            continue;
        }
        let internal = excluded_ports
            .iter()
            .any(|p| listener.ends_with(&format!("_{p}")));
        if !internal {
            total += value;
        }
    }
    found.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stats_text() {
        let text = "cluster_manager.cds.update_success: 3\nserver.state: 0\n\
                    cluster.x.upstream_rq_time: P0(nan,1) P25(nan,2)\nweird line\n";
        let s = parse_stats(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s["cluster_manager.cds.update_success"], 3);
        assert_eq!(s["server.state"], 0);
    }

    #[test]
    fn counts_business_listeners_only() {
        let s = parse_stats(
            "listener.0.0.0.0_15006.downstream_cx_active: 2\n\
             listener.0.0.0.0_15006.worker_0.downstream_cx_active: 2\n\
             listener.0.0.0.0_15001.downstream_cx_active: 1\n\
             listener.0.0.0.0_15021.downstream_cx_active: 4\n\
             listener.0.0.0.0_15090.downstream_cx_active: 5\n\
             listener.admin.downstream_cx_active: 1\n\
             listener.admin.main_thread.downstream_cx_active: 1\n\
             http.inbound_0.0.0.0_8080.downstream_cx_active: 9\n",
        );
        assert_eq!(active_connections(&s, &[15021, 15090]), Some(3));
        assert_eq!(active_connections(&parse_stats(""), &[15021]), None);
        let idle = parse_stats("listener.0.0.0.0_15006.downstream_cx_active: 0\n");
        assert_eq!(active_connections(&idle, &[]), Some(0));
    }
}
