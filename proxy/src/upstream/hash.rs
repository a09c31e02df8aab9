//! The hash function of the consistent-hash load balancers.
//!
//! Envoy hashes ring/Maglev host keys and request hash-policy inputs with xxHash64 (seed
//! 0 unless noted); using the same function keeps a given request key on the same host as
//! a stock Envoy would pick for the same host set. The router's hash policy should use
//! [`xxhash64`] and [`combine`] so its request hashes land on these rings the same way.

pub fn xxhash64(data: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(data, seed)
}

/// Folds another hash-policy result into an accumulated one, as Envoy does when a route
/// has several hash policies: rotate left by one, then xor.
pub fn combine(accumulated: u64, next: u64) -> u64 {
    accumulated.rotate_left(1) ^ next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_reference_vectors() {
        // Published xxHash64 test vectors.
        assert_eq!(xxhash64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxhash64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn combine_is_order_sensitive() {
        assert_ne!(combine(combine(0, 1), 2), combine(combine(0, 2), 1));
        assert_eq!(combine(0, 5), 5);
    }
}
