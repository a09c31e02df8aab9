//! Upstream HTTP protocol selection (`envoy.extensions.upstreams.http.v3.HttpProtocolOptions`):
//! HTTP/2 for HTTP2 and gRPC ports or when a DestinationRule asks for the upgrade, the
//! downstream's protocol for sniffed ports or `useClientProtocol`, and the
//! connection-level limits of `connectionPool`.

use strait_proto::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonHttpProtocolOptions,
};
use strait_proto::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use strait_proto::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig;
use strait_proto::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig,
};
use strait_proto::istio::{ConnectionPoolSettings, H2UpgradePolicy, MeshConfig};

use super::{ClusterDraft, duration};
use crate::model::Protocol;

/// How long the passthrough clusters keep idle upstream connections.
const PASSTHROUGH_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub fn explicit_http1() -> UpstreamProtocolOptions {
    UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
        protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
            Http1ProtocolOptions::default(),
        )),
    })
}

pub fn explicit_http2() -> UpstreamProtocolOptions {
    UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
        protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
            Http2ProtocolOptions::default(),
        )),
    })
}

pub fn use_downstream() -> UpstreamProtocolOptions {
    UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
        http_protocol_options: Some(Http1ProtocolOptions::default()),
        http2_protocol_options: Some(Http2ProtocolOptions::default()),
        http3_protocol_options: None,
    })
}

/// What `PassthroughCluster` and `InboundPassthroughCluster` carry: the downstream's
/// protocol, idle connections closed after 5 minutes.
pub fn passthrough_options() -> HttpProtocolOptions {
    HttpProtocolOptions {
        common_http_protocol_options: Some(CommonHttpProtocolOptions {
            idle_timeout: Some(duration(PASSTHROUGH_IDLE_TIMEOUT)),
            ..Default::default()
        }),
        upstream_protocol_options: Some(use_downstream()),
        ..Default::default()
    }
}

/// Makes the cluster HTTP/2. Like Istio's `setH2Options`, this leaves the choice alone
/// once upstream HTTP options (auto SNI) have been set.
pub fn set_h2(draft: &mut ClusterDraft) {
    let http = draft.http_mut();
    if http.upstream_http_protocol_options.is_none() {
        http.upstream_protocol_options = Some(explicit_http2());
    }
}

pub fn set_use_downstream(draft: &mut ClusterDraft) {
    draft.http_mut().upstream_protocol_options = Some(use_downstream());
}

/// The protocol every cluster of a port starts with: HTTP/2 for HTTP2 and gRPC ports;
/// for a sidecar, the downstream's protocol on ports whose protocol is sniffed.
pub fn set_for_port(draft: &mut ClusterDraft, protocol: Protocol, sidecar: bool) {
    if protocol.is_http2() {
        set_h2(draft);
    } else if sidecar && protocol == Protocol::Unsupported {
        set_use_downstream(draft);
    }
}

/// Whether the DestinationRule (or the mesh default) upgrades this cluster to HTTP/2.
pub fn should_upgrade_h2(
    protocol: Protocol,
    mesh: &MeshConfig,
    pool: Option<&ConnectionPoolSettings>,
) -> bool {
    if let Some(http) = pool.and_then(|p| p.http.as_ref()) {
        if http.use_client_protocol {
            return false;
        }
        match http.h2_upgrade_policy {
            H2UpgradePolicy::Upgrade => return true,
            H2UpgradePolicy::DoNotUpgrade => return false,
            H2UpgradePolicy::Default => {}
        }
    }
    // Only declared HTTP ports: sniffed ports keep the client's protocol.
    protocol.is_http() && mesh_upgrades(mesh)
}

fn mesh_upgrades(mesh: &MeshConfig) -> bool {
    mesh.h2_upgrade_policy == strait_proto::istio::MeshH2UpgradePolicy::Upgrade
}

/// The HTTP/2 options when the cluster speaks only HTTP/2.
pub fn http2_options_mut(draft: &mut ClusterDraft) -> Option<&mut Http2ProtocolOptions> {
    match draft.http.as_mut()?.upstream_protocol_options.as_mut()? {
        UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
            protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(h2)),
        }) => Some(h2),
        _ => None,
    }
}

