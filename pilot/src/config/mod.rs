//! Config sources: manifests turned into typed objects, with last-good semantics.

pub mod crd;
pub mod crd_watch;
pub mod file;
pub mod object;
