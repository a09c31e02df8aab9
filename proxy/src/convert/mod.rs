//! The conversion edge: Envoy v3 protos (from xDS or the bootstrap) → the proxy's
//! validated config types. Every rejection is a [`ConfigError`](crate::config::ConfigError)
//! naming the resource, the proto field path and the reason; that text becomes the
//! NACK's `error_detail`.
//!
//! The rule throughout: what a stock Envoy would reject is rejected; what Envoy accepts
//! and strait-proxy implements is converted with Envoy's defaults; what Envoy accepts but
//! strait-proxy does not implement is rejected when it would change how traffic flows,
//! and ignored when it would not (stats, tracing, access-log filters, ...).
//!
//! Entry points: `TryFrom<&Proto>` for [`Listener`](crate::config::listener::Listener),
//! [`RouteConfig`](crate::config::route::RouteConfig),
//! [`Cluster`](crate::config::cluster::Cluster),
//! [`ClusterLoadAssignment`](crate::config::endpoint::ClusterLoadAssignment) and
//! [`BootstrapConfig`]; [`decode`] for raw xDS bytes by type URL.
//!
//! Regexes of matchers are compiled to match whole values (`^(?:...)$`), as Envoy's
//! `safe_regex` does; rewrite regexes are kept as written and their substitutions are
//! translated to the regex crate's syntax. The regex crate's `\d`, `\w`, `\s` are
//! Unicode-aware where RE2's are ASCII-only.

// Envoy still honours deprecated proto fields (legacy header matchers, `append`, ...),
// so this edge has to read them.
#![allow(deprecated)]

mod access_log;
mod address;
pub mod bootstrap;
mod cluster;
mod cluster_http;
mod cors;
mod data_source;
mod endpoint;
mod fault;
mod fuzz;
mod hcm;
mod headers;
mod http_filters;
mod listener;
mod matcher;
mod network_filter;
mod per_filter;
mod redirect;
mod resource;
mod retry;
mod route;
mod route_action;
mod route_config;
mod tcp_proxy;
mod transport_socket;
mod wkt;

pub use bootstrap::{AdsApiType, AdsConfig, BootstrapConfig, NodeInfo};
pub use cluster::cluster;
pub use endpoint::cluster_load_assignment;
pub use fuzz::fuzz_entry;
pub use listener::listener;
pub use resource::{Resource, decode};
pub use retry::retry_on;
pub use route_config::route_config;
