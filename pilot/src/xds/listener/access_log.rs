//! Mesh-wide access logging (`meshConfig.accessLogFile`): every HTTP connection manager and
//! every `tcp_proxy` gets a file access logger, as Istio configures sidecars. Off by default,
//! so the common push pays nothing; when on, the built filters are re-encoded once with the
//! logger added rather than threading the mesh config through every filter builder.

use strait_proto::envoy::config::accesslog::v3::{AccessLog, access_log};
use strait_proto::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source, substitution_format_string,
};
use strait_proto::envoy::config::listener::v3::{Filter, Listener, filter};
use strait_proto::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log::AccessLogFormat,
};
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use strait_proto::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use strait_proto::google::protobuf::{Struct, Value, value::Kind};
use strait_proto::istio::{AccessLogEncoding, MeshConfig};
use strait_proto::xds::any;

use super::names;

const FILE_ACCESS_LOG: &str = "envoy.access_loggers.file";

/// Istio's default TEXT format: Envoy's default line plus the upstream and downstream
/// addresses, SNI and route name that mesh operators grep for.
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON keys, the same fields as the TEXT line.
const ISTIO_JSON_FIELDS: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("route_name", "%ROUTE_NAME%"),
];

/// The logger the mesh config asks for, or `None` when access logging is off.
pub fn mesh_access_log(mesh: &MeshConfig) -> Option<AccessLog> {
    if mesh.access_log_file.is_empty() {
        return None;
    }
    let file = FileAccessLog {
        path: mesh.access_log_file.clone(),
        access_log_format: Some(AccessLogFormat::LogFormat(log_format(mesh))),
    };
    Some(AccessLog {
        name: FILE_ACCESS_LOG.to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(any::pack(&file))),
        ..Default::default()
    })
}

fn log_format(mesh: &MeshConfig) -> SubstitutionFormatString {
    let format = match mesh.access_log_encoding {
        AccessLogEncoding::Json => {
            substitution_format_string::Format::JsonFormat(json_format(&mesh.access_log_format))
        }
        AccessLogEncoding::Text => {
            substitution_format_string::Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineString(text_format(
                    &mesh.access_log_format,
                ))),
                ..Default::default()
            })
        }
    };
    SubstitutionFormatString {
        format: Some(format),
        ..Default::default()
    }
}

/// A custom TEXT format gets the trailing newline Envoy does not add by itself.
fn text_format(custom: &str) -> String {
    if custom.is_empty() {
        ISTIO_TEXT_FORMAT.to_string()
    } else if custom.ends_with('\n') {
        custom.to_string()
    } else {
        format!("{custom}\n")
    }
}

/// A custom JSON format is a JSON object of key to operator; one that does not parse as
/// such falls back to the default, as Istio does (mesh config validation reports it).
fn json_format(custom: &str) -> Struct {
    let custom: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(custom).ok();
    let fields = match custom {
        Some(map) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, string_value(s))))
            .collect(),
        None => ISTIO_JSON_FIELDS
            .iter()
            .map(|(k, v)| (k.to_string(), string_value(v)))
            .collect(),
    };
    Struct { fields }
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

/// Adds `log` to every HTTP connection manager and `tcp_proxy` in `listeners`.
pub fn attach(listeners: &mut [Listener], log: &AccessLog) {
    for listener in listeners {
        let chains = listener
            .filter_chains
            .iter_mut()
            .chain(listener.default_filter_chain.as_mut());
        for chain in chains {
            for filter in &mut chain.filters {
                attach_to_filter(filter, log);
            }
        }
    }
}

