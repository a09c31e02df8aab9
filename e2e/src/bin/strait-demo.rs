//! The local mesh demo: pilot-discovery serves `examples/bookinfo` to a stock Envoy
//! sidecar; requests flow to backends in their own network namespaces while the demo
//! edits the reviews VirtualService and the traffic split follows.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use strait_e2e::mesh::{BookinfoMesh, MeshOptions, SidecarKind};
use strait_e2e::{AdsApi, RequestSpec, Tally};

const USAGE: &str = "usage: strait-demo [--examples DIR] [--delta] [--strait-proxy] [--watch]

Starts pilot-discovery on a copy of the example config, a stock Envoy sidecar next to
productpage, and one backend per example Pod, each in its own network namespace. Then it
shows the reviews traffic split while it edits the VirtualService.

  --examples DIR  the example directory to serve (default: examples/bookinfo); it is
                  copied, with Pod IPs moved to the demo's network namespaces. It must
                  have a productpage-v1 Pod and the reviews Service with v1..v3 Pods
  --delta         use delta xDS (DELTA_GRPC) instead of state-of-the-world (GRPC)
  --strait-proxy  run strait-proxy as the sidecar instead of a stock Envoy
  --watch         after the scripted steps, keep showing the split every second until
                  Ctrl-C; edit the files in the printed config directory meanwhile
";

const SHIFTED: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 10
    - destination:
        host: reviews
        subset: v3
      weight: 90
";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut api = AdsApi::Sotw;
    let mut watch = false;
    let mut examples = None;
    let mut sidecar = SidecarKind::Envoy;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--delta" => api = AdsApi::Delta,
            "--watch" => watch = true,
            "--strait-proxy" => sidecar = SidecarKind::Strait,
            "--examples" => {
                let dir =
                    std::path::PathBuf::from(args.next().context("--examples needs a directory")?);
                anyhow::ensure!(
                    dir.is_dir(),
                    "--examples {}: not a directory",
                    dir.display()
                );
                examples = Some(dir);
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }

    println!(
        "Starting the mesh: network namespaces, backends, pilot-discovery, {sidecar:?} sidecar ({api:?} ADS)..."
    );
    let mesh = BookinfoMesh::start(MeshOptions {
        api,
        examples,
        sidecar,
        ..Default::default()
    })
    .await?;
    mesh.wait_configured(Duration::from_secs(30)).await?;
    println!(
        "pilot-discovery config directory: {}",
        mesh.pilot.config_dir().display()
    );
    println!(
        "pilot-discovery debug: http://{}/debug/syncz (inside netns {})",
        mesh.pilot.http_addr(),
        mesh.topology.hub().name()
    );
    println!(
        "sidecar listeners: {}",
        mesh.envoy.listener_names().await?.join(", ")
    );

    step("1. The example VirtualService: 80% reviews v1, 20% v3; end-user jason sees v2");
    show(&mesh, &RequestSpec::get("reviews:9080", "/"), 200).await;
    show(
        &mesh,
        &RequestSpec::get("reviews:9080", "/").header("end-user", "jason"),
        20,
    )
    .await;

    step("2. Editing virtual-services.yaml: 10% v1, 90% v3 (the sidecar keeps running)");
    mesh.pilot.write_config("virtual-services.yaml", SHIFTED)?;
    let took = wait_for_share(&mesh, "reviews-v3", 0.75).await;
    println!(
        "  traffic followed the edit {:.2} s after the file was written",
        took.as_secs_f64()
    );
    show(&mesh, &RequestSpec::get("reviews:9080", "/"), 200).await;

    step("3. Deleting the VirtualService: the default route spreads over v1, v2 and v3");
    mesh.pilot.remove_config("virtual-services.yaml")?;
    let took = wait_for_share(&mesh, "reviews-v2", 0.2).await;
    println!("  default route in place after {:.2} s", took.as_secs_f64());
    show(&mesh, &RequestSpec::get("reviews:9080", "/"), 200).await;

    if watch {
        step("Watching: edit the files in the config directory above; Ctrl-C to stop");
        let spec = RequestSpec::get("reviews:9080", "/");
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = show(&mesh, &spec, 100) => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    println!("\nDone; tearing the mesh down.");
    Ok(())
}

fn step(title: &str) {
    println!("\n== {title}");
}

async fn show(mesh: &BookinfoMesh, spec: &RequestSpec, n: usize) -> Tally {
    let tally = mesh
        .client
        .tally(BookinfoMesh::service_addr("reviews"), spec, n)
        .await;
    let user = spec
        .headers
        .iter()
        .find(|(k, _)| k == "end-user")
        .map(|(_, v)| format!(" as end-user {v}"))
        .unwrap_or_default();
    let shares: Vec<String> = tally
        .backends
        .iter()
        .map(|(b, c)| format!("{b} {c} ({:.0}%)", 100.0 * *c as f64 / n as f64))
        .collect();
    println!("  {n} requests{user}: {}", shares.join(", "));
    if !tally.errors.is_empty() {
        println!("  {} failed: {}", tally.errors.len(), tally.errors[0]);
    }
    tally
}

/// Samples the split until `backend` gets at least `share` of 40 requests.
async fn wait_for_share(mesh: &BookinfoMesh, backend: &str, share: f64) -> Duration {
    let started = Instant::now();
    let spec = RequestSpec::get("reviews:9080", "/");
    while started.elapsed() < Duration::from_secs(15) {
        let tally = mesh
            .client
            .tally(BookinfoMesh::service_addr("reviews"), &spec, 40)
            .await;
        if tally.count(backend) as f64 >= share * 40.0 {
            break;
        }
    }
    started.elapsed()
}
