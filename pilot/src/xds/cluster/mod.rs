//! The pieces CDS and EDS are built from: outbound, inbound and special clusters, the
//! translation of DestinationRule traffic policies, and the endpoint lists both
//! generators share. Shapes follow what Istio 1.30's istiod sends a sidecar.

pub mod endpoints;
#[cfg(test)]
pub mod fixture;
pub mod inbound;
pub mod lb;
pub mod locality;
pub mod merge;
pub mod metadata;
pub mod outbound;
pub mod policy;
pub mod protocol;
pub mod special;
pub mod tls;

use std::net::IpAddr;

use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use strait_proto::envoy::config::core::v3::address::Address as AddressKind;
use strait_proto::envoy::config::core::v3::socket_address::PortSpecifier;
use strait_proto::envoy::config::core::v3::{Address, SocketAddress};
use strait_proto::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use strait_proto::google::protobuf::{Duration, UInt32Value};
use strait_proto::xds::any;

/// Key of the upstream HTTP options in `typed_extension_protocol_options`.
pub const HTTP_PROTOCOL_OPTIONS_KEY: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// A cluster under construction, with its upstream HTTP options kept apart until the
/// end (Istio's `clusterWrapper`): several policy steps edit them, and they are packed
/// into an `Any` once.
#[derive(Clone, Debug, Default)]
pub struct ClusterDraft {
    pub cluster: Cluster,
    pub http: Option<HttpProtocolOptions>,
}

impl ClusterDraft {
    pub fn new(cluster: Cluster) -> ClusterDraft {
        ClusterDraft {
            cluster,
            http: None,
        }
    }

    /// What every service cluster starts from (Istio's `buildCluster`): an empty
    /// `common_lb_config` for the policy steps to fill, the `;`-terminated stat name, and
    /// the upstream protocol of the port.
    pub fn base(
        name: &str,
        kind: DiscoveryType,
        protocol: crate::model::Protocol,
        sidecar: bool,
    ) -> ClusterDraft {
        let mut cluster = Cluster {
            name: name.to_string(),
            common_lb_config: Some(Default::default()),
            alt_stat_name: alt_stat_name(name),
            ..Default::default()
        };
        set_discovery_type(&mut cluster, kind);
        let mut draft = ClusterDraft::new(cluster);
        protocol::set_for_port(&mut draft, protocol, sidecar);
        draft
    }

    pub fn http_mut(&mut self) -> &mut HttpProtocolOptions {
        self.http.get_or_insert_with(HttpProtocolOptions::default)
    }

    pub fn discovery_type(&self) -> Option<DiscoveryType> {
        discovery_type(&self.cluster)
    }

    /// Packs the HTTP options. Envoy requires an upstream protocol once the options are
    /// present, so HTTP/1.1 is filled in when no step chose one.
    pub fn finish(mut self) -> Cluster {
        if let Some(mut http) = self.http.take() {
            if http.upstream_protocol_options.is_none() {
                http.upstream_protocol_options = Some(protocol::explicit_http1());
            }
            self.cluster
                .typed_extension_protocol_options
                .insert(HTTP_PROTOCOL_OPTIONS_KEY.to_string(), any::pack(&http));
        }
        self.cluster
    }
}

pub fn discovery_type(cluster: &Cluster) -> Option<DiscoveryType> {
    match cluster.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(t).ok(),
        _ => None,
    }
}

pub fn set_discovery_type(cluster: &mut Cluster, kind: DiscoveryType) {
    cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(kind as i32));
}

/// Istio's stat prefix delimiter: `alt_stat_name` is the cluster name plus `;`.
pub fn alt_stat_name(name: &str) -> String {
    format!("{name};")
}

pub fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub fn istio_duration(d: &strait_proto::istio::Duration) -> Duration {
    duration(d.as_std())
}

pub fn uint32(value: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value })
}

/// A positive `int32` from Istio config as a `uint32` wrapper; zero and negatives mean
/// "unset" there.
pub fn positive(value: i32) -> Option<u32> {
    u32::try_from(value).ok().filter(|v| *v > 0)
}

pub fn socket_address(address: &str, port: u32) -> SocketAddress {
    SocketAddress {
        address: address.to_string(),
        port_specifier: Some(PortSpecifier::PortValue(port)),
        ..Default::default()
    }
}

pub fn address(address: &str, port: u32) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(socket_address(address, port))),
    }
}

pub fn ip_address(ip: IpAddr, port: u32) -> Address {
    address(&ip.to_string(), port)
}

/// The mesh connect timeout (Istio's default is 10s).
pub fn mesh_connect_timeout(mesh: &strait_proto::istio::MeshConfig) -> Duration {
    istio_duration(&mesh.connect_timeout)
}
