//! Access logs in Envoy's format-string syntax.
//!
//! - `context`: [`LogContext`], what the HTTP and TCP code expose per request.
//! - `operator`: the command operators (`%REQ(X?Y):N%`, `%DURATION%`, ...).
//! - `time`: `%START_TIME(...)%` formatting.
//! - `formatter`: [`Formatter`], a parsed text or JSON format.
//! - `writer`: [`LogSink`]s, a writer thread per destination.
//! - `http`: a finished HTTP request as a [`LogContext`].

pub mod context;
pub mod formatter;
pub mod http;
pub mod operator;
pub mod time;
pub mod writer;

use std::sync::Arc;

pub use context::{LogContext, LogRecord};
pub use formatter::{ENVOY_DEFAULT_FORMAT, FormatError, Formatter, ISTIO_DEFAULT_FORMAT};
pub use writer::{LogSink, LogSinks};

use crate::config::access_log::AccessLog;

#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("invalid access log format: {0}")]
    Format(#[from] FormatError),
    #[error("cannot open access log: {0}")]
    Open(#[from] std::io::Error),
}

/// One configured access log: a format and where its lines go.
#[derive(Debug, Clone)]
pub struct AccessLogger {
    formatter: Arc<Formatter>,
    sink: Arc<LogSink>,
}

impl AccessLogger {
    pub fn new(config: &AccessLog, sinks: &LogSinks) -> Result<AccessLogger, AccessLogError> {
        Ok(AccessLogger {
            formatter: Arc::new(Formatter::from_config(config)?),
            sink: sinks.get(&config.sink)?,
        })
    }

    pub fn with_parts(formatter: Arc<Formatter>, sink: Arc<LogSink>) -> AccessLogger {
        AccessLogger { formatter, sink }
    }

    /// Formats on the calling thread (the request's data is at hand there) and queues
    /// the line.
    pub fn log(&self, ctx: &dyn LogContext) {
        self.sink.write(self.formatter.format(ctx));
    }

    pub fn sink(&self) -> &Arc<LogSink> {
        &self.sink
    }
}
