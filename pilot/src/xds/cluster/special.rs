//! The clusters every sidecar has besides its services': `BlackHoleCluster` (routes to
//! nowhere), `PassthroughCluster` (outbound traffic to unknown destinations) and
//! `InboundPassthroughCluster` (inbound traffic to ports no service declares).

use std::net::IpAddr;

use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::cluster::v3::cluster::{DiscoveryType, LbPolicy};
use strait_proto::envoy::config::core::v3::{BindConfig, ExtraSourceAddress};
use strait_proto::istio::{ConnectionPoolSettings, MeshConfig};
use strait_proto::xds::any;

use super::{
    ClusterDraft, HTTP_PROTOCOL_OPTIONS_KEY, alt_stat_name, mesh_connect_timeout, policy, protocol,
    set_discovery_type, socket_address,
};

pub const BLACK_HOLE: &str = "BlackHoleCluster";
pub const PASSTHROUGH: &str = "PassthroughCluster";
pub const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";

/// Source addresses for connections the sidecar makes to its own workload: iptables
/// lets traffic from them through instead of capturing it again.
pub const INBOUND_BIND_V4: &str = "127.0.0.6";
pub const INBOUND_BIND_V6: &str = "::6";

/// A STATIC cluster without endpoints: whatever is routed here fails at once.
pub fn black_hole(mesh: &MeshConfig) -> Cluster {
    let mut c = Cluster {
        name: BLACK_HOLE.to_string(),
        connect_timeout: Some(mesh_connect_timeout(mesh)),
        lb_policy: LbPolicy::RoundRobin as i32,
        alt_stat_name: alt_stat_name(BLACK_HOLE),
        ..Default::default()
    };
    set_discovery_type(&mut c, DiscoveryType::Static);
    c
}

/// Forwards to the connection's original destination, speaking whatever HTTP version
/// the client spoke, with unlimited circuit breakers.
pub fn passthrough(mesh: &MeshConfig) -> Cluster {
    let mut c = Cluster {
        name: PASSTHROUGH.to_string(),
        connect_timeout: Some(mesh_connect_timeout(mesh)),
        lb_policy: LbPolicy::ClusterProvided as i32,
        alt_stat_name: alt_stat_name(PASSTHROUGH),
        ..Default::default()
    };
    set_discovery_type(&mut c, DiscoveryType::OriginalDst);
    c.typed_extension_protocol_options.insert(
        HTTP_PROTOCOL_OPTIONS_KEY.to_string(),
        any::pack(&protocol::passthrough_options()),
    );
    let mut draft = ClusterDraft::new(c);
    policy::apply_connection_pool(&mut draft, mesh, &ConnectionPoolSettings::default(), None);
    draft.finish()
}

/// The passthrough cluster with the loop-avoiding source address. Istio builds it by
/// renaming `PassthroughCluster`, so it keeps that cluster's stat name.
pub fn inbound_passthrough(mesh: &MeshConfig, proxy_ips: &[IpAddr]) -> Cluster {
    let v4 = proxy_ips.iter().any(IpAddr::is_ipv4);
    let v6 = proxy_ips.iter().any(IpAddr::is_ipv6);
    let mut c = passthrough(mesh);
    c.name = INBOUND_PASSTHROUGH.to_string();
    let mut bind = BindConfig {
        source_address: Some(socket_address(
            if v4 { INBOUND_BIND_V4 } else { INBOUND_BIND_V6 },
            0,
        )),
        ..Default::default()
    };
    if v4 && v6 {
        bind.extra_source_addresses = vec![ExtraSourceAddress {
            address: Some(socket_address(INBOUND_BIND_V6, 0)),
            socket_options: None,
        }];
    }
    c.upstream_bind_config = Some(bind);
    c
}

/// The bind of inbound clusters: one family only (Istio adds the other only with its
/// dual-stack feature on).
pub fn inbound_bind(proxy_ips: &[IpAddr]) -> BindConfig {
    let v6_only = !proxy_ips.is_empty() && proxy_ips.iter().all(IpAddr::is_ipv6);
    BindConfig {
        source_address: Some(socket_address(
            if v6_only {
                INBOUND_BIND_V6
            } else {
                INBOUND_BIND_V4
            },
            0,
        )),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use strait_proto::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use strait_proto::envoy::extensions::upstreams::http::v3::http_protocol_options::UpstreamProtocolOptions;

    use super::*;
    use crate::xds::cluster::discovery_type;

    #[test]
    fn passthrough_shape() {
        let c = passthrough(&MeshConfig::default());
        assert_eq!(discovery_type(&c), Some(DiscoveryType::OriginalDst));
        assert_eq!(c.lb_policy, LbPolicy::ClusterProvided as i32);
        assert_eq!(c.connect_timeout.as_ref().unwrap().seconds, 10);
        assert_eq!(
            c.circuit_breakers.as_ref().unwrap().thresholds[0]
                .max_connections
                .as_ref()
                .unwrap()
                .value,
            u32::MAX
        );
        let opts: HttpProtocolOptions =
            any::unpack(&c.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY]).unwrap();
        assert!(matches!(
            opts.upstream_protocol_options,
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_))
        ));
        assert_eq!(
            opts.common_http_protocol_options
                .unwrap()
                .idle_timeout
                .unwrap()
                .seconds,
            300
        );
    }

    #[test]
    fn inbound_passthrough_binds_loopback_sources() {
        let ips: Vec<IpAddr> = vec!["10.0.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
        let c = inbound_passthrough(&MeshConfig::default(), &ips);
        assert_eq!(c.name, INBOUND_PASSTHROUGH);
        let bind = c.upstream_bind_config.unwrap();
        assert_eq!(bind.source_address.unwrap().address, INBOUND_BIND_V4);
        assert_eq!(
            bind.extra_source_addresses[0]
                .address
                .as_ref()
                .unwrap()
                .address,
            INBOUND_BIND_V6
        );
        let black = black_hole(&MeshConfig::default());
        assert_eq!(discovery_type(&black), Some(DiscoveryType::Static));
        assert!(black.load_assignment.is_none());
        assert_eq!(black.alt_stat_name, "BlackHoleCluster;");
    }
}
