//! Access logs in Envoy's format-string syntax.

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogSink {
    File(std::path::PathBuf),
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLog {
    pub sink: AccessLogSink,
    /// Envoy format string (`%START_TIME% ...`); Envoy's default format when unset.
    pub format: Option<String>,
    /// JSON format: key → format string.
    pub json_format: Option<Vec<(String, String)>>,
}
