//! xDS helpers.
