//! Watching Istio's CRDs: which of them exist (a metadata watch on
//! CustomResourceDefinitions) and, for each that does, its objects. A CRD installed
//! later is picked up then; a CRD removed takes its objects with it. Initial sync
//! waits for the kinds whose CRD existed at start, as Istio skips absent ones.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::watcher::{self, watcher};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::crd::{CrdKind, GROUP, VERSION, kind_by_crd_name};
use crate::metrics::{K8sEvents, Metrics};
use crate::registry::kube_watch::{CRDS, Delta, Update, UpdateSender, drive, shrink_json};

/// Runs until the updates' receiver is gone.
pub async fn run(client: kube::Client, tx: UpdateSender, metrics: Arc<Metrics>) {
    let mut running: HashMap<&'static str, JoinHandle<()>> = HashMap::new();
    let mut synced = false;
    let crds = watcher(
        Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    drive(CRDS, crds, None, |delta| {
        let result = match delta {
            Delta::Apply(meta) => {
                let name = meta.metadata.name.as_deref().unwrap_or_default();
                let Some(kind) = kind_by_crd_name(name) else {
                    return true;
                };
                if meta.metadata.deletion_timestamp.is_some() {
                    stop(&mut running, kind, &tx)
                } else if running.contains_key(kind.kind) {
                    Ok(())
                } else {
                    info!(kind = kind.kind, "watching Istio config");
                    let expect = if synced {
                        Ok(())
                    } else {
                        tx.send(Update::Expect(kind.kind))
                    };
                    running.insert(
                        kind.kind,
                        tokio::spawn(watch_kind(
                            client.clone(),
                            kind,
                            tx.clone(),
                            metrics.k8s_cfg_events(kind.kind),
                        )),
                    );
                    expect
                }
            }
            Delta::Delete((_, name)) => match kind_by_crd_name(&name) {
                Some(kind) => stop(&mut running, kind, &tx),
                None => Ok(()),
            },
            Delta::Synced => {
                if synced {
                    Ok(())
                } else {
                    synced = true;
                    tx.send(Update::Synced(CRDS))
                }
            }
        };
        result.is_ok()
    })
    .await;
    for task in running.values() {
        task.abort();
    }
}

fn stop(
    running: &mut HashMap<&'static str, JoinHandle<()>>,
    kind: CrdKind,
    tx: &UpdateSender,
) -> Result<(), tokio::sync::mpsc::error::SendError<Update>> {
    let Some(task) = running.remove(kind.kind) else {
        return Ok(());
    };
    warn!(kind = kind.kind, "the CRD was removed; its config is gone");
    task.abort();
    tx.send(Update::ConfigKindGone(kind.kind))
}

async fn watch_kind(client: kube::Client, kind: CrdKind, tx: UpdateSender, events: K8sEvents) {
    let api_version = format!("{GROUP}/{VERSION}");
    let resource = ApiResource {
        group: GROUP.to_string(),
        version: VERSION.to_string(),
        api_version: api_version.clone(),
        kind: kind.kind.to_string(),
        plural: kind.plural.to_string(),
    };
    let objects = watcher(
        Api::<DynamicObject>::all_with(client, &resource),
        watcher::Config::default().any_semantic(),
    );
    drive(kind.kind, objects, Some(events), |delta| {
        let delta = match delta {
            Delta::Apply(object) => match as_json(object, &api_version, kind.kind) {
                Some(json) => Delta::Apply(json),
                None => return true,
            },
            Delta::Delete(key) => Delta::Delete(key),
            Delta::Synced => Delta::Synced,
        };
        tx.send(Update::Config {
            kind: kind.kind,
            delta,
        })
        .is_ok()
    })
    .await;
}

/// The object as a manifest: `apiVersion`, `kind`, `metadata`, `spec`, ...
fn as_json(object: DynamicObject, api_version: &str, kind: &str) -> Option<serde_json::Value> {
    let mut json = match serde_json::to_value(&object) {
        Ok(json) => json,
        Err(error) => {
            warn!(kind, name = ?object.metadata.name, %error, "unreadable object skipped");
            return None;
        }
    };
    let map = json.as_object_mut()?;
    map.entry("apiVersion")
        .or_insert_with(|| api_version.into());
    map.entry("kind").or_insert_with(|| kind.into());
    shrink_json(&mut json);
    Some(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_objects_become_manifests() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r", "namespace": "default", "managedFields": [{}]},
            "spec": {"hosts": ["r"]}
        }))
        .unwrap();
        let json = as_json(object, "networking.istio.io/v1", "VirtualService").unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "r", "namespace": "default"},
                "spec": {"hosts": ["r"]}
            })
        );
    }
}
