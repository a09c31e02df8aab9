//! The xDS client's counters (`cluster_manager.cds.*`, `listener_manager.lds.*`,
//! `control_plane.connected_state`) as a stats source.

use super::store::{Collector, StatsSource};
use crate::xds::XdsStats;

/// Gauges among [`XdsStats::entries`]; the rest are counters.
const GAUGES: &[&str] = &["control_plane.connected_state"];

impl StatsSource for XdsStats {
    fn collect(&self, out: &mut Collector<'_>) {
        for (name, value) in self.entries() {
            if GAUGES.contains(&name.as_str()) {
                out.gauge(name, value);
            } else {
                out.counter(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::stats::{Store, Value};
    use crate::xds::XdsStats;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    #[test]
    fn xds_counters_and_connected_gauge() {
        let store = Store::default();
        let xds = Arc::new(XdsStats::default());
        xds.cds.update_success.fetch_add(3, Ordering::Relaxed);
        store.add_source(xds);
        let snap = store.snapshot();
        assert_eq!(snap.value("cluster_manager.cds.update_success"), Some(3));
        assert!(matches!(
            snap.get("control_plane.connected_state").unwrap().value,
            Value::Gauge { value: 0, .. }
        ));
    }
}
