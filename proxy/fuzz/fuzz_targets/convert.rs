//! Arbitrary bytes as a Listener, RouteConfiguration, Cluster, ClusterLoadAssignment or
//! Bootstrap (chosen by the first byte), converted: must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strait_proxy::convert::fuzz_entry(data);
});
