//! `http.<stat_prefix>.*`: the HTTP connection manager's stats and its router's, plus
//! the per-listener copy of the response classes
//! (`listener.<address>.http.<stat_prefix>.downstream_rq_2xx`).

use super::bundle::stat_bundle;
use super::{Counter, Store};

stat_bundle! {
    /// Envoy's HTTP connection manager stats.
    pub struct HttpConnManagerCounters {
        counters: [
            downstream_cx_total,
            downstream_cx_destroy,
            downstream_cx_destroy_local,
            downstream_cx_destroy_remote,
            downstream_cx_http1_total,
            downstream_cx_http2_total,
            downstream_cx_rx_bytes_total,
            downstream_cx_tx_bytes_total,
            downstream_cx_protocol_error,
            downstream_cx_idle_timeout,
            downstream_cx_max_duration_reached,
            downstream_cx_upgrades_total,
            downstream_rq_total,
            downstream_rq_http1_total,
            downstream_rq_http2_total,
            downstream_rq_1xx,
            downstream_rq_2xx,
            downstream_rq_3xx,
            downstream_rq_4xx,
            downstream_rq_5xx,
            downstream_rq_completed,
            downstream_rq_timeout,
            downstream_rq_idle_timeout,
            downstream_rq_header_timeout,
            downstream_rq_rx_reset,
            downstream_rq_tx_reset,
            downstream_rq_non_relative_path,
            downstream_rq_too_large,
            downstream_rq_ws_on_non_ws_route,
            // The router filter's stats share the prefix.
            no_route,
            no_cluster,
            rq_direct_response,
            rq_redirect,
            rq_total,
            rq_reset_after_downstream_response_started,
        ],
        gauges: [
            downstream_cx_active,
            downstream_cx_http1_active,
            downstream_cx_http2_active,
            downstream_cx_upgrades_active,
            downstream_rq_active,
        ],
        histograms: [downstream_rq_time, downstream_cx_length_ms],
    }
}

stat_bundle! {
    /// What Envoy also counts per listener for each connection manager.
    pub struct ListenerHttpCounters {
        counters: [
            downstream_rq_1xx,
            downstream_rq_2xx,
            downstream_rq_3xx,
            downstream_rq_4xx,
            downstream_rq_5xx,
            downstream_rq_completed,
        ],
        gauges: [],
        histograms: [],
    }
}

#[derive(Clone, Debug)]
pub struct HttpConnManagerStats {
    pub counters: HttpConnManagerCounters,
    pub listener: Option<ListenerHttpCounters>,
}

impl HttpConnManagerStats {
    /// Stats under `http.<stat_prefix>`; with `listener_scope` (`listener.0.0.0.0_15006`)
    /// also the per-listener response classes.
    pub fn new(store: &Store, stat_prefix: &str, listener_scope: Option<&str>) -> Self {
        HttpConnManagerStats {
            counters: HttpConnManagerCounters::new(store, &format!("http.{stat_prefix}")),
            listener: listener_scope
                .map(|l| ListenerHttpCounters::new(store, &format!("{l}.http.{stat_prefix}"))),
        }
    }

    /// A response sent downstream: completed and its class, here and per listener.
    pub fn record_response(&self, status: u16) {
        self.counters.downstream_rq_completed.inc();
        if let Some(c) = class_counter(&self.counters, status) {
            c.inc();
        }
        if let Some(l) = &self.listener {
            l.downstream_rq_completed.inc();
            let class = match status / 100 {
                1 => Some(&l.downstream_rq_1xx),
                2 => Some(&l.downstream_rq_2xx),
                3 => Some(&l.downstream_rq_3xx),
                4 => Some(&l.downstream_rq_4xx),
                5 => Some(&l.downstream_rq_5xx),
                _ => None,
            };
            if let Some(c) = class {
                c.inc();
            }
        }
    }
}

fn class_counter(c: &HttpConnManagerCounters, status: u16) -> Option<&Counter> {
    match status / 100 {
        1 => Some(&c.downstream_rq_1xx),
        2 => Some(&c.downstream_rq_2xx),
        3 => Some(&c.downstream_rq_3xx),
        4 => Some(&c.downstream_rq_4xx),
        5 => Some(&c.downstream_rq_5xx),
        _ => None,
    }
}

stat_bundle! {
    /// `tcp.<stat_prefix>.*`: Envoy's TCP proxy stats.
    pub struct TcpProxyStats {
        counters: [
            downstream_cx_total,
            downstream_cx_no_route,
            downstream_cx_rx_bytes_total,
            downstream_cx_tx_bytes_total,
            downstream_flow_control_paused_reading_total,
            downstream_flow_control_resumed_reading_total,
            idle_timeout,
            max_downstream_connection_duration,
            upstream_flush_total,
        ],
        gauges: [downstream_cx_rx_bytes_buffered, downstream_cx_tx_bytes_buffered, upstream_flush_active],
        histograms: [],
    }
}

impl TcpProxyStats {
    pub fn for_prefix(store: &Store, stat_prefix: &str) -> TcpProxyStats {
        TcpProxyStats::new(store, &format!("tcp.{stat_prefix}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcm_stats_use_envoy_names() {
        let store = Store::default();
        let s = HttpConnManagerStats::new(
            &store,
            "outbound_0.0.0.0_9080",
            Some("listener.0.0.0.0_15001"),
        );
        s.counters.downstream_rq_total.inc();
        s.record_response(200);
        s.record_response(404);
        s.counters.no_route.inc();
        let snap = store.snapshot();
        let v = |n: &str| snap.value(n);
        assert_eq!(v("http.outbound_0.0.0.0_9080.downstream_rq_total"), Some(1));
        assert_eq!(v("http.outbound_0.0.0.0_9080.downstream_rq_2xx"), Some(1));
        assert_eq!(v("http.outbound_0.0.0.0_9080.downstream_rq_4xx"), Some(1));
        assert_eq!(
            v("http.outbound_0.0.0.0_9080.downstream_rq_completed"),
            Some(2)
        );
        assert_eq!(v("http.outbound_0.0.0.0_9080.no_route"), Some(1));
        assert_eq!(
            v("listener.0.0.0.0_15001.http.outbound_0.0.0.0_9080.downstream_rq_2xx"),
            Some(1)
        );
        let tcp = TcpProxyStats::for_prefix(&store, "outbound|9080||x");
        tcp.downstream_cx_total.inc();
        assert_eq!(
            store
                .snapshot()
                .value("tcp.outbound|9080||x.downstream_cx_total"),
            Some(1)
        );
    }
}
