//! `envoy.filters.network.http_connection_manager` and the router's I/O: serving HTTP/1.1
//! connections with hyper and HTTP/2 ones with `h2`, carrying out the [`crate::router`]'s
//! decisions (local replies, faults, forwarding with retries and timeouts, mirrors,
//! upgrades), and per-worker upstream connection pools.
//!
//! Layout, in the order a request meets it: [`server`] (connections, codecs, idle
//! timers; [`h2_downstream`] for HTTP/2), [`stream`] (one request: header mutation,
//! routing, local replies), [`forward`] (attempts, retries, timeouts), [`pool`] (upstream
//! connections; [`h2_upstream`] for HTTP/2), [`mirror`] and [`upgrade`]; the bodies that
//! thread through them live in [`body`], [`h2_body`], [`replay`] and [`response`];
//! [`observer`] is what access logs and stats see of a finished request.

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
