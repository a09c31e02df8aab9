//! From change events to pushes: requests, merging, debouncing.

pub mod debounce;
pub mod request;
