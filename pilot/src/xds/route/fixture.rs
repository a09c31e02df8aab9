//! Test fixtures shared by the LDS and RDS tests: a small bookinfo mesh.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use strait_proto::istio::{DestinationRule, MeshConfig, MeshOutboundMode, VirtualService};

use crate::model::endpoint::{Endpoint, HealthStatus};
use crate::model::push_context::{ConfigSnapshot, PushContextInput};
use crate::model::{
    Config, ConfigMeta, EndpointIndex, Protocol, Provider, Proxy, PushContext, Resolution, Service,
    ServicePort, ServiceTarget, ShardKey, Visibility,
};

pub fn port(name: &str, number: u16, protocol: Protocol) -> ServicePort {
    ServicePort {
        name: name.to_string(),
        port: number,
        protocol,
        target_port: Some(number),
    }
}

pub fn service(name: &str, ns: &str, vip: Option<&str>, ports: Vec<ServicePort>) -> Arc<Service> {
    Arc::new(Service {
        hostname: format!("{name}.{ns}.svc.cluster.local").into(),
        name: name.to_string(),
        namespace: ns.to_string(),
        addresses: vip.iter().map(|v| v.parse().unwrap()).collect(),
        ports,
        resolution: if vip.is_some() {
            Resolution::ClientSideLb
        } else {
            Resolution::Passthrough
        },
        mesh_external: false,
        visibility: Visibility::Public,
        labels: BTreeMap::new(),
        provider: Provider::Kubernetes,
        external_name: None,
        creation_time: Some("2024-01-01T00:00:00Z".to_string()),
        service_accounts: Vec::new(),
    })
}

pub fn config<S: DeserializeOwned>(name: &str, ns: &str, yaml: &str) -> Config<S> {
    Config {
        meta: ConfigMeta {
            name: name.to_string(),
            namespace: ns.to_string(),
            creation_timestamp: Some("2024-01-01T00:00:00Z".to_string()),
            source: format!("{name}.yaml"),
            ..Default::default()
        },
        spec: Arc::new(serde_yaml::from_str(yaml).unwrap()),
    }
}

pub fn bookinfo_services() -> Vec<Arc<Service>> {
    vec![
        service(
            "productpage",
            "default",
            Some("10.96.0.30"),
            vec![
                port("http", 9080, Protocol::Http),
                port("tcp-admin", 9999, Protocol::Tcp),
            ],
        ),
        service(
            "reviews",
            "default",
            Some("10.96.0.10"),
            vec![port("http", 9080, Protocol::Http)],
        ),
        service(
            "ratings",
            "default",
            Some("10.96.0.11"),
            vec![port("http", 9080, Protocol::Http)],
        ),
        service(
            "details",
            "other",
            Some("10.96.0.12"),
            vec![port("http", 9080, Protocol::Http)],
        ),
        service(
            "mysqldb",
            "default",
            Some("10.96.0.20"),
            vec![port("tcp", 3306, Protocol::Tcp)],
        ),
    ]
}

pub const REVIEWS_VS: &str = r#"
hosts: [reviews]
http:
- name: jason
  match:
  - headers:
      end-user:
        exact: jason
  route:
  - destination: {host: reviews, subset: v2}
- name: split
  route:
  - destination: {host: reviews, subset: v1}
    weight: 80
  - destination: {host: reviews, subset: v3}
    weight: 20
  - destination: {host: reviews, subset: v4}
    weight: 0
"#;

pub const RATINGS_VS: &str = r#"
hosts: [ratings.default.svc.cluster.local]
http:
- name: faulty
  match:
  - headers:
      end-user:
        exact: jason
  fault:
    delay:
      percentage: {value: 100.0}
      fixedDelay: 7s
    abort:
      percentage: {value: 50}
      httpStatus: 500
  route:
  - destination: {host: ratings, subset: v1}