fn attach_to_filter(filter: &mut Filter, log: &AccessLog) {
    let Some(filter::ConfigType::TypedConfig(config)) = &mut filter.config_type else {
        return;
    };
    if filter.name == names::HTTP_CONNECTION_MANAGER_FILTER {
        if let Ok(mut hcm) = any::unpack::<HttpConnectionManager>(config) {
            hcm.access_log.push(log.clone());
            *config = any::pack(&hcm);
        }
    } else if filter.name == names::TCP_PROXY_FILTER
        && let Ok(mut tcp) = any::unpack::<TcpProxy>(config)
    {
        tcp.access_log.push(log.clone());
        *config = any::pack(&tcp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(file: &str, encoding: AccessLogEncoding, format: &str) -> MeshConfig {
        MeshConfig {
            access_log_file: file.to_string(),
            access_log_encoding: encoding,
            access_log_format: format.to_string(),
            ..MeshConfig::default()
        }
    }

    fn file_log(log: &AccessLog) -> FileAccessLog {
        let Some(access_log::ConfigType::TypedConfig(any)) = &log.config_type else {
            panic!("no typed config");
        };
        any::unpack(any).unwrap()
    }

    fn text_of(file: &FileAccessLog) -> String {
        let Some(AccessLogFormat::LogFormat(f)) = &file.access_log_format else {
            panic!("no log format");
        };
        match &f.format {
            Some(substitution_format_string::Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineString(s)),
                ..
            })) => s.clone(),
            other => panic!("not a text format: {other:?}"),
        }
    }

    #[test]
    fn off_without_a_file() {
        assert!(mesh_access_log(&mesh("", AccessLogEncoding::Text, "")).is_none());
    }

    #[test]
    fn text_default_and_custom_formats_end_in_newline() {
        let log = mesh_access_log(&mesh("/dev/stdout", AccessLogEncoding::Text, "")).unwrap();
        assert_eq!(log.name, "envoy.access_loggers.file");
        let file = file_log(&log);
        assert_eq!(file.path, "/dev/stdout");
        let text = text_of(&file);
        assert!(text.starts_with("[%START_TIME%] \"%REQ(:METHOD)%"));
        assert!(text.ends_with("%ROUTE_NAME%\n"));

        let custom = mesh("/tmp/a.log", AccessLogEncoding::Text, "%RESPONSE_CODE%");
        let text = text_of(&file_log(&mesh_access_log(&custom).unwrap()));
        assert_eq!(text, "%RESPONSE_CODE%\n");
    }

    #[test]
    fn json_uses_custom_keys_or_istios() {
        let json_of = |m: &MeshConfig| {
            let file = file_log(&mesh_access_log(m).unwrap());
            let Some(AccessLogFormat::LogFormat(f)) = file.access_log_format else {
                panic!("no format");
            };
            match f.format {
                Some(substitution_format_string::Format::JsonFormat(s)) => s,
                other => panic!("not json: {other:?}"),
            }
        };
        let default = json_of(&mesh("/dev/stdout", AccessLogEncoding::Json, ""));
        assert!(default.fields.contains_key("response_code"));
        assert!(default.fields.contains_key("upstream_cluster"));
        let custom = json_of(&mesh(
            "/dev/stdout",
            AccessLogEncoding::Json,
            r#"{"code":"%RESPONSE_CODE%"}"#,
        ));
        assert_eq!(custom.fields.len(), 1);
        assert!(custom.fields.contains_key("code"));
    }

    #[test]
    fn attaches_to_hcm_and_tcp_proxy_only() {
        use super::super::filters::{hcm_filter, tcp_proxy, tcp_proxy_filter};
        use strait_proto::envoy::config::listener::v3::FilterChain;
        let mut listeners = vec![Listener {
            name: "l".to_string(),
            filter_chains: vec![FilterChain {
                filters: vec![
                    hcm_filter(&HttpConnectionManager::default()),
                    tcp_proxy_filter(&tcp_proxy("p", "c")),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let log = mesh_access_log(&mesh("/dev/stdout", AccessLogEncoding::Text, "")).unwrap();
        attach(&mut listeners, &log);
        let filters = &listeners[0].filter_chains[0].filters;
        let typed = |f: &Filter| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(a)) => a.clone(),
            _ => panic!("untyped"),
        };
        let hcm: HttpConnectionManager = any::unpack(&typed(&filters[0])).unwrap();
        assert_eq!(hcm.access_log, vec![log.clone()]);
        let tcp: TcpProxy = any::unpack(&typed(&filters[1])).unwrap();
        assert_eq!(tcp.access_log, vec![log]);
    }
}
