//! strait-proxy: an Envoy-compatible sidecar proxy driven over ADS.

pub mod config;
pub mod listener;
