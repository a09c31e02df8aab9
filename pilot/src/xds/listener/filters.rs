//! Network filters (`tcp_proxy`, the HCM wrapper) and listener filters (`original_dst`,
//! `tls_inspector`, `http_inspector`) as Istio configures them. Only extensions that ship
//! with a stock Envoy are used.

use strait_proto::envoy::config::listener::v3::{
    Filter, ListenerFilter, ListenerFilterChainMatchPredicate, filter, listener_filter,
    listener_filter_chain_match_predicate::{MatchSet, Rule},
};
use strait_proto::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use strait_proto::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use strait_proto::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use strait_proto::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy,
    tcp_proxy::{ClusterSpecifier, WeightedCluster, weighted_cluster::ClusterWeight},
};
use strait_proto::envoy::r#type::v3::Int32Range;
use strait_proto::xds::any;

use super::names;
use crate::xds::route::wkt;

/// A `tcp_proxy` to one cluster.
pub fn tcp_proxy(stat_prefix: &str, cluster: &str) -> TcpProxy {
    TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    }
}

/// A `tcp_proxy` splitting connections over weighted clusters (`(name, weight)` pairs).
pub fn weighted_tcp_proxy(stat_prefix: &str, clusters: Vec<(String, u32)>) -> TcpProxy {
    let clusters = clusters
        .into_iter()
        .map(|(name, weight)| ClusterWeight {
            name,
            weight,
            ..Default::default()
        })
        .collect();
    TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters,
        })),
        ..Default::default()
    }
}

pub fn tcp_proxy_filter(tcp: &TcpProxy) -> Filter {
    Filter {
        name: names::TCP_PROXY_FILTER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(any::pack(tcp))),
    }
}

pub fn hcm_filter(hcm: &HttpConnectionManager) -> Filter {
    Filter {
        name: names::HTTP_CONNECTION_MANAGER_FILTER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(any::pack(hcm))),
    }
}

pub fn original_dst() -> ListenerFilter {
    ListenerFilter {
        name: names::ORIGINAL_DST_LISTENER_FILTER.to_string(),
        filter_disabled: None,
        config_type: Some(listener_filter::ConfigType::TypedConfig(any::pack(
            &OriginalDst {},
        ))),
    }
}

/// The TLS inspector with Istio's 512-byte initial read buffer (Envoy's default is 64 KiB).
pub fn tls_inspector() -> ListenerFilter {
    let config = TlsInspector {
        initial_read_buffer_size: Some(wkt::u32_value(512)),
        ..Default::default()
    };
    ListenerFilter {
        name: names::TLS_INSPECTOR_LISTENER_FILTER.to_string(),
        filter_disabled: None,
        config_type: Some(listener_filter::ConfigType::TypedConfig(any::pack(&config))),
    }
}

/// The HTTP inspector, skipped for connections to `excluded_ports`: sniffing must not delay
/// server-first protocols on ports declared as TCP.
pub fn http_inspector(excluded_ports: &[u16]) -> ListenerFilter {
    ListenerFilter {
        name: names::HTTP_INSPECTOR_LISTENER_FILTER.to_string(),
        filter_disabled: exclude_ports(excluded_ports),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any::pack(
            &HttpInspector {},
        ))),
    }
}

/// A predicate matching any of `ports` (so the filter is disabled for them), or `None`.
fn exclude_ports(ports: &[u16]) -> Option<ListenerFilterChainMatchPredicate> {
    let mut rules: Vec<ListenerFilterChainMatchPredicate> = ports
        .iter()
        .map(|&p| ListenerFilterChainMatchPredicate {
            // The range is [start, end).
            rule: Some(Rule::DestinationPortRange(Int32Range {
                start: i32::from(p),
                end: i32::from(p) + 1,
            })),
        })
        .collect();
    match rules.len() {
        0 => None,
        1 => rules.pop(),
        _ => Some(ListenerFilterChainMatchPredicate {
            rule: Some(Rule::OrMatch(MatchSet { rules })),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_inspector_excludes_ports() {
        assert!(http_inspector(&[]).filter_disabled.is_none());
        let one = http_inspector(&[15006]).filter_disabled.unwrap();
        assert_eq!(
            one.rule,
            Some(Rule::DestinationPortRange(Int32Range {
                start: 15006,
                end: 15007
            }))
        );
        let two = http_inspector(&[3306, 9080]).filter_disabled.unwrap();
        match two.rule {
            Some(Rule::OrMatch(set)) => assert_eq!(set.rules.len(), 2),
            other => panic!("expected or_match, got {other:?}"),
        }
    }

    #[test]
    fn weighted_tcp_proxy_keeps_weights() {
        let t = weighted_tcp_proxy("vs.ns", vec![("a".into(), 80), ("b".into(), 20)]);
        match t.cluster_specifier {
            Some(ClusterSpecifier::WeightedClusters(w)) => {
                assert_eq!(w.clusters[0].name, "a");
                assert_eq!(w.clusters[1].weight, 20);
            }
            other => panic!("{other:?}"),
        }
    }
}
