//! The stats store: every stat by its full dotted name, Envoy style.
//!
//! Creation looks the name up under a lock (once per stat; callers keep the handle),
//! applies the stats matcher and extracts tags; bumping a handle afterwards is a single
//! atomic add. State that already lives elsewhere as atomics (cluster and xDS counters)
//! is not copied into the store but read at render time through a [`StatsSource`].

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use regex::Regex;

use super::config::StatsConfig;
use super::metric::{Counter, Gauge, Histogram, HistogramSnapshot};
use super::tags::Tag;

/// Something that reports stats it keeps itself, read whenever stats are printed.
pub trait StatsSource: Send + Sync {
    fn collect(&self, out: &mut Collector<'_>);
}

/// A stat's value at snapshot time.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Counter { value: u64, used: bool },
    Gauge { value: u64, used: bool },
    Histogram(HistogramSnapshot),
}

impl Value {
    pub fn used(&self) -> bool {
        match self {
            Value::Counter { used, .. } | Value::Gauge { used, .. } => *used,
            Value::Histogram(h) => h.count > 0,
        }
    }
}

/// One stat in a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The full name, e.g. `cluster.xds-grpc.upstream_rq_200`.
    pub name: String,
    /// The name with tag values cut out, e.g. `cluster.upstream_rq`.
    pub extracted: String,
    pub tags: Vec<Tag>,
    pub value: Value,
}

/// Every stat at one moment, sorted by name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub samples: Vec<Sample>,
    /// Custom stat namespaces (`istiocustom`): Prometheus names of stats under them drop
    /// the namespace and get no `envoy_` prefix.
    pub namespaces: Vec<String>,
}

impl Snapshot {
    pub fn get(&self, name: &str) -> Option<&Sample> {
        self.samples
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.samples.get(i))
    }

    /// The value of a counter or gauge.
    pub fn value(&self, name: &str) -> Option<u64> {
        match &self.get(name)?.value {
            Value::Counter { value, .. } | Value::Gauge { value, .. } => Some(*value),
            Value::Histogram(_) => None,
        }
    }
}

struct Entry<H> {
    handle: H,
    extracted: String,
    tags: Vec<Tag>,
}

#[derive(Default)]
struct Registry {
    counters: HashMap<String, Entry<Counter>>,
    gauges: HashMap<String, Entry<Gauge>>,
    histograms: HashMap<String, Entry<Histogram>>,
}

/// Extraction results for names reported by sources, which are re-read on every render.
const EXTRACTION_CACHE_LIMIT: usize = 50_000;

pub struct Store {
    config: StatsConfig,
    registry: RwLock<Registry>,
    sources: RwLock<Vec<Arc<dyn StatsSource>>>,
    namespaces: RwLock<Vec<String>>,
    extraction_cache: Mutex<HashMap<String, (String, Vec<Tag>)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.registry.read();
        f.debug_struct("Store")
            .field("counters", &r.counters.len())
            .field("gauges", &r.gauges.len())
            .field("histograms", &r.histograms.len())
            .field("sources", &self.sources.read().len())
            .finish()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new(StatsConfig::envoy_default())
    }
}

/// `base.tag1.value1.tag2.value2`: how Envoy spells a stat created with explicit tags.
fn joined_name(base: &str, tags: &[(&str, &str)]) -> String {
    let mut name = base.to_string();
    for (k, v) in tags {
        name.push('.');
        name.push_str(k);
        name.push('.');
        name.push_str(v);
    }
    name
}

fn owned_tags(tags: &[(&str, &str)]) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect()
}

macro_rules! get_or_create {
    ($self:ident, $map:ident, $name:expr, $make:expr, $tags:expr) => {{
        let name: &str = $name;
        if let Some(e) = $self.registry.read().$map.get(name) {
            return e.handle.clone();
        }
        if !$self.config.matcher.accepts(name) {
            return $make;
        }
        let (extracted, tags) = match $tags {
            Some((base, tags)) => (base, tags),
            None => $self.config.tags.produce(name),
        };
        $self
            .registry
            .write()
            .$map
            .entry(name.to_string())
            .or_insert_with(|| Entry {
                handle: $make,
                extracted,
                tags,
            })
            .handle
            .clone()
    }};
}

