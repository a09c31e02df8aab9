//! Everything the agent decides before it starts anything, as one pure function of
//! the flags, the environment, the mesh config file and the pod's files.
//!
//! The proxy config is layered as Istio layers it: Istio's defaults, then the mesh
//! config's `defaultConfig`, then `PROXY_CONFIG`, then the pod's
//! `proxy.istio.io/config` annotation. `proxyMetadata` entries then act as extra
//! environment variables for the agent and the proxy.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use strait_proto::istio::{InterceptionMode, MeshConfig, ProxyConfig};

use crate::cli::{FlagError, ProxyArgs};
use crate::env::{self, Env, EnvError, string_var};
use crate::metrics::{ScrapeConfig, ScrapeConfigError};
use crate::node::{self, NodeIdentity, NodeInputs};
use crate::podinfo::PodInfo;
use crate::probes::{AppProbers, ProbersError};

pub const DEFAULT_CONFIG_PATH: &str = "./etc/istio/proxy";
pub const BOOTSTRAP_FILE: &str = "envoy-rev.json";
pub const DEFAULT_PROXY_BINARY: &str = "strait-proxy";
const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Probers(#[from] ProbersError),
    #[error(transparent)]
    Scrape(#[from] ScrapeConfigError),
    #[error("{source_name}: {message}")]
    ProxyConfig {
        source_name: String,
        message: String,
    },
    #[error("proxy config {field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

/// Ports the agent and the proxy use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The proxy's admin (15000).
    pub admin: u16,
    /// The agent's status server (15020).
    pub status: u16,
    /// The proxy's readiness listener (15021), forwarding to the status server.
    pub envoy_status: u16,
    /// The proxy's Prometheus listener (15090).
    pub prometheus: u16,
}

/// How the agent ends the proxy on SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSettings {
    /// The proxy's own `--drain-time-s`.
    pub drain_duration: Duration,
    /// How long the agent waits after draining before it stops the proxy.
    pub termination: Duration,
    /// With `exit_on_zero_active_connections`: the wait before counting connections.
    pub minimum: Duration,
    pub exit_on_zero_active_connections: bool,
}

/// Stats the proxy keeps beyond Istio's required ones
/// (`sidecar.istio.io/statsInclusion{Prefixes,Suffixes,Regexps}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsInclusion {
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    pub regexps: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdsApi {
    Sotw,
    Delta,
}

/// The resolved configuration of one agent run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: NodeIdentity,
    /// The pod's addresses (`INSTANCE_IP`), first one in the node ID.
    pub ips: Vec<IpAddr>,
    pub proxy_config: ProxyConfig,
    /// `host:port` of pilot-discovery's plaintext xDS.
    pub discovery_address: String,
    pub discovery_host: String,
    pub discovery_port: u16,
    /// Where the bootstrap is written.
    pub bootstrap_path: PathBuf,
    pub binary: PathBuf,
    pub ports: Ports,
    pub drain: DrainSettings,
    pub concurrency: Option<u32>,
    pub proxy_log_level: String,
    /// `component:level,...`; empty for none.
    pub proxy_component_log_level: String,
    pub ads_api: AdsApi,
    pub stats: StatsInclusion,
    pub outlier_log_path: Option<String>,
    pub probers: AppProbers,
    pub scrape: Option<ScrapeConfig>,
    /// Where application probes go: the pod IP (or localhost, with
    /// `REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION`).
    pub probe_destination: IpAddr,
    /// The environment the proxy runs with (the agent's plus `proxyMetadata`).
    pub env: Env,
    /// Problems that did not stop the agent, for the log.
    pub warnings: Vec<String>,
}

/// What [`resolve`] reads.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub args: &'a ProxyArgs,
    pub env: &'a Env,
    /// The mesh config file's text, when the file exists.
    pub mesh_config: Option<&'a str>,
    pub pod: &'a PodInfo,
    /// The machine's addresses, used when `INSTANCE_IP` is unset.
    pub host_ips: &'a [IpAddr],
    /// The directory of the pilot-agent executable, where strait-proxy is looked for.
    pub agent_dir: Option<&'a Path>,
}

/// Deep-merges JSON objects; anything else in `overlay` replaces what is there.
fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

fn proxy_config_layer(source: &str, text: &str) -> Result<Value, ConfigError> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::ProxyConfig {
        source_name: source.to_owned(),
        message: format!("not valid YAML or JSON: {e}"),
    })?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(json!({})),
        _ => Err(ConfigError::ProxyConfig {
            source_name: source.to_owned(),
            message: "must be an object".into(),
        }),
    }
}

