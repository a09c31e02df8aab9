//! Medians over the rounds, the printed tables (Markdown) and the raw JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::histogram::Histogram;
use super::loadgen::LoadResult;
use super::memory::Memory;
use super::round::{Load, RoundResult, Settings, ns_to_us};
use super::stage::Kind;
use crate::stats::mib;

/// The aims.
pub const AIM_RPS_PER_CPU: f64 = 1.5;
pub const AIM_MEMORY: f64 = 3.0;

pub struct Report {
    pub command: String,
    pub machine: Value,
    pub versions: Value,
    pub settings: Settings,
    pub rounds: Vec<RoundResult>,
    /// Rounds that failed: (kind, round, error).
    pub failures: Vec<(Kind, usize, String)>,
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Requests per CPU-second of both sidecars together (each request crosses both).
pub fn per_cpu_second(r: &LoadResult) -> f64 {
    let cpu: f64 = r.cpu.iter().map(|d| secs(*d)).sum();
    #[allow(clippy::cast_precision_loss)]
    let n = r.requests as f64;
    if cpu > 0.0 { n / cpu } else { f64::NAN }
}

/// Microseconds of CPU per request in sidecar `i` (0 client, 1 server).
fn cpu_us_per_request(r: &LoadResult, i: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = r.requests as f64;
    r.cpu.get(i).map_or(f64::NAN, |d| secs(*d) * 1e6 / n)
}

fn q_us(h: &Histogram, q: f64) -> f64 {
    ns_to_us(h.quantile(q))
}

/// Which way a row is better, for its ratio column (always "> 1 = strait better").
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

struct Row {
    label: String,
    strait: Option<f64>,
    envoy: Option<f64>,
    unit: &'static str,
    decimals: usize,
    better: Better,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let (s, e) = (self.strait?, self.envoy?);
        let r = match self.better {
            Better::Higher => s / e,
            Better::Lower => e / s,
        };
        r.is_finite().then_some(r)
    }
}

impl Report {
    fn of(&self, kind: Kind) -> impl Iterator<Item = &RoundResult> {
        self.rounds.iter().filter(move |r| r.kind == kind)
    }

    /// The median over this kind's rounds of `f` applied to load `load`.
    fn load_median(&self, kind: Kind, load: Load, f: &dyn Fn(&LoadResult) -> f64) -> Option<f64> {
        median(
            self.of(kind)
                .filter_map(|r| r.loads.iter().find(|(l, _)| *l == load).map(|(_, x)| f(x)))
                .collect(),
        )
    }

    fn memory_median(&self, kind: Kind, f: &dyn Fn(&RoundResult) -> Option<f64>) -> Option<f64> {
        median(self.of(kind).filter_map(f).collect())
    }

    fn row(
        &self,
        label: impl Into<String>,
        unit: &'static str,
        decimals: usize,
        better: Better,
        value: &dyn Fn(Kind) -> Option<f64>,
    ) -> Row {
        Row {
            label: label.into(),
            strait: value(Kind::Strait),
            envoy: value(Kind::Envoy),
            unit,
            decimals,
            better,
        }
    }

    fn load_row(
        &self,
        label: impl Into<String>,
        load: Load,
        unit: &'static str,
        decimals: usize,
        better: Better,
        f: &dyn Fn(&LoadResult) -> f64,
    ) -> Row {
        self.row(label, unit, decimals, better, &|k| {
            self.load_median(k, load, f)
        })
    }

