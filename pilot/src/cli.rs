//! Command line: Istio's `pilot-discovery` subcommands and flag names.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pilot-discovery",
    version,
    about = "Strait's Istio-compatible control plane: serves xDS to Envoy-compatible sidecars"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the discovery service (xDS, debug and monitoring servers).
    Discovery(DiscoveryArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Args, Clone)]
pub struct DiscoveryArgs {
    /// Directory of manifests (Services, EndpointSlices, Pods, ServiceEntries,
    /// WorkloadEntries, VirtualServices, DestinationRules, Sidecars), read recursively and
    /// watched for changes.
    #[arg(long = "configDir", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Address of the plaintext gRPC (ADS) server.
    #[arg(long = "grpcAddr", default_value = ":15010", value_parser = parse_addr)]
    pub grpc_addr: SocketAddr,

    /// Address of the HTTP server: /ready and /debug/...
    #[arg(long = "httpAddr", default_value = ":8080", value_parser = parse_addr)]
    pub http_addr: SocketAddr,

    /// Address of the monitoring server: /metrics, /version and /debug/...
    #[arg(long = "monitoringAddr", default_value = ":15014", value_parser = parse_addr)]
    pub monitoring_addr: SocketAddr,

    /// DNS domain suffix of the cluster.
    #[arg(long = "domain", default_value = "cluster.local")]
    pub domain: String,

    /// Mesh config file (MeshConfig YAML); Istio's defaults apply when it is absent.
    #[arg(long = "meshConfig", default_value = "./etc/istio/config/mesh")]
    pub mesh_config: PathBuf,

    /// Log filter, e.g. `info` or `strait_pilot=debug` (also RUST_LOG).
    #[arg(long = "log_output_level", default_value = "info")]
    pub log_level: String,

    /// Use a Kubernetes configuration file instead of in-cluster configuration.
    #[arg(long = "kubeconfig", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Comma separated list of platform service registries to read from (choose from
    /// {Kubernetes}; empty for none). Default: Kubernetes, except that with --configDir
    /// and no --kubeconfig the config directory is the only source.
    #[arg(long = "registries", value_name = "LIST")]
    pub registries: Option<String>,

    /// The ID of the cluster this control plane runs in (labels endpoints with
    /// topology.istio.io/cluster).
    #[arg(long = "clusterID", env = "CLUSTER_ID", default_value = "Kubernetes")]
    pub cluster_id: String,
}

/// Service registries Istio's `--registries` may name.
pub const KUBERNETES_REGISTRY: &str = "Kubernetes";

impl DiscoveryArgs {
    /// Whether services and endpoints are read from the Kubernetes API server.
    pub fn kubernetes_registry(&self) -> Result<bool, String> {
        let Some(list) = &self.registries else {
            return Ok(self.config_dir.is_none() || self.kubeconfig.is_some());
        };
        let mut kubernetes = false;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name != KUBERNETES_REGISTRY {
                return Err(format!(
                    "--registries: service registry {name:?} is not supported (choose from {{{KUBERNETES_REGISTRY}}})"
                ));
            }
            kubernetes = true;
        }
        Ok(kubernetes)
    }

    /// Whether Istio config comes from the API server's CRDs. As in Istio, a config
    /// directory replaces them.
    pub fn kubernetes_config(&self) -> bool {
        self.config_dir.is_none()
    }
}

/// Accepts Go-style `:15010` (all interfaces) as well as `host:port`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|e| format!("{s:?} is not an address like :15010 or 127.0.0.1:15010: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_flag_names() {
        let cli = Cli::try_parse_from([
            "pilot-discovery",
            "discovery",
            "--configDir",
            "examples",
            "--grpcAddr",
            "127.0.0.1:25010",
            "--httpAddr",
            ":18080",
        ])
        .unwrap();
        let Command::Discovery(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.config_dir.unwrap().to_str(), Some("examples"));
        assert_eq!(args.grpc_addr.to_string(), "127.0.0.1:25010");
        assert_eq!(args.http_addr.to_string(), "0.0.0.0:18080");
        assert_eq!(args.monitoring_addr.port(), 15014);
        assert!(parse_addr("nope").is_err());
    }

    fn discovery(args: &[&str]) -> DiscoveryArgs {
        let cli = Cli::try_parse_from(["pilot-discovery", "discovery"].iter().chain(args)).unwrap();
        let Command::Discovery(args) = cli.command else {
            panic!()
        };
        args
    }

    #[test]
    fn sources_follow_istio_defaults() {
        // No config directory: services and config from the API server.
        let a = discovery(&[]);
        assert!(a.kubernetes_registry().unwrap());
        assert!(a.kubernetes_config());
        assert_eq!(a.cluster_id, "Kubernetes");
        // A config directory alone: files only.
        let a = discovery(&["--configDir", "d"]);
        assert!(!a.kubernetes_registry().unwrap());
        assert!(!a.kubernetes_config());
        // Both: the registries aggregate, config from the files.
        let a = discovery(&["--configDir", "d", "--kubeconfig", "k"]);
        assert!(a.kubernetes_registry().unwrap());
        assert!(!a.kubernetes_config());
        let a = discovery(&["--configDir", "d", "--registries", "Kubernetes"]);
        assert!(a.kubernetes_registry().unwrap());
        // An empty list turns the registry off; CRDs are still read.
        let a = discovery(&["--registries="]);
        assert!(!a.kubernetes_registry().unwrap());
        assert!(a.kubernetes_config());
        let err = discovery(&["--registries", "Kubernetes,Consul"])
            .kubernetes_registry()
            .unwrap_err();
        assert!(err.contains("Consul"), "{err}");
    }
}
