//! The admin endpoints as a plain function of method, path and query, so every
//! endpoint is testable without a socket. Paths match exactly (the query aside);
//! endpoints that change the server require POST and answer anything else with 405,
//! as Envoy does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, StatusCode};
use regex::Regex;
use serde_json::{Value as Json, json};
use strait_proto::envoy::admin::v3::ServerInfo;
use strait_proto::google::protobuf::Duration as PbDuration;
use strait_proto::xds::json::{FieldNames, to_json_with};

use super::clusters::{clusters_json, clusters_text, listeners_json, listeners_text};
use super::config_dump::{DumpParams, config_dump};
use super::source::{AdminSource, DrainOptions, LOG_LEVELS, LoggingChange};
use crate::stats::render::{self, StatsFilter};
use crate::stats::server::resident_memory_bytes;
use crate::stats::{ServerState, Store};

pub const TEXT: &str = "text/plain; charset=UTF-8";
pub const JSON: &str = "application/json";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl AdminResponse {
    fn text(status: StatusCode, body: impl Into<String>) -> AdminResponse {
        AdminResponse {
            status,
            content_type: TEXT,
            body: body.into(),
        }
    }

    fn ok(body: impl Into<String>) -> AdminResponse {
        AdminResponse::text(StatusCode::OK, body)
    }

    fn json(value: &Json) -> AdminResponse {
        AdminResponse {
            status: StatusCode::OK,
            content_type: JSON,
            body: serde_json::to_string_pretty(value).unwrap_or_default() + "\n",
        }
    }
}

struct Endpoint {
    path: &'static str,
    help: &'static str,
    mutates: bool,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/",
        help: "Admin home page",
        mutates: false,
    },
    Endpoint {
        path: "/certs",
        help: "print certs on machine",
        mutates: false,
    },
    Endpoint {
        path: "/clusters",
        help: "upstream cluster status",
        mutates: false,
    },
    Endpoint {
        path: "/config_dump",
        help: "dump current Envoy configs (experimental)",
        mutates: false,
    },
    Endpoint {
        path: "/drain_listeners",
        help: "drain listeners",
        mutates: true,
    },
    Endpoint {
        path: "/healthcheck/fail",
        help: "cause the server to fail health checks",
        mutates: true,
    },
    Endpoint {
        path: "/healthcheck/ok",
        help: "cause the server to pass health checks",
        mutates: true,
    },
    Endpoint {
        path: "/help",
        help: "print out list of admin commands",
        mutates: false,
    },
    Endpoint {
        path: "/hot_restart_version",
        help: "print the hot restart compatibility version",
        mutates: false,
    },
    Endpoint {
        path: "/listeners",
        help: "print listener info",
        mutates: false,
    },
    Endpoint {
        path: "/logging",
        help: "query/change logging levels",
        mutates: true,
    },
    Endpoint {
        path: "/memory",
        help: "print current allocation/heap usage",
        mutates: false,
    },
    Endpoint {
        path: "/quitquitquit",
        help: "exit the server",
        mutates: true,
    },
    Endpoint {
        path: "/ready",
        help: "print server state, return 200 if LIVE, otherwise return 503",
        mutates: false,
    },
    Endpoint {
        path: "/runtime",
        help: "print runtime values",
        mutates: false,
    },
    Endpoint {
        path: "/server_info",
        help: "print server version/status information",
        mutates: false,
    },
    Endpoint {
        path: "/stats",
        help: "print server stats",
        mutates: false,
    },
    Endpoint {
        path: "/stats/prometheus",
        help: "print server stats in prometheus format",
        mutates: false,
    },
];