/// The proxy config after all layers, and its merged JSON (unknown keys kept).
fn resolve_proxy_config(inputs: &Inputs<'_>) -> Result<ProxyConfig, ConfigError> {
    let mut merged = json!({});
    if let Some(text) = inputs.mesh_config {
        let source = format!("--meshConfig {}", inputs.args.mesh_config.display());
        let mesh = proxy_config_layer(&source, text)?;
        MeshConfig::from_value(mesh.clone()).map_err(|e| ConfigError::ProxyConfig {
            source_name: source.clone(),
            message: e.to_string(),
        })?;
        if let Some(dc) = mesh.get("defaultConfig") {
            merge(&mut merged, dc.clone());
        }
    }
    if let Some(text) = string_var(inputs.env, "PROXY_CONFIG") {
        merge(&mut merged, proxy_config_layer("PROXY_CONFIG", text)?);
    }
    if let Some(text) = inputs.pod.annotation(PROXY_CONFIG_ANNOTATION) {
        let source = format!("annotation {PROXY_CONFIG_ANNOTATION}");
        merge(&mut merged, proxy_config_layer(&source, text)?);
    }
    MeshConfig::from_value(json!({ "defaultConfig": merged }))
        .map(|m| m.default_config)
        .map_err(|e| ConfigError::ProxyConfig {
            source_name: "proxy config".into(),
            message: e.to_string(),
        })
}

fn ignored_str<'a>(pc: &'a ProxyConfig, key: &str) -> Option<&'a str> {
    pc.ignored
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn port_field(value: i32, field: &'static str) -> Result<u16, ConfigError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ConfigError::Field {
            field,
            message: format!("{value} is not a port number"),
        })
}

/// Splits `host:port` (`[v6]:port` too).
pub fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Annotation first; the proxy config's `proxyStatsMatcher` only when the annotation
/// is absent (Istio does not merge the two). `{pod_ip}` expands to each pod IP.
fn stats_inclusion(pc: &ProxyConfig, pod: &PodInfo, ips: &[IpAddr]) -> StatsInclusion {
    let matcher = pc.ignored.get("proxyStatsMatcher");
    let pick = |annotation: &str, key: &str| -> Vec<String> {
        let from_annotation = list(pod.annotation(annotation));
        let chosen = if from_annotation.is_empty() {
            matcher
                .and_then(|m| m.get(key))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            from_annotation
        };
        chosen
            .into_iter()
            .flat_map(|p| {
                if p.contains("{pod_ip}") {
                    ips.iter()
                        .map(|ip| p.replace("{pod_ip}", &ip.to_string()))
                        .collect::<Vec<_>>()
                } else {
                    vec![p]
                }
            })
            .collect()
    };
    StatsInclusion {
        prefixes: pick(
            "sidecar.istio.io/statsInclusionPrefixes",
            "inclusionPrefixes",
        ),
        suffixes: pick(
            "sidecar.istio.io/statsInclusionSuffixes",
            "inclusionSuffixes",
        ),
        regexps: pick("sidecar.istio.io/statsInclusionRegexps", "inclusionRegexps"),
    }
}

fn instance_ips(env: &Env, host_ips: &[IpAddr]) -> Result<Vec<IpAddr>, ConfigError> {
    match string_var(env, "INSTANCE_IP") {
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>().map_err(|_| {
                    ConfigError::Env(EnvError {
                        name: "INSTANCE_IP".into(),
                        value: v.to_owned(),
                        reason: format!("{s:?} is not an IP address"),
                    })
                })
            })
            .collect(),
        None if !host_ips.is_empty() => Ok(host_ips.to_vec()),
        None => Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
    }
}

fn concurrency(args: &ProxyArgs, pc: &ProxyConfig, env: &Env) -> Result<Option<u32>, ConfigError> {
    if args.concurrency > 0 {
        return Ok(u32::try_from(args.concurrency).ok());
    }
    if let Some(n) = pc.concurrency {
        return Ok(u32::try_from(n).ok().filter(|n| *n > 0));
    }
    match string_var(env, "ISTIO_CPU_LIMIT") {
        None => Ok(None),
        Some(v) => {
            let cpus: f64 = v.parse().ok().filter(|c: &f64| *c > 0.0).ok_or_else(|| {
                ConfigError::Env(EnvError {
                    name: "ISTIO_CPU_LIMIT".into(),
                    value: v.to_owned(),
                    reason: "not a positive number of CPUs".into(),
                })
            })?;
            Ok(Some(cpus.ceil().min(f64::from(u16::MAX)) as u32))
        }
    }
}

