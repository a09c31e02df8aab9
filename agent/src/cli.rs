//! The command line, as Istio's `pilot-agent` takes it (Go-style flag names such as
//! `--proxyLogLevel`, `--log_output_level`), plus Strait's `--proxy-binary`.
//!
//! Unlike Istio, an unknown flag is an error: a typo in an injection template should
//! fail loudly, naming the flag, rather than be ignored.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Envoy's log level names, as `-l` takes them.
pub const PROXY_LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "warning", "warn", "error", "critical", "off",
];

#[derive(Debug, Parser)]
#[command(
    name = "pilot-agent",
    version,
    about = "Strait's pilot-agent: writes the sidecar's Envoy bootstrap, runs and supervises the proxy \
             (strait-proxy, or a stock Envoy), serves health, readiness and merged metrics, and drains on termination"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogFlags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the proxy for a workload (`pilot-agent proxy sidecar`).
    Proxy(ProxyArgs),
    /// Waits until the proxy is ready (`pilot-agent wait`), e.g. in a postStart hook.
    Wait(WaitArgs),
    /// Sends one request to a local admin or status port (`pilot-agent request POST drain`).
    Request(RequestArgs),
    /// Prints the version.
    Version,
}

/// Istio's global logging flags. Only the level and JSON choice change anything; the
/// others are accepted because injection templates pass them.
#[derive(Debug, Args)]
pub struct LogFlags {
    /// Comma-separated `scope:level` list; the `default` scope sets the agent's level.
    #[arg(
        long = "log_output_level",
        global = true,
        default_value = "default:info"
    )]
    pub log_output_level: String,

    /// Log as JSON lines.
    #[arg(long = "log_as_json", global = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    pub log_as_json: bool,

    #[arg(long = "log_caller", global = true, hide = true)]
    pub log_caller: Option<String>,
    #[arg(long = "log_stacktrace_level", global = true, hide = true)]
    pub log_stacktrace_level: Option<String>,
    #[arg(long = "log_target", global = true, hide = true)]
    pub log_target: Vec<String>,
    #[arg(long = "log_rotate", global = true, hide = true)]
    pub log_rotate: Option<String>,
    #[arg(long = "log_rotate_max_age", global = true, hide = true)]
    pub log_rotate_max_age: Option<i64>,
    #[arg(long = "log_rotate_max_backups", global = true, hide = true)]
    pub log_rotate_max_backups: Option<i64>,
    #[arg(long = "log_rotate_max_size", global = true, hide = true)]
    pub log_rotate_max_size: Option<i64>,
    #[arg(long = "vklog", global = true, hide = true)]
    pub vklog: Option<i64>,
}

#[derive(Debug, Args, Clone)]
pub struct ProxyArgs {
    /// The proxy type; only `sidecar` is supported.
    #[arg(value_name = "TYPE", default_value = "sidecar")]
    pub proxy_type: String,

    /// DNS domain suffix; `<POD_NAMESPACE>.svc.cluster.local` when unset.
    #[arg(long = "domain")]
    pub domain: Option<String>,

    /// Mesh config file; its `defaultConfig` is the base proxy config, under
    /// `PROXY_CONFIG` and the `proxy.istio.io/config` annotation.
    #[arg(long = "meshConfig", default_value = "./etc/istio/config/mesh")]
    pub mesh_config: PathBuf,

    /// Service cluster (`node.cluster`); `istio-proxy` means "derive it from the app label".
    #[arg(long = "serviceCluster", default_value = "istio-proxy")]
    pub service_cluster: String,

    /// The proxy's log level, optionally with `component:level` entries
    /// (`warning,misc:error,upstream:debug`).
    #[arg(long = "proxyLogLevel", default_value = "warning")]
    pub proxy_log_level: String,

    /// `component:level` entries for the proxy (merged with those in --proxyLogLevel).
    #[arg(long = "proxyComponentLogLevel", default_value = "misc:error")]
    pub proxy_component_log_level: String,

