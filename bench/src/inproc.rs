//! In-process timings of Strait's own pipeline, through strait-pilot's public API:
//! reading the config tree, building a PushContext, and generating one sidecar's
//! CDS/EDS/LDS/RDS. Istio has no equivalent entry point, so these have no peer column.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use strait_pilot::config::file::FileSource;
use strait_pilot::environment::Environment;
use strait_pilot::model::{Locality, Proxy, PushContext};
use strait_pilot::xds::{self, Resource};
use strait_proto::istio::MeshConfig;

use crate::ads::{self, TYPES};
use crate::stats::Summary;

#[derive(Clone, Debug, Default)]
pub struct Generated {
    /// First generation from a fresh PushContext.
    pub cold: Summary,
    /// The same request again: what the next proxy with the same view costs.
    pub warm: Summary,
    pub resources: usize,
    /// Sum of the encoded resources (`Any` bodies).
    pub bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct InProcess {
    pub objects: usize,
    /// Reading and parsing every file (first scan).
    pub scan: Duration,
    /// Handing the scan to the environment (config store, ServiceEntry endpoints).
    pub apply: Duration,
    pub push_context: Summary,
    pub push_context_summary: BTreeMap<String, usize>,
    /// Per type (`cds`, `eds`, `lds`, `rds`).
    pub per_type: BTreeMap<&'static str, Generated>,
    /// All four types for one proxy, per run.
    pub full_config_cold: Summary,
    pub full_config_warm: Summary,
}

/// Measures the pipeline on the config tree at `dir`, repeating the timed steps `runs`
/// times.
pub fn measure(
    dir: &Path,
    node_id: &str,
    metadata: &serde_json::Value,
    runs: usize,
) -> anyhow::Result<InProcess> {
    let t = Instant::now();
    let mut source = FileSource::new(dir);
    let scan = source.scan();
    let scan_time = t.elapsed();
    if !scan.errors.is_empty() {
        let first: Vec<String> = scan
            .errors
            .iter()
            .take(3)
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect();
        bail!("{} config errors, e.g. {first:?}", scan.errors.len());
    }
    let objects = scan.applied.len();

    let env = Environment::new(Arc::new(MeshConfig::default()), "cluster.local");
    let t = Instant::now();
    env.apply_scan(scan);
    let apply = t.elapsed();

    let meta = metadata.as_object().cloned().unwrap_or_default();
    let mut proxy =
        Proxy::from_node(node_id, meta, Locality::default()).map_err(|e| anyhow::anyhow!("{e}"))?;

    // Each run starts from a fresh PushContext, as after a config change: its XDS cache
    // is empty, so the first generation ("cold") pays for everything, and a second
    // proxy with the same view ("warm") is served from the cache.
    let mut pc_times = Vec::with_capacity(runs);
    let mut cold = Times::default();
    let mut warm = Times::default();
    let mut last = BTreeMap::new();
    let mut summary = BTreeMap::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let push = Arc::new(env.build_push_context());
        pc_times.push(t.elapsed());
        proxy.service_targets = push.service_targets(&proxy);
        last = generate_all(&proxy, &push, &mut cold)?;
        generate_all(&proxy, &push, &mut warm)?;
        summary = push.summary();
    }

    let per_type = last
        .iter()
        .map(|(kind, resources)| {
            let bytes = resources
                .iter()
                .map(|r| u64::try_from(r.encoded_len()).unwrap_or(u64::MAX))
                .sum();
            let g = Generated {
                cold: cold.summary(kind),
                warm: warm.summary(kind),
                resources: resources.len(),
                bytes,
            };
            (*kind, g)
        })
        .collect();

    Ok(InProcess {
        objects,
        scan: scan_time,
        apply,
        push_context: Summary::of(&pc_times),
        push_context_summary: summary
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        per_type,
        full_config_cold: Summary::of(&cold.full),
        full_config_warm: Summary::of(&warm.full),
    })
}

#[derive(Default)]
struct Times {
    per_type: BTreeMap<&'static str, Vec<Duration>>,
    full: Vec<Duration>,
}

impl Times {
    fn summary(&self, kind: &str) -> Summary {
        Summary::of(
            self.per_type
                .get(kind)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
    }
}

/// CDS, then EDS for its EDS clusters, LDS, then RDS for the route names the listeners
/// use — what a sidecar asks for — timing each type.
fn generate_all(
    proxy: &Proxy,
    push: &PushContext,
    times: &mut Times,
) -> anyhow::Result<BTreeMap<&'static str, Vec<Resource>>> {
    let mut total = Duration::ZERO;
    let mut timed = |kind: &'static str, url: &str, names: &[String]| {
        let t = Instant::now();
        let out = xds::generate(url, proxy, push, names);
        let took = t.elapsed();
        total += took;
        times.per_type.entry(kind).or_default().push(took);
        out
    };
    let cds = timed("cds", TYPES[0].1, &[]);
    let eds_names: Vec<String> =
        ads::eds_cluster_names_in(cds.iter().map(|r| r.body.value.as_slice()))?
            .into_iter()
            .collect();
    let eds = timed("eds", TYPES[1].1, &eds_names);
    let lds = timed("lds", TYPES[2].1, &[]);
    let rds_names: Vec<String> = ads::route_names_in(lds.iter().map(|r| r.body.value.as_slice()))?
        .into_iter()
        .collect();
    let rds = timed("rds", TYPES[3].1, &rds_names);
    times.full.push(total);
    Ok(BTreeMap::from([
        ("cds", cds),
        ("eds", eds),
        ("lds", lds),
        ("rds", rds),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::Scenario;
    use crate::workdir::TempDir;

    #[test]
    fn generates_every_type_for_a_small_mesh() {
        let dir = TempDir::new("inproc-test").unwrap();
        let s = Scenario {
            services: 20,
            endpoints_per_service: 5,
            virtual_services: 4,
            destination_rules: 4,
            namespace: "bench".to_string(),
        };
        s.write(dir.path()).unwrap();
        let id = ads::sidecar_node_id("10.0.0.1", "bench", "default");
        let meta = ads::sidecar_metadata("10.0.0.1", "bench", "default");
        let m = measure(dir.path(), &id, &meta, 3).unwrap();
        assert_eq!(m.objects, 28);
        assert_eq!(m.push_context.runs, 3);
        assert_eq!(m.full_config_cold.runs, 3);
        assert_eq!(m.full_config_warm.runs, 3);
        assert_eq!(m.per_type["eds"].cold.runs, 3);
        // 20 service clusters plus v1/v2 subsets of 4 services, all with endpoints.
        assert!(m.per_type["cds"].resources >= 28, "{:?}", m.per_type["cds"]);
        assert!(m.per_type["eds"].resources >= 28, "{:?}", m.per_type["eds"]);
        assert!(m.per_type["lds"].resources >= 1);
        assert_eq!(
            m.per_type["rds"].resources, 1,
            "one route config for port 8080"
        );
        assert!(m.per_type.values().all(|g| g.bytes > 0));
    }
}
