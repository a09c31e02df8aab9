//! Data-plane benchmark: strait-proxy and Envoy, each as a pair of Istio sidecars
//! configured by a real pilot-discovery, under the same load on the same machine.
//! See `benches/proxy.rs` and docs/benchmarks.md ("strait-proxy").

pub mod affinity;
pub mod config;
pub mod cpu;
pub mod histogram;
pub mod loadgen;
pub mod memory;
pub mod report;
pub mod round;
pub mod stage;
pub mod upstream;
