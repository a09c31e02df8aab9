//! Objects cut down to what the registry reads before they are stored: managed
//! fields, `kubectl apply`'s copy of the object, and most of a Pod's spec and status
//! are a large share of an object's size and never read.

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub fn meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// The same for an object held as JSON (Istio config).
pub fn json(object: &mut serde_json::Value) {
    let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut()) else {
        return;
    };
    meta.remove("managedFields");
    if let Some(annotations) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
        annotations.remove(LAST_APPLIED);
    }
}

/// A Pod keeps its identity and labels, its node and service account, its containers'
/// ports (named target ports resolve through them), its IPs and its conditions.
pub fn pod(pod: Pod) -> Pod {
    let Pod {
        mut metadata,
        spec,
        status,
    } = pod;
    meta(&mut metadata);
    let spec = spec.map(|s| PodSpec {
        node_name: s.node_name,
        service_account_name: s.service_account_name,
        host_network: s.host_network,
        containers: s
            .containers
            .into_iter()
            .map(|c| Container {
                name: c.name,
                ports: c.ports.map(|ports| {
                    ports
                        .into_iter()
                        .map(|p| ContainerPort {
                            name: p.name,
                            container_port: p.container_port,
                            protocol: p.protocol,
                            ..Default::default()
                        })
                        .collect()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    let status = status.map(|s| PodStatus {
        phase: s.phase,
        pod_ip: s.pod_ip,
        pod_ips: s.pod_ips,
        host_ip: s.host_ip,
        conditions: s.conditions.map(|conditions| {
            conditions
                .into_iter()
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    });
    Pod {
        metadata,
        spec,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_keep_what_the_registry_reads() {
        let full: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "p", "namespace": "ns", "labels": {"app": "a"},
                "annotations": {
                    "sidecar.istio.io/inject": "true",
                    "kubectl.kubernetes.io/last-applied-configuration": "{...}"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {
                "nodeName": "n1", "serviceAccountName": "sa",
                "containers": [{"name": "c", "image": "img", "env": [{"name": "X", "value": "1"}],
                                "ports": [{"name": "web", "containerPort": 8080, "hostPort": 80}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
                "containerStatuses": [{"name": "c", "image": "img", "imageID": "", "ready": true, "restartCount": 0}]
            }
        }))
        .unwrap();
        let small = pod(full);
        let json = serde_json::to_value(&small).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "a"},
                             "annotations": {"sidecar.istio.io/inject": "true"}},
                "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                         "containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": "10.0.0.1",
                           "conditions": [{"type": "Ready", "status": "True"}]}
            })
        );
    }

    #[test]
    fn json_objects_lose_managed_fields() {
        let mut vs = serde_json::json!({
            "metadata": {"name": "r", "managedFields": [{}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "a": "b"}},
            "spec": {}
        });
        json(&mut vs);
        assert_eq!(
            vs["metadata"],
            serde_json::json!({"name": "r", "annotations": {"a": "b"}})
        );
    }
}
