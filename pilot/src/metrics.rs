//! pilot-discovery's Prometheus metrics, named, labelled and bucketed as Istio's
//! (inventory §1.4) so the Istio control-plane dashboard works unchanged.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeEventLabel {
    pub r#type: String,
    pub event: String,
}

/// Counts one Kubernetes watch's events (`add`, `update`, `delete`) under its type label.
#[derive(Clone, Debug)]
pub struct K8sEvents {
    add: Counter,
    update: Counter,
    delete: Counter,
}

/// What a watch event did to the watcher's cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum K8sEvent {
    Add,
    Update,
    Delete,
}

impl K8sEvents {
    fn new(family: &Family<TypeEventLabel, Counter>, kind: &str) -> K8sEvents {
        let counter = |event: &str| {
            family
                .get_or_create(&TypeEventLabel {
                    r#type: kind.to_string(),
                    event: event.to_string(),
                })
                .clone()
        };
        K8sEvents {
            add: counter("add"),
            update: counter("update"),
            delete: counter("delete"),
        }
    }

    pub fn record(&self, event: K8sEvent) {
        match event {
            K8sEvent::Add => self.add.inc(),
            K8sEvent::Update => self.update.inc(),
            K8sEvent::Delete => self.delete.inc(),
        };
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

type HistogramFamily = Family<TypeLabel, Histogram, fn() -> Histogram>;

const PUSH_TIME_BUCKETS: [f64; 9] = [0.01, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
const CONFIG_SIZE_BUCKETS: [f64; 6] = [
    1.0,
    10_000.0,
    1_000_000.0,
    4_000_000.0,
    10_000_000.0,
    40_000_000.0,
];
const CONVERGENCE_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
const INIT_BUCKETS: [f64; 6] = [0.01, 0.1, 0.5, 1.0, 3.0, 5.0];

fn push_time_histogram() -> Histogram {
    Histogram::new(PUSH_TIME_BUCKETS)
}

fn config_size_histogram() -> Histogram {
    Histogram::new(CONFIG_SIZE_BUCKETS)
}

/// Counters Istio exposes without the `_total` suffix prometheus-client adds.
const ISTIO_COUNTERS: [&str; 9] = [
    "pilot_xds_pushes",
    "pilot_k8s_reg_events",
    "pilot_k8s_cfg_events",
    "pilot_push_triggers",
    "pilot_inbound_updates",
    "pilot_total_xds_rejects",
    "pilot_xds_expired_nonce",
    "pilot_total_xds_internal_errors",
    "pilot_xds_write_timeout",
];

pub struct Metrics {
    registry: Registry,
    xds_clients: Family<VersionLabel, Gauge>,
    xds_pushes: Family<TypeLabel, Counter>,
    push_time: HistogramFamily,
    config_size: HistogramFamily,
    convergence: Histogram,
    queue_time: Histogram,
    debounce_time: Histogram,
    pushcontext_init: Histogram,
    push_triggers: Family<TypeLabel, Counter>,
    inbound_updates: Family<TypeLabel, Counter>,
    services: Gauge,
    xds_rejects: Family<TypeLabel, Counter>,
    expired_nonce: Family<TypeLabel, Counter>,
    internal_errors: Counter,
    write_timeout: Counter,
    virt_services: Gauge,
    k8s_reg_events: Family<TypeEventLabel, Counter>,
    k8s_cfg_events: Family<TypeEventLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let xds_clients = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "pilot_xds",
            "Number of endpoints connected to this pilot using XDS.",
            xds_clients.clone(),
        );
        let xds_pushes = Family::<TypeLabel, Counter>::default();
        registry.register(
            "pilot_xds_pushes",
            "Pilot build and send errors for lds, rds, cds and eds.",
            xds_pushes.clone(),
        );
        let push_time: HistogramFamily = Family::new_with_constructor(push_time_histogram);
        registry.register(
            "pilot_xds_push_time",
            "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
            push_time.clone(),
        );
        let config_size: HistogramFamily = Family::new_with_constructor(config_size_histogram);
        registry.register(
            "pilot_xds_config_size_bytes",
            "Distribution of configuration sizes pushed to clients",
            config_size.clone(),
        );
        let convergence = Histogram::new(CONVERGENCE_BUCKETS);
        registry.register("pilot_proxy_convergence_time", "Delay in seconds between config change and a proxy receiving all required configuration.", convergence.clone());
        let queue_time = Histogram::new(CONVERGENCE_BUCKETS);
        registry.register(
            "pilot_proxy_queue_time",
            "Time in seconds, a proxy is in the push queue before being dequeued.",
            queue_time.clone(),
        );
        let debounce_time = Histogram::new(PUSH_TIME_BUCKETS);
        registry.register("pilot_debounce_time", "Delay in seconds between the first config enters debouncing and the merged push request is pushed into the push queue.", debounce_time.clone());
        let pushcontext_init = Histogram::new(INIT_BUCKETS);
        registry.register(
            "pilot_pushcontext_init_seconds",
            "Total time in seconds Pilot takes to init pushContext.",
            pushcontext_init.clone(),
        );
        let push_triggers = Family::<TypeLabel, Counter>::default();
        registry.register(
            "pilot_push_triggers",
            "Total number of times a push was triggered, labeled by reason for the push.",
            push_triggers.clone(),
        );
        let inbound_updates = Family::<TypeLabel, Counter>::default();
        registry.register(
            "pilot_inbound_updates",
            "Total number of updates received by pilot.",
            inbound_updates.clone(),
        );
        let services = Gauge::default();
        registry.register(
            "pilot_services",
            "Total services known to pilot.",
            services.clone(),
        );
        let xds_rejects = Family::<TypeLabel, Counter>::default();
        registry.register(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            xds_rejects.clone(),
        );
        let expired_nonce = Family::<TypeLabel, Counter>::default();
        registry.register(
            "pilot_xds_expired_nonce",
            "Total number of XDS requests with an expired nonce.",
            expired_nonce.clone(),
        );
        let internal_errors = Counter::default();
        registry.register(
            "pilot_total_xds_internal_errors",
            "Total number of internal XDS errors in pilot.",
            internal_errors.clone(),
        );
        let write_timeout = Counter::default();
        registry.register(
            "pilot_xds_write_timeout",
            "Pilot XDS response write timeouts.",
            write_timeout.clone(),
        );
        let virt_services = Gauge::default();
        registry.register(
            "pilot_virt_services",
            "Total virtual services known to pilot.",
            virt_services.clone(),
        );
        let k8s_reg_events = Family::<TypeEventLabel, Counter>::default();
        registry.register(
            "pilot_k8s_reg_events",
            "Events from k8s registry.",
            k8s_reg_events.clone(),
        );
        let k8s_cfg_events = Family::<TypeEventLabel, Counter>::default();
        registry.register(
            "pilot_k8s_cfg_events",
            "Events from k8s config.",
            k8s_cfg_events.clone(),
        );
        Metrics {
            registry,
            xds_clients,
            xds_pushes,
            push_time,
            config_size,
            convergence,
            queue_time,
            debounce_time,
            pushcontext_init,
            push_triggers,
            inbound_updates,
            services,
            xds_rejects,
            expired_nonce,
            internal_errors,
            write_timeout,
            virt_services,
            k8s_reg_events,
            k8s_cfg_events,
        }
    }

    /// `pilot_k8s_reg_events{type,event}` of one registry watch (`Services`, `Pods`, ...).
    pub fn k8s_reg_events(&self, kind: &str) -> K8sEvents {
        K8sEvents::new(&self.k8s_reg_events, kind)
    }

    /// `pilot_k8s_cfg_events{type,event}` of one Istio config kind (`VirtualService`, ...).
    pub fn k8s_cfg_events(&self, kind: &str) -> K8sEvents {
        K8sEvents::new(&self.k8s_cfg_events, kind)
    }

    fn label(t: &str) -> TypeLabel {
        TypeLabel {
            r#type: t.to_string(),
        }
    }

    /// `pilot_xds{version}`: connected clients by Istio version.
    pub fn set_xds_clients(&self, version: &str, count: i64) {
        self.xds_clients
            .get_or_create(&VersionLabel {
                version: version.to_string(),
            })
            .set(count);
    }

    /// `pilot_xds_pushes{type}`, type = `cds`, `eds`, `lds`, `rds`, ...
    pub fn inc_xds_push(&self, short_type: &str) {
        self.xds_pushes
            .get_or_create(&Self::label(short_type))
            .inc();
    }

    /// `pilot_xds_pushes{type=<type>_senderr}`.
    pub fn inc_xds_send_error(&self, short_type: &str) {
        self.xds_pushes
            .get_or_create(&Self::label(&format!("{short_type}_senderr")))
            .inc();
    }

    pub fn observe_push_time(&self, short_type: &str, seconds: f64) {
        self.push_time
            .get_or_create(&Self::label(short_type))
            .observe(seconds);
    }

    pub fn observe_config_size(&self, short_type: &str, bytes: usize) {
        self.config_size
            .get_or_create(&Self::label(short_type))
            .observe(bytes as f64);
    }

    pub fn observe_convergence(&self, seconds: f64) {
        self.convergence.observe(seconds);
    }

    pub fn observe_queue_time(&self, seconds: f64) {
        self.queue_time.observe(seconds);
    }

    pub fn observe_debounce(&self, seconds: f64) {
        self.debounce_time.observe(seconds);
    }

    pub fn observe_pushcontext_init(&self, seconds: f64) {
        self.pushcontext_init.observe(seconds);
    }

    /// `pilot_push_triggers{type}`: reason of a push (`endpoint`, `config`, ...).
    pub fn inc_push_trigger(&self, reason: &str, by: u64) {
        self.push_triggers
            .get_or_create(&Self::label(reason))
            .inc_by(by);
    }

    /// `pilot_inbound_updates{type}`: `config`, `eds`, `svc`, `svcdelete`.
    pub fn inc_inbound_update(&self, kind: &str) {
        self.inbound_updates.get_or_create(&Self::label(kind)).inc();
    }

    pub fn set_services(&self, count: i64) {
        self.services.set(count);
    }

    pub fn set_virtual_services(&self, count: i64) {
        self.virt_services.set(count);
    }

    /// `pilot_total_xds_rejects{type}`: a proxy NACKed.
    pub fn inc_xds_reject(&self, short_type: &str) {
        self.xds_rejects
            .get_or_create(&Self::label(short_type))
            .inc();
    }

    pub fn inc_expired_nonce(&self, short_type: &str) {
        self.expired_nonce
            .get_or_create(&Self::label(short_type))
            .inc();
    }

    pub fn inc_internal_error(&self) {
        self.internal_errors.inc();
    }

    pub fn inc_write_timeout(&self) {
        self.write_timeout.inc();
    }

    /// Prometheus text exposition, with Istio's counter names.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            return String::new();
        }
        istio_counter_names(&text)
    }
}

/// Drops the `_total` suffix from the counters Istio names without it.
fn istio_counter_names(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut line = line.to_string();
        for name in ISTIO_COUNTERS {
            let suffixed = format!("{name}_total");
            if line.starts_with(&suffixed) {
                line = format!("{name}{}", &line[suffixed.len()..]);
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_names_and_labels() {
        let m = Metrics::new();
        m.inc_xds_push("cds");
        m.inc_xds_reject("lds");
        m.set_xds_clients("1.30.0", 2);
        m.observe_config_size("cds", 5000);
        let text = m.encode();
        assert!(
            text.contains("pilot_xds_pushes{type=\"cds\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("pilot_total_xds_rejects{type=\"lds\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("pilot_xds{version=\"1.30.0\"} 2\n"), "{text}");
        assert!(
            text.contains("pilot_xds_config_size_bytes_bucket{le=\"10000.0\",type=\"cds\"} 1"),
            "{text}"
        );
        assert!(!text.contains("pilot_xds_pushes_total"), "{text}");
    }
}
