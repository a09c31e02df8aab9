//! A small mesh for the CDS and EDS tests: reviews (HTTP 9080, v1/v2 endpoints in two
//! zones, a DestinationRule with subsets v1/v2/v3), mysql (TCP 3306), ratings (gRPC),
//! a DNS ServiceEntry host, a headless service, an ExternalName alias, and a sidecar
//! for productpage in zone r1/z1.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;
use strait_proto::istio::{DestinationRule, MeshConfig};

use crate::model::{
    Config, ConfigMeta, ConfigSnapshot, Endpoint, EndpointIndex, HealthStatus, Hostname, Locality,
    Protocol, Provider, Proxy, PushContext, PushContextInput, Resolution, Service, ServicePort,
    ServiceTarget, ShardKey, Visibility,
};

pub const REVIEWS: &str = "reviews.default.svc.cluster.local";
pub const MYSQL: &str = "mysql.default.svc.cluster.local";
pub const RATINGS: &str = "ratings.default.svc.cluster.local";
pub const PRODUCTPAGE: &str = "productpage.default.svc.cluster.local";
pub const HEADLESS: &str = "db.default.svc.cluster.local";
pub const EXTERNAL: &str = "api.example.com";
pub const ALIAS: &str = "alias.default.svc.cluster.local";
pub const DR_SOURCE: &str = "/etc/istio/config/reviews-dr.yaml";

pub fn port(name: &str, number: u16, protocol: Protocol) -> ServicePort {
    ServicePort {
        name: name.to_string(),
        port: number,
        protocol,
        target_port: Some(number),
    }
}

pub fn service(host: &str, ports: Vec<ServicePort>, resolution: Resolution) -> Arc<Service> {
    let name = host.split('.').next().unwrap_or_default().to_string();
    Arc::new(Service {
        hostname: host.into(),
        name,
        namespace: "default".into(),
        addresses: vec![IpAddr::from([10, 96, 0, 1])],
        ports,
        resolution,
        mesh_external: host == EXTERNAL,
        visibility: Visibility::Public,
        labels: BTreeMap::new(),
        provider: if host == EXTERNAL {
            Provider::External
        } else {
            Provider::Kubernetes
        },
        external_name: None,
        creation_time: None,
        service_accounts: Vec::new(),
    })
}

pub fn endpoint(ip: &str, port_name: &str, port: u16, version: &str, zone: &str) -> Endpoint {
    Endpoint {
        address: ip.parse().unwrap(),
        endpoint_port: port,
        service_port_name: port_name.into(),
        labels: [
            ("app".to_string(), "reviews".to_string()),
            ("version".to_string(), version.to_string()),
        ]
        .into(),
        locality: Locality::parse(zone),
        weight: 0,
        health: HealthStatus::Healthy,
        service_account: String::new(),
        namespace: "default".into(),
        workload_name: format!("reviews-{version}"),
        tls_mode: "istio".into(),
    }
}

fn reviews_endpoints() -> Vec<Endpoint> {
    let mut heavy = endpoint("10.0.0.2", "http", 9080, "v2", "r1/z1");
    heavy.weight = 3;
    let mut sick = endpoint("10.0.0.9", "http", 9080, "v2", "r1/z1");
    sick.health = HealthStatus::Unhealthy;
    vec![
        endpoint("10.0.1.2", "http", 9080, "v2", "r1/z2"),
        heavy,
        endpoint("10.0.0.1", "http", 9080, "v1", "r1/z1"),
        sick,
    ]
}

pub fn reviews_rule() -> Config<DestinationRule> {
    let spec: DestinationRule = serde_json::from_value(json!({
        "host": "reviews",
        "trafficPolicy": {
            "loadBalancer": {"simple": "ROUND_ROBIN"},
            "connectionPool": {
                "tcp": {"maxConnections": 100, "connectTimeout": "3s"},
                "http": {"http1MaxPendingRequests": 10}
            },
            "outlierDetection": {
                "consecutive5xxErrors": 5,
                "interval": "10s",
                "baseEjectionTime": "30s",
                "maxEjectionPercent": 50
            }
        },
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"},
             "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}},
            {"name": "v3", "labels": {"version": "v3"}}
        ]
    }))
    .unwrap();
    Config {
        meta: ConfigMeta {
            name: "reviews".into(),
            namespace: "default".into(),
            source: DR_SOURCE.into(),
            ..Default::default()
        },
        spec: Arc::new(spec),
    }
}

pub fn services() -> Vec<Arc<Service>> {
    vec![
        service(
            REVIEWS,
            vec![port("http", 9080, Protocol::Http)],
            Resolution::ClientSideLb,
        ),
        service(
            MYSQL,
            vec![port("tcp", 3306, Protocol::Tcp)],
            Resolution::ClientSideLb,
        ),
        service(
            RATINGS,
            vec![port("grpc", 50051, Protocol::Grpc)],
            Resolution::ClientSideLb,
        ),
        service(
            PRODUCTPAGE,
            vec![
                port("http", 9080, Protocol::Http),
                port("dns", 53, Protocol::Udp),
            ],
            Resolution::ClientSideLb,
        ),
        service(
            HEADLESS,
            vec![port("tcp", 5432, Protocol::Tcp)],
            Resolution::Passthrough,
        ),
        service(
            EXTERNAL,
            vec![port("https", 443, Protocol::Tls)],
            Resolution::DnsLb,
        ),
        service(
            ALIAS,
            vec![port("http", 80, Protocol::Http)],
            Resolution::Alias,
        ),
    ]
}

pub fn push() -> PushContext {
    push_with(vec![reviews_rule()])
}

pub fn push_with(rules: Vec<Config<DestinationRule>>) -> PushContext {
    let index = Arc::new(EndpointIndex::new());
    let update = |host: &str, eps: Vec<Endpoint>| {
        let host: Hostname = host.into();
        index.update(&host, "default", ShardKey::kubernetes(), eps);
    };
    update(REVIEWS, reviews_endpoints());
    update(MYSQL, vec![endpoint("10.0.2.1", "tcp", 3306, "v1", "")]);
    update(
        PRODUCTPAGE,
        vec![endpoint("10.0.9.9", "http", 9080, "v1", "r1/z1")],
    );
    PushContext::build(PushContextInput {
        version: "test/1".into(),
        services: services(),
        configs: ConfigSnapshot {
            destination_rules: rules,
            ..Default::default()
        },
        config_errors: Vec::new(),
        mesh: Arc::new(MeshConfig::default()),
        endpoints: index,
        domain_suffix: "cluster.local".into(),
    })
}

pub fn sidecar(push: &PushContext) -> Proxy {
    let meta = json!({"NAMESPACE": "default", "LABELS": {"app": "productpage"}});
    let mut proxy = Proxy::from_node(
        "sidecar~10.0.9.9~productpage-v1.default~default.svc.cluster.local",
        meta.as_object().unwrap().clone(),
        Locality::parse("r1/z1"),
    )
    .unwrap();
    let productpage = push
        .all_services()
        .iter()
        .find(|s| s.hostname.as_ref() == PRODUCTPAGE)
        .unwrap()
        .clone();
    proxy.service_targets = vec![ServiceTarget {
        port: productpage.ports[0].clone(),
        service: productpage,
        target_port: 9080,
    }];
    proxy
}
