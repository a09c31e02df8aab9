//! The merged Prometheus endpoint: the agent's own metrics, then the proxy's (from its
//! Prometheus listener), then the application's when the pod says where they are
//! (`ISTIO_PROMETHEUS_ANNOTATIONS`, written by the injector from the pod's
//! `prometheus.io/*` annotations). The application goes last: OpenMetrics ends with
//! `# EOF`, which must close the whole exposition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub const ENV_NAME: &str = "ISTIO_PROMETHEUS_ANNOTATIONS";
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where the application serves its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeConfig {
    pub port: u16,
    pub path: String,
}

#[derive(Debug, Deserialize)]
struct Annotations {
    #[serde(default)]
    scrape: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    port: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{ENV_NAME}: {0}")]
pub struct ScrapeConfigError(pub String);

impl ScrapeConfig {
    /// `{"scrape":"true","path":"/metrics","port":"9090"}` → where to scrape; `None`
    /// when unset or `scrape` is `"false"`. Path defaults to `/metrics`, port to 80. The
    /// status port itself is refused: scraping it would recurse.
    pub fn parse(
        json: Option<&str>,
        status_port: u16,
    ) -> Result<Option<ScrapeConfig>, ScrapeConfigError> {
        let Some(json) = json.filter(|j| !j.trim().is_empty()) else {
            return Ok(None);
        };
        let a: Annotations = serde_json::from_str(json)
            .map_err(|e| ScrapeConfigError(format!("invalid JSON: {e}")))?;
        if a.scrape == "false" {
            return Ok(None);
        }
        let port = if a.port.is_empty() {
            80
        } else {
            a.port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    ScrapeConfigError(format!("port {:?} is not a port number", a.port))
                })?
        };
        if port == status_port {
            return Err(ScrapeConfigError(format!(
                "the application port {port} is the agent's status port; scraping it would loop \
                 (is the pod annotated prometheus.io/port={port}, or injected twice?)"
            )));
        }
        let path = if a.path.is_empty() {
            "/metrics".to_owned()
        } else {
            a.path
        };
        Ok(Some(ScrapeConfig { port, path }))
    }
}

/// Which part of a merged scrape failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrapeSource {
    Envoy,
    Application,
}

/// The agent's own counters, rendered in Istio's names (`istio_agent_*`).
#[derive(Debug)]
pub struct AgentMetrics {
    scrapes: AtomicU64,
    envoy_failures: AtomicU64,
    app_failures: AtomicU64,
    started: SystemTime,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            scrapes: AtomicU64::new(0),
            envoy_failures: AtomicU64::new(0),
            app_failures: AtomicU64::new(0),
            started: SystemTime::now(),
        }
    }
}

