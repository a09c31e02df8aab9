//! Envoy's common command-line flags, so pilot-agent, scripts and benchmarks start
//! strait-proxy exactly as they start Envoy.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser, Clone)]
#[command(
    name = "strait-proxy",
    version,
    about = "Strait's Envoy-compatible sidecar proxy: reads an Envoy v3 bootstrap and serves the listeners, routes and clusters it gets over ADS"
)]
pub struct Cli {
    /// Envoy v3 bootstrap file (JSON, or YAML by extension .yaml/.yml).
    #[arg(short = 'c', long = "config-path")]
    pub config_path: Option<PathBuf>,

    /// A bootstrap in YAML merged over the file's (as Envoy's --config-yaml).
    #[arg(long = "config-yaml")]
    pub config_yaml: Option<String>,

    /// Worker threads; defaults to the number of cores.
    #[arg(long)]
    pub concurrency: Option<usize>,

    /// trace, debug, info, warning/warn, error, critical, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,

    /// Per-component levels, e.g. `upstream:debug,connection:trace` (accepted; mapped
    /// onto the overall level).
    #[arg(long = "component-log-level")]
    pub component_log_level: Option<String>,

    /// How long listeners drain on shutdown.
    #[arg(long = "drain-time-s", default_value_t = 600)]
    pub drain_time_s: u64,

    /// `gradual` or `immediate` (accepted).
    #[arg(long = "drain-strategy", default_value = "gradual")]
    pub drain_strategy: String,

    #[arg(long = "parent-shutdown-time-s")]
    pub parent_shutdown_time_s: Option<u64>,

    /// Overrides node.id.
    #[arg(long = "service-node")]
    pub service_node: Option<String>,

    /// Overrides node.cluster.
    #[arg(long = "service-cluster")]
    pub service_cluster: Option<String>,

    #[arg(long = "service-zone")]
    pub service_zone: Option<String>,

    /// Accepted for compatibility: strait-proxy has no hot restart.
    #[arg(long = "disable-hot-restart")]
    pub disable_hot_restart: bool,

    #[arg(long = "base-id")]
    pub base_id: Option<u32>,

    #[arg(long = "use-dynamic-base-id")]
    pub use_dynamic_base_id: bool,

    #[arg(long = "local-address-ip-version", default_value = "v4")]
    pub local_address_ip_version: String,

    #[arg(long = "file-flush-interval-msec")]
    pub file_flush_interval_msec: Option<u64>,

    #[arg(long = "allow-unknown-static-fields")]
    pub allow_unknown_static_fields: bool,

    /// `serve` (default) or `validate` (check the bootstrap and exit).
    #[arg(long, default_value = "serve")]
    pub mode: String,

    /// Write logs to this file instead of stderr.
    #[arg(long = "log-path")]
    pub log_path: Option<PathBuf>,
}

impl Cli {
    /// The tracing filter for Envoy's level names.
    pub fn tracing_level(&self) -> &'static str {
        match self.log_level.as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "warning" | "warn" => "warn",
            "error" | "critical" => "error",
            "off" => "off",
            _ => "info",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_envoys_flags() {
        let cli = Cli::try_parse_from([
            "strait-proxy",
            "-c",
            "/etc/istio/proxy/envoy-rev.json",
            "--drain-time-s",
            "45",
            "--drain-strategy",
            "immediate",
            "--local-address-ip-version",
            "v4",
            "--file-flush-interval-msec",
            "1000",
            "--disable-hot-restart",
            "--allow-unknown-static-fields",
            "--concurrency",
            "2",
            "-l",
            "warning",
            "--service-node",
            "sidecar~10.0.0.1~a.b~b.svc.cluster.local",
        ])
        .unwrap();
        assert_eq!(cli.concurrency, Some(2));
        assert_eq!(cli.drain_time_s, 45);
        assert_eq!(cli.tracing_level(), "warn");
        assert!(Cli::try_parse_from(["strait-proxy", "--bogus"]).is_err());
    }
}
