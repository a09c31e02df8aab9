//! Doing a kubelet's part through the API: Nodes that exist and Pods whose
//! status says where they run and whether they are ready.

use std::net::IpAddr;

use anyhow::Result;
use serde_json::json;

use super::KubeCluster;

impl KubeCluster {
    /// Creates (or updates) Node `name` with a `Ready=True` condition. Pods
    /// must name an existing Node in `spec.nodeName` for the EndpointSlice
    /// controller to list them. The Node stays Ready: the controllers that
    /// would react to its missing heartbeats are not run.
    pub async fn add_node(&self, name: &str) -> Result<()> {
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        });
        self.apply(&node.to_string()).await?;
        let status = json!({
            "status": {
                "conditions": [{
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "set by the strait e2e harness",
                }],
            }
        });
        self.kubectl(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "--patch",
            &status.to_string(),
        ])
        .await?;
        Ok(())
    }

    /// Sets Pod `namespace/name`'s status as its kubelet would once the
    /// containers run: phase Running, `podIP`/`podIPs` = `ip`, and the `Ready`
    /// and `ContainersReady` conditions to `ready`.
    pub async fn set_pod_status(
        &self,
        namespace: &str,
        name: &str,
        ip: IpAddr,
        ready: bool,
    ) -> Result<()> {
        let condition = if ready { "True" } else { "False" };
        let status = json!({
            "status": {
                "phase": "Running",
                "podIP": ip.to_string(),
                "podIPs": [{"ip": ip.to_string()}],
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "ContainersReady", "status": condition},
                    {"type": "Ready", "status": condition},
                ],
            }
        });
        self.kubectl(&[
            "patch",
            "pod",
            name,
            "--namespace",
            namespace,
            "--subresource=status",
            "--type=merge",
            "--patch",
            &status.to_string(),
        ])
        .await?;
        Ok(())
    }
}
