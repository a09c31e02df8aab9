//! Listener construction for sidecars: the capture listeners (`virtualOutbound`,
//! `virtualInbound`), the per-port outbound listeners they hand connections to, and the
//! filter chains, network filters and HTTP connection managers inside them.

pub mod access_log;
pub mod chain;
pub mod filters;
pub mod hcm;
pub mod names;
pub mod outbound;
pub mod tcp;
pub mod virtual_inbound;
pub mod virtual_outbound;

#[cfg(test)]
mod lds_tests;

use std::net::IpAddr;

use strait_proto::envoy::config::core::v3::{
    Address, SocketAddress, address, socket_address::PortSpecifier,
};

use crate::model::{Proxy, PushContext};

/// What every listener builder needs: the proxy, the push, and the addresses of its IP family.
pub struct ListenerContext<'a> {
    pub proxy: &'a Proxy,
    pub push: &'a PushContext,
    /// `0.0.0.0`, or `::` for an IPv6-only proxy.
    pub wildcard: &'static str,
    /// `127.0.0.1`, or `::1` for an IPv6-only proxy.
    pub localhost: &'static str,
    /// Ports the proxy listens on itself (capture ports, status and Prometheus ports).
    pub reserved_ports: Vec<u16>,
}

impl<'a> ListenerContext<'a> {
    pub fn new(proxy: &'a Proxy, push: &'a PushContext) -> Self {
        let ipv6_only =
            !proxy.ip_addresses.is_empty() && proxy.ip_addresses.iter().all(IpAddr::is_ipv6);
        let (wildcard, localhost) = if ipv6_only {
            ("::", "::1")
        } else {
            ("0.0.0.0", "127.0.0.1")
        };
        let mut reserved_ports: Vec<u16> = [
            push.mesh.proxy_listen_port,
            push.mesh.proxy_inbound_listen_port,
        ]
        .into_iter()
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
        for key in ["ENVOY_STATUS_PORT", "ENVOY_PROMETHEUS_PORT"] {
            reserved_ports.extend(metadata_port(proxy, key));
        }
        ListenerContext {
            proxy,
            push,
            wildcard,
            localhost,
            reserved_ports,
        }
    }

    /// The interception mode is TPROXY: capture listeners must be transparent.
    pub fn tproxy(&self) -> bool {
        self.proxy.metadata.interception_mode.as_deref() == Some("TPROXY")
    }
}

fn metadata_port(proxy: &Proxy, key: &str) -> Option<u16> {
    match proxy.metadata.raw.get(key)? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A TCP socket address.
pub fn socket_address(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}
