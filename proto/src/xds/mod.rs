//! xDS helpers around the `envoy-types` messages: type URLs and their Istio short names,
//! packing into `Any`, and proto3-JSON in the shapes Envoy and istioctl print.

pub mod any;
mod error;
pub mod json;
mod pool;
pub mod type_url;

pub use error::XdsError;
pub use pool::descriptor_pool;
