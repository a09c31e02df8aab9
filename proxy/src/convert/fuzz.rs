//! The entry point shared by the cargo-fuzz target and the deterministic smoke test:
//! arbitrary bytes must never make conversion panic.

use prost::Message;
use strait_proto::envoy::config::bootstrap::v3::Bootstrap;
use strait_proto::xds::type_url;

use super::{bootstrap, resource};

/// The first byte picks the message type (Listener, RouteConfiguration, Cluster,
/// ClusterLoadAssignment, Bootstrap); the rest is decoded as that message and, if it
/// decodes, converted. The result is discarded: only panics matter.
pub fn fuzz_entry(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let url = match selector % 5 {
        0 => type_url::LISTENER,
        1 => type_url::ROUTE,
        2 => type_url::CLUSTER,
        3 => type_url::ENDPOINT,
        _ => {
            if let Ok(b) = Bootstrap::decode(rest) {
                let _ = bootstrap::bootstrap(&b);
            }
            return;
        }
    };
    let _ = resource::decode(url, rest);
}
