//! Transport sockets: strait-proxy neither terminates nor originates TLS yet, but keeps
//! track of where it is configured. `raw_buffer` is plaintext and counts as none.

use strait_proto::envoy::config::core::v3::{TransportSocket, transport_socket};
use strait_proto::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use strait_proto::xds::any;

const RAW_BUFFER_NAMES: [&str; 2] = ["envoy.transport_sockets.raw_buffer", "raw_buffer"];

/// Whether the socket is anything but plaintext.
pub fn is_secure(ts: Option<&TransportSocket>) -> bool {
    let Some(ts) = ts else { return false };
    match &ts.config_type {
        Some(transport_socket::ConfigType::TypedConfig(a)) => !any::is::<RawBuffer>(a),
        None => !RAW_BUFFER_NAMES.contains(&ts.name.as_str()),
    }
}
