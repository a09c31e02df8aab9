//! strait-proxy: an Envoy-compatible sidecar proxy driven over ADS.

pub mod access_log;
pub mod admin;
pub mod admin_state;
pub mod applier;
pub mod cli;
pub mod config;
pub mod convert;
pub mod http;
pub mod listener;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod tcp_proxy;
pub mod telemetry;
pub mod upstream;
pub mod worker;
pub mod xds;
