//! `listener.<address>.*` stats, as Envoy's listener manager names them.

use std::net::SocketAddr;

use super::Store;
use super::bundle::stat_bundle;
use crate::config::listener::Listener;

stat_bundle! {
    /// Per-listener connection stats.
    pub struct ListenerCounters {
        counters: [
            downstream_cx_total,
            downstream_cx_destroy,
            downstream_cx_overflow,
            downstream_pre_cx_timeout,
            no_filter_chain_match,
        ],
        gauges: [downstream_cx_active, downstream_pre_cx_active],
        histograms: [downstream_cx_length_ms],
    }
}

stat_bundle! {
    /// `listener_manager.*`: what LDS did to the set of listeners.
    pub struct ListenerManagerStats {
        counters: [
            listener_added,
            listener_modified,
            listener_removed,
            listener_in_place_updated,
            listener_create_success,
            listener_create_failure,
            listener_stopped,
        ],
        gauges: [
            total_listeners_active,
            total_listeners_warming,
            total_listeners_draining,
            total_filter_chains_draining,
        ],
        histograms: [],
    }
}

impl ListenerManagerStats {
    pub fn register(store: &Store) -> ListenerManagerStats {
        let stats = ListenerManagerStats::new(store, "listener_manager");
        // Envoy shows these from the start, even at zero.
        stats.total_listeners_active.set(0);
        stats.total_listeners_warming.set(0);
        stats.total_listeners_draining.set(0);
        stats.total_filter_chains_draining.set(0);
        stats
    }
}

/// A listener's stats and the scope they live under.
#[derive(Clone, Debug)]
pub struct ListenerStats {
    /// `listener.0.0.0.0_15001` (or `listener.<stat_prefix>`).
    pub scope: String,
    /// Shared with each connection's tracker (one reference count per connection).
    pub counters: std::sync::Arc<ListenerCounters>,
}

/// How Envoy spells an address inside a stat name: `0.0.0.0_15001`, `[__]_15001`.
pub fn address_token(address: SocketAddr) -> String {
    address.to_string().replace(':', "_")
}

impl ListenerStats {
    /// `listener.<stat_prefix>` when the listener sets one, else `listener.<address>`.
    pub fn scope_of(listener: &Listener) -> String {
        match listener.stat_prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(prefix) => format!("listener.{prefix}"),
            None => format!("listener.{}", address_token(listener.address)),
        }
    }

    pub fn new(store: &Store, listener: &Listener) -> ListenerStats {
        let scope = ListenerStats::scope_of(listener);
        ListenerStats {
            counters: std::sync::Arc::new(ListenerCounters::new(store, &scope)),
            scope,
        }
    }

    /// An accepted connection: counts it and keeps it active until the guard drops,
    /// when it counts as destroyed.
    pub fn connection(&self) -> ConnectionTracker {
        self.counters.downstream_cx_total.inc();
        self.counters.downstream_cx_active.inc();
        ConnectionTracker {
            counters: self.counters.clone(),
            start: std::time::Instant::now(),
        }
    }
}

/// One open downstream connection of a listener.
#[must_use = "the connection stops counting as active when the tracker drops"]
#[derive(Debug)]
pub struct ConnectionTracker {
    counters: std::sync::Arc<ListenerCounters>,
    start: std::time::Instant,
}

impl Drop for ConnectionTracker {
    fn drop(&mut self) {
        self.counters.downstream_cx_active.dec();
        self.counters.downstream_cx_destroy.inc();
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.counters.downstream_cx_length_ms.record(ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::listener::ListenerFilters;

    fn listener(addr: &str, stat_prefix: Option<&str>) -> Listener {
        Listener {
            name: "l".into(),
            address: addr.parse().unwrap(),
            bind_to_port: true,
            use_original_dst: false,
            listener_filters: ListenerFilters::default(),
            filter_chains: vec![],
            default_filter_chain: None,
            transparent: false,
            stat_prefix: stat_prefix.map(str::to_string),
        }
    }

    #[test]
    fn names_and_connection_tracking() {
        assert_eq!(
            ListenerStats::scope_of(&listener("0.0.0.0:15001", None)),
            "listener.0.0.0.0_15001"
        );
        assert_eq!(
            ListenerStats::scope_of(&listener("[::]:15001", None)),
            "listener.[__]_15001"
        );
        assert_eq!(
            ListenerStats::scope_of(&listener("0.0.0.0:1", Some("mine"))),
            "listener.mine"
        );
        let store = Store::default();
        let stats = ListenerStats::new(&store, &listener("0.0.0.0:15001", None));
        let c = stats.connection();
        let snap = store.snapshot();
        assert_eq!(
            snap.value("listener.0.0.0.0_15001.downstream_cx_total"),
            Some(1)
        );
        assert_eq!(
            snap.value("listener.0.0.0.0_15001.downstream_cx_active"),
            Some(1)
        );
        drop(c);
        let snap = store.snapshot();
        assert_eq!(
            snap.value("listener.0.0.0.0_15001.downstream_cx_active"),
            Some(0)
        );
        assert_eq!(
            snap.value("listener.0.0.0.0_15001.downstream_cx_destroy"),
            Some(1)
        );
    }
}
