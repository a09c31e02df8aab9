//! Turning the measurements into the printed tables and the JSON results file.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::ads::TYPES;
use crate::inproc::InProcess;
use crate::outproc::OutOfProcess;
use crate::procstat::Usage;
use crate::stats::{Summary, kib, mib, ms, ratio};

/// A peer's outcome: measured, or why not.
pub type Outcome = Result<OutOfProcess, String>;

pub struct Report {
    pub command: String,
    pub machine: Value,
    pub versions: Value,
    pub scenario: Value,
    pub in_process: Result<InProcess, String>,
    pub strait: Outcome,
    pub istio: Outcome,
}

fn summary_json(s: &Summary) -> Value {
    json!({"runs": s.runs, "median_ms": ms(s.median), "min_ms": ms(s.min), "max_ms": ms(s.max)})
}

fn usage_json(u: &Usage) -> Value {
    json!({"rss_mib": mib(u.rss), "rss_peak_mib": mib(u.rss_peak), "cpu_ms": ms(u.cpu), "threads": u.threads})
}

fn outproc_json(o: &Outcome) -> Value {
    let o = match o {
        Ok(o) => o,
        Err(e) => return json!({"error": e}),
    };
    let types: serde_json::Map<String, Value> = o
        .first_client_types
        .iter()
        .map(|(k, t)| {
            (
                (*k).to_string(),
                json!({"bytes": t.bytes, "responses": t.responses, "resources": t.resources}),
            )
        })
        .collect();
    json!({
        "command": o.command,
        "ready_ms": ms(o.ready),
        "after_load": usage_json(&o.after_load),
        "first_client_ms": ms(o.first_client),
        "first_client_types": types,
        "first_client_timeline": o
            .first_client_timeline
            .iter()
            .map(|(k, at, n)| json!({"type": k, "ms": ms(*at), "resources": n}))
            .collect::<Vec<_>>(),
        "after_first_client": usage_json(&o.after_first_client),
        "extra_clients": o.extra_clients,
        "extra_clients_all_ms": ms(o.extra_clients_all),
        "extra_clients_each": summary_json(&o.extra_clients_each),
        "after_extra_clients": usage_json(&o.after_extra_clients),
        "convergence_one_sidecar": summary_json(&o.convergence_one),
        "convergence_all_sidecars_first": summary_json(&o.convergence_all),
        "convergence_all_sidecars_last": summary_json(&o.convergence_all_last),
        "metrics": o
            .metrics
            .iter()
            .map(|(name, split)| {
                let v: serde_json::Map<String, Value> = split
                    .iter()
                    .map(|(k, h)| (k.clone(), json!({"count": h.count, "sum_s": h.sum})))
                    .collect();
                (name.clone(), Value::Object(v))
            })
            .collect::<serde_json::Map<String, Value>>(),
        "after_edits": usage_json(&o.after_edits),
    })
}

impl Report {
    pub fn to_json(&self) -> Value {
        let in_process = match &self.in_process {
            Ok(m) => {
                let types: serde_json::Map<String, Value> = m
                    .per_type
                    .iter()
                    .map(|(k, g)| {
                        (
                            (*k).to_string(),
                            json!({"cold": summary_json(&g.cold), "warm": summary_json(&g.warm),
                                   "resources": g.resources, "bytes": g.bytes}),
                        )
                    })
                    .collect();
                json!({
                    "objects": m.objects,
                    "scan_ms": ms(m.scan),
                    "apply_ms": ms(m.apply),
                    "push_context": summary_json(&m.push_context),
                    "push_context_summary": m.push_context_summary,
                    "per_type": types,
                    "full_config_cold": summary_json(&m.full_config_cold),
                    "full_config_warm": summary_json(&m.full_config_warm),
                })
            }
            Err(e) => json!({"error": e}),
        };
        json!({
            "command": self.command,
            "machine": self.machine,
            "versions": self.versions,
            "scenario": self.scenario,
            "in_process": in_process,
            "strait": outproc_json(&self.strait),
            "istio": outproc_json(&self.istio),
        })
    }

