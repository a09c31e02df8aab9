//! Endpoints and clusters for the upstream tests.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::cluster::{Cluster, Discovery, HttpProtocolOptions, LbPolicy, Thresholds};
use crate::config::endpoint::{Health, LbEndpoint, Locality};

pub fn endpoint(address: &str) -> LbEndpoint {
    LbEndpoint {
        address: address.parse().unwrap(),
        weight: 1,
        health: Health::Healthy,
        locality: Locality::default(),
        priority: 0,
        locality_weight: None,
        metadata: Default::default(),
    }
}

pub fn weighted(address: &str, weight: u32) -> LbEndpoint {
    LbEndpoint {
        weight,
        ..endpoint(address)
    }
}

/// `n` healthy endpoints 10.<priority>.x.y:80 at `priority`.
pub fn endpoints_at(priority: u32, n: usize) -> Vec<LbEndpoint> {
    (0..n)
        .map(|i| LbEndpoint {
            priority,
            ..endpoint(&format!("10.{priority}.{}.{}:80", i / 250, i % 250 + 1))
        })
        .collect()
}

pub fn addr(address: &str) -> SocketAddr {
    address.parse().unwrap()
}

pub fn cluster(name: &str, lb_policy: LbPolicy, discovery: Discovery) -> Cluster {
    Cluster {
        name: name.into(),
        discovery,
        lb_policy,
        connect_timeout: Duration::from_secs(5),
        thresholds: Thresholds::default(),
        http: HttpProtocolOptions::default(),
        upstream_bind: None,
        outlier_detection: None,
        healthy_panic_threshold: 50.0,
        stat_name: None,
        has_transport_socket: false,
        cleanup_interval: None,
        source_ip: None,
    }
}

pub fn eds(service_name: &str) -> Discovery {
    Discovery::Eds {
        service_name: service_name.into(),
    }
}
