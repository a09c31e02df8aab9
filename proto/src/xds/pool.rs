//! The descriptor pool compiled by build.rs from the `.proto` files that ship with
//! `envoy-types`.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use super::XdsError;

static DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor_set.bin"));

static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();

/// The pool describing the Envoy messages strait-proto can print and read as JSON; built
/// on first use and shared afterwards.
pub fn descriptor_pool() -> Result<&'static DescriptorPool, XdsError> {
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| XdsError::Pool(e.clone()))
}

pub(super) fn message_descriptor(full_name: &str) -> Result<MessageDescriptor, XdsError> {
    descriptor_pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| XdsError::UnknownType {
            type_name: full_name.to_string(),
        })
}
