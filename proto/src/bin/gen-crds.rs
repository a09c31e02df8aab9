//! Prints the CustomResourceDefinitions of Strait's Istio kinds as multi-document YAML.
//!
//! `cargo run -p strait-proto --bin gen-crds > charts/base/files/crd-all.gen.yaml`

fn main() {
    print!("{}", strait_proto::istio::crd_manifests());
}
