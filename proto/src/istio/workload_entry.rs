//! `WorkloadEntry` (`networking.istio.io`): a non-Kubernetes workload (VM, bare metal), also
//! used inline as a `ServiceEntry` endpoint.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::is_default;

/// The spec of a `WorkloadEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(
    description = "Configuration affecting VMs onboarded into the mesh. See more details at: https://istio.io/docs/reference/config/networking/workload-entry.html"
)]
pub struct WorkloadEntry {
    /// Address associated with the network endpoint without the port (IP, hostname or
    /// `unix://` socket path).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Set of ports associated with the endpoint, keyed by service port name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    /// One or more labels associated with the endpoint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Network enables Istio to group endpoints resident in the same L3 domain/network.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// The locality associated with the endpoint (`region/zone/subzone`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locality: String,
    /// The load balancing weight associated with the endpoint.
    #[serde(default, skip_serializing_if = "is_default")]
    pub weight: u32,
    /// The service account associated with the workload if a sidecar is present in the workload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
}
