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
}
