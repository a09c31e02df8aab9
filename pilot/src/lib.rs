//! pilot-discovery: Strait's Istio-compatible control plane.

pub mod cli;
pub mod config;
pub mod debug;
pub mod environment;
pub mod features;
pub mod metrics;
pub mod model;
pub mod push;
pub mod registry;
pub mod server;
pub mod xds;