    /// Worker threads for the proxy; 0 takes the proxy config's `concurrency`, then
    /// `ISTIO_CPU_LIMIT`, then the proxy's own default.
    #[arg(
        long = "concurrency",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub concurrency: i64,

    /// Istio's Go bootstrap template; not supported (the bootstrap is generated).
    #[arg(long = "templateFile")]
    pub template_file: Option<PathBuf>,

    /// Where the proxy logs outlier-detection events.
    #[arg(long = "outlierLogPath")]
    pub outlier_log_path: Option<String>,

    /// Security Token Service port; only 0 (disabled) is supported.
    #[arg(long = "stsPort", default_value_t = 0)]
    pub sts_port: u16,

    /// Accepted for compatibility (used only with the Security Token Service).
    #[arg(long = "tokenManagerPlugin", default_value = "GoogleTokenExchange")]
    pub token_manager_plugin: String,

    /// Accepted for compatibility: the agent serves no profiling endpoints.
    #[arg(long = "profiling", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true")]
    pub profiling: bool,

    /// The proxy executable: strait-proxy (next to pilot-agent, else on PATH) by
    /// default; any Envoy-compatible binary, e.g. a stock Envoy. Overrides the proxy
    /// config's `binaryPath`.
    #[arg(long = "proxy-binary", value_name = "PATH")]
    pub proxy_binary: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct WaitArgs {
    /// How long to wait in total.
    #[arg(long = "timeoutSeconds", default_value_t = 60)]
    pub timeout_seconds: u64,
    /// Timeout of each request.
    #[arg(long = "requestTimeoutMillis", default_value_t = 500)]
    pub request_timeout_millis: u64,
    /// Pause between requests.
    #[arg(long = "periodMillis", default_value_t = 500)]
    pub period_millis: u64,
    /// The readiness URL.
    #[arg(long = "url", default_value = "http://localhost:15021/healthz/ready")]
    pub url: String,
}

#[derive(Debug, Args, Clone)]
pub struct RequestArgs {
    /// HTTP method, e.g. GET or POST.
    pub method: String,
    /// Path on the local port, e.g. `drain` or `/stats`.
    pub path: String,
    /// Optional request body.
    pub body: Option<String>,
    /// The local port: the proxy's admin (15000) or the agent's status port (15020).
    #[arg(long = "debug-port", default_value_t = 15000)]
    pub debug_port: u16,
}

/// A flag the agent accepts but cannot honour, or a value it rejects, named as the
/// user wrote it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{flag}: {reason}")]
pub struct FlagError {
    pub flag: &'static str,
    pub reason: String,
}

impl ProxyArgs {
    /// Checks what clap's types cannot: values the agent rejects and flags it accepts
    /// for compatibility but cannot honour.
    pub fn validate(&self) -> Result<(), FlagError> {
        if self.proxy_type != "sidecar" {
            return Err(FlagError {
                flag: "TYPE",
                reason: format!(
                    "proxy type {:?} is not supported; pilot-agent runs sidecars only (`proxy sidecar`)",
                    self.proxy_type
                ),
            });
        }
        if self.concurrency < 0 {
            return Err(FlagError {
                flag: "--concurrency",
                reason: format!("must be 0 or more, got {}", self.concurrency),
            });
        }
        if let Some(t) = &self.template_file {
            return Err(FlagError {
                flag: "--templateFile",
                reason: format!(
                    "custom Go bootstrap templates ({}) are not supported; the bootstrap is generated",
                    t.display()
                ),
            });
        }
        if self.sts_port != 0 {
            return Err(FlagError {
                flag: "--stsPort",
                reason: "the Security Token Service is not supported; leave it 0".into(),
            });
        }
        parse_log_levels(&self.proxy_log_level, "--proxyLogLevel")?;
        parse_log_levels(&self.proxy_component_log_level, "--proxyComponentLogLevel")?;
        Ok(())
    }

