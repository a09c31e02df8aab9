//! Bookinfo through pilot-discovery, shared by the conversion tests.

use std::path::Path;
use std::sync::Arc;

use strait_pilot::config::file::FileSource;
use strait_pilot::environment::Environment;
use strait_pilot::model::{Locality, Proxy, PushContext};
use strait_proto::istio::MeshConfig;

pub const PRODUCTPAGE: &str = "sidecar~10.77.0.10~productpage-v1.default~default.svc.cluster.local";

/// Bookinfo in a temporary config directory, optionally without its VirtualServices and
/// with extra files; the productpage sidecar and the push context it sees.
pub fn mesh(with_virtual_services: bool, extra: &[(&str, &str)]) -> (Proxy, Arc<PushContext>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !with_virtual_services && name == "virtual-services.yaml" {
            continue;
        }
        std::fs::copy(&path, dir.path().join(&name)).unwrap();
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let scan = FileSource::new(dir.path()).scan();
    assert!(
        scan.errors.is_empty(),
        "config errors: {:?}",
        scan.errors.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    let env = Environment::new(Arc::new(MeshConfig::default()), "cluster.local");
    env.apply_scan(scan);
    let push = Arc::new(env.build_push_context());
    let meta = serde_json::json!({"NAMESPACE": "default", "LABELS": {"app": "productpage", "version": "v1"}});
    let mut proxy = Proxy::from_node(
        PRODUCTPAGE,
        meta.as_object().cloned().unwrap(),
        Locality::default(),
    )
    .unwrap();
    proxy.service_targets = push.service_targets(&proxy);
    (proxy, push)
}
