//! `virtualOutbound` (0.0.0.0:15001): every outbound connection the iptables rules capture.
//! It hands connections to the listener of their original destination; what no listener
//! claims passes through (`ALLOW_ANY`) or is dropped (`REGISTRY_ONLY`).

use strait_proto::envoy::config::core::v3::TrafficDirection;
use strait_proto::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener};
use strait_proto::istio::MeshOutboundMode;

use super::filters::{tcp_proxy, tcp_proxy_filter};
use super::hcm::idle_timeout;
use super::names;
use super::{ListenerContext, socket_address};
use crate::xds::route::wkt;

/// The `tcp_proxy` for traffic no service claims.
pub fn catch_all_filters(ctx: &ListenerContext<'_>) -> Vec<Filter> {
    let cluster = match ctx.push.mesh.outbound_traffic_policy.mode {
        MeshOutboundMode::RegistryOnly => names::BLACKHOLE_CLUSTER,
        MeshOutboundMode::AllowAny | MeshOutboundMode::AllowAnyDynamicDns => {
            names::PASSTHROUGH_CLUSTER
        }
    };
    let mut tcp = tcp_proxy(cluster, cluster);
    tcp.idle_timeout = idle_timeout(ctx.proxy);
    vec![tcp_proxy_filter(&tcp)]
}

/// Connections addressed to the capture port itself would loop back into it.
fn blackhole_chain(port: u16) -> FilterChain {
    FilterChain {
        name: names::VIRTUAL_OUTBOUND_BLACKHOLE_CHAIN.to_string(),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(wkt::u32_value(u32::from(port))),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter(&tcp_proxy(
            names::BLACKHOLE_CLUSTER,
            names::BLACKHOLE_CLUSTER,
        ))],
        ..Default::default()
    }
}

pub fn build_virtual_outbound(ctx: &ListenerContext<'_>, port: u16) -> Listener {
    Listener {
        name: names::VIRTUAL_OUTBOUND_LISTENER.to_string(),
        address: Some(socket_address(ctx.wildcard, port)),
        use_original_dst: Some(wkt::bool_value(true)),
        transparent: ctx.tproxy().then(|| wkt::bool_value(true)),
        traffic_direction: TrafficDirection::Outbound as i32,
        filter_chains: vec![
            blackhole_chain(port),
            FilterChain {
                name: names::VIRTUAL_OUTBOUND_CATCHALL_TCP_CHAIN.to_string(),
                filters: catch_all_filters(ctx),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}
