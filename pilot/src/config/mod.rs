//! Config sources: manifests turned into typed objects, with last-good semantics.

pub mod file;
pub mod object;