- name: rewrite
  match:
  - uri: {prefix: /ratings}
  rewrite:
    uri: /v1/bookRatings
  route:
  - destination: {host: ratings, subset: v1}
- name: gone
  match:
  - uri: {exact: /unknown}
  directResponse:
    status: 503
    body: {string: unknown}
- name: default
  route:
  - destination: {host: ratings, subset: v1}
  timeout: 0.5s
  retries:
    attempts: 3
    perTryTimeout: 2s
    retryOn: 5xx,gateway-error,503
"#;

pub const MYSQL_VS: &str = r#"
hosts: [mysqldb]
tcp:
- route:
  - destination: {host: mysqldb, subset: v1}
    weight: 90
  - destination: {host: mysqldb, subset: v2}
    weight: 10
"#;

pub const DETAILS_DR: &str = r#"
host: details.other.svc.cluster.local
trafficPolicy:
  loadBalancer:
    consistentHash:
      httpCookie: {name: user, ttl: 0s}
"#;

pub fn mesh(mode: MeshOutboundMode) -> Arc<MeshConfig> {
    let mut mesh = MeshConfig::default();
    mesh.outbound_traffic_policy.mode = mode;
    Arc::new(mesh)
}

pub fn push_with(
    services: Vec<Arc<Service>>,
    virtual_services: Vec<Config<VirtualService>>,
    destination_rules: Vec<Config<DestinationRule>>,
    mode: MeshOutboundMode,
) -> PushContext {
    PushContext::build(PushContextInput {
        version: "test".to_string(),
        services,
        configs: ConfigSnapshot {
            virtual_services,
            destination_rules,
            ..Default::default()
        },
        config_errors: Vec::new(),
        mesh: mesh(mode),
        endpoints: Arc::new(EndpointIndex::new()),
        domain_suffix: "cluster.local".to_string(),
    })
}

pub fn bookinfo_push(mode: MeshOutboundMode) -> PushContext {
    push_with(
        bookinfo_services(),
        vec![
            config("reviews", "default", REVIEWS_VS),
            config("ratings", "default", RATINGS_VS),
            config("mysqldb", "default", MYSQL_VS),
        ],
        vec![config("details", "other", DETAILS_DR)],
        mode,
    )
}

/// A sidecar in `default` labelled `app: productpage`, serving nothing.
pub fn client_proxy() -> Proxy {
    let meta = serde_json::json!({
        "NAMESPACE": "default",
        "LABELS": {"app": "productpage", "version": "v1"},
    });
    Proxy::from_node(
        "sidecar~10.1.0.5~productpage-v1-abc.default~default.svc.cluster.local",
        meta.as_object().unwrap().clone(),
        Default::default(),
    )
    .unwrap()
}

/// The productpage pod, serving its two ports.
pub fn productpage_proxy(push: &PushContext) -> Proxy {
    let mut proxy = client_proxy();
    let svc = push
        .all_services()
        .iter()
        .find(|s| s.name == "productpage")
        .unwrap()
        .clone();
    proxy.service_targets = svc
        .ports
        .iter()
        .map(|p| ServiceTarget {
            service: svc.clone(),
            port: p.clone(),
            target_port: p.port,
        })
        .collect();
    proxy
}

/// An endpoint of a headless service.
pub fn endpoint(ip: &str, port: u16, port_name: &str) -> Endpoint {
    Endpoint {
        address: ip.parse().unwrap(),
        endpoint_port: port,
        service_port_name: port_name.to_string(),
        labels: BTreeMap::new(),
        locality: Default::default(),
        weight: 1,
        health: HealthStatus::Healthy,
        service_account: String::new(),
        namespace: "default".to_string(),
        workload_name: String::new(),
        tls_mode: String::new(),
    }
}

pub fn add_endpoints(push: &PushContext, svc: &Service, endpoints: Vec<Endpoint>) {
    push.endpoints.update(
        &svc.hostname,
        &svc.namespace,
        ShardKey::kubernetes(),
        endpoints,
    );
}
