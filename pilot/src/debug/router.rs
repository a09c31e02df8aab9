//! The two HTTP servers' routes: `:8080` (`/ready` and the debug handlers) and `:15014`
//! (`/metrics`, `/version` and the same debug handlers), as Istio mounts them.
//!
//! Istio lets loopback callers use the debug handlers and requires the others to pass
//! an xDS authenticator. Strait has no authenticator yet, so every caller is allowed;
//! the servers should only be reachable from trusted networks until one exists.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::respond::{self, Params, Source};
use super::source::DebugSource;
use super::{adsz, config, config_dump, push_status, registry, syncz};

/// A debug command as `/debug` and `/debug/list` show it.
struct Command {
    path: &'static str,
    help: &'static str,
}

/// Every debug command served, sorted by path (help texts are Istio's).
const COMMANDS: &[Command] = &[
    Command {
        path: "/debug/adsz",
        help: "Status and debug interface for ADS",
    },
    Command {
        path: "/debug/adsz?push=true",
        help: "Initiates push of the current state to all connected endpoints",
    },
    Command {
        path: "/debug/config_dump",
        help: "ConfigDump in the form of the Envoy admin config dump API for passed in proxyID",
    },
    Command {
        path: "/debug/configz",
        help: "Debug support for config",
    },
    Command {
        path: "/debug/connections",
        help: "Info about the connected XDS clients",
    },
    Command {
        path: "/debug/edsz",
        help: "Status and debug interface for EDS",
    },
    Command {
        path: "/debug/endpointShardz",
        help: "Info about the endpoint shards",
    },
    Command {
        path: "/debug/endpointz",
        help: "Obsolete, use endpointShardz",
    },
    Command {
        path: "/debug/instancesz",
        help: "Debug support for service instances",
    },
    Command {
        path: "/debug/list",
        help: "List all supported debug commands in json",
    },
    Command {
        path: "/debug/mesh",
        help: "Active mesh config",
    },
    Command {
        path: "/debug/push_status",
        help: "Last PushContext Details",
    },
    Command {
        path: "/debug/registryz",
        help: "Debug support for registry",
    },
    Command {
        path: "/debug/resourcesz",
        help: "Debug support for watched resources",
    },
    Command {
        path: "/debug/syncz",
        help: "Synchronization status of all Envoys connected to this Pilot instance",
    },
];

/// The version line Istio's `/version` prints: `<version>-<git revision>-<build status>`.
pub fn build_version() -> String {
    format!(
        "{}-{}-{}",
        env!("CARGO_PKG_VERSION"),
        option_env!("STRAIT_GIT_REVISION").unwrap_or("unknown"),
        option_env!("STRAIT_BUILD_STATUS").unwrap_or("unknown"),
    )
}

fn debug_routes() -> Router<Source> {
    Router::new()
        .route("/debug", get(index))
        .route("/debug/list", get(list))
        .route("/debug/adsz", get(adsz::adsz))
        .route("/debug/connections", get(adsz::connections))
        .route("/debug/syncz", get(syncz::syncz))
        .route("/debug/config_dump", get(config_dump::config_dump))
        .route("/debug/edsz", get(config_dump::edsz))
        .route("/debug/registryz", get(registry::registryz))
        .route("/debug/endpointShardz", get(registry::endpoint_shardz))
        .route("/debug/endpointz", get(registry::endpoint_shardz))
        .route("/debug/instancesz", get(registry::instancesz))
        .route("/debug/configz", get(config::configz))
        .route("/debug/resourcesz", get(config::resourcesz))
        .route("/debug/mesh", get(config::mesh))
        .route("/debug/push_status", get(push_status::push_status))
}

/// The `:8080` server: `/ready` and the debug handlers.
pub fn debug_router(source: std::sync::Arc<dyn DebugSource>) -> Router {
    debug_routes()
        .route("/ready", get(ready))
        .with_state(source)
}

/// The `:15014` monitoring server: `/metrics`, `/version` and the debug handlers.
pub fn monitoring_router(source: std::sync::Arc<dyn DebugSource>) -> Router {
    debug_routes()
        .route("/metrics", get(metrics))
        .route("/version", get(version))
        .with_state(source)
}

async fn ready(State(source): State<Source>) -> Response {
    match source.ready() {
        Ok(()) => StatusCode::OK.into_response(),
        Err(reason) => respond::text(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn metrics(State(source): State<Source>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        source.metrics_text(),
    )
        .into_response()
}

async fn version() -> Response {
    respond::text(StatusCode::OK, build_version())
}

/// `/debug/list`: command names without the `/debug/` prefix, except `list` itself.
async fn list(Query(params): Query<Params>) -> Response {
    let names: Vec<&str> = COMMANDS
        .iter()
        .map(|c| c.path.trim_start_matches("/debug/"))
        .filter(|name| *name != "list")
        .collect();
    respond::json(&names, &params)
}

/// `/debug`: an HTML table of the commands.
async fn index() -> Html<String> {
    let mut rows = String::new();
    for c in COMMANDS {
        rows.push_str(&format!(
            "<tr><td><a href='{path}'>{path}</a></td><td>{help}</td></tr>\n",
            path = escape(c.path),
            help = escape(c.help),
        ));
    }
    Html(format!(
        "<html>\n<head>\n<title>Pilot Debug Console</title>\n</head>\n<body>\n\
         <p>Note: Use <b>pretty</b> in query string (like <b>debug/configz?pretty</b>) to format the output.</p>\n\
         <table id=\"endpoints\">\n<tr><th>Endpoint</th><th>Description</th></tr>\n{rows}</table>\n</body>\n</html>\n"
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_sorted_and_unique() {
        let paths: Vec<&str> = COMMANDS.iter().map(|c| c.path).collect();
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(paths, sorted);
    }

    #[test]
    fn version_has_three_parts() {
        assert!(build_version().starts_with(env!("CARGO_PKG_VERSION")));
        assert_eq!(build_version().matches('-').count(), 2);
    }
}
