//! `cargo bench -p strait-bench --bench pilot`: the control-plane benchmark.
//!
//! Needs Strait's release binary (`cargo build --release -p strait-pilot`) and, for the
//! peer column, Istio's pilot-discovery (`bench/istio/build.sh`). Knobs (environment):
//! STRAIT_BENCH_SERVICES / _ENDPOINTS / _VS / _DR (mesh size), STRAIT_BENCH_RUNS
//! (in-process repetitions), STRAIT_BENCH_CLIENTS (extra sidecars), STRAIT_BENCH_EDITS
//! (convergence samples), STRAIT_BENCH_ONLY=strait|istio, STRAIT_PILOT_BIN,
//! ISTIO_PILOT_BIN, STRAIT_BENCH_OUT (results directory).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use strait_bench::mesh::Scenario;
use strait_bench::outproc::{self, Options};
use strait_bench::report::{Outcome, Report};
use strait_bench::server::{Flavor, ServerSpec};
use strait_bench::workdir::TempDir;
use strait_bench::{ads, inproc};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let issue = Scenario::issue();
    let scenario = Scenario {
        services: env_usize("STRAIT_BENCH_SERVICES", issue.services),
        endpoints_per_service: env_usize("STRAIT_BENCH_ENDPOINTS", issue.endpoints_per_service),
        virtual_services: env_usize("STRAIT_BENCH_VS", issue.virtual_services),
        destination_rules: env_usize("STRAIT_BENCH_DR", issue.destination_rules),
        namespace: issue.namespace.clone(),
    };
    let runs = env_usize("STRAIT_BENCH_RUNS", 20);
    let opts = Options {
        extra_clients: env_usize("STRAIT_BENCH_CLIENTS", 10),
        edits: env_usize("STRAIT_BENCH_EDITS", 5),
        ..Options::default()
    };
    let only = std::env::var("STRAIT_BENCH_ONLY").ok();

    let load_before = loadavg();
    let mesh = TempDir::new("mesh")?;
    scenario.write(mesh.path())?;
    println!(
        "mesh: {} services x {} endpoints, {} VirtualServices, {} DestinationRules in {}",
        scenario.services,
        scenario.endpoints_per_service,
        scenario.virtual_services,
        scenario.destination_rules,
        mesh.path().display()
    );

    let node_id = ads::sidecar_node_id("10.0.0.1", "bench", "default");
    let metadata = ads::sidecar_metadata("10.0.0.1", "bench", "default");
    println!("in process: {runs} runs ...");
    let in_process =
        inproc::measure(mesh.path(), &node_id, &metadata, runs).map_err(|e| format!("{e:#}"));

    let strait_bin = strait_binary();
    let istio_bin = istio_binary();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (flavor, bin, hint) in [
        (
            Flavor::Strait,
            &strait_bin,
            "build it with `cargo build --release -p strait-pilot`",
        ),
        (
            Flavor::Istio,
            &istio_bin,
            "build it with `bench/istio/build.sh`",
        ),
    ] {
        if only.as_deref().is_some_and(|o| o != flavor.label()) {
            outcomes.push(Err(format!(
                "skipped (STRAIT_BENCH_ONLY={})",
                only.as_deref().unwrap_or("")
            )));
            continue;
        }
        if !bin.is_file() {
            outcomes.push(Err(format!("{} not found; {hint}", bin.display())));
            continue;
        }
        println!("out of process: {} ({}) ...", flavor.label(), bin.display());
        let work = TempDir::new(flavor.label())?;
        let spec = ServerSpec {
            flavor,
            binary: bin.clone(),
            config_dir: mesh.path().to_path_buf(),
            work_dir: work.path().to_path_buf(),
        };
        let outcome = outproc::run(spec, &scenario, &opts)
            .await
            .map_err(|e| format!("{e:#}"));
        if let Err(e) = &outcome {
            println!("  {} failed: {e}", flavor.label());
        }
        outcomes.push(outcome);
        // Let the machine go quiet between the two control planes.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let istio = outcomes.pop().unwrap_or_else(|| Err("not run".into()));
    let strait = outcomes.pop().unwrap_or_else(|| Err("not run".into()));

    let report = Report {
        command: command_line(),
        machine: {
            let mut m = machine();
            // Other work on the machine skews every number; the load shows how much.
            m["loadavg_before"] = json!(load_before);
            m["loadavg_after"] = json!(loadavg());
            m
        },
        versions: json!({
            "strait": first_line(&strait_bin, &["version"]),
            "istio": first_line(&istio_bin, &["version", "--short"]),
            "istio_module": std::fs::read_to_string(istio_bin.with_extension("version")).ok().map(|s| s.trim().to_string()),
            "istio_go": first_line(Path::new("go"), &["version", &istio_bin.display().to_string()]),
            "rustc": first_line(Path::new("rustc"), &["--version"]),
            // The tree may hold uncommitted work; the commit is the base it started from.
            "strait_commit": first_line(Path::new("git"), &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]),
        }),
        scenario: json!({
            "services": scenario.services,
            "endpoints_per_service": scenario.endpoints_per_service,
            "virtual_services": scenario.virtual_services,
            "destination_rules": scenario.destination_rules,
            "in_process_runs": runs,
            "extra_clients": opts.extra_clients,
            "edits": opts.edits,
        }),
        in_process,
        strait,
        istio,
    };
    let markdown = report.to_markdown();
    println!("\n{markdown}");

    let out_dir = std::env::var_os("STRAIT_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"));
    std::fs::create_dir_all(&out_dir)?;
    let json_path = out_dir.join("pilot.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report.to_json())?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(out_dir.join("pilot.md"), &markdown)?;
    println!("results written to {}", json_path.display());
    Ok(())
}

/// `$CARGO_TARGET_DIR/release/pilot-discovery`, found from this bench binary's own path
/// (`<target>/release/deps/pilot-<hash>`) unless STRAIT_PILOT_BIN says otherwise.
fn strait_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STRAIT_PILOT_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()?
                .parent()
                .map(|release| release.join("pilot-discovery"))
        })
        .unwrap_or_else(|| PathBuf::from("pilot-discovery"))
}

fn istio_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ISTIO_PILOT_BIN") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("STRAIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/strait".into());
    cache.join("istio").join("pilot-discovery")
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
    let knobs: Vec<String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("STRAIT_BENCH_") || k == "STRAIT_PILOT_BIN" || k == "ISTIO_PILOT_BIN"
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut parts = knobs;
    parts.push("cargo bench -p strait-bench --bench pilot".into());
    parts.join(" ")
}

fn machine() -> serde_json::Value {
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
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "cpu": model,
        "memory": mem,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
    })
}

/// /proc/loadavg's 1-, 5- and 15-minute figures.
fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