fn binary(inputs: &Inputs<'_>, pc: &ProxyConfig) -> PathBuf {
    if let Some(b) = &inputs.args.proxy_binary {
        return b.clone();
    }
    if let Some(b) = ignored_str(pc, "binaryPath") {
        return PathBuf::from(b);
    }
    if let Some(dir) = inputs.agent_dir {
        let beside = dir.join(DEFAULT_PROXY_BINARY);
        if beside.is_file() {
            return beside;
        }
    }
    PathBuf::from(DEFAULT_PROXY_BINARY)
}

/// Resolves the whole configuration.
pub fn resolve(inputs: &Inputs<'_>) -> Result<AgentConfig, ConfigError> {
    let args = inputs.args;
    args.validate()?;
    let pc = resolve_proxy_config(inputs)?;
    let mut env = inputs.env.clone();
    for (k, v) in &pc.proxy_metadata {
        env.insert(k.clone(), v.clone());
    }
    let ips = instance_ips(&env, inputs.host_ips)?;
    let namespace = string_var(&env, "POD_NAMESPACE")
        .unwrap_or("default")
        .to_owned();
    let pod_name = string_var(&env, "POD_NAME")
        .or_else(|| string_var(&env, "HOSTNAME"))
        .unwrap_or("unknown")
        .to_owned();
    let domain = args
        .domain
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("{namespace}.svc.cluster.local"));

    let (discovery_host, discovery_port) =
        split_host_port(&pc.discovery_address).ok_or_else(|| ConfigError::Field {
            field: "discoveryAddress",
            message: format!("{:?} is not host:port", pc.discovery_address),
        })?;
    let ports = Ports {
        admin: port_field(pc.proxy_admin_port, "proxyAdminPort")?,
        status: port_field(pc.status_port, "statusPort")?,
        envoy_status: env::port_var(&env, "ENVOY_STATUS_PORT", 15021)?,
        prometheus: env::port_var(&env, "ENVOY_PROMETHEUS_PORT", 15090)?,
    };
    let drain = DrainSettings {
        drain_duration: pc.drain_duration.as_std(),
        termination: pc.termination_drain_duration.as_std(),
        minimum: env::duration_var(&env, "MINIMUM_DRAIN_DURATION", Duration::from_secs(5))?,
        exit_on_zero_active_connections: env::bool_var(
            &env,
            "EXIT_ON_ZERO_ACTIVE_CONNECTIONS",
            false,
        )?,
    };
    let (proxy_log_level, proxy_component_log_level) = args.proxy_levels()?;
    let ads_api = if env::bool_var(&env, "ISTIO_DELTA_XDS", true)? {
        AdsApi::Delta
    } else {
        AdsApi::Sotw
    };
    let probers = AppProbers::parse(string_var(&env, crate::probes::ENV_NAME).unwrap_or(""))?;
    let scrape = ScrapeConfig::parse(string_var(&env, crate::metrics::ENV_NAME), ports.status)?;
    let probe_destination =
        if env::bool_var(&env, "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION", false)? {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            ips.first()
                .copied()
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
        };
    let outlier_log_path = args.outlier_log_path.clone().filter(|p| !p.is_empty());
    let service_cluster = ignored_str(&pc, "serviceCluster")
        .unwrap_or(&args.service_cluster)
        .to_owned();
    let interception_mode = match pc.interception_mode {
        InterceptionMode::Redirect => "REDIRECT",
        InterceptionMode::Tproxy => "TPROXY",
        InterceptionMode::None => "NONE",
    };
    let proxy_config_json = serde_json::to_value(&pc).map_err(|e| ConfigError::ProxyConfig {
        source_name: "proxy config".into(),
        message: e.to_string(),
    })?;
    let (node, warnings) = node::identity(
        &env,
        inputs.pod,
        &NodeInputs {
            ips: &ips,
            pod_name: &pod_name,
            namespace: &namespace,
            domain: &domain,
            proxy_config: proxy_config_json,
            proxy_metadata: &pc.proxy_metadata,
            service_cluster: &service_cluster,
            interception_mode,
            envoy_status_port: ports.envoy_status,
            envoy_prometheus_port: ports.prometheus,
            exit_on_zero_active_connections: drain.exit_on_zero_active_connections,
            outlier_log_path: outlier_log_path.as_deref(),
        },
    );
    let config_path = ignored_str(&pc, "configPath").unwrap_or(DEFAULT_CONFIG_PATH);
    Ok(AgentConfig {
        stats: stats_inclusion(&pc, inputs.pod, &ips),
        concurrency: concurrency(args, &pc, &env)?,
        binary: binary(inputs, &pc),
        bootstrap_path: Path::new(config_path).join(BOOTSTRAP_FILE),
        discovery_address: pc.discovery_address.clone(),
        discovery_host,
        discovery_port,
        node,
        proxy_config: pc,
        ports,
        drain,
        proxy_log_level,
        proxy_component_log_level,
        ads_api,
        outlier_log_path,
        probers,
        scrape,
        probe_destination,
        env,
        warnings,
        ips,
    })
}

