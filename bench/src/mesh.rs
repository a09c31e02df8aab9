//! The benchmark mesh, written as the YAML a user would `kubectl apply`: ServiceEntries
//! with inline endpoints (a form both Strait and Istio read from `--configDir` without
//! Kubernetes), VirtualServices and DestinationRules. One object per file, so a single
//! VirtualService can be edited to measure convergence.

use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The port every service listens on; all services share it, so a sidecar gets one
/// outbound HTTP listener and one route configuration named after it.
pub const SERVICE_PORT: u16 = 8080;
/// Header that sends a request to subset v2 regardless of the weights.
pub const CANARY_HEADER: &str = "x-bench-canary";
/// Weight of subset v1 in the default route (v2 gets the rest).
pub const DEFAULT_V1_WEIGHT: u32 = 80;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub services: usize,
    pub endpoints_per_service: usize,
    /// VirtualServices for services `0..virtual_services`.
    pub virtual_services: usize,
    /// DestinationRules for services `0..destination_rules`.
    pub destination_rules: usize,
    pub namespace: String,
}

impl Scenario {
    /// The issue's mesh: 1000 services × 5 endpoints, 200 VirtualServices, 200
    /// DestinationRules.
    pub fn issue() -> Scenario {
        Scenario {
            services: 1000,
            endpoints_per_service: 5,
            virtual_services: 200,
            destination_rules: 200,
            namespace: "bench".to_string(),
        }
    }

    pub fn name(&self, service: usize) -> String {
        format!("svc-{service:04}")
    }

    pub fn host(&self, service: usize) -> String {
        format!(
            "{}.{}.svc.cluster.local",
            self.name(service),
            self.namespace
        )
    }

    /// VIPs come from 240.240.0.0/16 (reserved space, never routed), starting at .0.1.
    pub fn vip(&self, service: usize) -> Ipv4Addr {
        let n = u32::try_from(service + 1).unwrap_or(u32::MAX);
        Ipv4Addr::from(0xF0F0_0000 | (n & 0xFFFF))
    }

    /// Endpoint addresses come from 10.1.0.0 upwards, so the benchmark proxy's own
    /// 10.0.0.1 never matches a workload.
    pub fn endpoint_ip(&self, service: usize, endpoint: usize) -> Ipv4Addr {
        let n = u32::try_from(service * self.endpoints_per_service + endpoint).unwrap_or(u32::MAX);
        Ipv4Addr::from(0x0A01_0000u32.wrapping_add(n))
    }

