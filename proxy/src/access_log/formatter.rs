//! Format strings (`[%START_TIME%] "%REQ(:METHOD)% ..."`) and JSON formats, parsed
//! once and then applied to every request.

use std::fmt::Write;

use serde_json::Value as Json;

use super::context::LogContext;
use super::operator::{Operator, Rendered};
use crate::config::access_log::AccessLog;

/// Envoy's default access log format.
pub const ENVOY_DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// Istio's default text format (mesh `accessLogFormat` unset, `accessLogEncoding: TEXT`).
pub const ISTIO_DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON format (`accessLogEncoding: JSON`), key → operator.
pub const ISTIO_JSON_FORMAT: &[(&str, &str)] = &[
    ("authority", "%REQ(:AUTHORITY)%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("duration", "%DURATION%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("route_name", "%ROUTE_NAME%"),
    ("start_time", "%START_TIME%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Literal(String),
    Command {
        op: Operator,
        /// `:N`: keep at most N characters.
        max_len: Option<usize>,
    },
}

impl Segment {
    fn render(&self, ctx: &dyn LogContext) -> Rendered {
        match self {
            Segment::Literal(s) => Rendered::Str(s.clone()),
            Segment::Command { op, max_len } => match (op.render(ctx), max_len) {
                (Rendered::Str(s), Some(n)) => Rendered::Str(truncate(s, *n)),
                (r, _) => r,
            },
        }
    }
}

fn truncate(mut s: String, max_chars: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max_chars) {
        s.truncate(i);
    }
    s
}

/// Splits a format string into literal text and commands. Commands are
/// `%NAME%`, `%NAME(args)%` or either with `:N` before the closing `%`; `%%` is a
/// literal percent sign.
fn parse(format: &str) -> Result<Vec<Segment>, FormatError> {
    let bytes = format.as_bytes();
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut pos = 0;
    while pos < format.len() {
        let Some(offset) = format[pos..].find('%') else {
            literal.push_str(&format[pos..]);
            break;
        };
        literal.push_str(&format[pos..pos + offset]);
        let start = pos + offset;
        if bytes.get(start + 1) == Some(&b'%') {
            literal.push('%');
            pos = start + 2;
            continue;
        }
        let (segment, end) = parse_command(format, start)?;
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        segments.push(segment);
        pos = end;
    }
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(segments)
}

/// Parses the command starting at the `%` at `start`; returns it and the index after
/// its closing `%`.
fn parse_command(format: &str, start: usize) -> Result<(Segment, usize), FormatError> {
    let invalid = || {
        FormatError(format!(
            "Incorrect configuration: {format}. Couldn't find valid command at position {start}"
        ))
    };
    let rest = &format[start + 1..];
    let name_len = rest
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(rest.len());
    if name_len == 0 {
        return Err(invalid());
    }
    let name = &rest[..name_len];
    let mut after = &rest[name_len..];
    let mut args = None;
    if let Some(inner) = after.strip_prefix('(') {
        let close = inner.find(')').ok_or_else(invalid)?;
        args = Some(&inner[..close]);
        after = &inner[close + 1..];
    }
    let mut max_len = None;
    if let Some(digits) = after.strip_prefix(':') {
        let n = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        if n == 0 {
            return Err(invalid());
        }
        max_len = Some(digits[..n].parse::<usize>().map_err(|_| invalid())?);
        after = &digits[n..];
    }
    if !after.starts_with('%') {
        return Err(invalid());
    }
    let end = format.len() - after.len() + 1;
    let op = Operator::parse(name, args).map_err(FormatError)?;
    Ok((Segment::Command { op, max_len }, end))
}

#[derive(Clone, Debug, PartialEq)]
enum JsonField {
    /// A value that is exactly one command: typed (number, string or null).
    Typed(Segment),
    /// Anything else: a string, missing commands printed as `-`.
    Text(Vec<Segment>),
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Text(Vec<Segment>),
    Json(Vec<(String, JsonField)>),
}

/// A parsed access log format.
#[derive(Clone, Debug, PartialEq)]
pub struct Formatter(Kind);

fn render_text(segments: &[Segment], ctx: &dyn LogContext, out: &mut String) {
    for segment in segments {
        match segment.render(ctx) {
            Rendered::Missing => out.push('-'),
            Rendered::Str(s) => out.push_str(&s),
            Rendered::Num(n) => {
                let _ = write!(out, "{n}");
            }
        }
    }
}

impl Formatter {
    /// A text format string.
    pub fn text(format: &str) -> Result<Formatter, FormatError> {
        Ok(Formatter(Kind::Text(parse(format)?)))
    }

    /// A JSON format: one line per entry, keys in the given order, lone commands typed
    /// as Envoy's `json_format` renders them (numbers as numbers, missing as null).
    pub fn json<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> Result<Formatter, FormatError> {
        let mut out = Vec::with_capacity(fields.len());
        for (key, format) in fields {
            let mut segments = parse(format.as_ref())?;
            let field = if segments.len() == 1 && matches!(segments[0], Segment::Command { .. }) {
                JsonField::Typed(segments.remove(0))
            } else {
                JsonField::Text(segments)
            };
            out.push((key.as_ref().to_string(), field));
        }
        Ok(Formatter(Kind::Json(out)))
    }

    pub fn envoy_default() -> Formatter {
        Formatter::text(ENVOY_DEFAULT_FORMAT).unwrap_or(Formatter(Kind::Text(Vec::new())))
    }

    pub fn istio_default() -> Formatter {
        Formatter::text(ISTIO_DEFAULT_FORMAT).unwrap_or(Formatter(Kind::Text(Vec::new())))
    }

    pub fn istio_json() -> Formatter {
        Formatter::json(ISTIO_JSON_FORMAT).unwrap_or(Formatter(Kind::Json(Vec::new())))
    }

    /// The formatter an access log config asks for: its JSON format, its format string,
    /// or Envoy's default.
    pub fn from_config(config: &AccessLog) -> Result<Formatter, FormatError> {
        match (&config.json_format, &config.format) {
            (Some(fields), _) => Formatter::json(fields),
            (None, Some(format)) => Formatter::text(format),
            (None, None) => Ok(Formatter::envoy_default()),
        }
    }

    pub fn format(&self, ctx: &dyn LogContext) -> String {
        let mut out = String::with_capacity(256);
        match &self.0 {
            Kind::Text(segments) => render_text(segments, ctx, &mut out),
            Kind::Json(fields) => {
                out.push('{');
                for (i, (key, field)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Json::String(key.clone()).to_string());
                    out.push(':');
                    let value = match field {
                        JsonField::Typed(segment) => match segment.render(ctx) {
                            Rendered::Missing => Json::Null,
                            Rendered::Num(n) => {
                                let numeric = matches!(
                                    segment,
                                    Segment::Command { op, .. } if op.is_numeric()
                                );
                                if numeric {
                                    Json::from(n)
                                } else {
                                    Json::String(n.to_string())
                                }
                            }
                            Rendered::Str(s) => Json::String(s),
                        },
                        JsonField::Text(segments) => {
                            let mut s = String::new();
                            render_text(segments, ctx, &mut s);
                            Json::String(s)
                        }
                    };
                    out.push_str(&value.to_string());
                }
                out.push_str("}\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(parse("a%%b").unwrap(), vec![Segment::Literal("a%b".into())]);
        assert!(parse("%REQ(:PATH)").is_err(), "unterminated");
        assert!(parse("%req%").is_err(), "lowercase is not a command");
        assert!(parse("%BOGUS%").is_err());
        assert!(parse("%REQ(:PATH):%").is_err());
        let s = parse("%REQ(:PATH):10% x").unwrap();
        assert_eq!(s.len(), 2);
        assert!(matches!(
            &s[0],
            Segment::Command {
                max_len: Some(10),
                ..
            }
        ));
        assert!(parse(ENVOY_DEFAULT_FORMAT).is_ok());
        assert!(parse(ISTIO_DEFAULT_FORMAT).is_ok());
        assert!(parse("%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%").is_ok());
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("héllo".into(), 2), "hé");
        assert_eq!(truncate("hi".into(), 5), "hi");
    }
}