impl AgentConfig {
    /// An IPv6-only pod: the proxy listens on `::` and calls `::1`.
    pub fn ipv6_only(&self) -> bool {
        !self.ips.is_empty() && self.ips.iter().all(IpAddr::is_ipv6)
    }

    /// Where the proxy's admin and Prometheus listener are reached.
    pub fn localhost(&self) -> IpAddr {
        if self.ipv6_only() {
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> ProxyArgs {
        let mut argv = vec!["pilot-agent", "proxy", "sidecar"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Proxy(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn resolve_with(
        a: &ProxyArgs,
        e: &Env,
        mesh: Option<&str>,
        pod: &PodInfo,
    ) -> Result<AgentConfig, ConfigError> {
        resolve(&Inputs {
            args: a,
            env: e,
            mesh_config: mesh,
            pod,
            host_ips: &[],
            agent_dir: None,
        })
    }

    const SIDECAR_ENV: &[(&str, &str)] = &[
        ("INSTANCE_IP", "10.1.0.7"),
        ("POD_NAME", "reviews-v1-abc"),
        ("POD_NAMESPACE", "bookinfo"),
        ("SERVICE_ACCOUNT", "reviews"),
    ];

    #[test]
    fn istio_defaults() {
        let c = resolve_with(&args(&[]), &env(SIDECAR_ENV), None, &PodInfo::default()).unwrap();
        assert_eq!(
            c.node.id,
            "sidecar~10.1.0.7~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local"
        );
        assert_eq!(c.discovery_address, "istiod.istio-system.svc:15012");
        assert_eq!(
            (c.discovery_host.as_str(), c.discovery_port),
            ("istiod.istio-system.svc", 15012)
        );
        assert_eq!(
            c.ports,
            Ports {
                admin: 15000,
                status: 15020,
                envoy_status: 15021,
                prometheus: 15090
            }
        );
        assert_eq!(c.drain.drain_duration, Duration::from_secs(45));
        assert_eq!(c.drain.termination, Duration::from_secs(5));
        assert_eq!(c.drain.minimum, Duration::from_secs(5));
        assert!(!c.drain.exit_on_zero_active_connections);
        assert_eq!(c.ads_api, AdsApi::Delta);
        assert_eq!(
            c.bootstrap_path,
            PathBuf::from("./etc/istio/proxy/envoy-rev.json")
        );
        assert_eq!(c.binary, PathBuf::from("strait-proxy"));
        assert_eq!(c.concurrency, None);
        assert_eq!(c.probe_destination, "10.1.0.7".parse::<IpAddr>().unwrap());
        assert_eq!(
            (
                c.proxy_log_level.as_str(),
                c.proxy_component_log_level.as_str()
            ),
            ("warning", "misc:error")
        );
    }

    #[test]
    fn layers_mesh_then_env_then_annotation() {
        let mesh = "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15010\n  \
                    drainDuration: 10s\n  terminationDrainDuration: 9s\n  concurrency: 4\n  \
                    proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n";
        let mut e = env(SIDECAR_ENV);
        e.insert(
            "PROXY_CONFIG".into(),
            r#"{"terminationDrainDuration":"7s","configPath":"/tmp/x","binaryPath":"/usr/local/bin/envoy","statusPort":15030}"#.into(),
        );
        e.insert("EXIT_ON_ZERO_ACTIVE_CONNECTIONS".into(), "true".into());
        e.insert("MINIMUM_DRAIN_DURATION".into(), "1s".into());
        e.insert("ISTIO_DELTA_XDS".into(), "false".into());
        let pod = PodInfo {
            labels: None,
            annotations: Some(
                [
                    (
                        "proxy.istio.io/config".to_owned(),
                        "concurrency: 2\n".to_owned(),
                    ),
                    (
                        "sidecar.istio.io/statsInclusionPrefixes".to_owned(),
                        "cluster.outbound,http.{pod_ip}_".to_owned(),
                    ),
                ]
                .into(),
            ),
        };
        let c = resolve_with(&args(&[]), &e, Some(mesh), &pod).unwrap();
        assert_eq!(c.discovery_address, "istiod.istio-system.svc:15010");
        assert_eq!(c.drain.drain_duration, Duration::from_secs(10));
        assert_eq!(c.drain.termination, Duration::from_secs(7));
        assert_eq!(c.drain.minimum, Duration::from_secs(1));
        assert!(c.drain.exit_on_zero_active_connections);
        assert_eq!(c.concurrency, Some(2), "annotation wins");
        assert_eq!(c.ports.status, 15030);
        assert_eq!(c.bootstrap_path, PathBuf::from("/tmp/x/envoy-rev.json"));
        assert_eq!(c.binary, PathBuf::from("/usr/local/bin/envoy"));
        assert_eq!(c.ads_api, AdsApi::Sotw);
        assert_eq!(
            c.env["ISTIO_META_DNS_CAPTURE"], "true",
            "proxyMetadata is environment"
        );
        assert_eq!(c.node.metadata["DNS_CAPTURE"], "true");
        assert_eq!(c.node.metadata["PROXY_CONFIG"]["concurrency"], 2);
        assert_eq!(c.stats.prefixes, vec!["cluster.outbound", "http.10.1.0.7_"]);
        assert_eq!(c.node.metadata["EXIT_ON_ZERO_ACTIVE_CONNECTIONS"], "true");
    }

    #[test]
    fn flags_win() {
        let bin = "/opt/envoy";
        let c = resolve_with(
            &args(&[
                "--concurrency",
                "3",
                "--proxy-binary",
                bin,
                "--domain",
                "x.example",
            ]),
            &env(&[
                (
                    "PROXY_CONFIG",
                    r#"{"concurrency": 8, "binaryPath": "/nope"}"#,
                ),
                ("INSTANCE_IP", "10.0.0.1"),
            ]),
            None,
            &PodInfo::default(),
        )
        .unwrap();
        assert_eq!(c.concurrency, Some(3));
        assert_eq!(c.binary, PathBuf::from(bin));
        assert_eq!(c.node.id, "sidecar~10.0.0.1~unknown.default~x.example");
    }

    #[test]
    fn cpu_limit_sets_concurrency() {
        let mut e = env(SIDECAR_ENV);
        e.insert("ISTIO_CPU_LIMIT".into(), "1.5".into());
        assert_eq!(
            resolve_with(&args(&[]), &e, None, &PodInfo::default())
                .unwrap()
                .concurrency,
            Some(2)
        );
    }

    #[test]
    fn bad_input_names_its_source() {
        let pod = PodInfo::default();
        for (e, mesh, what) in [
            (vec![("PROXY_CONFIG", "[1]")], None, "PROXY_CONFIG"),
            (
                vec![("PROXY_CONFIG", r#"{"drainDuration": "forever"}"#)],
                None,
                "drainDuration",
            ),
            (
                vec![("PROXY_CONFIG", r#"{"discoveryAddress": "nohost"}"#)],
                None,
                "discoveryAddress",
            ),
            (
                vec![("PROXY_CONFIG", r#"{"proxyAdminPort": 70000}"#)],
                None,
                "proxyAdminPort",
            ),
            (vec![("INSTANCE_IP", "ten")], None, "INSTANCE_IP"),
            (
                vec![("EXIT_ON_ZERO_ACTIVE_CONNECTIONS", "maybe")],
                None,
                "EXIT_ON_ZERO_ACTIVE_CONNECTIONS",
            ),
            (
                vec![("ISTIO_KUBE_APP_PROBERS", "{")],
                None,
                "ISTIO_KUBE_APP_PROBERS",
            ),
            (
                vec![("ISTIO_PROMETHEUS_ANNOTATIONS", r#"{"port":"15020"}"#)],
                None,
                "ISTIO_PROMETHEUS_ANNOTATIONS",
            ),
            (
                vec![],
                Some("defaultConfig:\n  drainDuration: x\n"),
                "--meshConfig",
            ),
        ] {
            let err = resolve_with(&args(&[]), &env(&e), mesh, &pod)
                .unwrap_err()
                .to_string();
            assert!(err.contains(what), "{e:?}: {err}");
        }
    }

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("a.b:15010"), Some(("a.b".into(), 15010)));
        assert_eq!(
            split_host_port("[fd00::1]:15010"),
            Some(("fd00::1".into(), 15010))
        );
        assert_eq!(split_host_port("a.b"), None);
        assert_eq!(split_host_port(":1"), None);
        assert_eq!(split_host_port("a:0"), None);
    }
}