fn help() -> String {
    let mut out = String::from("admin commands are:\n");
    let mut sorted: Vec<&Endpoint> = ENDPOINTS.iter().collect();
    sorted.sort_by_key(|e| e.path);
    for e in sorted {
        let post = if e.mutates { " (POST)" } else { "" };
        out.push_str(&format!("  {}{post}: {}\n", e.path, e.help));
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters, percent-decoded; the first of repeated keys wins.
pub fn query_params(query: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(decode(k)).or_insert_with(|| decode(v));
    }
    params
}

/// The admin interface: endpoints over an [`AdminSource`] and the stats store.
pub struct Admin {
    source: Arc<dyn AdminSource>,
    stats: Arc<Store>,
}

impl Admin {
    pub fn new(source: Arc<dyn AdminSource>, stats: Arc<Store>) -> Admin {
        Admin { source, stats }
    }

    pub fn stats(&self) -> &Arc<Store> {
        &self.stats
    }

    /// Answers one request; `path_and_query` as in the request line.
    pub fn handle(&self, method: &Method, path_and_query: &str) -> AdminResponse {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let Some(endpoint) = ENDPOINTS.iter().find(|e| e.path == path) else {
            return AdminResponse::text(StatusCode::NOT_FOUND, format!("invalid path. {}", help()));
        };
        if endpoint.mutates && method != Method::POST {
            return AdminResponse::text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method {method} not allowed, POST required."),
            );
        }
        let params = query_params(query);
        match path {
            "/" | "/help" => AdminResponse::ok(help()),
            "/certs" => AdminResponse::json(&json!({ "certificates": [] })),
            "/clusters" => {
                let clusters = self.source.clusters();
                if params.get("format").map(String::as_str) == Some("json") {
                    AdminResponse::json(&clusters_json(&clusters))
                } else {
                    AdminResponse::ok(clusters_text(&clusters))
                }
            }
            "/config_dump" => self.config_dump(&params),
            "/drain_listeners" => {
                self.source.drain_listeners(DrainOptions {
                    inbound_only: params.contains_key("inboundonly"),
                    graceful: params.contains_key("graceful"),
                    skip_exit: params.contains_key("skip_exit"),
                });
                AdminResponse::ok("OK\n")
            }
            "/healthcheck/fail" => {
                self.source.set_health_check_failed(true);
                AdminResponse::ok("OK\n")
            }
            "/healthcheck/ok" => {
                self.source.set_health_check_failed(false);
                AdminResponse::ok("OK\n")
            }
            "/hot_restart_version" => AdminResponse::ok("disabled"),
            "/listeners" => {
                let listeners = self.source.listeners();
                if params.get("format").map(String::as_str) == Some("json") {
                    AdminResponse::json(&listeners_json(&listeners))
                } else {
                    AdminResponse::ok(listeners_text(&listeners))
                }
            }
            "/logging" => self.logging(&params),
            "/memory" => {
                let rss = resident_memory_bytes().unwrap_or(0).to_string();
                AdminResponse::json(&json!({
                    "allocated": rss,
                    "heap_size": rss,
                    "pageheap_unmapped": "0",
                    "pageheap_free": "0",
                    "total_thread_cache": "0",
                    "total_physical_bytes": rss,
                }))
            }
            "/quitquitquit" => {
                self.source.quit();
                AdminResponse::ok("OK\n")
            }
            "/ready" => {
                let state = self.source.server_state();
                let status = if state == ServerState::Live {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                AdminResponse::text(status, format!("{}\n", state.name()))
            }
            "/runtime" => AdminResponse::json(&json!({ "entries": {}, "layers": [] })),
            "/server_info" => self.server_info(),
            "/stats" => self.stats_endpoint(&params, false),
            "/stats/prometheus" => self.stats_endpoint(&params, true),
            _ => AdminResponse::text(StatusCode::NOT_FOUND, format!("invalid path. {}", help())),
        }
    }

    fn config_dump(&self, params: &HashMap<String, String>) -> AdminResponse {
        let name_regex = match params.get("name_regex") {
            Some(r) => match Regex::new(&format!("^(?:{r})$")) {
                Ok(re) => Some(re),
                Err(e) => {
                    return AdminResponse::text(
                        StatusCode::BAD_REQUEST,
                        format!("Error while parsing name_regex from {r}: {e}"),
                    );
                }
            },
            None => None,
        };
        let dump = DumpParams {
            resource: params.get("resource").filter(|r| !r.is_empty()).cloned(),
            include_eds: params.contains_key("include_eds"),
            name_regex,
        };
        match config_dump(self.source.as_ref(), &dump) {
            Ok(v) => AdminResponse::json(&v),
            Err(e) => AdminResponse::text(StatusCode::NOT_FOUND, e.to_string()),
        }
    }

    fn logging(&self, params: &HashMap<String, String>) -> AdminResponse {
        let usage = || {
            let mut u = String::from(
                "usage: /logging?<name>=<level> (change single level)\n\
                 usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n\
                 usage: /logging?level=<level> (change all levels)\n\
                 levels: ",
            );
            u.push_str(&LOG_LEVELS.join(" "));
            u.push('\n');
            u
        };
        let change = if let Some(level) = params.get("level") {
            if !LOG_LEVELS.contains(&level.as_str()) {
                return AdminResponse::text(StatusCode::NOT_FOUND, usage());
            }
            Some(LoggingChange::Level(level.clone()))
        } else if let Some(paths) = params.get("paths") {
            let mut list = Vec::new();
            for item in paths.split(',').filter(|s| !s.is_empty()) {
                match item.split_once(':') {
                    Some((name, level)) if !name.is_empty() && LOG_LEVELS.contains(&level) => {
                        list.push((name.to_string(), level.to_string()));
                    }
                    _ => return AdminResponse::text(StatusCode::NOT_FOUND, usage()),
                }
            }
            Some(LoggingChange::Paths(list))
        } else if let Some((name, level)) = params.iter().next() {
            if !LOG_LEVELS.contains(&level.as_str()) {
                return AdminResponse::text(StatusCode::NOT_FOUND, usage());
            }
            Some(LoggingChange::Paths(vec![(name.clone(), level.clone())]))
        } else {
            None
        };
        if let Some(change) = change
            && let Err(e) = self.source.change_logging(&change)
        {
            return AdminResponse::text(StatusCode::BAD_REQUEST, format!("{e}\n{}", usage()));
        }
        let mut out = String::from("active loggers:\n");
        for (name, level) in self.source.log_levels() {
            out.push_str(&format!("  {name}: {level}\n"));
        }
        AdminResponse::ok(out)
    }

    fn server_info(&self) -> AdminResponse {
        let details = self.source.server_details();
        let state = self.source.server_state();
        let uptime = details
            .start_time
            .and_then(|s| SystemTime::now().duration_since(s).ok())
            .unwrap_or_default();
        let seconds = i64::try_from(uptime.as_secs()).unwrap_or(i64::MAX);
        let info = ServerInfo {
            version: details.version,
            state: state as i32,
            uptime_current_epoch: Some(PbDuration { seconds, nanos: 0 }),
            uptime_all_epochs: Some(PbDuration { seconds, nanos: 0 }),
            hot_restart_version: "disabled".into(),
            command_line_options: Some(details.command_line_options),
            node: Some(details.node),
            hot_restart_initializing: false,
        };
        let mut value = to_json_with(&info, FieldNames::Proto).unwrap_or_else(|_| json!({}));
        // Envoy prints every primitive field, so LIVE (the enum's zero) appears too.
        if let Json::Object(map) = &mut value {
            map.insert("state".into(), json!(state.name()));
            map.entry("uptime_current_epoch").or_insert(json!("0s"));
            map.entry("uptime_all_epochs").or_insert(json!("0s"));
        }
        AdminResponse::json(&value)
    }

    fn stats_endpoint(&self, params: &HashMap<String, String>, prometheus: bool) -> AdminResponse {
        let filter = match params.get("filter").filter(|f| !f.is_empty()) {
            Some(f) => match Regex::new(f) {
                Ok(re) => Some(re),
                Err(_) => {
                    return AdminResponse::text(
                        StatusCode::BAD_REQUEST,
                        format!("Invalid re2 regex: {f}\n"),
                    );
                }
            },
            None => None,
        };
        let filter = StatsFilter {
            used_only: params.contains_key("usedonly"),
            filter,
        };
        let snapshot = self.stats.snapshot_matching(filter.filter.as_ref());
        let format = params.get("format").map(String::as_str);
        if prometheus || format == Some("prometheus") {
            return AdminResponse::ok(render::prometheus(&snapshot, &filter));
        }
        match format {
            Some("json") => AdminResponse::json(&render::json(&snapshot, &filter)),
            None | Some("text") => AdminResponse::ok(render::text(&snapshot, &filter)),
            Some(other) => AdminResponse::text(
                StatusCode::NOT_FOUND,
                format!("usage: /stats?format=(html|active-html|json|prometheus|text): {other}\n"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let p = query_params("filter=%5Ecluster%5C.x&usedonly&a=b+c&a=ignored&bad=%zz");
        assert_eq!(p["filter"], "^cluster\\.x");
        assert_eq!(p["usedonly"], "");
        assert_eq!(p["a"], "b c");
        assert_eq!(p["bad"], "%zz");
        assert_eq!(decode("%4"), "%4");
    }

    #[test]
    fn help_lists_post_endpoints() {
        let h = help();
        assert!(h.contains("  /quitquitquit (POST): exit the server\n"));
        assert!(h.contains("  /ready: print server state"));
    }
}
