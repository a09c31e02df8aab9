//! `meshConfig.accessLogFile`: pilot-discovery gives every HTTP connection manager and
//! `tcp_proxy` a file access logger in Istio's default format. A stock Envoy must accept
//! it and write one line per request; strait-proxy must write the same fields.
//! Needs root and Envoy 1.40.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strait_e2e::mesh::{BookinfoMesh, MeshOptions, SidecarKind};
use strait_e2e::workdir::WorkDir;
use strait_e2e::{AdsApi, RequestSpec, wait_until};

const CONFIGURED: Duration = Duration::from_secs(30);

/// The fields of Istio's default TEXT line, in order; the quoted ones keep their spaces.
const FIELDS: &[&str] = &[
    "start_time",
    "method",
    "path",
    "protocol",
    "response_code",
    "response_flags",
    "response_code_details",
    "connection_termination_details",
    "upstream_transport_failure_reason",
    "bytes_received",
    "bytes_sent",
    "duration",
    "upstream_service_time",
    "x_forwarded_for",
    "user_agent",
    "request_id",
    "authority",
    "upstream_host",
    "upstream_cluster",
    "upstream_local_address",
    "downstream_local_address",
    "downstream_remote_address",
    "requested_server_name",
    "route_name",
];

/// The fields that do not depend on timing, ids or ephemeral ports.
const COMPARED: &[&str] = &[
    "method",
    "path",
    "protocol",
    "response_code",
    "response_flags",
    "response_code_details",
    "upstream_transport_failure_reason",
    "bytes_received",
    "x_forwarded_for",
    "user_agent",
    "authority",
    "upstream_cluster",
    "downstream_local_address",
    "requested_server_name",
    "route_name",
];

/// Splits a TEXT line into its fields: `[time]`, `"quoted strings"` and bare tokens.
fn split_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim_end();
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (field, tail) = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').expect("closing bracket");
            (r[..end].to_string(), &r[end + 1..])
        } else if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').expect("closing quote");
            (r[..end].to_string(), &r[end + 1..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        out.push(field);
        rest = tail;
    }
    // `"METHOD PATH PROTOCOL"` is one quoted field holding three.
    let first = out.remove(1);
    for (i, part) in first.splitn(3, ' ').enumerate() {
        out.insert(1 + i, part.to_string());
    }
    out
}

fn field<'a>(line: &'a [String], name: &str) -> &'a str {
    let i = FIELDS.iter().position(|f| *f == name).unwrap();
    &line[i]
}

async fn run(sidecar: SidecarKind, api: AdsApi) -> Vec<Vec<String>> {
    let dir = WorkDir::new("mesh-access-log").unwrap();
    // The sidecars run as Istio's proxy user (1337), not root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let log: PathBuf = dir.path().join("access.log");
    let mesh_file = dir.path().join("mesh");
    std::fs::write(&mesh_file, format!("accessLogFile: {}\n", log.display())).unwrap();
    let mesh = BookinfoMesh::start(MeshOptions {
        api,
        sidecar,
        pilot_args: vec![format!("--meshConfig={}", mesh_file.display())],
        ..Default::default()
    })
    .await
    .expect("mesh starts");
    mesh.wait_configured(CONFIGURED)
        .await
        .expect("sidecar configured");

    let details = BookinfoMesh::service_addr("details");
    let productpage = BookinfoMesh::service_addr("productpage");
    let send = async |host: &str, path: &str, to: SocketAddr| {
        let spec = RequestSpec::get(host, path).header("user-agent", "strait-e2e");
        mesh.client.send(to, &spec).await.unwrap().status
    };
    assert_eq!(send("details:9080", "/a", details).await, 200);
    assert_eq!(send("details:9080", "/b?x=1", details).await, 200);
    // productpage's only endpoint is the client's own pod, where nothing listens.
    assert_eq!(send("productpage:9080", "/", productpage).await, 503);

    let lines = wait_for_lines(&log, 3).await;
    assert_eq!(lines.len(), 3, "{sidecar:?}: one line per request");
    lines
}

async fn wait_for_lines(log: &Path, n: usize) -> Vec<Vec<String>> {
    let read = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(split_line)
            .collect::<Vec<_>>()
    };
    wait_until("access log lines", Duration::from_secs(10), || async {
        Ok(read().len() >= n)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}: {:?}", std::fs::read_to_string(log)));
    read()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_access_log_matches_envoy() {
    let (envoy, strait, strait_delta) = tokio::join!(
        run(SidecarKind::Envoy, AdsApi::Sotw),
        run(SidecarKind::Strait, AdsApi::Sotw),
        run(SidecarKind::Strait, AdsApi::Delta),
    );
    assert_eq!(field(&envoy[2], "response_code"), "503");
    assert_eq!(
        field(&envoy[2], "upstream_transport_failure_reason"),
        "delayed_connect_error:_Connection_refused"
    );
    for line in &envoy[..2] {
        assert_eq!(line.len(), FIELDS.len(), "Envoy's line: {line:?}");
        assert_eq!(field(line, "response_code"), "200");
        assert_eq!(
            field(line, "upstream_cluster"),
            "outbound|9080||details.default.svc.cluster.local"
        );
        assert_eq!(field(line, "user_agent"), "strait-e2e");
    }
    for ours in [&strait, &strait_delta] {
        for (e, s) in envoy.iter().zip(ours) {
            assert_eq!(s.len(), FIELDS.len(), "strait-proxy's line: {s:?}");
            for name in COMPARED {
                assert_eq!(
                    field(s, name),
                    field(e, name),
                    "field {name}: envoy {e:?} strait {s:?}"
                );
            }
            assert!(!field(s, "upstream_host").is_empty());
            assert_eq!(field(s, "request_id").len(), 36, "a UUID: {s:?}");
        }
    }
    assert_eq!(field(&envoy[1], "path"), "/b?x=1");
}