    /// The proxy's `-l` level and its `--component-log-level` list (empty: none).
    pub fn proxy_levels(&self) -> Result<(String, String), FlagError> {
        let (level, mut components) = parse_log_levels(&self.proxy_log_level, "--proxyLogLevel")?;
        let (_, extra) =
            parse_log_levels(&self.proxy_component_log_level, "--proxyComponentLogLevel")?;
        // Scopes in --proxyLogLevel win over the deprecated component flag.
        for (scope, level) in extra {
            if !components.iter().any(|(s, _)| *s == scope) {
                components.push((scope, level));
            }
        }
        let components = components
            .iter()
            .map(|(s, l)| format!("{s}:{l}"))
            .collect::<Vec<_>>()
            .join(",");
        Ok((level.unwrap_or_else(|| "warning".into()), components))
    }
}

type Levels = (Option<String>, Vec<(String, String)>);

/// `warning,misc:error` → (`warning`, [(`misc`, `error`)]); every level must be one
/// Envoy knows.
fn parse_log_levels(value: &str, flag: &'static str) -> Result<Levels, FlagError> {
    let bad = |what: &str| FlagError {
        flag,
        reason: format!(
            "{what} in {value:?}; levels are {}",
            PROXY_LOG_LEVELS.join(", ")
        ),
    };
    let mut level = None;
    let mut components = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once(':') {
            None => {
                if !PROXY_LOG_LEVELS.contains(&item) {
                    return Err(bad(&format!("unknown level {item:?}")));
                }
                level = Some(item.to_owned());
            }
            Some((scope, l)) => {
                if scope.is_empty() || !PROXY_LOG_LEVELS.contains(&l) {
                    return Err(bad(&format!("bad component level {item:?}")));
                }
                components.push((scope.to_owned(), l.to_owned()));
            }
        }
    }
    Ok((level, components))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(args: &[&str]) -> Result<ProxyArgs, String> {
        let mut argv = vec!["pilot-agent", "proxy"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Proxy(p),
                ..
            }) => p.validate().map(|()| p).map_err(|e| e.to_string()),
            Ok(other) => Err(format!("parsed as {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn takes_what_istios_injector_passes() {
        let p = proxy(&[
            "sidecar",
            "--domain",
            "default.svc.cluster.local",
            "--proxyLogLevel=warning",
            "--proxyComponentLogLevel=misc:error",
            "--log_output_level=default:info",
            "--log_as_json",
            "--concurrency",
            "2",
            "--profiling=false",
        ])
        .unwrap();
        assert_eq!(p.domain.as_deref(), Some("default.svc.cluster.local"));
        assert_eq!(p.concurrency, 2);
        assert!(!p.profiling);
        assert_eq!(
            p.proxy_levels().unwrap(),
            ("warning".into(), "misc:error".into())
        );
    }

    #[test]
    fn defaults_to_a_sidecar() {
        let p = proxy(&[]).unwrap();
        assert_eq!(p.proxy_type, "sidecar");
        assert_eq!(p.mesh_config, PathBuf::from("./etc/istio/config/mesh"));
        assert!(p.profiling);
    }

    #[test]
    fn scopes_in_the_level_flag_win_over_the_component_flag() {
        let p = proxy(&[
            "--proxyLogLevel",
            "info,misc:debug,upstream:trace",
            "--proxyComponentLogLevel",
            "misc:error,http:warning",
        ])
        .unwrap();
        assert_eq!(
            p.proxy_levels().unwrap(),
            (
                "info".into(),
                "misc:debug,upstream:trace,http:warning".into()
            )
        );
    }

    #[test]
    fn bad_flags_are_named() {
        for (args, flag) in [
            (&["--bogus"][..], "--bogus"),
            (
                &["--concurrency", "1", "--concurrency", "2"][..],
                "--concurrency",
            ),
            (&["--concurrency=-1"][..], "--concurrency"),
            (&["--proxyLogLevel", "loud"][..], "--proxyLogLevel"),
            (
                &["--proxyComponentLogLevel", "misc"][..],
                "--proxyComponentLogLevel",
            ),
            (&["--templateFile", "/t.json"][..], "--templateFile"),
            (&["--stsPort", "15463"][..], "--stsPort"),
            (&["router"][..], "router"),
            (&["--profiling", "false"][..], "false"),
        ] {
            let err = proxy(args).unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }
}