    /// Markdown tables: Strait in-process, then both control planes side by side.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Command: `{}`\n", self.command);
        let _ = writeln!(
            s,
            "Machine: {} cores, {}; load average before/after: {} / {}\n",
            self.machine["cores"],
            self.machine["cpu"].as_str().unwrap_or("?"),
            self.machine["loadavg_before"].as_str().unwrap_or("?"),
            self.machine["loadavg_after"].as_str().unwrap_or("?"),
        );
        let _ = writeln!(s, "### Strait in process (strait-pilot API)\n");
        match &self.in_process {
            Ok(m) => {
                let _ = writeln!(s, "| step | median | min | max | resources | bytes |");
                let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
                let _ = writeln!(
                    s,
                    "| read + parse {} objects (once) | {:.1} ms | | | | |",
                    m.objects,
                    ms(m.scan)
                );
                let _ = writeln!(
                    s,
                    "| apply to environment (once) | {:.1} ms | | | | |",
                    ms(m.apply)
                );
                let _ = writeln!(
                    s,
                    "{}",
                    timing_row("PushContext build", &m.push_context, "", "")
                );
                for (label, pick) in [
                    ("cold: fresh PushContext", true),
                    ("warm: XDS cache hit", false),
                ] {
                    for (kind, _) in TYPES {
                        if let Some(g) = m.per_type.get(kind) {
                            let t = if pick { &g.cold } else { &g.warm };
                            let _ = writeln!(
                                s,
                                "{}",
                                timing_row(
                                    &format!("{} for one sidecar, {label}", kind.to_uppercase()),
                                    t,
                                    &g.resources.to_string(),
                                    &format!("{:.1} KiB", kib(g.bytes))
                                )
                            );
                        }
                    }
                    let total: u64 = m.per_type.values().map(|g| g.bytes).sum();
                    let full = if pick {
                        &m.full_config_cold
                    } else {
                        &m.full_config_warm
                    };
                    let _ = writeln!(
                        s,
                        "{}",
                        timing_row(
                            &format!("**full config for one sidecar, {label}**"),
                            full,
                            "",
                            &format!("{:.1} KiB", kib(total))
                        )
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(s, "not measured: {e}");
            }
        }

        let _ = writeln!(s, "\n### Out of process, side by side\n");
        if let Err(e) = &self.strait {
            let _ = writeln!(s, "Strait not measured: {e}\n");
        }
        if let Err(e) = &self.istio {
            let _ = writeln!(s, "Istio not measured: {e}\n");
        }
        let _ = writeln!(s, "| measure | Strait | Istio | Istio / Strait |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        let (a, b) = (self.strait.as_ref().ok(), self.istio.as_ref().ok());
        let mut row = |name: &str, unit: &str, f: &dyn Fn(&OutOfProcess) -> f64| {
            // NaN marks a value the control plane does not report.
            let va = a.map(f).filter(|v| v.is_finite());
            let vb = b.map(f).filter(|v| v.is_finite());
            let cell = |v: Option<f64>| {
                v.map(|v| format!("{v:.1} {unit}"))
                    .unwrap_or_else(|| "—".into())
            };
            let r = match (va, vb) {
                (Some(x), Some(y)) => ratio(y, x)
                    .map(|r| format!("{r:.2}×"))
                    .unwrap_or_else(|| "—".into()),
                _ => "—".into(),
            };
            let _ = writeln!(s, "| {name} | {} | {} | {r} |", cell(va), cell(vb));
        };
        row("start → /ready 200", "ms", &|o| ms(o.ready));
        row("RSS after load", "MiB", &|o| mib(o.after_load.rss));
        row("CPU used to load", "ms", &|o| ms(o.after_load.cpu));
        row("1 sidecar: first request → full config", "ms", &|o| {
            ms(o.first_client)
        });
        for (kind, _) in TYPES {
            row(
                &format!("1 sidecar: {} bytes", kind.to_uppercase()),
                "KiB",
                &|o| kib(o.first_client_types.get(kind).map(|t| t.bytes).unwrap_or(0)),
            );
        }
        row("1 sidecar: CDS clusters", "", &|o| count(o, "cds"));
        row("1 sidecar: EDS assignments", "", &|o| count(o, "eds"));
        row("1 sidecar: LDS listeners", "", &|o| count(o, "lds"));
        row("RSS with 1 sidecar", "MiB", &|o| {
            mib(o.after_first_client.rss)
        });
        row("CPU used for 1 sidecar", "ms", &|o| {
            ms(o.after_first_client.cpu.saturating_sub(o.after_load.cpu))
        });
        let n = a.or(b).map(|o| o.extra_clients).unwrap_or(0);
        row(
            &format!("{n} more sidecars at once: all complete"),
            "ms",
            &|o| ms(o.extra_clients_all),
        );
        row(&format!("{n} more sidecars: median each"), "ms", &|o| {
            ms(o.extra_clients_each.median)
        });
        row(&format!("RSS with {} sidecars", n + 1), "MiB", &|o| {
            mib(o.after_extra_clients.rss)
        });
        row(&format!("CPU used for {n} sidecars"), "ms", &|o| {
            ms(o.after_extra_clients
                .cpu
                .saturating_sub(o.after_first_client.cpu))
        });
        row(
            "VS edit → new RDS, 1 sidecar connected: median",
            "ms",
            &|o| ms(o.convergence_one.median),
        );
        row("  min", "ms", &|o| ms(o.convergence_one.min));
        row("  max", "ms", &|o| ms(o.convergence_one.max));
        row(
            &format!("VS edit → new RDS at sidecar 1 of {}: median", n + 1),
            "ms",
            &|o| ms(o.convergence_all.median),
        );
        row(
            &format!("VS edit → new RDS at all {} sidecars: median", n + 1),
            "ms",
            &|o| ms(o.convergence_all_last.median),
        );
        row("  min", "ms", &|o| ms(o.convergence_all_last.min));
        row("  max", "ms", &|o| ms(o.convergence_all_last.max));
        row("pilot_pushcontext_init_seconds: mean", "ms", &|o| {
            hist_ms(o, "pilot_pushcontext_init_seconds", "")
        });
        row("pilot_pushcontext_init_seconds: count", "", &|o| {
            hist_count(o, "pilot_pushcontext_init_seconds", "")
        });
        for (kind, _) in TYPES {
            row(
                &format!("pilot_xds_push_time{{type={kind}}}: mean"),
                "ms",
                &|o| hist_ms(o, "pilot_xds_push_time", kind),
            );
        }
        row("pilot_proxy_convergence_time: mean", "ms", &|o| {
            hist_ms(o, "pilot_proxy_convergence_time", "")
        });
        row("peak RSS (VmHWM)", "MiB", &|o| mib(o.after_edits.rss_peak));
        row("total CPU at end", "ms", &|o| ms(o.after_edits.cpu));
        let _ = writeln!(
            s,
            "\nFirst sidecar's responses until complete (type @ ms after its first request, resources):\n"
        );
        for (name, o) in [("Strait", a), ("Istio", b)] {
            if let Some(o) = o {
                let steps: Vec<String> = o
                    .first_client_timeline
                    .iter()
                    .map(|(k, at, n)| format!("{k} @ {:.1} ({n})", ms(*at)))
                    .collect();
                let _ = writeln!(s, "- {name}: {}", steps.join(", "));
            }
        }
        s
    }
}

fn hist_ms(o: &OutOfProcess, metric: &str, key: &str) -> f64 {
    o.metrics
        .get(metric)
        .and_then(|m| m.get(key))
        .and_then(|h| h.mean())
        .map(ms)
        .unwrap_or(f64::NAN)
}

fn hist_count(o: &OutOfProcess, metric: &str, key: &str) -> f64 {
    o.metrics
        .get(metric)
        .and_then(|m| m.get(key))
        .map(|h| h.count)
        .unwrap_or(f64::NAN)
}

fn count(o: &OutOfProcess, kind: &str) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = o
        .first_client_types
        .get(kind)
        .map(|t| t.resources)
        .unwrap_or(0) as f64;
    n
}

fn timing_row(name: &str, t: &Summary, resources: &str, bytes: &str) -> String {
    format!(
        "| {name} | {} | {} | {} | {resources} | {bytes} |",
        fmt_ms(t.median),
        fmt_ms(t.min),
        fmt_ms(t.max)
    )
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.2} ms", ms(d))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ads::TypeStats;