    /// The first three fifths of a service's endpoints are v1, the rest v2.
    pub fn endpoint_version(&self, endpoint: usize) -> &'static str {
        if endpoint * 5 < self.endpoints_per_service * 3 {
            "v1"
        } else {
            "v2"
        }
    }

    /// Number of endpoints the scenario declares in total.
    pub fn endpoint_count(&self) -> usize {
        self.services * self.endpoints_per_service
    }

    pub fn service_entry_path(&self, dir: &Path, service: usize) -> PathBuf {
        dir.join("serviceentries")
            .join(format!("{}.yaml", self.name(service)))
    }

    pub fn virtual_service_path(&self, dir: &Path, service: usize) -> PathBuf {
        dir.join("virtualservices")
            .join(format!("{}.yaml", self.name(service)))
    }

    pub fn destination_rule_path(&self, dir: &Path, service: usize) -> PathBuf {
        dir.join("destinationrules")
            .join(format!("{}.yaml", self.name(service)))
    }

    /// Writes every object into `dir` (created if missing), one file each.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        for sub in ["serviceentries", "virtualservices", "destinationrules"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for service in 0..self.services {
            std::fs::write(
                self.service_entry_path(dir, service),
                self.service_entry(service),
            )?;
        }
        for service in 0..self.virtual_services.min(self.services) {
            self.write_virtual_service(dir, service, DEFAULT_V1_WEIGHT)?;
        }
        for service in 0..self.destination_rules.min(self.services) {
            std::fs::write(
                self.destination_rule_path(dir, service),
                self.destination_rule(service),
            )?;
        }
        Ok(())
    }

    /// Rewrites one VirtualService with a new v1 weight, atomically (write + rename) so a
    /// watcher never reads half a file.
    pub fn write_virtual_service(
        &self,
        dir: &Path,
        service: usize,
        v1_weight: u32,
    ) -> io::Result<()> {
        let path = self.virtual_service_path(dir, service);
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, self.virtual_service(service, v1_weight))?;
        std::fs::rename(&tmp, &path)
    }

    pub fn service_entry(&self, service: usize) -> String {
        let mut y = String::new();
        let name = self.name(service);
        // `writeln!` into a String cannot fail.
        let _ = writeln!(y, "apiVersion: networking.istio.io/v1");
        let _ = writeln!(y, "kind: ServiceEntry");
        let _ = writeln!(
            y,
            "metadata:\n  name: {name}\n  namespace: {}",
            self.namespace
        );
        let _ = writeln!(y, "spec:");
        let _ = writeln!(y, "  hosts:\n  - {}", self.host(service));
        let _ = writeln!(y, "  addresses:\n  - {}", self.vip(service));
        let _ = writeln!(
            y,
            "  ports:\n  - number: {SERVICE_PORT}\n    name: http\n    protocol: HTTP"
        );
        let _ = writeln!(y, "  location: MESH_INTERNAL\n  resolution: STATIC");
        let _ = writeln!(y, "  endpoints:");
        for endpoint in 0..self.endpoints_per_service {
            let _ = writeln!(
                y,
                "  - address: {}\n    labels:\n      app: {name}\n      version: {}",
                self.endpoint_ip(service, endpoint),
                self.endpoint_version(endpoint)
            );
        }
        y
    }

    pub fn virtual_service(&self, service: usize, v1_weight: u32) -> String {
        let host = self.host(service);
        let v1 = v1_weight.min(100);
        let v2 = 100 - v1;
        format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: {ns}
spec:
  hosts:
  - {host}
  http:
  - name: canary
    match:
    - headers:
        {CANARY_HEADER}:
          exact: \"1\"
    route:
    - destination:
        host: {host}
        subset: v2
  - name: split
    route:
    - destination:
        host: {host}
        subset: v1
      weight: {v1}
    - destination:
        host: {host}
        subset: v2
      weight: {v2}
    timeout: 5s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: 5xx,reset,connect-failure
",
            name = self.name(service),
            ns = self.namespace,
        )
    }

    pub fn destination_rule(&self, service: usize) -> String {
        format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {name}
  namespace: {ns}
spec:
  host: {host}
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 2s
      http:
        http1MaxPendingRequests: 1000
        maxRequestsPerConnection: 100
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
",
            name = self.name(service),
            ns = self.namespace,
            host = self.host(service),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn yaml(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    fn small() -> Scenario {
        Scenario {
            services: 300,
            endpoints_per_service: 5,
            virtual_services: 20,
            destination_rules: 10,
            namespace: "bench".to_string(),
        }
    }

    #[test]
    fn addresses_are_unique_and_in_their_ranges() {
        let s = Scenario::issue();
        let vips: BTreeSet<_> = (0..s.services).map(|i| s.vip(i)).collect();
        assert_eq!(vips.len(), s.services);
        assert!(vips.iter().all(|v| v.octets()[..2] == [240, 240]));
        assert_eq!(s.vip(0), Ipv4Addr::new(240, 240, 0, 1));
        assert_eq!(s.vip(999), Ipv4Addr::new(240, 240, 3, 232));

        let ips: BTreeSet<_> = (0..s.services)
            .flat_map(|i| (0..s.endpoints_per_service).map(move |e| (i, e)))
            .map(|(i, e)| s.endpoint_ip(i, e))
            .collect();
        assert_eq!(ips.len(), s.endpoint_count());
        assert!(
            ips.iter()
                .all(|ip| ip.octets()[0] == 10 && ip.octets()[1] >= 1)
        );
        assert!(!ips.contains(&Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn service_entry_has_inline_endpoints_with_versions() {
        let s = Scenario::issue();
        let se = yaml(&s.service_entry(7));
        assert_eq!(se["kind"], "ServiceEntry");
        assert_eq!(se["metadata"]["namespace"], "bench");
        assert_eq!(se["spec"]["hosts"][0], "svc-0007.bench.svc.cluster.local");
        assert_eq!(se["spec"]["addresses"][0], "240.240.0.8");
        assert_eq!(se["spec"]["ports"][0]["number"], 8080);
        assert_eq!(se["spec"]["ports"][0]["name"], "http");
        assert_eq!(se["spec"]["resolution"], "STATIC");
        assert_eq!(se["spec"]["location"], "MESH_INTERNAL");
        let endpoints = se["spec"]["endpoints"].as_sequence().unwrap();
        assert_eq!(endpoints.len(), 5);
        let versions: Vec<_> = endpoints
            .iter()
            .map(|e| e["labels"]["version"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["v1", "v1", "v1", "v2", "v2"]);
        assert_eq!(endpoints[0]["address"], "10.1.0.35");
    }

    #[test]
    fn virtual_service_splits_and_matches_header() {
        let s = Scenario::issue();
        let vs = yaml(&s.virtual_service(3, 70));
        let http = vs["spec"]["http"].as_sequence().unwrap();
        assert_eq!(http.len(), 2);
        assert_eq!(http[0]["match"][0]["headers"][CANARY_HEADER]["exact"], "1");
        assert_eq!(http[0]["route"][0]["destination"]["subset"], "v2");
        let split = http[1]["route"].as_sequence().unwrap();
        assert_eq!(split[0]["weight"], 70);
        assert_eq!(split[1]["weight"], 30);
        assert_eq!(
            split[1]["destination"]["host"],
            "svc-0003.bench.svc.cluster.local"
        );
    }

    #[test]
    fn destination_rule_has_both_subsets() {
        let s = Scenario::issue();
        let dr = yaml(&s.destination_rule(3));
        assert_eq!(dr["spec"]["host"], "svc-0003.bench.svc.cluster.local");
        assert_eq!(dr["spec"]["subsets"][0]["labels"]["version"], "v1");
        assert_eq!(dr["spec"]["subsets"][1]["name"], "v2");
        assert_eq!(
            dr["spec"]["trafficPolicy"]["loadBalancer"]["simple"],
            "LEAST_REQUEST"
        );
    }

    #[test]
    fn writes_one_file_per_object_and_rewrites_in_place() {
        let dir = crate::workdir::TempDir::new("gen-test").unwrap();
        let s = small();
        s.write(dir.path()).unwrap();
        let count = |sub: &str| std::fs::read_dir(dir.path().join(sub)).unwrap().count();
        assert_eq!(count("serviceentries"), 300);
        assert_eq!(count("virtualservices"), 20);
        assert_eq!(count("destinationrules"), 10);

        s.write_virtual_service(dir.path(), 4, 55).unwrap();
        let vs = yaml(&std::fs::read_to_string(s.virtual_service_path(dir.path(), 4)).unwrap());
        assert_eq!(vs["spec"]["http"][1]["route"][0]["weight"], 55);
        assert_eq!(count("virtualservices"), 20, "no temp file left behind");
    }

    #[test]
    fn strait_reads_every_object_without_errors() {
        let dir = crate::workdir::TempDir::new("gen-read").unwrap();
        let s = small();
        s.write(dir.path()).unwrap();
        let mut source = strait_pilot::config::file::FileSource::new(dir.path());
        let scan = source.scan();
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        assert_eq!(scan.applied.len(), 330);
    }
}
