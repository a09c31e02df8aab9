//! Control-plane benchmark: Strait's pilot-discovery measured in process and, side by
//! side with Istio's pilot-discovery, out of process on the same generated mesh.
//! Timings are printed and written, never asserted.

pub mod ads;
pub mod http;
pub mod inproc;
pub mod mesh;
pub mod metrics;
pub mod outproc;
pub mod procstat;
pub mod report;
pub mod server;
pub mod stats;
pub mod workdir;