impl Store {
    pub fn new(config: StatsConfig) -> Store {
        Store {
            config,
            registry: RwLock::new(Registry::default()),
            sources: RwLock::new(Vec::new()),
            namespaces: RwLock::new(Vec::new()),
            extraction_cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &StatsConfig {
        &self.config
    }

    /// The counter of this name, created on first use.
    pub fn counter(&self, name: &str) -> Counter {
        get_or_create!(self, counters, name, Counter::default(), None)
    }

    pub fn gauge(&self, name: &str) -> Gauge {
        get_or_create!(self, gauges, name, Gauge::default(), None)
    }

    /// A histogram with Envoy's default buckets.
    pub fn histogram(&self, name: &str) -> Histogram {
        get_or_create!(self, histograms, name, Histogram::default(), None)
    }

    /// A counter created with explicit tags (Istio's metrics): its full name is
    /// `base.k1.v1.k2.v2...`, its tag-extracted name `base`.
    pub fn counter_with_tags(&self, base: &str, tags: &[(&str, &str)]) -> Counter {
        let name = joined_name(base, tags);
        get_or_create!(
            self,
            counters,
            &name,
            Counter::default(),
            Some((base.to_string(), owned_tags(tags)))
        )
    }

    pub fn gauge_with_tags(&self, base: &str, tags: &[(&str, &str)]) -> Gauge {
        let name = joined_name(base, tags);
        get_or_create!(
            self,
            gauges,
            &name,
            Gauge::default(),
            Some((base.to_string(), owned_tags(tags)))
        )
    }

    pub fn histogram_with_tags(&self, base: &str, tags: &[(&str, &str)]) -> Histogram {
        let name = joined_name(base, tags);
        get_or_create!(
            self,
            histograms,
            &name,
            Histogram::default(),
            Some((base.to_string(), owned_tags(tags)))
        )
    }

    /// Adds a source read on every snapshot.
    pub fn add_source(&self, source: Arc<dyn StatsSource>) {
        self.sources.write().push(source);
    }

    /// Removes a source added earlier (compared by pointer).
    pub fn remove_source(&self, source: &Arc<dyn StatsSource>) {
        self.sources
            .write()
            .retain(|s| !std::ptr::addr_eq(Arc::as_ptr(s), Arc::as_ptr(source)));
    }

    /// Registers a custom stat namespace, as Istio's stats filter does for `istiocustom`.
    pub fn register_namespace(&self, namespace: &str) {
        let mut ns = self.namespaces.write();
        if !ns.iter().any(|n| n == namespace) {
            ns.push(namespace.to_string());
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_matching(None)
    }

    /// The stats whose names `filter` matches (all when `None`): the admin's
    /// `?filter=` asks for a few stats of tens of thousands, and copying every one of
    /// them first cost about 60 MiB with 1000 services.
    pub fn snapshot_matching(&self, filter: Option<&Regex>) -> Snapshot {
        let wanted = |name: &str| filter.is_none_or(|re| re.is_match(name));
        let mut samples = Vec::new();
        {
            let r = self.registry.read();
            for (name, e) in r.counters.iter().filter(|(n, _)| wanted(n)) {
                samples.push(Sample {
                    name: name.clone(),
                    extracted: e.extracted.clone(),
                    tags: e.tags.clone(),
                    value: Value::Counter {
                        value: e.handle.value(),
                        used: e.handle.used(),
                    },
                });
            }
            for (name, e) in r.gauges.iter().filter(|(n, _)| wanted(n)) {
                samples.push(Sample {
                    name: name.clone(),
                    extracted: e.extracted.clone(),
                    tags: e.tags.clone(),
                    value: Value::Gauge {
                        value: e.handle.value(),
                        used: e.handle.used(),
                    },
                });
            }
            for (name, e) in r.histograms.iter().filter(|(n, _)| wanted(n)) {
                samples.push(Sample {
                    name: name.clone(),
                    extracted: e.extracted.clone(),
                    tags: e.tags.clone(),
                    value: Value::Histogram(e.handle.snapshot()),
                });
            }
        }
        let sources: Vec<Arc<dyn StatsSource>> = self.sources.read().clone();
        let mut collector = Collector {
            store: self,
            filter,
            out: &mut samples,
        };
        for source in sources {
            source.collect(&mut collector);
        }
        samples.sort_by(|a, b| a.name.cmp(&b.name));
        // A source reporting a name the registry also has: the first one wins.
        samples.dedup_by(|later, earlier| later.name == earlier.name);
        Snapshot {
            samples,
            namespaces: self.namespaces.read().clone(),
        }
    }

    fn extract(&self, name: &str) -> (String, Vec<Tag>) {
        let mut cache = self.extraction_cache.lock();
        if let Some(hit) = cache.get(name) {
            return hit.clone();
        }
        let produced = self.config.tags.produce(name);
        if cache.len() >= EXTRACTION_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(name.to_string(), produced.clone());
        produced
    }
}

/// What a [`StatsSource`] reports into.
pub struct Collector<'a> {
    store: &'a Store,
    filter: Option<&'a Regex>,
    out: &'a mut Vec<Sample>,
}

impl Collector<'_> {
    fn push(&mut self, name: String, value: Value) {
        if !self.store.config.matcher.accepts(&name)
            || self.filter.is_some_and(|re| !re.is_match(&name))
        {
            return;
        }
        let (extracted, tags) = self.store.extract(&name);
        self.out.push(Sample {
            name,
            extracted,
            tags,
            value,
        });
    }

    /// A counter; used once non-zero.
    pub fn counter(&mut self, name: impl Into<String>, value: u64) {
        self.push(
            name.into(),
            Value::Counter {
                value,
                used: value != 0,
            },
        );
    }

    /// A gauge the source keeps current, so always used.
    pub fn gauge(&mut self, name: impl Into<String>, value: u64) {
        self.push(name.into(), Value::Gauge { value, used: true });
    }

    pub fn histogram(&mut self, name: impl Into<String>, histogram: &Histogram) {
        self.push(name.into(), Value::Histogram(histogram.snapshot()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::matcher::{NameMatcher, StatsMatcher};
    use crate::stats::tags::TagProducer;

    struct Fixed;

    impl StatsSource for Fixed {
        fn collect(&self, out: &mut Collector<'_>) {
            out.counter("cluster.c1.upstream_rq_total", 3);
            out.gauge("cluster.c1.membership_total", 0);
        }
    }

    #[test]
    fn handles_are_shared_by_name() {
        let store = Store::default();
        let a = store.counter("server.x");
        let b = store.counter("server.x");
        assert!(a.same_as(&b));
        a.inc();
        let g = store.gauge("server.x");
        g.set(7);
        let snap = store.snapshot();
        // Counter and gauge of the same name both exist; the snapshot keeps one.
        assert!(snap.value("server.x").is_some());
    }

    #[test]
    fn a_filtered_snapshot_holds_only_the_matching_stats() {
        let store = Store::default();
        store.counter("cluster.c2.upstream_rq_200").add(2);
        store.gauge("server.live").set(1);
        store.histogram("cluster.c2.upstream_rq_time");
        store.add_source(Arc::new(Fixed));
        let re = Regex::new(r"^cluster\.c[12]\.upstream_rq_(total|200)$").unwrap();
        let snap = store.snapshot_matching(Some(&re));
        let names: Vec<&str> = snap.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["cluster.c1.upstream_rq_total", "cluster.c2.upstream_rq_200"]
        );
        assert_eq!(snap.value("cluster.c1.upstream_rq_total"), Some(3));
    }

    #[test]
    fn snapshot_merges_sources_and_extracts_tags() {
        let store = Store::default();
        store.counter("cluster.c2.upstream_rq_200").add(2);
        let source: Arc<dyn StatsSource> = Arc::new(Fixed);
        store.add_source(source.clone());
        let snap = store.snapshot();
        let names: Vec<&str> = snap.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cluster.c1.membership_total",
                "cluster.c1.upstream_rq_total",
                "cluster.c2.upstream_rq_200"
            ]
        );
        let s = snap.get("cluster.c2.upstream_rq_200").unwrap();
        assert_eq!(s.extracted, "cluster.upstream_rq");
        assert_eq!(snap.value("cluster.c1.upstream_rq_total"), Some(3));
        store.remove_source(&source);
        assert!(
            store
                .snapshot()
                .get("cluster.c1.upstream_rq_total")
                .is_none()
        );
    }

    #[test]
    fn matcher_rejects_but_handles_still_count() {
        let store = Store::new(StatsConfig {
            tags: TagProducer::none(),
            matcher: StatsMatcher::Inclusion(vec![NameMatcher::prefix("server")]),
        });
        let hidden = store.counter("cluster.a.upstream_rq_total");
        hidden.inc();
        assert_eq!(hidden.value(), 1);
        store.counter("server.live").inc();
        store.add_source(Arc::new(Fixed));
        let snap = store.snapshot();
        assert_eq!(snap.samples.len(), 1);
        assert_eq!(snap.samples[0].name, "server.live");
    }

    #[test]
    fn tagged_stats_use_envoys_joined_names() {
        let store = Store::default();
        let c = store.counter_with_tags(
            "istiocustom.istio_requests_total",
            &[("reporter", "source"), ("response_code", "200")],
        );
        c.inc();
        let snap = store.snapshot();
        let s = snap
            .get("istiocustom.istio_requests_total.reporter.source.response_code.200")
            .unwrap();
        assert_eq!(s.extracted, "istiocustom.istio_requests_total");
        assert_eq!(s.tags.len(), 2);
    }
}
