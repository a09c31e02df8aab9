//! The Aggregated Discovery Service: SotW and Delta ADS streams over one gRPC service,
//! with Istio's ACK/NACK rules, push ordering, push queue and throttle (inventory §5, §6).
//!
//! - `watch`: per-type subscription state and the decisions requests lead to.
//! - `sotw`, `delta`: the protocol state machines, pure and unit-tested.
//! - `version`: content hashes that let delta pushes skip unchanged resources.
//! - `queue`: the de-duplicating push queue.
//! - `connection`: the per-stream task (requests, pushes, sends).
//! - `server`: `XdsServer`, the tonic service and the throttled push sender.

mod connection;
pub mod delta;
mod node;
pub mod queue;
mod server;
pub mod sotw;
pub mod version;
pub mod watch;

pub use node::{proxy_from_node, struct_to_json};
pub use server::{AdsService, MAX_RECV_MSG_SIZE, XdsOptions, XdsServer};