impl AgentMetrics {
    pub fn scrape_started(&self) {
        self.scrapes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn scrape_failed(&self, source: ScrapeSource) {
        let counter = match source {
            ScrapeSource::Envoy => &self.envoy_failures,
            ScrapeSource::Application => &self.app_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text format 0.0.4.
    pub fn render(&self, resident_bytes: Option<u64>) -> String {
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut out = String::new();
        out.push_str("# HELP istio_agent_scrapes_total The total number of scrapes.\n");
        out.push_str("# TYPE istio_agent_scrapes_total counter\n");
        out.push_str(&format!(
            "istio_agent_scrapes_total {}\n",
            self.scrapes.load(Ordering::Relaxed)
        ));
        out.push_str(
            "# HELP istio_agent_scrape_failures_total The total number of failed scrapes.\n",
        );
        out.push_str("# TYPE istio_agent_scrape_failures_total counter\n");
        for (kind, value) in [
            ("envoy", self.envoy_failures.load(Ordering::Relaxed)),
            ("application", self.app_failures.load(Ordering::Relaxed)),
            ("agent", 0),
        ] {
            out.push_str(&format!(
                "istio_agent_scrape_failures_total{{type=\"{kind}\"}} {value}\n"
            ));
        }
        out.push_str("# HELP istio_agent_process_start_time_seconds Start time of the process since unix epoch in seconds.\n");
        out.push_str("# TYPE istio_agent_process_start_time_seconds gauge\n");
        out.push_str(&format!("istio_agent_process_start_time_seconds {start}\n"));
        if let Some(bytes) = resident_bytes {
            out.push_str(
                "# HELP istio_agent_process_resident_memory_bytes Resident memory size in bytes.\n",
            );
            out.push_str("# TYPE istio_agent_process_resident_memory_bytes gauge\n");
            out.push_str(&format!(
                "istio_agent_process_resident_memory_bytes {bytes}\n"
            ));
        }
        out
    }
}

/// This process's resident set size, from `/proc/self/status`.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Joins the three parts and picks the content type: OpenMetrics when the
/// application answered in it, else the text format.
pub fn merge(
    agent: &str,
    envoy: Option<&[u8]>,
    app: Option<(&[u8], Option<&str>)>,
) -> (Vec<u8>, &'static str) {
    let mut body = Vec::with_capacity(agent.len() + envoy.map_or(0, <[u8]>::len));
    body.extend_from_slice(agent.as_bytes());
    for part in [envoy, app.map(|(b, _)| b)].into_iter().flatten() {
        if !body.is_empty() && !body.ends_with(b"\n") {
            body.push(b'\n');
        }
        body.extend_from_slice(part);
    }
    let openmetrics = app
        .and_then(|(_, ct)| ct)
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/openmetrics-text")
        });
    (
        body,
        if openmetrics {
            OPENMETRICS_FORMAT
        } else {
            TEXT_FORMAT
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_annotations() {
        assert_eq!(ScrapeConfig::parse(None, 15020).unwrap(), None);
        assert_eq!(
            ScrapeConfig::parse(
                Some(r#"{"scrape":"true","path":"/m","port":"9100"}"#),
                15020
            )
            .unwrap(),
            Some(ScrapeConfig {
                port: 9100,
                path: "/m".into()
            })
        );
        assert_eq!(
            ScrapeConfig::parse(Some(r#"{"scrape":"true"}"#), 15020).unwrap(),
            Some(ScrapeConfig {
                port: 80,
                path: "/metrics".into()
            })
        );
        assert_eq!(
            ScrapeConfig::parse(Some(r#"{"scrape":"false","port":"1"}"#), 15020).unwrap(),
            None
        );
        let loop_err = ScrapeConfig::parse(Some(r#"{"port":"15020"}"#), 15020).unwrap_err();
        assert!(loop_err.to_string().contains("status port"), "{loop_err}");
        assert!(ScrapeConfig::parse(Some(r#"{"port":"http"}"#), 15020).is_err());
        assert!(ScrapeConfig::parse(Some("{"), 15020).is_err());
    }

    #[test]
    fn merged_output_keeps_every_part_and_ends_with_the_app() {
        let m = AgentMetrics::default();
        m.scrape_started();
        m.scrape_failed(ScrapeSource::Application);
        let agent = m.render(Some(4096));
        assert!(agent.contains("istio_agent_scrapes_total 1\n"), "{agent}");
        assert!(agent.contains("istio_agent_scrape_failures_total{type=\"application\"} 1\n"));
        assert!(agent.contains("istio_agent_process_resident_memory_bytes 4096\n"));

        let (body, ct) = merge(
            &agent,
            Some(b"envoy_server_live 1"),
            Some((
                b"app_up 1\n# EOF\n",
                Some("application/openmetrics-text; version=1.0.0"),
            )),
        );
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains("\nenvoy_server_live 1\napp_up 1\n# EOF\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(ct, OPENMETRICS_FORMAT);

        let (body, ct) = merge(
            &agent,
            None,
            Some((b"app_up 1\n", Some("text/plain; version=0.0.4"))),
        );
        assert!(String::from_utf8(body).unwrap().ends_with("app_up 1\n"));
        assert_eq!(ct, TEXT_FORMAT);
    }
}
