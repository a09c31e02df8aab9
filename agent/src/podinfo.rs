//! The pod's labels and annotations, as the Kubernetes downward API writes them into
//! `/etc/istio/pod/{labels,annotations}`: one `key="value"` line each, the value quoted
//! the way Go's `%q` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where Istio's injector mounts the downward-API volume, relative to the agent's
/// working directory (`/` in the proxy image).
pub const POD_INFO_DIR: &str = "./etc/istio/pod";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodInfoError {
    #[error("{path}: line {line}: value is not a quoted string: {text}")]
    Unquote {
        path: String,
        line: usize,
        text: String,
    },
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
}

/// Labels and annotations of the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// `None` when the file does not exist (not on Kubernetes).
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl PodInfo {
    /// Reads `<dir>/labels` and `<dir>/annotations`; a missing file is not an error.
    pub fn read(dir: &Path) -> Result<PodInfo, PodInfoError> {
        Ok(PodInfo {
            labels: read_file(&dir.join("labels"))?,
            annotations: read_file(&dir.join("annotations"))?,
        })
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }
}

fn read_file(path: &PathBuf) -> Result<Option<BTreeMap<String, String>>, PodInfoError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PodInfoError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// Parses the downward-API format; lines without `=` are skipped, as Istio does.
pub fn parse(text: &str, path: &str) -> Result<BTreeMap<String, String>, PodInfoError> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let Some((key, quoted)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(quoted).ok_or_else(|| PodInfoError::Unquote {
            path: path.to_owned(),
            line: n + 1,
            text: line.to_owned(),
        })?;
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

/// Undoes Go's `strconv.Quote`: a double-quoted string with backslash escapes.
pub fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => {
                let esc = chars.next()?;
                let simple = match esc {
                    'a' => Some('\x07'),
                    'b' => Some('\x08'),
                    'f' => Some('\x0c'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\x0b'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    '\'' => Some('\''),
                    _ => None,
                };
                if let Some(ch) = simple {
                    out.push(ch);
                    continue;
                }
                let digits = match esc {
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    '0'..='7' => {
                        let rest: String = chars.by_ref().take(2).collect();
                        let code = u32::from_str_radix(&format!("{esc}{rest}"), 8).ok()?;
                        out.push(char::from_u32(code)?);
                        continue;
                    }
                    _ => return None,
                };
                let hex: String = chars.by_ref().take(digits).collect();
                if hex.len() != digits {
                    return None;
                }
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_downward_api_format() {
        let text = "app=\"reviews\"\nversion=\"v1\"\nsecurity.istio.io/tlsMode=\"istio\"\n\
                    note=\"say \\\"hi\\\"\\n\\u00e9\\x41\"\n\ngarbage\n";
        let m = parse(text, "labels").unwrap();
        assert_eq!(m["app"], "reviews");
        assert_eq!(m["security.istio.io/tlsMode"], "istio");
        assert_eq!(m["note"], "say \"hi\"\n\u{e9}A");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn a_json_annotation_value_survives() {
        let text = r#"proxy.istio.io/config="{\"concurrency\":1,\"drainDuration\":\"2s\"}""#;
        let m = parse(text, "annotations").unwrap();
        assert_eq!(
            m["proxy.istio.io/config"],
            r#"{"concurrency":1,"drainDuration":"2s"}"#
        );
    }

    #[test]
    fn an_unquoted_value_is_an_error_naming_the_line() {
        let err = parse("a=\"1\"\nb=2\n", "/etc/istio/pod/labels").unwrap_err();
        assert_eq!(
            err,
            PodInfoError::Unquote {
                path: "/etc/istio/pod/labels".into(),
                line: 2,
                text: "b=2".into()
            }
        );
    }

    #[test]
    fn missing_files_mean_no_pod_info() {
        let info = PodInfo::read(Path::new("/nonexistent/strait/pod")).unwrap();
        assert_eq!(info, PodInfo::default());
    }
}
