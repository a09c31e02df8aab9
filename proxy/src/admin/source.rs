//! What the admin server needs from the rest of the proxy. The proxy implements
//! [`AdminSource`] over its real state; the admin code only reads and calls back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use strait_proto::envoy::admin::v3::CommandLineOptions;
use strait_proto::envoy::config::bootstrap::v3::Bootstrap;
use strait_proto::envoy::config::core::v3::Node;
use strait_proto::google::protobuf::Any;

use crate::stats::ServerState;
use crate::upstream::ClusterState;

/// One resource as the proxy accepted it: the raw proto, the version it came with and
/// when it was applied.
#[derive(Clone, Debug)]
pub struct DumpedResource {
    pub name: String,
    /// The response's `version_info` (SotW) or the resource's version (delta); empty for
    /// bootstrap resources.
    pub version: String,
    pub resource: Any,
    pub last_updated: Option<SystemTime>,
}

/// The resources of one type, static (bootstrap) and dynamic (xDS).
#[derive(Clone, Debug, Default)]
pub struct ResourceDump {
    /// The last applied `version_info` of the type.
    pub version_info: String,
    pub static_resources: Vec<DumpedResource>,
    pub dynamic_resources: Vec<DumpedResource>,
}

/// A cluster for `/clusters`.
#[derive(Clone, Debug)]
pub struct ClusterEntry {
    pub state: Arc<ClusterState>,
    /// From CDS (true) or the bootstrap (false).
    pub added_via_api: bool,
}

/// A listener for `/listeners`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerEntry {
    pub name: String,
    pub address: SocketAddr,
}

/// `/drain_listeners` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainOptions {
    /// Only inbound listeners (`?inboundonly`).
    pub inbound_only: bool,
    /// Enter a drain period before closing (`?graceful`).
    pub graceful: bool,
    /// Do not exit after the drain period (`?skip_exit`, with `graceful`).
    pub skip_exit: bool,
}

/// `/logging` changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoggingChange {
    /// `?level=debug`: every logger.
    Level(String),
    /// `?paths=a:debug,b:info`: per logger.
    Paths(Vec<(String, String)>),
}

/// Envoy's log levels, as `/logging` accepts them.
pub const LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "warning", "warn", "error", "critical", "off",
];

/// Facts for `/server_info`.
#[derive(Clone, Debug, Default)]
pub struct ServerDetails {
    pub version: String,
    pub node: Node,
    pub command_line_options: CommandLineOptions,
    pub start_time: Option<SystemTime>,
}

pub trait AdminSource: Send + Sync + 'static {
    /// `/ready` and `server_info.state`.
    fn server_state(&self) -> ServerState;

    fn server_details(&self) -> ServerDetails;

    /// The bootstrap as loaded, and when.
    fn bootstrap(&self) -> Option<(Bootstrap, SystemTime)> {
        None
    }

    fn clusters_dump(&self) -> ResourceDump {
        ResourceDump::default()
    }

    fn listeners_dump(&self) -> ResourceDump {
        ResourceDump::default()
    }

    fn routes_dump(&self) -> ResourceDump {
        ResourceDump::default()
    }

    /// Only read for `/config_dump?include_eds`.
    fn endpoints_dump(&self) -> ResourceDump {
        ResourceDump::default()
    }

    fn clusters(&self) -> Vec<ClusterEntry> {
        Vec::new()
    }

    fn listeners(&self) -> Vec<ListenerEntry> {
        Vec::new()
    }

    /// `/quitquitquit`: exit soon (after the response is sent).
    fn quit(&self);

    /// `/drain_listeners`.
    fn drain_listeners(&self, options: DrainOptions);

    /// `/healthcheck/fail` (true) and `/healthcheck/ok` (false).
    fn set_health_check_failed(&self, _failed: bool) {}

    /// `/logging` with parameters; `Err` explains a rejected change.
    fn change_logging(&self, _change: &LoggingChange) -> Result<(), String> {
        Err("changing log levels is not supported".into())
    }

    /// Loggers and their levels, for `/logging`.
    fn log_levels(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
