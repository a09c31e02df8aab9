//! The committed CRDs (`charts/base/files/crd-all.gen.yaml`) must be what the types generate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn committed_crds_match_the_types() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/base/files/crd-all.gen.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = strait_proto::istio::crd_manifests();
    assert!(
        committed == generated,
        "{path} is missing or out of date with the Istio types; regenerate it with\n\n    \
         cargo run -p strait-proto --bin gen-crds > charts/base/files/crd-all.gen.yaml\n"
    );
}
