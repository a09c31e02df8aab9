//! `/clusters` and `/listeners`, in Envoy's text (`name::key::value` lines) and JSON
//! (`envoy.admin.v3.Clusters` / `Listeners`) forms.

use std::fmt::Write;
use std::net::SocketAddr;

use serde_json::Value as Json;
use strait_proto::envoy::admin::v3::{
    ClusterStatus, Clusters, HostHealthStatus, HostStatus, ListenerStatus, Listeners, SimpleMetric,
    simple_metric,
};
use strait_proto::envoy::config::cluster::v3::{CircuitBreakers, circuit_breakers::Thresholds};
use strait_proto::envoy::config::core::v3::{
    Address, HealthStatus, Locality, RoutingPriority, SocketAddress, address, socket_address,
};
use strait_proto::google::protobuf::UInt32Value;
use strait_proto::xds::json::{FieldNames, to_json_with};

use super::source::{ClusterEntry, ListenerEntry};
use crate::config::cluster::{Discovery, Thresholds as ConfigThresholds};
use crate::config::endpoint::Health;
use crate::upstream::Host;

/// Envoy's HIGH priority thresholds, which strait-proxy does not configure.
const HIGH: ConfigThresholds = ConfigThresholds {
    max_connections: 1024,
    max_pending_requests: 1024,
    max_requests: 1024,
    max_retries: 3,
};

fn eds_service_name(entry: &ClusterEntry) -> Option<String> {
    match &entry.state.config().discovery {
        Discovery::Eds { service_name } if service_name.is_empty() => {
            Some(entry.state.name().to_string())
        }
        Discovery::Eds { service_name } => Some(service_name.clone()),
        _ => None,
    }
}

fn hosts(entry: &ClusterEntry) -> Vec<std::sync::Arc<Host>> {
    let mut all: Vec<_> = entry.state.hosts().hosts().to_vec();
    all.extend(entry.state.original_dst_hosts());
    all
}

/// Per-host counters and gauges, sorted by name as Envoy prints them.
fn host_stats(h: &Host) -> [(&'static str, u64, bool); 4] {
    let s = h.stats();
    [
        ("cx_active", s.active_connections(), true),
        ("cx_total", s.total_connections(), false),
        ("rq_active", s.active_requests(), true),
        ("rq_total", s.total_requests(), false),
    ]
}

fn health_flags(h: &Host) -> String {
    let mut flags = String::new();
    if h.stats().is_ejected() {
        flags.push_str("/failed_outlier_check");
    }
    match h.health() {
        Health::Unhealthy | Health::Draining => flags.push_str("/failed_eds_health"),
        Health::Degraded => flags.push_str("/degraded_eds_health"),
        Health::Healthy | Health::Unknown => {}
    }
    if flags.is_empty() {
        "healthy".to_string()
    } else {
        flags
    }
}

fn thresholds_text(out: &mut String, name: &str, priority: &str, t: &ConfigThresholds) {
    let _ = writeln!(
        out,
        "{name}::{priority}_priority::max_connections::{}",
        t.max_connections
    );
    let _ = writeln!(
        out,
        "{name}::{priority}_priority::max_pending_requests::{}",
        t.max_pending_requests
    );
    let _ = writeln!(
        out,
        "{name}::{priority}_priority::max_requests::{}",
        t.max_requests
    );
    let _ = writeln!(
        out,
        "{name}::{priority}_priority::max_retries::{}",
        t.max_retries
    );
}

/// Envoy's text `/clusters`.
pub fn clusters_text(clusters: &[ClusterEntry]) -> String {
    let mut out = String::new();
    for entry in clusters {
        let state = &entry.state;
        let name = state.name();
        let _ = writeln!(out, "{name}::observability_name::{}", state.stat_name());
        if state.outlier().is_some() {
            for key in [
                "success_rate_average",
                "success_rate_ejection_threshold",
                "local_origin_success_rate_average",
                "local_origin_success_rate_ejection_threshold",
            ] {
                let _ = writeln!(out, "{name}::outlier::{key}::-1");
            }
        }
        thresholds_text(&mut out, name, "default", state.breakers().thresholds());
        thresholds_text(&mut out, name, "high", &HIGH);
        let _ = writeln!(out, "{name}::added_via_api::{}", entry.added_via_api);
        if let Some(eds) = eds_service_name(entry) {
            let _ = writeln!(out, "{name}::eds_service_name::{eds}");
        }
        for h in hosts(entry) {
            let addr = h.address();
            for (stat, value, _) in host_stats(&h) {
                let _ = writeln!(out, "{name}::{addr}::{stat}::{value}");
            }
            let l = h.locality();
            let _ = writeln!(out, "{name}::{addr}::hostname::");
            let _ = writeln!(out, "{name}::{addr}::health_flags::{}", health_flags(&h));
            let _ = writeln!(out, "{name}::{addr}::weight::{}", h.weight());
            let _ = writeln!(out, "{name}::{addr}::region::{}", l.region);
            let _ = writeln!(out, "{name}::{addr}::zone::{}", l.zone);
            let _ = writeln!(out, "{name}::{addr}::sub_zone::{}", l.sub_zone);
            let _ = writeln!(out, "{name}::{addr}::canary::false");
            let _ = writeln!(out, "{name}::{addr}::priority::{}", h.priority());
            let _ = writeln!(out, "{name}::{addr}::success_rate::-1");
            let _ = writeln!(out, "{name}::{addr}::local_origin_success_rate::-1");
        }
    }
    out
}

fn socket_address(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..SocketAddress::default()
        })),
    }
}

