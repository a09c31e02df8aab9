//! A real Kubernetes control plane for end-to-end tests: etcd,
//! kube-apiserver and kube-controller-manager built from the pinned Go modules
//! in `e2e/kube/` (see `build.sh` there), started on loopback with their own
//! certificates, ports and directory, so parallel tests each get a cluster.
//!
//! There is no kubelet and no scheduler. Tests create Nodes and Pods through
//! the API and set Pod status themselves ([`KubeCluster::add_node`],
//! [`KubeCluster::set_pod_status`]); kube-controller-manager's EndpointSlice
//! controller turns ready Pods behind a Service into EndpointSlices, as in a
//! cluster.

mod cluster;
mod kubectl;
mod objects;
pub mod pidfile;
mod pilot;
pub mod pki;
mod ports;
mod process;
mod tools;

pub use cluster::{DEFAULT_SERVICE_CIDR, KubeCluster, KubeOptions};
pub use pilot::{KubePilot, KubePilotOptions};
pub use pki::Pki;
pub use tools::KubeTools;
