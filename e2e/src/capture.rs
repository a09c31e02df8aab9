//! iptables rules inside a workload namespace, the way a sidecar's init
//! container would install them. Only ever run through `ip netns exec`, so the
//! root namespace's tables are never touched.

use anyhow::{Context, Result};

use crate::netns::Netns;

/// The port of Envoy's `virtualOutbound` listener.
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;

/// Runs `iptables <args..>` inside `netns`.
pub fn iptables(netns: &Netns, args: &[&str]) -> Result<String> {
    netns
        .exec("iptables", args)
        .with_context(|| format!("iptables in {}", netns.name()))
}

/// Redirects outbound TCP to `cidr` (e.g. the service range `10.96.0.0/12`)
/// into local port `to_port`:
/// `iptables -t nat -A OUTPUT -p tcp -d <cidr> -j REDIRECT --to-ports <to_port>`.
pub fn redirect_outbound(netns: &Netns, cidr: &str, to_port: u16) -> Result<()> {
    let port = to_port.to_string();
    iptables(
        netns,
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            cidr,
            "-j",
            "REDIRECT",
            "--to-ports",
            &port,
        ],
    )
    .map(|_| ())
}

/// The nat table's rules in `iptables -S` form, for assertions and failure
/// messages.
pub fn nat_rules(netns: &Netns) -> Result<String> {
    iptables(netns, &["-t", "nat", "-S"])
}