    fn throughput_rows(&self, load: Load) -> Vec<Row> {
        let s = &self.settings;
        let (load_core, proxy_core) = s
            .stage
            .pinning
            .map_or((usize::MAX, usize::MAX), |p| (p.load, p.proxies));
        let p = load.protocol().label();
        let how = match load.protocol() {
            super::loadgen::Protocol::Http1 => format!("{} connections", s.http1_connections),
            super::loadgen::Protocol::Http2 => format!(
                "{} connection(s) × {} streams",
                s.http2_connections, s.http2_streams
            ),
        };
        vec![
            self.load_row(
                format!("{p} max throughput ({how})"),
                load,
                "req/s",
                0,
                Better::Higher,
                &LoadResult::rps,
            ),
            self.load_row(
                format!("{p} **requests per proxy CPU-second**"),
                load,
                "req/CPU-s",
                0,
                Better::Higher,
                &per_cpu_second,
            ),
            self.load_row(
                format!("{p} CPU per request, client sidecar"),
                load,
                "µs",
                1,
                Better::Lower,
                &|r| cpu_us_per_request(r, 0),
            ),
            self.load_row(
                format!("{p} CPU per request, server sidecar"),
                load,
                "µs",
                1,
                Better::Lower,
                &|r| cpu_us_per_request(r, 1),
            ),
            self.load_row(
                format!("{p} proxy core in use (both sidecars)"),
                load,
                "%",
                0,
                Better::Lower,
                &|r| r.cpu.iter().map(|d| secs(*d)).sum::<f64>() / secs(r.window) * 100.0,
            ),
            self.load_row(
                format!("{p} load-generator core in use"),
                load,
                "%",
                0,
                Better::Lower,
                &|r| secs(r.own_cpu) / secs(r.window) * 100.0,
            ),
            self.load_row(
                format!("{p} proxy core busy, all work (interrupts, others)"),
                load,
                "%",
                0,
                Better::Lower,
                &|r| r.core_busy.get(proxy_core).copied().unwrap_or(f64::NAN) * 100.0,
            ),
            self.load_row(
                format!("{p} load core busy, all work"),
                load,
                "%",
                0,
                Better::Lower,
                &|r| r.core_busy.get(load_core).copied().unwrap_or(f64::NAN) * 100.0,
            ),
            self.load_row(
                format!("{p} p99 latency at max throughput"),
                load,
                "µs",
                0,
                Better::Lower,
                &|r| q_us(&r.latency, 0.99),
            ),
        ]
    }

    fn latency_rows(&self, load: Load) -> Vec<Row> {
        let p = load.protocol().label();
        let rate = self.settings.rate;
        let mut rows = vec![self.load_row(
            format!("{p} achieved rate (target {rate:.0}/s)"),
            load,
            "req/s",
            0,
            Better::Higher,
            &LoadResult::rps,
        )];
        for (name, q) in [
            ("p50", 0.5),
            ("p90", 0.9),
            ("**p99**", 0.99),
            ("p99.9", 0.999),
        ] {
            rows.push(self.load_row(
                format!("{p} {name} at {rate:.0}/s"),
                load,
                "µs",
                0,
                Better::Lower,
                &move |r| q_us(&r.latency, q),
            ));
        }
        rows.push(self.load_row(
            format!("{p} max at {rate:.0}/s"),
            load,
            "µs",
            0,
            Better::Lower,
            &|r| ns_to_us(r.latency.max()),
        ));
        rows.push(self.load_row(
            format!("{p} CPU per request at {rate:.0}/s, both sidecars"),
            load,
            "µs",
            1,
            Better::Lower,
            &|r| cpu_us_per_request(r, 0) + cpu_us_per_request(r, 1),
        ));
        rows
    }

    fn memory_rows(&self) -> Vec<Row> {
        let n = self.settings.large.services;
        let mem = |label: String, f: fn(&RoundResult) -> Option<f64>| {
            self.row(label, "MiB", 1, Better::Lower, &|k| {
                self.memory_median(k, &f)
            })
        };
        vec![
            mem("**RSS idle**, client sidecar (small config)".into(), |r| {
                Some(mib(r.idle[0].rss))
            }),
            mem("RSS idle, server sidecar".into(), |r| {
                Some(mib(r.idle[1].rss))
            }),
            mem("PSS idle, client sidecar".into(), |r| {
                r.idle[0].pss.map(mib)
            }),
            mem("RSS after the loads, client sidecar".into(), |r| {
                Some(mib(r.after_load[0].rss))
            }),
            mem(format!("**RSS with {n} services**, client sidecar"), |r| {
                (r.large[0].rss > 0).then(|| mib(r.large[0].rss))
            }),
            mem(format!("RSS with {n} services, server sidecar"), |r| {
                (r.large[1].rss > 0).then(|| mib(r.large[1].rss))
            }),
            mem(format!("PSS with {n} services, client sidecar"), |r| {
                r.large[0].pss.map(mib)
            }),
            mem(
                "peak RSS (VmHWM) over the round, client sidecar".into(),
                |r| (r.large[0].rss_peak > 0).then(|| mib(r.large[0].rss_peak)),
            ),
            self.row(
                format!("time for the {n}-service config to reach both sidecars"),
                "s",
                2,
                Better::Lower,
                &|k| {
                    self.memory_median(k, &|r| {
                        (!r.large_change.took.is_zero()).then(|| secs(r.large_change.took))
                    })
                },
            ),
        ]
    }

