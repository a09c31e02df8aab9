//! Strait's `pilot-agent`: the process that runs beside every sidecar proxy.
//!
//! `pilot-agent proxy sidecar` resolves its configuration ([`config`]: flags,
//! environment, mesh config, the pod's labels and annotations from [`podinfo`]), builds
//! the node identity ([`node`]) and the Envoy bootstrap ([`bootstrap`]), starts the
//! proxy and supervises it ([`proxy`], [`agent`]), serves the status port ([`status`]:
//! readiness from the proxy's admin stats ([`readiness`], [`admin`]), merged metrics
//! ([`metrics`]), application probes ([`probes`])) and drains the proxy on SIGTERM
//! ([`drain`]).

pub mod admin;
pub mod agent;
pub mod backoff;
pub mod bootstrap;
pub mod cli;
pub mod commands;
pub mod config;
pub mod discovery;
pub mod drain;
pub mod env;
pub mod http;
pub mod metrics;
pub mod node;
pub mod podinfo;
pub mod probes;
pub mod proxy;
pub mod readiness;
pub mod status;

pub use cli::Cli;
