//! `ServiceEntry` (`networking.istio.io`): adds entries to Istio's service registry.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{WorkloadSelector, is_default};
use super::workload_entry::WorkloadEntry;

/// The spec of a `ServiceEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(
    description = "Configuration affecting service registry. See more details at: https://istio.io/docs/reference/config/networking/service-entry.html"
)]
pub struct ServiceEntry {
    /// The hosts associated with the ServiceEntry.
    pub hosts: Vec<String>,
    /// The virtual IP addresses associated with the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The ports associated with the external service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Whether the service is external to the mesh or part of the mesh.
    #[serde(default, skip_serializing_if = "is_default")]
    pub location: Location,
    /// Service resolution mode for the hosts.
    #[serde(default, skip_serializing_if = "is_default")]
    pub resolution: Resolution,
    /// One or more endpoints associated with the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntry>,
    /// Selects the workloads (pods, WorkloadEntries) that back this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// A list of namespaces to which this service is exported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Subject alternate names the server certificate must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// A port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    /// A valid non-negative integer port number.
    pub number: u32,
    /// The protocol exposed on the port (HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Label assigned to the port.
    pub name: String,
    /// The port number on the endpoint where the traffic will be received.
    #[serde(default, skip_serializing_if = "is_default")]
    pub target_port: u32,
}

/// Whether a service is part of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh: no mTLS, no Istio telemetry from the server side.
    #[default]
    MeshExternal,
    /// Part of the mesh.
    MeshInternal,
}

/// How the endpoints of a service are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Forward to the original destination IP.
    #[default]
    None,
    /// Use the static endpoint addresses.
    Static,
    /// Resolve the hosts (or endpoint addresses) with DNS, all addresses in use.
    Dns,
    /// Resolve with DNS, using the first address only.
    DnsRoundRobin,
    /// Resolve each request's host dynamically (wildcard hosts).
    DynamicDns,
}
