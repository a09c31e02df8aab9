//! Type URLs of the resources pilot serves, and the names Istio gives them in logs and
//! metric labels.
//!
//! The Envoy URLs are string constants so they can be matched on; tests check each one
//! against `prost::Name::type_url()` of the `envoy-types` message it stands for.

/// Prefix of every type URL pilot produces.
pub const PREFIX: &str = "type.googleapis.com/";
const ENVOY_PREFIX: &str = "type.googleapis.com/envoy.";

/// CDS: `envoy.config.cluster.v3.Cluster`.
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`.
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// LDS: `envoy.config.listener.v3.Listener`.
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// RDS: `envoy.config.route.v3.RouteConfiguration`.
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// SDS: `envoy.extensions.transport_sockets.tls.v3.Secret`.
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// ECDS: `envoy.config.core.v3.TypedExtensionConfig`.
pub const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/// Bootstrap, only ever a metric label (`bds`).
pub const BOOTSTRAP: &str = "type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap";

/// NDS: Istio's DNS name table for the agent's DNS proxy.
pub const NAME_TABLE: &str = "type.googleapis.com/istio.networking.nds.v1.NameTable";
/// PCDS: proxy config pushed to the agent.
pub const PROXY_CONFIG: &str = "type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig";
/// Health reports an agent sends about its workload.
pub const HEALTH_INFO: &str = "type.googleapis.com/istio.v1.HealthInformation";
/// WDS addresses (ambient).
pub const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";
/// WDS workloads (ambient).
pub const WORKLOAD: &str = "type.googleapis.com/istio.workload.Workload";
/// WADS: ambient authorization policies.
pub const WORKLOAD_AUTHORIZATION: &str = "type.googleapis.com/istio.security.Authorization";
/// Istio's debug type; carries no `type.googleapis.com/` prefix.
pub const DEBUG: &str = "istio.io/debug";

/// The lower-case name Istio puts in the `type` label of its xDS metrics (`cds`, `eds`,
/// ...). Unknown URLs come back unchanged, as Istio does.
pub fn metric_type(type_url: &str) -> &str {
    match type_url {
        CLUSTER => "cds",
        LISTENER => "lds",
        ROUTE => "rds",
        ENDPOINT => "eds",
        SECRET => "sds",
        NAME_TABLE => "nds",
        PROXY_CONFIG => "pcds",
        EXTENSION_CONFIG => "ecds",
        BOOTSTRAP => "bds",
        ADDRESS | WORKLOAD => "wds",
        WORKLOAD_AUTHORIZATION => "wads",
        other => other,
    }
}

/// The upper-case name Istio uses in log lines (`CDS`, `EDS`, ...). Unknown URLs come back
/// unchanged. Unlike [`metric_type`], Bootstrap has no short name here, as in Istio.
pub fn short_type(type_url: &str) -> &str {
    match type_url {
        CLUSTER => "CDS",
        LISTENER => "LDS",
        ROUTE => "RDS",
        ENDPOINT => "EDS",
        SECRET => "SDS",
        NAME_TABLE => "NDS",
        PROXY_CONFIG => "PCDS",
        EXTENSION_CONFIG => "ECDS",
        ADDRESS | WORKLOAD => "WDS",
        WORKLOAD_AUTHORIZATION => "WADS",
        other => other,
    }
}

/// The type URL for a short name in any case (`cds`, `EDS`, ...), for debug endpoints and
/// CLIs that take one. `wds` means addresses, as in Istio.
pub fn from_short(short: &str) -> Option<&'static str> {
    let url = match short.to_ascii_uppercase().as_str() {
        "CDS" => CLUSTER,
        "LDS" => LISTENER,
        "RDS" => ROUTE,
        "EDS" => ENDPOINT,
        "SDS" => SECRET,
        "NDS" => NAME_TABLE,
        "PCDS" => PROXY_CONFIG,
        "ECDS" => EXTENSION_CONFIG,
        "WDS" => ADDRESS,
        "WADS" => WORKLOAD_AUTHORIZATION,
        _ => return None,
    };
    Some(url)
}

/// Whether an empty `resource_names` list means "everything" for this type. The xDS spec
/// makes CDS and LDS wildcard and EDS, RDS, SDS and ECDS named; Istio treats every type of
/// its own (NDS, PCDS, WDS, ...) and any other unknown type as wildcard. For named types an
/// empty list means the client unsubscribed.
pub fn is_wildcard(type_url: &str) -> bool {
    !matches!(type_url, SECRET | ENDPOINT | ROUTE | EXTENSION_CONFIG)
}

/// Whether the URL names an Envoy API type (as opposed to an Istio-internal one).
pub fn is_envoy_type(type_url: &str) -> bool {
    type_url.starts_with(ENVOY_PREFIX)
}
