//! Envoy's admin interface: `/config_dump`, `/stats`, `/stats/prometheus`, `/clusters`,
//! `/listeners`, `/ready`, `/server_info`, `/quitquitquit`, `/drain_listeners`,
//! `/logging`, `/healthcheck/*`, `/memory`.
//!
//! - `source`: [`AdminSource`], what the proxy provides (state, dumps, callbacks).
//! - `handler`: [`Admin`], the endpoints as a function of the request line.
//! - `config_dump`, `clusters`: the bigger outputs.
//! - `server`: [`AdminServer`], the HTTP/1.1 listener.

pub mod clusters;
pub mod config_dump;
pub mod handler;
pub mod server;
pub mod source;

pub use handler::{Admin, AdminResponse};
pub use server::AdminServer;
pub use source::{
    AdminSource, ClusterEntry, DrainOptions, DumpedResource, ListenerEntry, LoggingChange,
    ResourceDump, ServerDetails,
};