    fn sample(ready_ms: u64, rss: u64) -> OutOfProcess {
        OutOfProcess {
            ready: Duration::from_millis(ready_ms),
            after_load: Usage {
                rss,
                ..Default::default()
            },
            first_client_types: BTreeMap::from([(
                "cds",
                TypeStats {
                    responses: 1,
                    bytes: 2048,
                    resources: 1400,
                },
            )]),
            extra_clients: 10,
            ..Default::default()
        }
    }

    fn report(istio: Outcome) -> Report {
        Report {
            command: "cargo bench".into(),
            machine: json!({}),
            versions: json!({}),
            scenario: json!({}),
            in_process: Err("skipped".into()),
            strait: Ok(sample(100, 10 * 1024 * 1024)),
            istio,
        }
    }

    #[test]
    fn side_by_side_rows_carry_ratios() {
        let md = report(Ok(sample(400, 50 * 1024 * 1024))).to_markdown();
        assert!(
            md.contains("| start → /ready 200 | 100.0 ms | 400.0 ms | 4.00× |"),
            "{md}"
        );
        assert!(
            md.contains("| RSS after load | 10.0 MiB | 50.0 MiB | 5.00× |"),
            "{md}"
        );
        assert!(
            md.contains("| 1 sidecar: CDS clusters | 1400.0  | 1400.0  | 1.00× |"),
            "{md}"
        );
        assert!(
            md.contains("| 10 more sidecars at once: all complete |"),
            "{md}"
        );
    }

    #[test]
    fn a_missing_peer_is_explained_not_invented() {
        let r = report(Err("binary not built".into()));
        let md = r.to_markdown();
        assert!(md.contains("Istio not measured: binary not built"));
        assert!(
            md.contains("| start → /ready 200 | 100.0 ms | — | — |"),
            "{md}"
        );
        assert_eq!(r.to_json()["istio"]["error"], "binary not built");
        assert_eq!(r.to_json()["strait"]["ready_ms"], 100.0);
    }
}
