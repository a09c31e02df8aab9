//! Access loggers: file, stdout and stderr, with text or JSON formats.
//!
//! Other Envoy loggers (gRPC ALS, OpenTelemetry, ...) are skipped: a stock Envoy knows
//! them and they never change how traffic flows. Types Envoy would not know either are
//! rejected, as Envoy rejects them. Access-log filters are not applied (every request is
//! logged).

use strait_proto::envoy::config::accesslog::v3::{AccessLog as PbAccessLog, access_log};
use strait_proto::envoy::config::core::v3::{SubstitutionFormatString, substitution_format_string};
use strait_proto::envoy::extensions::access_loggers::file::v3::{FileAccessLog, file_access_log};
use strait_proto::envoy::extensions::access_loggers::stream::v3::{
    StderrAccessLog, StdoutAccessLog, stderr_access_log, stdout_access_log,
};
use strait_proto::google::protobuf::{Struct, value::Kind};
use strait_proto::xds::any;

use super::data_source;
use crate::config::access_log::{AccessLog, AccessLogSink};
use crate::config::error::{Ctx, Result};

/// Envoy's own access loggers, which it would accept.
const ENVOY_LOGGER_PREFIX: &str = "envoy.extensions.access_loggers.";

/// The loggers strait-proxy writes; Envoy loggers it does not implement are dropped.
pub fn access_logs(list: &[PbAccessLog], ctx: &Ctx) -> Result<Vec<AccessLog>> {
    let mut out = Vec::new();
    for (i, log) in list.iter().enumerate() {
        if let Some(l) = access_log(log, &ctx.index(i))? {
            out.push(l);
        }
    }
    Ok(out)
}

fn access_log(log: &PbAccessLog, ctx: &Ctx) -> Result<Option<AccessLog>> {
    let Some(access_log::ConfigType::TypedConfig(cfg)) = &log.config_type else {
        return Err(ctx
            .field("typed_config")
            .error(format!("access log '{}' has no typed_config", log.name)));
    };
    let ctx = ctx.field("typed_config");
    let decode_err = |e: strait_proto::xds::XdsError| ctx.error(e.to_string());
    if any::is::<FileAccessLog>(cfg) {
        let f: FileAccessLog = any::unpack(cfg).map_err(decode_err)?;
        if f.path.is_empty() {
            return Err(ctx.field("path").error("path must not be empty"));
        }
        let sink = match f.path.as_str() {
            "/dev/stdout" => AccessLogSink::Stdout,
            "/dev/stderr" => AccessLogSink::Stderr,
            path => AccessLogSink::File(path.into()),
        };
        use file_access_log::AccessLogFormat as F;
        return Ok(Some(match &f.access_log_format {
            None => logger(sink, None, None),
            Some(F::Format(s)) => logger(sink, non_empty(s), None),
            Some(F::JsonFormat(j)) | Some(F::TypedJsonFormat(j)) => {
                logger(sink, None, Some(json_format(j, &ctx.field("json_format"))?))
            }
            Some(F::LogFormat(sfs)) => formatted(sink, sfs, &ctx.field("log_format"))?,
        }));
    }
    if any::is::<StdoutAccessLog>(cfg) {
        let s: StdoutAccessLog = any::unpack(cfg).map_err(decode_err)?;
        return Ok(Some(match &s.access_log_format {
            None => logger(AccessLogSink::Stdout, None, None),
            Some(stdout_access_log::AccessLogFormat::LogFormat(sfs)) => {
                formatted(AccessLogSink::Stdout, sfs, &ctx.field("log_format"))?
            }
        }));
    }
    if any::is::<StderrAccessLog>(cfg) {
        let s: StderrAccessLog = any::unpack(cfg).map_err(decode_err)?;
        return Ok(Some(match &s.access_log_format {
            None => logger(AccessLogSink::Stderr, None, None),
            Some(stderr_access_log::AccessLogFormat::LogFormat(sfs)) => {
                formatted(AccessLogSink::Stderr, sfs, &ctx.field("log_format"))?
            }
        }));
    }
    if any::type_name(&cfg.type_url).starts_with(ENVOY_LOGGER_PREFIX) {
        return Ok(None);
    }
    Err(ctx.error(format!(
        "unknown access logger '{}' (type URL '{}')",
        log.name, cfg.type_url
    )))
}

