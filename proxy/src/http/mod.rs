//! `envoy.filters.network.http_connection_manager` and the router's I/O: serving HTTP/1.1
//! and HTTP/2 connections with hyper, carrying out the [`crate::router`]'s decisions
//! (local replies, faults, forwarding with retries and timeouts, mirrors, upgrades), and
//! per-worker upstream connection pools.
//!
//! Layout, in the order a request meets it: [`server`] (connections, codecs, idle
//! timers), [`stream`] (one request: header mutation, routing, local replies), [`forward`]
//! (attempts, retries, timeouts), [`pool`] (upstream connections), [`mirror`] and
//! [`upgrade`]; the bodies that thread through them live in [`body`], [`replay`] and
//! [`response`]; [`observer`] is what access logs and stats see of a finished request.

pub mod body;
pub mod coalesce;
pub mod connect;
pub mod forward;
pub mod h2_body;
pub mod h2_downstream;
pub mod h2_upstream;
pub mod hash;
pub mod local;
pub mod mirror;
pub mod observer;
pub mod path;
pub mod pool;
pub mod progress;
pub mod replay;
pub mod reset;
pub mod response;
pub mod routes;
pub mod server;
pub mod stream;
#[cfg(test)]
mod test_support;
pub mod upgrade;

pub use observer::{RequestInfo, RequestObserver, ResponseFlag, ResponseFlags};
pub use routes::{RouteTable, new_route_table};
pub use server::HttpService;