fn thresholds_proto(priority: RoutingPriority, t: &ConfigThresholds) -> Thresholds {
    let v = |value| Some(UInt32Value { value });
    Thresholds {
        priority: priority as i32,
        max_connections: v(t.max_connections),
        max_pending_requests: v(t.max_pending_requests),
        max_requests: v(t.max_requests),
        max_retries: v(t.max_retries),
        ..Thresholds::default()
    }
}

fn eds_health(h: &Host) -> HealthStatus {
    match h.health() {
        Health::Unknown | Health::Healthy => HealthStatus::Healthy,
        Health::Unhealthy => HealthStatus::Unhealthy,
        Health::Draining => HealthStatus::Draining,
        Health::Degraded => HealthStatus::Degraded,
    }
}

/// Envoy's `/clusters?format=json`.
pub fn clusters_json(clusters: &[ClusterEntry]) -> Json {
    let statuses = clusters
        .iter()
        .map(|entry| {
            let state = &entry.state;
            ClusterStatus {
                name: state.name().to_string(),
                added_via_api: entry.added_via_api,
                observability_name: state.stat_name().to_string(),
                eds_service_name: eds_service_name(entry).unwrap_or_default(),
                circuit_breakers: Some(CircuitBreakers {
                    thresholds: vec![
                        thresholds_proto(RoutingPriority::Default, state.breakers().thresholds()),
                        thresholds_proto(RoutingPriority::High, &HIGH),
                    ],
                    ..CircuitBreakers::default()
                }),
                host_statuses: hosts(entry)
                    .iter()
                    .map(|h| HostStatus {
                        address: Some(socket_address(h.address())),
                        stats: host_stats(h)
                            .iter()
                            .map(|(name, value, gauge)| SimpleMetric {
                                r#type: if *gauge {
                                    simple_metric::Type::Gauge as i32
                                } else {
                                    simple_metric::Type::Counter as i32
                                },
                                value: *value,
                                name: (*name).to_string(),
                            })
                            .collect(),
                        health_status: Some(HostHealthStatus {
                            failed_outlier_check: h.stats().is_ejected(),
                            eds_health_status: eds_health(h) as i32,
                            ..HostHealthStatus::default()
                        }),
                        weight: h.weight(),
                        priority: h.priority(),
                        locality: Some(Locality {
                            region: h.locality().region.clone(),
                            zone: h.locality().zone.clone(),
                            sub_zone: h.locality().sub_zone.clone(),
                        }),
                        ..HostStatus::default()
                    })
                    .collect(),
                ..ClusterStatus::default()
            }
        })
        .collect();
    to_json_with(
        &Clusters {
            cluster_statuses: statuses,
        },
        FieldNames::Proto,
    )
    .unwrap_or_else(|_| serde_json::json!({}))
}

/// Envoy's text `/listeners`: `name::address` lines.
pub fn listeners_text(listeners: &[ListenerEntry]) -> String {
    listeners
        .iter()
        .map(|l| format!("{}::{}\n", l.name, l.address))
        .collect()
}

pub fn listeners_json(listeners: &[ListenerEntry]) -> Json {
    let statuses = listeners
        .iter()
        .map(|l| ListenerStatus {
            name: l.name.clone(),
            local_address: Some(socket_address(l.address)),
            ..ListenerStatus::default()
        })
        .collect();
    to_json_with(
        &Listeners {
            listener_statuses: statuses,
        },
        FieldNames::Proto,
    )
    .unwrap_or_else(|_| serde_json::json!({}))
}
