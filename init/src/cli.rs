//! The command line: Istio's `istio-iptables` flags, each also readable from
//! the environment variable named after it (upper-cased, `-` → `_`).
//!
//! Values stay strings here, as in Istio; [`crate::config::Config::from_args`]
//! validates them and names the offending flag in every error.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, Subcommand};

/// `strait-init [FLAGS]` programs the rules; `strait-init clean [FLAGS]`
/// removes them.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "strait-init",
    version,
    about = "Set up iptables rules that capture a workload's traffic into its sidecar proxy",
    long_about = "Set up iptables rules that capture a workload's traffic into its sidecar proxy. \
                  Takes the flags of Istio's istio-iptables and writes the same rules, \
                  atomically, with iptables-restore.",
    // Like Go's pflag, a repeated flag takes its last value.
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub args: Args,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Remove the ISTIO_* chains and every jump into them (nothing to do is fine).
    #[command(args_override_self = true)]
    Clean(Args),
}

impl Cli {
    /// The flags that apply: those after `clean` when it is given.
    pub fn into_parts(self) -> (Action, Args) {
        match self.command {
            Some(Command::Clean(args)) => (Action::Clean, args),
            None if self.args.cleanup_only => (Action::Clean, self.args),
            None => (Action::Apply, self.args),
        }
    }
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Apply,
    Clean,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Port to which all outbound TCP traffic is redirected (Envoy's virtualOutbound).
    #[arg(short = 'p', long, env = "ENVOY_PORT", default_value = "15001")]
    pub envoy_port: String,

    /// Port to which all inbound TCP traffic is redirected (Envoy's virtualInbound).
    #[arg(
        short = 'z',
        long,
        env = "INBOUND_CAPTURE_PORT",
        default_value = "15006"
    )]
    pub inbound_capture_port: String,

    /// The tunnel (HBONE) port; inbound traffic to it is never redirected.
    #[arg(
        short = 'e',
        long,
        env = "INBOUND_TUNNEL_PORT",
        default_value = "15008"
    )]
    pub inbound_tunnel_port: String,

    /// Comma-separated UIDs (or user names) whose traffic is never redirected
    /// [default: the UID of $ENVOY_USER, else 1337].
    #[arg(short = 'u', long, env = "PROXY_UID")]
    pub proxy_uid: Option<String>,

    /// Comma-separated GIDs (or group names) whose traffic is never redirected
    /// [default: the proxy UIDs].
    #[arg(short = 'g', long, env = "PROXY_GID")]
    pub proxy_gid: Option<String>,

    /// How inbound connections reach the proxy: REDIRECT (default) or TPROXY
    /// (also read from $INBOUND_INTERCEPTION_MODE).
    #[arg(short = 'm', long, env = "ISTIO_INBOUND_INTERCEPTION_MODE")]
    pub istio_inbound_interception_mode: Option<String>,

    /// Comma-separated inbound ports to capture; "*" captures all, empty none.
    #[arg(short = 'b', long, env = "ISTIO_INBOUND_PORTS", default_value = "")]
    pub istio_inbound_ports: String,

    /// Comma-separated inbound ports never captured (only with -b '*').
    #[arg(
        short = 'd',
        long,
        env = "ISTIO_LOCAL_EXCLUDE_PORTS",
        default_value = ""
    )]
    pub istio_local_exclude_ports: String,

    /// Comma-separated interfaces whose traffic is never captured, in or out.
    #[arg(
        short = 'c',
        long,
        env = "ISTIO_EXCLUDE_INTERFACES",
        default_value = ""
    )]
    pub istio_exclude_interfaces: String,

    /// Comma-separated destination CIDRs to capture outbound; "*" captures all, empty none.
    #[arg(short = 'i', long, env = "ISTIO_SERVICE_CIDR", default_value = "")]
    pub istio_service_cidr: String,

    /// Comma-separated destination CIDRs never captured outbound.
    #[arg(
        short = 'x',
        long,
        env = "ISTIO_SERVICE_EXCLUDE_CIDR",
        default_value = ""
    )]
    pub istio_service_exclude_cidr: String,

    /// Comma-separated outbound ports always captured, whatever the destination.
    #[arg(short = 'q', long, env = "ISTIO_OUTBOUND_PORTS", default_value = "")]
    pub istio_outbound_ports: String,

    /// Comma-separated outbound ports (TCP and UDP) never captured.
    #[arg(
        short = 'o',
        long,
        env = "ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE",
        default_value = ""
    )]
    pub istio_local_outbound_ports_exclude: String,

    /// Comma-separated virtual interfaces whose inbound traffic is treated as outbound.
    #[arg(short = 'k', long, env = "KUBE_VIRT_INTERFACES", default_value = "")]
    pub kube_virt_interfaces: String,

    /// The packet mark TPROXY mode uses.
    #[arg(
        short = 't',
        long,
        env = "ISTIO_INBOUND_TPROXY_MARK",
        default_value = "1337"
    )]
    pub istio_inbound_tproxy_mark: String,

    /// The routing table TPROXY mode uses.
    #[arg(
        short = 'r',
        long,
        env = "ISTIO_INBOUND_TPROXY_ROUTE_TABLE",
        default_value = "133"
    )]
    pub istio_inbound_tproxy_route_table: String,

    /// Print the iptables-restore input and change nothing.
    #[arg(short = 'n', long, env = "DRY_RUN", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// The port the validation probe connects to (--run-validation).
    #[arg(long, env = "IPTABLES_PROBE_PORT", default_value = "15002")]
    pub iptables_probe_port: String,

    /// How long --run-validation waits for a redirected probe (Go duration: 5s, 500ms, 1m).
    #[arg(long, env = "PROBE_TIMEOUT", default_value = "5s")]
    pub probe_timeout: String,

    /// Do not program any rule (they are programmed elsewhere, e.g. by a CNI plugin).
    #[arg(long, env = "SKIP_RULE_APPLY", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub skip_rule_apply: bool,

    /// Check that redirection works; exit 126 if it does not.
    #[arg(long, env = "RUN_VALIDATION", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub run_validation: bool,

    /// Capture DNS (port 53) to the agent on 15053 (also read from $ISTIO_META_DNS_CAPTURE).
    #[arg(long, env = "REDIRECT_DNS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub redirect_dns: bool,

    /// Capture all port-53 traffic, not only traffic to the servers in /etc/resolv.conf.
    #[arg(long, env = "CAPTURE_ALL_DNS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub capture_all_dns: bool,

    /// Drop packets conntrack finds INVALID instead of letting them reset connections
    /// (also read from $INVALID_DROP).
    #[arg(long, env = "DROP_INVALID", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub drop_invalid: bool,

    /// Program IPv6 (ip6tables) rules as well as IPv4 ones (also read from $ISTIO_DUAL_STACK).
    #[arg(long, env = "DUAL_STACK", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub dual_stack: bool,

    /// Remove the rules instead of creating them (same as the `clean` subcommand).
    #[arg(long, env = "CLEANUP_ONLY", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub cleanup_only: bool,

    /// Apply even if the rules look already in place. Rules are always
    /// replaced atomically, so this changes nothing; kept for Istio compatibility.
    #[arg(long, env = "FORCE_APPLY", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub force_apply: bool,

    /// Replace pre-existing ISTIO_* chains (always done; kept for Istio compatibility).
    #[arg(long, env = "RECONCILE", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub reconcile: bool,

    /// The iptables flavour to run: iptables, iptables-nft or iptables-legacy
    /// (ip6tables* accepted as the same flavour).
    #[arg(long, env = "FORCE_IPTABLES_BINARY")]
    pub force_iptables_binary: Option<String>,

    /// Istio's logging scopes, e.g. "default:info"; the default scope sets the level.
    #[arg(long = "log_output_level", default_value = "default:info")]
    pub log_output_level: String,

    /// Log JSON lines instead of text.
    #[arg(long = "log_as_json", action = ArgAction::SetTrue)]
    pub log_as_json: bool,

    /// Accepted for Istio compatibility; ignored.
    #[arg(long = "log_caller", hide = true, default_value = "")]
    pub log_caller: String,

    /// Accepted for Istio compatibility; ignored.
    #[arg(long = "log_stacktrace_level", hide = true, default_value = "")]
    pub log_stacktrace_level: String,

    /// Accepted for Istio compatibility; ignored.
    #[arg(long = "log_target", hide = true, default_value = "")]
    pub log_target: String,
}
