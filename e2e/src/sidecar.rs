//! Sidecar workloads run the way Kubernetes runs them: `strait-init`'s capture rules
//! in the workload's namespace, `pilot-agent` (as UID 1337, with the pod's labels and
//! annotations in `./etc/istio/pod`) supervising the proxy, and service names in
//! `/etc/netns/<namespace>/hosts`, which `ip netns exec` mounts over `/etc/hosts`.
//!
//! - `agent`: [`PilotAgent`], one agent process and its ports (15000, 15020, 15021).
//! - `hosts`: [`HostsFile`].
//! - `tiny_http`: [`TinyHttp`], a one-answer HTTP server (e.g. "who connected to me").
//! - `curl`: [`Curl`], curl run inside a namespace, optionally as the proxy's user.

mod agent;
mod curl;
mod hosts;
mod tiny_http;

use anyhow::{Context, Result};

pub use agent::{AgentOptions, PROXY_UID, PilotAgent, ProxyKind, children_of, shell_code};
pub use curl::{Curl, CurlOutput};
pub use hosts::HostsFile;
pub use tiny_http::TinyHttp;

use crate::bins;
use crate::netns::{Netns, run_checked};

/// The capture rules Istio's injector asks for by default, minus the inbound port
/// list and outbound exclusions the caller adds.
pub const INJECTOR_INIT_ARGS: &[&str] = &[
    "-p",
    "15001",
    "-z",
    "15006",
    "-u",
    "1337",
    "-m",
    "REDIRECT",
    "-d",
    "15090,15021,15020",
];

/// Runs `strait-init <args>` inside `netns` (as an init container would) and returns
/// its output.
pub fn strait_init(netns: &Netns, args: &[&str]) -> Result<String> {
    let binary = bins::strait("strait-init")?;
    run_checked(netns.command(&binary).args(args).env_remove("RUST_LOG"))
        .with_context(|| format!("strait-init {args:?} in {}", netns.name()))
}
