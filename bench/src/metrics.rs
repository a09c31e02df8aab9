//! The few Prometheus histograms both pilots export under Istio's names, read from the
//! monitoring port's `/metrics` text: they give Istio's side of timings the benchmark
//! cannot take in process (PushContext init, per-type push time).

use std::collections::BTreeMap;
use std::time::Duration;

/// Histograms worth comparing, as (metric, label whose values split it).
pub const HISTOGRAMS: [(&str, Option<&str>); 4] = [
    ("pilot_pushcontext_init_seconds", None),
    ("pilot_xds_push_time", Some("type")),
    ("pilot_proxy_convergence_time", None),
    ("pilot_debounce_time", None),
];

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Histogram {
    pub count: f64,
    pub sum: f64,
}

impl Histogram {
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0.0).then(|| Duration::from_secs_f64((self.sum / self.count).max(0.0)))
    }
}

/// `metric` → (value of the split label, or "" when unsplit) → histogram.
pub type Scraped = BTreeMap<String, BTreeMap<String, Histogram>>;

/// Reads `_sum` and `_count` series of [`HISTOGRAMS`] from Prometheus text.
pub fn parse(text: &str) -> Scraped {
    let mut out = Scraped::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        for (metric, split) in HISTOGRAMS {
            let Some(suffix) = name.strip_prefix(metric) else {
                continue;
            };
            let key = split.and_then(|l| label(labels, l)).unwrap_or_default();
            let h = out
                .entry(metric.to_string())
                .or_default()
                .entry(key)
                .or_default();
            match suffix {
                "_sum" => h.sum += value,
                "_count" => h.count += value,
                _ => {}
            }
        }
    }
    out
}

fn label(labels: &str, name: &str) -> Option<String> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sums_and_counts() {
        let text = "\
# HELP pilot_pushcontext_init_seconds Total time
# TYPE pilot_pushcontext_init_seconds histogram
pilot_pushcontext_init_seconds_bucket{le=\"0.01\"} 3
pilot_pushcontext_init_seconds_sum 0.03
pilot_pushcontext_init_seconds_count 3
pilot_xds_push_time_sum{type=\"cds\"} 0.5
pilot_xds_push_time_count{type=\"cds\"} 10
pilot_xds_push_time_sum{type=\"rds\",x=\"y\"} 0.2
pilot_xds_push_time_count{type=\"rds\",x=\"y\"} 4
pilot_xds_pushes{type=\"cds\"} 10
";
        let m = parse(text);
        let pc = m["pilot_pushcontext_init_seconds"][""];
        assert_eq!(pc.count, 3.0);
        assert_eq!(pc.mean(), Some(Duration::from_millis(10)));
        assert_eq!(
            m["pilot_xds_push_time"]["cds"].mean(),
            Some(Duration::from_millis(50))
        );
        assert_eq!(
            m["pilot_xds_push_time"]["rds"].mean(),
            Some(Duration::from_millis(50))
        );
        assert!(!m.contains_key("pilot_xds_pushes"));
        assert_eq!(Histogram::default().mean(), None);
    }
}
