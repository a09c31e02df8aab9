//! What pilot-discovery serves in the data-plane bench: one service `echo` with two
//! ports (`http` for HTTP/1.1, `http2` for HTTP/2 end to end) backed by one pod, and
//! the client pod that sends the load, as `kubectl apply` would take them. The
//! 1000-service config for the memory figure is `crate::mesh::Scenario::issue()`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};

pub const NAMESPACE: &str = "default";
pub const SERVICE: &str = "echo";
pub const SERVER_POD: &str = "echo-v1";
pub const CLIENT_POD: &str = "client-v1";
pub const CLIENT_APP: &str = "client";
/// The service's ClusterIP; the client namespace redirects this range to 15001.
pub const SERVICE_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Port named `http`: Istio treats it as HTTP/1.1 between the sidecars.
pub const HTTP1_PORT: u16 = 8080;
/// Port named `http2`: HTTP/2 on every hop.
pub const HTTP2_PORT: u16 = 8081;
/// Envoy's (and Istio's) capture ports.
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
pub const INBOUND_CAPTURE_PORT: u16 = 15006;

/// The `Host` / `:authority` the load generator sends.
pub fn authority(port: u16) -> String {
    format!("{SERVICE}.{NAMESPACE}.svc.cluster.local:{port}")
}

/// Where the load generator connects: the VIP, captured by the client's sidecar.
pub fn target(port: u16) -> SocketAddr {
    SocketAddr::from((SERVICE_VIP, port))
}

/// The config files: (file name, YAML).
pub fn files(client_ip: Ipv4Addr, server_ip: Ipv4Addr) -> Vec<(String, String)> {
    vec![
        ("echo-service.yaml".to_string(), service()),
        (
            "pods.yaml".to_string(),
            format!(
                "{}---\n{}",
                pod(SERVER_POD, SERVICE, server_ip, &[HTTP1_PORT, HTTP2_PORT]),
                pod(CLIENT_POD, CLIENT_APP, client_ip, &[])
            ),
        ),
    ]
}

fn service() -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {SERVICE}
  namespace: {NAMESPACE}
  labels: {{app: {SERVICE}}}
spec:
  clusterIP: {SERVICE_VIP}
  selector: {{app: {SERVICE}}}
  ports:
  - name: http
    port: {HTTP1_PORT}
    targetPort: {HTTP1_PORT}
  - name: http2
    port: {HTTP2_PORT}
    targetPort: {HTTP2_PORT}
"
    )
}

fn pod(name: &str, app: &str, ip: Ipv4Addr, ports: &[u16]) -> String {
    let mut y = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {NAMESPACE}
  labels: {{app: {app}, version: v1}}
spec:
  containers:
  - name: {app}
    image: bench/{app}:v1
"
    );
    if !ports.is_empty() {
        y.push_str("    ports:\n");
        for p in ports {
            // Writing into a String cannot fail.
            let _ = writeln!(y, "    - containerPort: {p}");
        }
    }
    let _ = write!(y, "status:\n  phase: Running\n  podIP: {ip}\n");
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_yaml_with_the_addresses() {
        let files = files(Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3));
        let mut kinds = Vec::new();
        for (_, text) in &files {
            for doc in text.split("---\n") {
                let v: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
                kinds.push(v["kind"].as_str().unwrap().to_string());
                if v["kind"] == "Pod" {
                    let ip = v["status"]["podIP"].as_str().unwrap();
                    let name = v["metadata"]["name"].as_str().unwrap();
                    let want = if name == SERVER_POD {
                        "10.9.0.3"
                    } else {
                        "10.9.0.2"
                    };
                    assert_eq!(ip, want);
                }
                if v["kind"] == "Service" {
                    let ports = v["spec"]["ports"].as_sequence().unwrap();
                    assert_eq!(ports[1]["name"], "http2");
                    assert_eq!(v["spec"]["clusterIP"], "10.96.0.20");
                }
            }
        }
        assert_eq!(kinds, ["Service", "Pod", "Pod"]);
        assert_eq!(target(HTTP2_PORT).to_string(), "10.96.0.20:8081");
    }
}