    fn table(out: &mut String, rows: &[Row]) {
        let _ = writeln!(out, "| measure | strait-proxy | Envoy | advantage |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for r in rows {
            let v = |x: Option<f64>| {
                x.map_or("—".to_string(), |x| {
                    format!("{:.*} {}", r.decimals, x, r.unit)
                })
            };
            let ratio = r.ratio().map_or("—".to_string(), |x| {
                let dir = match r.better {
                    Better::Higher => "S/E",
                    Better::Lower => "E/S",
                };
                format!("{x:.2}× ({dir})")
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                r.label,
                v(r.strait),
                v(r.envoy),
                ratio
            );
        }
    }

    /// The aims of the issue against the medians: (aim, reached, met).
    pub fn aims(&self) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        for load in [Load::MaxHttp1, Load::MaxHttp2] {
            let s = self.load_median(Kind::Strait, load, &per_cpu_second);
            let e = self.load_median(Kind::Envoy, load, &per_cpu_second);
            if let (Some(s), Some(e)) = (s, e) {
                let r = s / e;
                out.push((
                    format!(
                        "{}: ≥ {AIM_RPS_PER_CPU}× Envoy's requests per proxy CPU-second",
                        load.protocol().label()
                    ),
                    format!("{r:.2}× ({s:.0} vs {e:.0})"),
                    r >= AIM_RPS_PER_CPU,
                ));
            }
        }
        for load in [Load::RateHttp1, Load::RateHttp2] {
            let f = |r: &LoadResult| q_us(&r.latency, 0.99);
            if let (Some(s), Some(e)) = (
                self.load_median(Kind::Strait, load, &f),
                self.load_median(Kind::Envoy, load, &f),
            ) {
                out.push((
                    format!(
                        "{}: p99 at {:.0}/s no worse than Envoy's",
                        load.protocol().label(),
                        self.settings.rate
                    ),
                    format!("{s:.0} µs vs {e:.0} µs"),
                    s <= e,
                ));
            }
        }
        let n = self.settings.large.services;
        for (what, f) in [
            (
                "idle",
                (|r: &RoundResult| Some(mib(r.idle[0].rss))) as fn(&RoundResult) -> Option<f64>,
            ),
            ("with the large config", |r: &RoundResult| {
                (r.large[0].rss > 0).then(|| mib(r.large[0].rss))
            }),
        ] {
            if let (Some(s), Some(e)) = (
                self.memory_median(Kind::Strait, &f),
                self.memory_median(Kind::Envoy, &f),
            ) {
                let label = if what == "idle" {
                    "RSS idle: at most a third of Envoy's".to_string()
                } else {
                    format!("RSS with {n} services: at most a third of Envoy's")
                };
                out.push((
                    label,
                    format!("{s:.1} MiB vs {e:.1} MiB ({:.2}×)", e / s),
                    s * AIM_MEMORY <= e,
                ));
            }
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let runs = |k: Kind| self.of(k).count();
        let _ = writeln!(
            out,
            "Medians of {} strait-proxy and {} Envoy rounds. \"advantage\" is strait/Envoy (S/E) where more is better and Envoy/strait (E/S) where less is better, so above 1 means strait-proxy is ahead.\n",
            runs(Kind::Strait),
            runs(Kind::Envoy)
        );
        let _ = writeln!(out, "#### Throughput (closed loop)\n");
        let mut rows = self.throughput_rows(Load::MaxHttp1);
        rows.extend(self.throughput_rows(Load::MaxHttp2));
        Self::table(&mut out, &rows);
        let _ = writeln!(out, "\n#### Latency at a fixed rate (open loop)\n");
        let mut rows = self.latency_rows(Load::RateHttp1);
        rows.extend(self.latency_rows(Load::RateHttp2));
        Self::table(&mut out, &rows);
        let _ = writeln!(out, "\n#### Memory\n");
        Self::table(&mut out, &self.memory_rows());
        let _ = writeln!(out, "\n#### Aims\n");
        let _ = writeln!(out, "| aim | reached | |");
        let _ = writeln!(out, "|---|---|---|");
        for (aim, reached, met) in self.aims() {
            let _ = writeln!(
                out,
                "| {aim} | {reached} | {} |",
                if met { "met" } else { "**missed**" }
            );
        }
        let errors: u64 = self
            .rounds
            .iter()
            .flat_map(|r| r.loads.iter().map(|(_, l)| l.errors))
            .sum();
        let _ = writeln!(out, "\nFailed requests over all rounds: {errors}.");
        for (kind, round, e) in &self.failures {
            let _ = writeln!(out, "\nRound {round} of {} failed: {e}", kind.label());
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let s = &self.settings;
        json!({
            "command": self.command,
            "machine": self.machine,
            "versions": self.versions,
            "settings": {
                "http1_connections": s.http1_connections,
                "http2_connections": s.http2_connections,
                "http2_streams": s.http2_streams,
                "rate": s.rate,
                "warmup_ms": s.warmup.as_millis() as u64,
                "duration_ms": s.duration.as_millis() as u64,
                "settle_ms": s.settle.as_millis() as u64,
                "large_services": s.large.services,
                "body_bytes": s.stage.body_bytes,
                "ads": s.stage.ads.api_type(),
                "pinning": s.stage.pinning.map(|p| json!({"load": p.load, "proxies": p.proxies})),
            },
            "rounds": self.rounds.iter().map(round_json).collect::<Vec<_>>(),
            "failures": self.failures.iter().map(|(k, r, e)| json!({"kind": k.label(), "round": r, "error": e})).collect::<Vec<_>>(),
            "aims": self.aims().into_iter().map(|(a, r, m)| json!({"aim": a, "reached": r, "met": m})).collect::<Vec<_>>(),
        })
    }
}

fn memory_json(m: &Memory) -> Value {
    json!({"rss_mib": mib(m.rss), "rss_peak_mib": mib(m.rss_peak), "pss_mib": m.pss.map(mib)})
}

fn load_json(r: &LoadResult) -> Value {
    let h = &r.latency;
    json!({
        "requests": r.requests,
        "errors": r.errors,
        "late": r.late,
        "window_s": secs(r.window),
        "rps": r.rps(),
        "requests_per_proxy_cpu_second": per_cpu_second(r),
        "cpu_s": r.cpu.iter().map(|d| secs(*d)).collect::<Vec<_>>(),
        "load_generator_cpu_s": secs(r.own_cpu),
        "core_busy": r.core_busy,
        "latency_us": {
            "count": h.count(),
            "min": ns_to_us(h.min()),
            "mean": h.mean() / 1000.0,
            "p50": q_us(h, 0.5),
            "p90": q_us(h, 0.9),
            "p99": q_us(h, 0.99),
            "p99_9": q_us(h, 0.999),
            "max": ns_to_us(h.max()),
        },
    })
}

fn round_json(r: &RoundResult) -> Value {
    json!({
        "kind": r.kind.label(),
        "round": r.round,
        "machine_busy_before": r.machine_busy_before,
        "threads": r.threads,
        "allowed_cores": r.cores,
        "nice": r.nice,
        "policy": r.policy,
        "memory": {
            "idle": r.idle.iter().map(memory_json).collect::<Vec<_>>(),
            "after_load": r.after_load.iter().map(memory_json).collect::<Vec<_>>(),
            "large": r.large.iter().map(memory_json).collect::<Vec<_>>(),
            "large_clusters": r.large_change.clusters,
            "large_config_s": secs(r.large_change.took),
        },
        "loads": r.loads.iter().map(|(l, x)| (l.key().to_string(), load_json(x))).collect::<serde_json::Map<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn ratios_point_the_same_way() {
        let row = |better, s, e| Row {
            label: String::new(),
            strait: Some(s),
            envoy: Some(e),
            unit: "",
            decimals: 0,
            better,
        };
        assert_eq!(row(Better::Higher, 300.0, 100.0).ratio(), Some(3.0));
        assert_eq!(row(Better::Lower, 10.0, 30.0).ratio(), Some(3.0));
        assert_eq!(row(Better::Lower, 0.0, 30.0).ratio(), None);
    }

    #[test]
    fn cpu_second_figure() {
        let r = LoadResult {
            requests: 10_000,
            errors: 0,
            late: 0,
            window: Duration::from_secs(5),
            latency: Histogram::new(),
            cpu: vec![Duration::from_millis(2000), Duration::from_millis(3000)],
            own_cpu: Duration::ZERO,
            core_busy: vec![],
        };
        assert!((per_cpu_second(&r) - 2000.0).abs() < 1e-9);
        assert!((cpu_us_per_request(&r, 0) - 200.0).abs() < 1e-9);
        assert!((cpu_us_per_request(&r, 1) - 300.0).abs() < 1e-9);
    }
}
