//! The APIs Strait speaks: Envoy's xDS v3 (re-exported from `envoy-types`, plus type
//! URLs, `Any` packing and proto3-JSON), and Istio's config kinds as validated serde types.

pub use envoy_types;
pub use envoy_types::pb::envoy;
pub use envoy_types::pb::google;

pub mod istio;
pub mod xds;
