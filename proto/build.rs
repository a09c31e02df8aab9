//! Compiles the protobuf descriptor set behind `xds::json` (proto3-JSON through
//! prost-reflect).
//!
//! The `.proto` sources come from the `envoy-types` crate package itself (its `proto/`
//! directory), so the descriptors always describe exactly the Rust types we link, and no
//! copy of them lives in this repository.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;

/// Include roots inside the package's `proto/` directory, as the package lays them out.
const INCLUDE_DIRS: &[&str] = &[
    "data-plane-api",
    "xds",
    "googleapis",
    "protoc-gen-validate",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
    "ratelimit/api",
];

/// Root files; everything they import comes along. The pool must know every message an
/// `Any` may carry in what we print or read, otherwise JSON rendering of that `Any` fails.
const ROOT_FILES: &[&str] = &[
    // First: protox resolves names against everything compiled so far, and these files
    // refer to `common.ratelimit.v3` meaning `envoy.extensions.common`, which turns
    // ambiguous once any `envoy.extensions.filters.common` file (e.g. fault's) is in.
    "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
    // xDS resources, bootstrap and the ADS protocol.
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/route/v3/scoped_route.proto",
    "envoy/config/core/v3/extension.proto",
    "envoy/service/discovery/v3/discovery.proto",
    "envoy/service/discovery/v3/ads.proto",
    // Admin endpoints a proxy serves as JSON.
    "envoy/admin/v3/config_dump.proto",
    "envoy/admin/v3/config_dump_shared.proto",
    "envoy/admin/v3/clusters.proto",
    "envoy/admin/v3/listeners.proto",
    "envoy/admin/v3/server_info.proto",
    "envoy/admin/v3/certs.proto",
    // Typed configs found inside sidecar resources (HTTP filters).
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/grpc_stats/v3/config.proto",
    "envoy/extensions/filters/http/grpc_web/v3/grpc_web.proto",
    // Network and listener filters.
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    // Upstream options, transport sockets, access logs.
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/upstreams/tcp/v3/tcp_protocol_options.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/transport_sockets/tls/v3/cert.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol.proto",
    "envoy/extensions/network/dns_resolver/cares/v3/cares_dns_resolver.proto",
    "envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    // Small extensions Istio puts into routes, HCMs and bootstraps.
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
    "envoy/extensions/request_id/uuid/v3/uuid.proto",
    "envoy/extensions/bootstrap/internal_listener/v3/internal_listener.proto",
    "envoy/extensions/http/header_formatters/preserve_case/v3/preserve_case.proto",
    "envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto",
    "envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto",
    "envoy/config/trace/v3/zipkin.proto",
    "envoy/config/trace/v3/opentelemetry.proto",
    "envoy/config/metrics/v3/metrics_service.proto",
    // Well-known types a JSON `Any` may name directly.
    "google/protobuf/any.proto",
    "google/protobuf/duration.proto",
    "google/protobuf/empty.proto",
    "google/protobuf/struct.proto",
    "google/protobuf/timestamp.proto",
    "google/protobuf/wrappers.proto",
];

const PROTO_DIR_ENV: &str = "STRAIT_ENVOY_PROTO_DIR";
const OUTPUT_FILE: &str = "envoy_descriptor_set.bin";

fn main() {
    if let Err(message) = run() {
        // A build script reports failure by exiting non-zero; the message is what the
        // user sees, so it has to say how to fix the problem.
        eprintln!("error: strait-proto build script: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={PROTO_DIR_ENV}");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");

    let proto_dir = locate_proto_dir()?;
    let includes: Vec<PathBuf> = INCLUDE_DIRS.iter().map(|d| proto_dir.join(d)).collect();
    for dir in &includes {
        if !dir.is_dir() {
            return Err(format!(
                "{} has no {} directory; is it the proto/ directory of the envoy-types package?",
                proto_dir.display(),
                dir.display()
            ));
        }
    }

    let mut compiler = protox::Compiler::new(&includes).map_err(|e| e.to_string())?;
    // Source info (comments, spans) would only add bytes: JSON needs none of it.
    compiler.include_imports(true).include_source_info(false);
    compiler
        .open_files(ROOT_FILES)
        .map_err(|e| format!("compiling Envoy protos from {}: {e:?}", proto_dir.display()))?;

    let bytes = compiler.file_descriptor_set().encode_to_vec();

    let out_dir = env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?;
    let out = Path::new(&out_dir).join(OUTPUT_FILE);
    fs::write(&out, &bytes).map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(())
}

/// Finds the `proto/` directory of the `envoy-types` package that this build links.
fn locate_proto_dir() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os(PROTO_DIR_ENV) {
        let dir = PathBuf::from(dir);
        if dir.is_dir() {
            return Ok(dir);
        }
        return Err(format!(
            "{PROTO_DIR_ENV}={} is not a directory",
            dir.display()
        ));
    }

    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?;
    let lock = find_lockfile(Path::new(&manifest_dir)).ok_or_else(|| {
        format!(
            "no Cargo.lock above {}; set {PROTO_DIR_ENV} to the proto/ directory of the \
             envoy-types package",
            Path::new(&manifest_dir).display()
        )
    })?;
    println!("cargo:rerun-if-changed={}", lock.display());
    let lock_text =
        fs::read_to_string(&lock).map_err(|e| format!("reading {}: {e}", lock.display()))?;
    let version = locked_version(&lock_text, "envoy-types")
        .ok_or_else(|| format!("{} does not list envoy-types", lock.display()))?;

    let cargo_home = cargo_home()
        .ok_or_else(|| format!("neither CARGO_HOME nor HOME is set; set {PROTO_DIR_ENV}"))?;
    let registry_src = cargo_home.join("registry").join("src");
    let package = format!("envoy-types-{version}");
    let mut searched = Vec::new();
    if let Ok(entries) = fs::read_dir(&registry_src) {
        for entry in entries.flatten() {
            let candidate = entry.path().join(&package).join("proto");
            if candidate.is_dir() {
                return Ok(candidate);
            }
            searched.push(candidate);
        }
    }
    Err(format!(
        "cannot find the .proto sources of {package} (searched {} under {}); run `cargo fetch` \
         or set {PROTO_DIR_ENV} to the proto/ directory of the envoy-types {version} package",
        if searched.is_empty() {
            "no registry directories".to_string()
        } else {
            format!("{} registry directories", searched.len())
        },
        registry_src.display()
    ))
}

fn find_lockfile(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join("Cargo.lock"))
        .find(|candidate| candidate.is_file())
}

/// The version of `name` in a Cargo.lock. Only registry packages matter here, and a
/// workspace links one envoy-types, so the first match is the one.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line == wanted {
            let version = lines.next()?.strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_string());
        }
    }
    None
}

fn cargo_home() -> Option<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home));
    }
    env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo"))
}
