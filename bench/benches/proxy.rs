//! `cargo bench -p strait-bench --bench proxy`: the data-plane benchmark, strait-proxy
//! beside Envoy, each as the client and server sidecars of an Istio mesh configured by
//! Strait's pilot-discovery, under the same loads, several rounds, interleaved.
//!
//! Needs root (network namespaces, iptables inside them) and Envoy 1.40 (`ENVOY_BIN`,
//! else the shared venv's). It first runs `cargo build --release -p strait-proxy
//! -p strait-pilot --bins` so the sidecars and pilot-discovery it starts are release
//! builds of this tree. Knobs (environment): STRAIT_BENCH_ROUNDS (5; on a shared VM, three
//! rounds left the medians moving by up to 20% between runs),
//! STRAIT_BENCH_SECONDS (5, per load), STRAIT_BENCH_WARMUP_MS (1000),
//! STRAIT_BENCH_H1_CONNS (16), STRAIT_BENCH_H2_CONNS (1), STRAIT_BENCH_H2_STREAMS (16),
//! STRAIT_BENCH_RATE (2000 requests/s for the latency loads), STRAIT_BENCH_BODY (1024
//! response bytes), STRAIT_BENCH_SERVICES (1000, the memory figure's mesh),
//! STRAIT_BENCH_LOADS (a comma list of max_http1, max_http2, rate_http1, rate_http2),
//! STRAIT_BENCH_MEMORY=0 (skip the 1000-service phase), STRAIT_BENCH_SETTLE_MS (2000, the
//! quiet time before each memory reading), STRAIT_BENCH_ONLY=strait|envoy, STRAIT_BENCH_PIN=off, STRAIT_BENCH_SCHED (rr: real-time
//! round robin for everything the bench runs; nice: nice -20; off), STRAIT_BENCH_ADS=sotw|delta,
//! STRAIT_BENCH_QUIET_PCT (15) / STRAIT_BENCH_QUIET_WAIT (120 s): before each round, wait
//! at most that long for the machine to be at most that busy; STRAIT_BENCH_BUILD=0 (skip the build), STRAIT_PROXY_BIN, STRAIT_PILOT_BIN,
//! STRAIT_BENCH_OUT (results directory).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use strait_bench::mesh::Scenario;
use strait_bench::proxy::affinity::{self, Pinning};
use strait_bench::proxy::cpu;
use strait_bench::proxy::report::Report;
use strait_bench::proxy::round::{self, Load, Settings};
use strait_bench::proxy::stage::{Binaries, Kind, StageOptions};
use strait_e2e::AdsApi;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let bins = binaries()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pinning = Pinning::choose(cores, std::env::var("STRAIT_BENCH_PIN").ok().as_deref());
    // Before any other thread exists, so every thread and child inherits it; the
    // sidecars are moved to their own core once started.
    if let Some(p) = pinning {
        affinity::pin_current_thread(p.load)?;
    }
    // Other work on this shared machine (compilers) otherwise delays the proxies and
    // the load generator by tens of milliseconds at times; see docs/benchmarks.md.
    match std::env::var("STRAIT_BENCH_SCHED").as_deref() {
        Ok("off") => {}
        Ok("nice") => affinity::renice_main_thread(-20)?,
        _ => affinity::round_robin_main_thread(10)?,
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(bins, pinning, cores))
}

