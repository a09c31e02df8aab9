//! Printing a [`Snapshot`] the way Envoy's admin `/stats` (text and JSON) and
//! `/stats/prometheus` do.

use std::collections::BTreeMap;
use std::fmt::Write;

use regex::Regex;
use serde_json::{Value as Json, json};

use super::metric::HistogramSnapshot;
use super::store::{Sample, Snapshot, Value};
use super::tags::Tag;

/// `?usedonly` and `?filter=` of the stats endpoints.
#[derive(Clone, Debug, Default)]
pub struct StatsFilter {
    pub used_only: bool,
    /// Searched anywhere in the full stat name.
    pub filter: Option<Regex>,
}

impl StatsFilter {
    fn keeps(&self, s: &Sample) -> bool {
        (!self.used_only || s.value.used())
            && self.filter.as_ref().is_none_or(|r| r.is_match(&s.name))
    }
}

/// The quantiles Envoy's `/stats` summarises histograms with.
const QUANTILES: [f64; 10] = [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 100.0];

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        // Six significant digits, as printf's %g.
        let digits = 5 - v.abs().log10().floor().clamp(-10.0, 5.0) as i32;
        let s = format!("{v:.*}", usize::try_from(digits.max(0)).unwrap_or(0));
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

fn histogram_summary(h: &HistogramSnapshot) -> String {
    if h.count == 0 {
        return "No recorded values".to_string();
    }
    QUANTILES
        .iter()
        .map(|q| {
            let v = h.quantile(q / 100.0).unwrap_or(0.0);
            format!("P{}(nan,{})", number(*q), number(v))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `name: value` lines sorted by name, counters and gauges first, then histograms.
pub fn text(snapshot: &Snapshot, filter: &StatsFilter) -> String {
    let mut out = String::new();
    let kept = snapshot.samples.iter().filter(|s| filter.keeps(s));
    let mut histograms = Vec::new();
    for s in kept {
        match &s.value {
            Value::Counter { value, .. } | Value::Gauge { value, .. } => {
                let _ = writeln!(out, "{}: {value}", s.name);
            }
            Value::Histogram(h) => histograms.push((s, h)),
        }
    }
    for (s, h) in histograms {
        let _ = writeln!(out, "{}: {}", s.name, histogram_summary(h));
    }
    out
}

/// Envoy's `/stats?format=json`.
pub fn json(snapshot: &Snapshot, filter: &StatsFilter) -> Json {
    let mut stats = Vec::new();
    let mut computed = Vec::new();
    for s in snapshot.samples.iter().filter(|s| filter.keeps(s)) {
        match &s.value {
            Value::Counter { value, .. } | Value::Gauge { value, .. } => {
                stats.push(json!({"name": s.name, "value": value}));
            }
            Value::Histogram(h) => {
                let values: Vec<Json> = QUANTILES
                    .iter()
                    .map(|q| json!({"interval": null, "cumulative": h.quantile(q / 100.0)}))
                    .collect();
                computed.push(json!({"name": s.name, "values": values}));
            }
        }
    }
    if !computed.is_empty() {
        stats.push(json!({"histograms": {
            "supported_quantiles": QUANTILES,
            "computed_quantiles": computed,
        }}));
    }
    json!({ "stats": stats })
}

/// Prometheus allows `[a-zA-Z0-9_]` in names; Envoy maps everything else to `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escape_value(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('\n', r"\n")
        .replace('"', "\\\"")
}

fn labels(tags: &[Tag]) -> String {
    tags.iter()
        .map(|t| format!("{}=\"{}\"", sanitize(&t.name), escape_value(&t.value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The Prometheus metric name: custom-namespace stats (`istiocustom.x`) print as `x`,
/// all others as `envoy_<name>`. `None` for names Prometheus cannot take.
pub fn prometheus_name(extracted: &str, namespaces: &[String]) -> Option<String> {
    for ns in namespaces {
        if let Some(rest) = extracted
            .strip_prefix(ns.as_str())
            .and_then(|r| r.strip_prefix('.'))
        {
            let name = sanitize(rest);
            return match name.chars().next() {
                Some(c) if !c.is_ascii_digit() => Some(name),
                _ => None,
            };
        }
    }
    Some(format!("envoy_{}", sanitize(extracted)))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Envoy's `/stats/prometheus`: counters, then gauges, then histograms; within each,
/// one `# TYPE` block per metric name (sorted), lines sorted by stat name.
pub fn prometheus(snapshot: &Snapshot, filter: &StatsFilter) -> String {
    let mut groups: BTreeMap<(Kind, String), Vec<&Sample>> = BTreeMap::new();
    for s in snapshot.samples.iter().filter(|s| filter.keeps(s)) {
        let Some(name) = prometheus_name(&s.extracted, &snapshot.namespaces) else {
            continue;
        };
        let kind = match s.value {
            Value::Counter { .. } => Kind::Counter,
            Value::Gauge { .. } => Kind::Gauge,
            Value::Histogram(_) => Kind::Histogram,
        };
        groups.entry((kind, name)).or_default().push(s);
    }
    let mut out = String::new();
    for ((kind, name), samples) in groups {
        let type_name = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# TYPE {name} {type_name}");
        // Samples come sorted by full name from the snapshot.
        for s in samples {
            let tags = labels(&s.tags);
            match &s.value {
                Value::Counter { value, .. } | Value::Gauge { value, .. } => {
                    let _ = writeln!(out, "{name}{{{tags}}} {value}");
                }
                Value::Histogram(h) => {
                    let prefix = if tags.is_empty() {
                        String::new()
                    } else {
                        format!("{tags},")
                    };
                    for (bound, count) in h.bounds.iter().zip(&h.cumulative) {
                        let _ = writeln!(out, "{name}_bucket{{{prefix}le=\"{bound}\"}} {count}");
                    }
                    let _ = writeln!(out, "{name}_bucket{{{prefix}le=\"+Inf\"}} {}", h.count);
                    let _ = writeln!(out, "{name}_sum{{{tags}}} {}", h.sum);
                    let _ = writeln!(out, "{name}_count{{{tags}}} {}", h.count);
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Store;
    use crate::stats::metric::Histogram;

    fn store() -> Store {
        let store = Store::default();
        store.counter("cluster.xds-grpc.upstream_rq_200").add(3);
        store.counter("cluster.xds-grpc.upstream_rq_503").add(1);
        store.counter("server.unused");
        store.gauge("server.live").set(1);
        store
            .histogram("cluster.xds-grpc.upstream_rq_time")
            .record(7);
        store.register_namespace("istiocustom");
        store
            .counter_with_tags(
                "istiocustom.istio_requests_total",
                &[("reporter", "source"), ("response_code", "200")],
            )
            .inc();
        store
    }

    #[test]
    fn text_format() {
        let snap = store().snapshot();
        let t = text(&snap, &StatsFilter::default());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "cluster.xds-grpc.upstream_rq_200: 3");
        assert!(lines.contains(&"server.live: 1"));
        assert!(lines.contains(&"server.unused: 0"));
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("cluster.xds-grpc.upstream_rq_time: P0(nan,")
        );
        let used = text(
            &snap,
            &StatsFilter {
                used_only: true,
                filter: Some(Regex::new("^server").unwrap()),
            },
        );
        assert_eq!(used, "server.live: 1\n");
    }

    #[test]
    fn json_format() {
        let snap = store().snapshot();
        let j = json(&snap, &StatsFilter::default());
        let stats = j["stats"].as_array().unwrap();
        assert_eq!(
            stats[0],
            json!({"name": "cluster.xds-grpc.upstream_rq_200", "value": 3})
        );
        let h = &stats.last().unwrap()["histograms"];
        assert_eq!(h["supported_quantiles"].as_array().unwrap().len(), 10);
        assert_eq!(
            h["computed_quantiles"][0]["name"],
            "cluster.xds-grpc.upstream_rq_time"
        );
    }

    #[test]
    fn prometheus_format() {
        let snap = store().snapshot();
        let p = prometheus(&snap, &StatsFilter::default());
        assert!(p.contains(
            "# TYPE envoy_cluster_upstream_rq counter\n\
             envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"xds-grpc\"} 3\n\
             envoy_cluster_upstream_rq{envoy_response_code=\"503\",envoy_cluster_name=\"xds-grpc\"} 1\n\n"
        ), "{p}");
        assert!(p.contains("# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n"));
        assert!(p.contains("istio_requests_total{reporter=\"source\",response_code=\"200\"} 1\n"));
        assert!(p.contains(
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"xds-grpc\",le=\"0.5\"} 0\n"
        ));
        assert!(p.contains(
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"xds-grpc\",le=\"10\"} 1\n"
        ));
        assert!(
            p.contains("envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"xds-grpc\"} 7\n")
        );
        // Counters before gauges before histograms.
        let c = p.find("# TYPE envoy_cluster_upstream_rq counter").unwrap();
        let g = p.find("gauge").unwrap();
        let h = p.find("histogram").unwrap();
        assert!(c < g && g < h);
    }

    #[test]
    fn helpers() {
        assert_eq!(number(50.0), "50");
        assert_eq!(number(99.5), "99.5");
        assert_eq!(number(1.0 / 3.0), "0.333333");
        assert_eq!(escape_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(
            prometheus_name("istiocustom.9x", &["istiocustom".into()]),
            None
        );
        assert_eq!(
            prometheus_name("cluster.upstream_rq", &[]).as_deref(),
            Some("envoy_cluster_upstream_rq")
        );
        let h = Histogram::default();
        assert_eq!(histogram_summary(&h.snapshot()), "No recorded values");
    }
}
