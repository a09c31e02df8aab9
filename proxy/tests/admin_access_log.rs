//! Access logs: Envoy's and Istio's default formats on sample requests, custom format
//! strings and JSON formats, and lines reaching a file through the writer thread.

// The fixtures are shared by the tests but are not `#[test]` functions themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, UNIX_EPOCH};

use strait_proxy::access_log::{AccessLogger, Formatter, LogRecord, LogSinks};
use strait_proxy::config::access_log::{AccessLog, AccessLogSink};

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The request in Envoy's documentation of its default format.
fn envoy_docs_request() -> LogRecord {
    let mut r = LogRecord::new(UNIX_EPOCH + Duration::from_millis(1_460_751_420_310));
    r.request_headers = headers(&[
        (":method", "POST"),
        (":path", "/api/v1/locations"),
        (":authority", "locations"),
        ("x-forwarded-for", "10.0.35.28"),
        ("user-agent", "nsq2http"),
        ("x-request-id", "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"),
    ]);
    r.response_headers = headers(&[("x-envoy-upstream-service-time", "100")]);
    r.protocol = Some("HTTP/2".into());
    r.response_code = Some(204);
    r.bytes_received = 154;
    r.bytes_sent = 0;
    r.duration = Some(Duration::from_micros(226_900));
    r.upstream_host = Some("10.0.2.1:80".parse().unwrap());
    r
}

#[test]
fn envoy_default_format_matches_envoys_layout() {
    let line = Formatter::envoy_default().format(&envoy_docs_request());
    assert_eq!(
        line,
        "[2016-04-15T20:17:00.310Z] \"POST /api/v1/locations HTTP/2\" 204 - 154 0 226 100 \
         \"10.0.35.28\" \"nsq2http\" \"cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2\" \"locations\" \
         \"10.0.2.1:80\"\n"
    );

    // Original path wins over :path; everything missing prints as `-`.
    let mut r = LogRecord::new(UNIX_EPOCH);
    r.request_headers = headers(&[
        (":method", "GET"),
        (":path", "/rewritten"),
        ("x-envoy-original-path", "/original"),
    ]);
    r.protocol = Some("HTTP/1.1".into());
    r.response_flags = "NR".into();
    assert_eq!(
        Formatter::envoy_default().format(&r),
        "[1970-01-01T00:00:00.000Z] \"GET /original HTTP/1.1\" 0 NR 0 0 - - \"-\" \"-\" \"-\" \"-\" \"-\"\n"
    );
}

#[test]
fn istio_default_format_on_a_tcp_connection() {
    let mut r = LogRecord::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    r.bytes_received = 10;
    r.bytes_sent = 20;
    r.duration = Some(Duration::from_millis(5));
    r.upstream_host = Some("10.244.0.11:9080".parse().unwrap());
    r.upstream_cluster = Some("outbound|9080||reviews.default.svc.cluster.local".into());
    r.upstream_local_address = Some("10.244.0.5:40000".parse().unwrap());
    r.downstream_local_address = Some("10.96.0.20:9080".parse().unwrap());
    r.downstream_remote_address = Some("10.244.0.5:51234".parse().unwrap());
    assert_eq!(
        Formatter::istio_default().format(&r),
        "[2023-11-14T22:13:20.000Z] \"- - -\" 0 - - - \"-\" 10 20 5 - \"-\" \"-\" \"-\" \"-\" \
         \"10.244.0.11:9080\" outbound|9080||reviews.default.svc.cluster.local 10.244.0.5:40000 \
         10.96.0.20:9080 10.244.0.5:51234 - -\n"
    );
}