pub fn is_http2(draft: &ClusterDraft) -> bool {
    matches!(
        draft
            .http
            .as_ref()
            .and_then(|h| h.upstream_protocol_options.as_ref()),
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(_)),
            }
        ))
    )
}

/// Connection-level limits from `connectionPool`, in the cluster's common HTTP options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectionLimits {
    pub idle_timeout: Option<std::time::Duration>,
    pub max_requests_per_connection: Option<u32>,
    pub max_connection_duration: Option<std::time::Duration>,
    pub max_concurrent_streams: Option<u32>,
}

impl ConnectionLimits {
    fn is_empty(&self) -> bool {
        *self == ConnectionLimits::default()
    }
}

pub fn apply_limits(draft: &mut ClusterDraft, limits: &ConnectionLimits) {
    if limits.is_empty() {
        return;
    }
    let common = draft
        .http_mut()
        .common_http_protocol_options
        .get_or_insert_with(CommonHttpProtocolOptions::default);
    if let Some(idle) = limits.idle_timeout {
        common.idle_timeout = Some(duration(idle));
    }
    if let Some(max) = limits.max_requests_per_connection {
        common.max_requests_per_connection = super::uint32(max);
    }
    if let Some(max) = limits.max_connection_duration {
        common.max_connection_duration = Some(duration(max));
    }
    if let (Some(streams), Some(h2)) = (limits.max_concurrent_streams, http2_options_mut(draft)) {
        h2.max_concurrent_streams = super::uint32(streams);
    }
}

#[cfg(test)]
mod tests {
    use strait_proto::envoy::config::cluster::v3::Cluster;
    use strait_proto::istio::HttpSettings;

    use super::*;

    fn draft() -> ClusterDraft {
        ClusterDraft::new(Cluster::default())
    }

    #[test]
    fn ports_pick_their_protocol() {
        let mut d = draft();
        set_for_port(&mut d, Protocol::Grpc, true);
        assert!(is_http2(&d));
        let mut d = draft();
        set_for_port(&mut d, Protocol::Unsupported, true);
        assert!(matches!(
            d.http.unwrap().upstream_protocol_options,
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_))
        ));
        let mut d = draft();
        set_for_port(&mut d, Protocol::Http, true);
        assert!(d.http.is_none());
        let mut d = draft();
        set_for_port(&mut d, Protocol::Unsupported, false);
        assert!(
            d.http.is_none(),
            "gateways never use the downstream protocol"
        );
    }

    #[test]
    fn h2_upgrade_rules() {
        let mesh = MeshConfig::default();
        let pool = |policy, client| ConnectionPoolSettings {
            tcp: None,
            http: Some(HttpSettings {
                h2_upgrade_policy: policy,
                use_client_protocol: client,
                ..Default::default()
            }),
        };
        assert!(should_upgrade_h2(
            Protocol::Tcp,
            &mesh,
            Some(&pool(H2UpgradePolicy::Upgrade, false))
        ));
        assert!(!should_upgrade_h2(
            Protocol::Http,
            &mesh,
            Some(&pool(H2UpgradePolicy::Upgrade, true))
        ));
        assert!(!should_upgrade_h2(Protocol::Http, &mesh, None));
    }

    #[test]
    fn limits_land_in_common_options_and_h2() {
        let mut d = draft();
        set_h2(&mut d);
        apply_limits(
            &mut d,
            &ConnectionLimits {
                idle_timeout: Some(std::time::Duration::from_secs(30)),
                max_requests_per_connection: Some(7),
                max_connection_duration: None,
                max_concurrent_streams: Some(100),
            },
        );
        let http = d.http.clone().unwrap();
        let common = http.common_http_protocol_options.unwrap();
        assert_eq!(common.idle_timeout.unwrap().seconds, 30);
        assert_eq!(common.max_requests_per_connection.unwrap().value, 7);
        assert_eq!(
            http2_options_mut(&mut d)
                .unwrap()
                .max_concurrent_streams
                .unwrap()
                .value,
            100
        );
    }
}
