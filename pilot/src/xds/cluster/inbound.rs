//! `inbound|<port>||` clusters: one per workload port the proxy's service targets land on.
//!
//! With the mesh's default inbound policy (PASSTHROUGH) they forward to the original
//! destination (the pod IP and port, as without a sidecar), from 127.0.0.6 so that
//! iptables does not capture the connection again.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::cluster::v3::cluster::DiscoveryType;

use super::policy::{self, Direction, PolicyInput};
use super::{ClusterDraft, duration, merge, metadata, special, tls};
use crate::model::{Proxy, PushContext, ServiceTarget, inbound_cluster_name};

/// Istio turns off host cleanup on inbound original-destination clusters with the
/// largest duration Envoy takes (about 292 years).
const NO_CLEANUP: StdDuration = StdDuration::from_secs(9_223_372_035);

/// The inbound clusters of a proxy, by port. A proxy whose traffic is not captured has
/// no inbound listeners, so it gets none.
pub fn build(proxy: &Proxy, push: &PushContext) -> Vec<Cluster> {
    if !proxy.captures_traffic() {
        return Vec::new();
    }
    let mut by_port: BTreeMap<u16, Vec<&ServiceTarget>> = BTreeMap::new();
    for target in &proxy.service_targets {
        by_port.entry(target.target_port).or_default().push(target);
    }
    by_port
        .into_iter()
        .map(|(port, targets)| cluster(proxy, push, port, &targets))
        .collect()
}

/// The first target of a port decides protocol and policy when several services share
/// it; all of them appear in the telemetry metadata.
fn cluster(proxy: &Proxy, push: &PushContext, port: u16, targets: &[&ServiceTarget]) -> Cluster {
    let primary = targets[0];
    let name = inbound_cluster_name(port);
    let mut draft = ClusterDraft::base(
        &name,
        DiscoveryType::OriginalDst,
        primary.port.protocol,
        true,
    );
    draft.cluster.cleanup_interval = Some(duration(NO_CLEANUP));
    if !primary.service.mesh_external {
        let mut seen: Vec<&str> = Vec::new();
        let services = targets
            .iter()
            .filter(|t| t.port.port == primary.port.port)
            .filter_map(|t| {
                let host = t.service.hostname.as_ref();
                (!seen.contains(&host)).then(|| {
                    seen.push(host);
                    t.service.as_ref()
                })
            });
        metadata::set_services(&mut draft.cluster.metadata, services);
    }
    let rule = push.destination_rule(proxy, &primary.service);
    let policy =
        rule.and_then(|r| merge::for_port(r.spec.traffic_policy.as_ref(), primary.port.port).0);
    if let Some(r) = rule.filter(|r| r.spec.traffic_policy.is_some()) {
        metadata::set_destination_rule(&mut draft.cluster.metadata, &r.meta);
    }
    policy::apply(
        &mut draft,
        &PolicyInput {
            mesh: &push.mesh,
            policy: policy.as_ref(),
            protocol: primary.port.protocol,
            direction: Direction::Inbound,
            proxy_locality: &proxy.locality,
            tls: tls::TlsInput {
                external_service_accounts: &[],
            },
        },
    );
    draft.cluster.upstream_bind_config = Some(special::inbound_bind(&proxy.ip_addresses));
    draft.finish()
}