async fn run(bins: Binaries, pinning: Option<Pinning>, cores: usize) -> anyhow::Result<()> {
    let issue = Scenario::issue();
    let settings = Settings {
        http1_connections: env_usize("STRAIT_BENCH_H1_CONNS", 16),
        http2_connections: env_usize("STRAIT_BENCH_H2_CONNS", 1),
        http2_streams: env_usize("STRAIT_BENCH_H2_STREAMS", 16),
        rate: env_usize("STRAIT_BENCH_RATE", 2000) as f64,
        warmup: Duration::from_millis(env_usize("STRAIT_BENCH_WARMUP_MS", 1000) as u64),
        duration: Duration::from_secs(env_usize("STRAIT_BENCH_SECONDS", 5) as u64),
        settle: Duration::from_millis(env_usize("STRAIT_BENCH_SETTLE_MS", 2000) as u64),
        loads: match std::env::var("STRAIT_BENCH_LOADS") {
            Ok(list) => list
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(|k| Load::from_key(k.trim()).with_context(|| format!("unknown load {k:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?,
            Err(_) => Load::ALL.to_vec(),
        },
        measure_large: !matches!(
            std::env::var("STRAIT_BENCH_MEMORY").as_deref(),
            Ok("0" | "off")
        ),
        large: Scenario {
            services: env_usize("STRAIT_BENCH_SERVICES", issue.services),
            ..issue
        },
        stage: StageOptions {
            ads: match std::env::var("STRAIT_BENCH_ADS").as_deref() {
                Ok("sotw") => AdsApi::Sotw,
                _ => AdsApi::Delta,
            },
            body_bytes: env_usize("STRAIT_BENCH_BODY", 1024),
            pinning,
            config_timeout: Duration::from_secs(60),
        },
    };
    let rounds = env_usize("STRAIT_BENCH_ROUNDS", 5);
    let quiet = env_usize("STRAIT_BENCH_QUIET_PCT", 15) as f64 / 100.0;
    let quiet_wait = Duration::from_secs(env_usize("STRAIT_BENCH_QUIET_WAIT", 120) as u64);
    let only = std::env::var("STRAIT_BENCH_ONLY").ok();
    let load_before = loadavg();
    println!(
        "strait-proxy vs Envoy: {rounds} rounds; pinning {pinning:?}; envoy {}, strait-proxy {}, pilot {}",
        bins.envoy.display(),
        bins.strait_proxy.display(),
        bins.pilot.display()
    );

    let mut results = Vec::new();
    let mut failures = Vec::new();
    for r in 1..=rounds {
        // Alternate who goes first, so a drift in the machine's load hits both.
        let order = if r % 2 == 1 {
            [Kind::Envoy, Kind::Strait]
        } else {
            [Kind::Strait, Kind::Envoy]
        };
        for kind in order {
            if only.as_deref().is_some_and(|o| o != kind.label()) {
                continue;
            }
            // Other work on the machine (compilers) skews every figure: wait, within
            // limits, for it to go quiet.
            let busy = cpu::wait_quiet(quiet, quiet_wait).await;
            println!(
                "round {r}: {} (machine {:.0}% busy before) ...",
                kind.label(),
                busy * 100.0
            );
            match round::run(kind, r, &bins, &settings).await {
                Ok(mut result) => {
                    result.machine_busy_before = busy;
                    results.push(result);
                }
                Err(e) => {
                    println!("  {} round {r} failed: {e:#}", kind.label());
                    failures.push((kind, r, format!("{e:#}")));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    let report = Report {
        command: command_line(),
        machine: {
            let mut m = machine(cores);
            m["loadavg_before"] = json!(load_before);
            m["loadavg_after"] = json!(loadavg());
            m
        },
        versions: json!({
            "envoy": first_line(&bins.envoy, &["--version"]),
            "strait_proxy": first_line(&bins.strait_proxy, &["--version"]),
            "rustc": first_line(Path::new("rustc"), &["--version"]),
            // The tree may hold uncommitted work; the commit is the base it started from.
            "strait_commit": first_line(Path::new("git"), &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]),
        }),
        settings,
        rounds: results,
        failures,
    };
    let markdown = report.to_markdown();
    println!("\n{markdown}");
    let out_dir = std::env::var_os("STRAIT_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"));
    std::fs::create_dir_all(&out_dir)?;
    let json_path = out_dir.join("proxy.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report.to_json())?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(out_dir.join("proxy.md"), &markdown)?;
    println!("results written to {}", json_path.display());
    if report.rounds.is_empty() {
        bail!("no round completed");
    }
    Ok(())
}

/// Envoy from `ENVOY_BIN` (or the shared venv); strait-proxy and pilot-discovery from
/// this bench's own release directory (`<target>/release/deps/proxy-<hash>` → `..`),
/// built first unless STRAIT_BENCH_BUILD=0 or both are given explicitly.
fn binaries() -> anyhow::Result<Binaries> {
    let release = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("locating the release directory")?;
    let given = |var: &str, name: &str| {
        std::env::var_os(var)
            .map_or_else(|| (release.join(name), false), |p| (PathBuf::from(p), true))
    };
    let (strait_proxy, proxy_given) = given("STRAIT_PROXY_BIN", "strait-proxy");
    let (pilot, pilot_given) = given("STRAIT_PILOT_BIN", "pilot-discovery");
    let skip = matches!(
        std::env::var("STRAIT_BENCH_BUILD").as_deref(),
        Ok("0" | "off")
    );
    let both_given = proxy_given && pilot_given;
    let build = !skip && !both_given;
    if build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        println!(
            "building the release binaries: cargo build --release -p strait-proxy -p strait-pilot --bins"
        );
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "strait-proxy",
                "-p",
                "strait-pilot",
                "--bins",
            ])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --release failed: {status}");
        }
    }
    for p in [&strait_proxy, &pilot] {
        if !p.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p strait-proxy -p strait-pilot --bins`",
                p.display()
            );
        }
    }
    Ok(Binaries {
        envoy: strait_e2e::bins::envoy()?,
        strait_proxy,
        pilot,
    })
}

fn first_line(bin: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(bin).args(args).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

fn command_line() -> String {
    let mut parts: Vec<String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("STRAIT_BENCH_")
                || k == "STRAIT_PROXY_BIN"
                || k == "STRAIT_PILOT_BIN"
                || k == "ENVOY_BIN"
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.push("cargo bench -p strait-bench --bench proxy".into());
    parts.join(" ")
}

fn machine(cores: usize) -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map(str::trim);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .map(|l| l.trim_start_matches("MemTotal:").trim());
    json!({
        "cores": cores,
        "cpu": model,
        "memory": mem,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
    })
}

fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
