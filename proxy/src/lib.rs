//! strait-proxy: an Envoy-compatible sidecar proxy driven over ADS.

pub mod config;
pub mod convert;
pub mod listener;
pub mod router;
pub mod upstream;
pub mod xds;
pub mod tcp_proxy;
pub mod worker;
pub mod applier;
pub mod snapshot;