fn logger(
    sink: AccessLogSink,
    format: Option<String>,
    json_format: Option<Vec<(String, String)>>,
) -> AccessLog {
    AccessLog {
        sink,
        format,
        json_format,
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn formatted(sink: AccessLogSink, sfs: &SubstitutionFormatString, ctx: &Ctx) -> Result<AccessLog> {
    use substitution_format_string::Format;
    if !sfs.formatters.is_empty() {
        return Err(ctx
            .field("formatters")
            .error("custom formatters are not supported"));
    }
    Ok(match &sfs.format {
        None => logger(sink, None, None),
        Some(Format::TextFormat(s)) => logger(sink, non_empty(s), None),
        Some(Format::TextFormatSource(ds)) => {
            let text = data_source::inline_text(ds, &ctx.field("text_format_source"))?;
            logger(sink, non_empty(&text), None)
        }
        Some(Format::JsonFormat(j)) => {
            logger(sink, None, Some(json_format(j, &ctx.field("json_format"))?))
        }
    })
}

/// A JSON log format: key → format string. Keys are sorted so output is stable.
fn json_format(s: &Struct, ctx: &Ctx) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = s
        .fields
        .iter()
        .map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(f)) => Ok((k.clone(), f.clone())),
            _ => Err(ctx
                .field(k)
                .error("only string values are supported in JSON access log formats")),
        })
        .collect::<Result<_>>()?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::envoy::config::core::v3::{DataSource, data_source::Specifier};
    use strait_proto::google::protobuf::{Any, Value};

    fn log(cfg: Any) -> PbAccessLog {
        PbAccessLog {
            name: "envoy.access_loggers.file".into(),
            filter: None,
            config_type: Some(access_log::ConfigType::TypedConfig(cfg)),
        }
    }

    fn ctx() -> Ctx {
        Ctx::new("Listener", "l").field("access_log")
    }

    #[test]
    fn file_logger_with_text_format_source() {
        let f = FileAccessLog {
            path: "/dev/stdout".into(),
            access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(
                SubstitutionFormatString {
                    format: Some(substitution_format_string::Format::TextFormatSource(
                        DataSource {
                            specifier: Some(Specifier::InlineString(
                                "[%START_TIME%] %REQ(:METHOD)%\n".into(),
                            )),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                },
            )),
        };
        let out = access_logs(&[log(any::pack(&f))], &ctx()).unwrap();
        assert_eq!(out[0].sink, AccessLogSink::Stdout);
        assert_eq!(
            out[0].format.as_deref(),
            Some("[%START_TIME%] %REQ(:METHOD)%\n")
        );
    }

    #[test]
    fn json_and_default_formats() {
        let mut fields = std::collections::HashMap::new();
        fields.insert(
            "method".to_string(),
            Value {
                kind: Some(Kind::StringValue("%REQ(:METHOD)%".into())),
            },
        );
        let f = FileAccessLog {
            path: "/var/log/a.log".into(),
            access_log_format: Some(file_access_log::AccessLogFormat::JsonFormat(Struct {
                fields,
            })),
        };
        let out = access_logs(
            &[
                log(any::pack(&f)),
                log(any::pack(&StderrAccessLog::default())),
            ],
            &ctx(),
        )
        .unwrap();
        assert_eq!(out[0].sink, AccessLogSink::File("/var/log/a.log".into()));
        assert_eq!(
            out[0].json_format,
            Some(vec![("method".into(), "%REQ(:METHOD)%".into())])
        );
        assert_eq!(out[1].sink, AccessLogSink::Stderr);
        assert_eq!(out[1].format, None);
    }

    #[test]
    fn unknown_loggers() {
        let envoy_known = Any {
            type_url: "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig".into(),
            value: vec![],
        };
        assert!(access_logs(&[log(envoy_known)], &ctx()).unwrap().is_empty());
        let foreign = Any {
            type_url: "type.googleapis.com/acme.Logger".into(),
            value: vec![],
        };
        let e = access_logs(&[log(foreign)], &ctx()).unwrap_err();
        assert_eq!(e.field, "access_log[0].typed_config");
    }
}
