//! Process-wide unique numbers, so that parallel test threads and successive
//! test binaries never pick the same namespace names or temporary directories.

use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Prefix shared by every network namespace the harness creates; stale-namespace
/// clean-up only ever considers names that start with it.
pub const NETNS_PREFIX: &str = "strait-e2e-";

/// A number unique within this process; combined with the pid it is unique on
/// the machine for as long as this process lives.
pub fn next() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The id of this process.
pub fn pid() -> u32 {
    std::process::id()
}