#[test]
fn custom_formats_and_truncation() {
    let mut r = envoy_docs_request();
    r.request_headers
        .push(("x-long".into(), "abcdefghij".into()));
    let f = |format: &str| Formatter::text(format).unwrap().format(&r);
    // Main header missing: the alternative, truncated.
    assert_eq!(f("%REQ(X-MISSING?X-LONG):4%"), "abcd");
    assert_eq!(f("%REQ(X-LONG):3%|%REQ(X-LONG)%"), "abc|abcdefghij");
    assert_eq!(f("%REQ(X-MISSING?X-ALSO-MISSING):4%"), "-");
    assert_eq!(
        f("%UPSTREAM_SERVICE_TIME% %RESP(X-Envoy-Upstream-Service-Time)%"),
        "100 100"
    );
    assert_eq!(
        f("%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%"),
        "2016/04/15T20:17:00+0000 1460751420"
    );
    assert_eq!(f("%START_TIME(%s.%3f)%"), "1460751420.310");
    assert_eq!(
        f("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %UPSTREAM_REMOTE_PORT%"),
        "- 80"
    );
    assert_eq!(f("100%% %RESPONSE_CODE%"), "100% 204");
    assert_eq!(f("%DYNAMIC_METADATA(istio.mixer:status)%"), "-");

    for bad in ["%NOT_AN_OPERATOR%", "%REQ(:PATH)", "%REQ%", "50% off"] {
        let config = AccessLog {
            sink: AccessLogSink::Stdout,
            format: Some(bad.into()),
            json_format: None,
        };
        assert!(Formatter::from_config(&config).is_err(), "{bad} accepted");
    }
}

#[test]
fn json_format_types_values() {
    let config = AccessLog {
        sink: AccessLogSink::Stdout,
        format: None,
        json_format: Some(vec![
            ("authority".into(), "%REQ(:AUTHORITY)%".into()),
            ("bytes_sent".into(), "%BYTES_SENT%".into()),
            ("duration".into(), "%DURATION%".into()),
            ("method_path".into(), "%REQ(:METHOD)% %REQ(:PATH)%".into()),
            ("response_code".into(), "%RESPONSE_CODE%".into()),
            ("route".into(), "%ROUTE_NAME%".into()),
            ("upstream_port".into(), "%UPSTREAM_REMOTE_PORT%".into()),
        ]),
    };
    let line = Formatter::from_config(&config)
        .unwrap()
        .format(&envoy_docs_request());
    assert_eq!(
        line,
        "{\"authority\":\"locations\",\"bytes_sent\":0,\"duration\":226,\
         \"method_path\":\"POST /api/v1/locations\",\"response_code\":204,\"route\":null,\
         \"upstream_port\":80}\n"
    );
    let istio = Formatter::istio_json().format(&envoy_docs_request());
    let parsed: serde_json::Value = serde_json::from_str(&istio).unwrap();
    assert_eq!(parsed["upstream_service_time"], "100");
    assert_eq!(parsed["response_code"], 204);
    assert_eq!(parsed["start_time"], "2016-04-15T20:17:00.310Z");
    assert!(parsed["upstream_cluster"].is_null());
}

#[test]
fn file_logger_writes_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let sinks = LogSinks::new(Duration::from_millis(20));
    let config = AccessLog {
        sink: AccessLogSink::File(path.clone()),
        format: Some("%REQ(:METHOD)% %RESPONSE_CODE%\n".into()),
        json_format: None,
    };
    let logger = AccessLogger::new(&config, &sinks).unwrap();
    let default_logger = AccessLogger::new(
        &AccessLog {
            format: None,
            ..config.clone()
        },
        &sinks,
    )
    .unwrap();
    assert!(std::sync::Arc::ptr_eq(logger.sink(), default_logger.sink()));
    let request = envoy_docs_request();
    logger.log(&request);
    logger.log(&request);
    default_logger.log(&request);
    sinks.flush_all();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["POST 204", "POST 204"]);
    assert!(lines[2].starts_with("[2016-04-15T20:17:00.310Z] \"POST /api/v1/locations HTTP/2\""));
    assert_eq!(logger.sink().dropped(), 0);

    let missing_dir = AccessLog {
        sink: AccessLogSink::File(dir.path().join("no/such/dir/a.log")),
        format: None,
        json_format: None,
    };
    assert!(AccessLogger::new(&missing_dir, &sinks).is_err());
}
