//! The xDS client: one ADS stream (state of the world or delta) to the control plane.
//!
//! - `handler`: the interface the rest of the proxy implements to apply updates.
//! - `resource`: response resources → named updates, with the checks Envoy makes first.
//! - `state`: per-type subscription, version and nonce state; the pure protocol core,
//!   with `sotw` and `delta` holding each protocol's request/response rules.
//! - `readiness`: Envoy's initialization rule (clusters and listeners warmed).
//! - `backoff`: reconnect delays.
//! - `stats`: update counters and the connected state, as Envoy names them.
//! - `client`: the I/O loop around all of the above.

mod backoff;
pub mod client;
mod delta;
pub mod handler;
pub mod readiness;
mod resource;
mod sotw;
pub mod state;
pub mod stats;

pub use backoff::Backoff;
pub use client::{ApiType, XdsClient, XdsClientError, XdsConfig};
pub use handler::{Rejected, ResourceUpdate, XdsHandler};
pub use state::AdsState;
pub use stats::{TypeStats, XdsStats};

/// The types the client subscribes to, in the order Envoy requests them on a stream:
/// clusters before the endpoints that warm them, listeners before their routes.
pub const TYPES: [&str; 4] = [
    strait_proto::xds::type_url::CLUSTER,
    strait_proto::xds::type_url::ENDPOINT,
    strait_proto::xds::type_url::LISTENER,
    strait_proto::xds::type_url::ROUTE,
];
