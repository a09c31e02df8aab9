//! The control plane's model of the mesh: services, endpoints, config, proxies, and the
//! PushContext snapshot generators read.

pub mod config;
pub mod endpoint;
pub mod proxy;
pub mod push_context;
pub mod push_status;
pub mod service;

pub use config::{Config, ConfigKey, ConfigKind, ConfigMeta, IstioConfig};
pub use endpoint::{Endpoint, EndpointIndex, HealthStatus, Locality, ShardKey};
pub use proxy::{NodeType, Proxy, ServiceTarget};
pub use push_context::{
    ConfigError, ConfigSnapshot, PushContext, PushContextInput, VirtualServiceView,
};
pub use push_status::{PushStatus, metric};
pub use service::{
    Hostname, Protocol, Provider, Resolution, Service, ServicePort, Visibility,
    inbound_cluster_name, outbound_cluster_name,
};
