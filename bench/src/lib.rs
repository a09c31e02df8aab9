//! Control-plane benchmark: Strait's pilot-discovery measured in process and, side by
//! side with Istio's pilot-discovery, out of process on the same generated mesh.
//! The data-plane benchmark ([`proxy`]) runs strait-proxy and Envoy as the same pair of
//! sidecars under the same load. Timings are printed and written, never asserted.

pub mod ads;
pub mod http;
pub mod inproc;
pub mod kube_peer;
pub mod mesh;
pub mod metrics;
pub mod outproc;
pub mod procstat;
pub mod proxy;
pub mod report;
pub mod server;
pub mod stats;
pub mod workdir;
