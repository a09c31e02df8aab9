//! The agent's environment as plain data, and the parsers for the values Istio puts
//! there (Go booleans, Go durations, ports), each error naming the variable.

use std::collections::BTreeMap;
use std::time::Duration;

/// Environment variables by name. The agent reads the process environment once into
/// this map, so everything that depends on it is a pure function of the map.
pub type Env = BTreeMap<String, String>;

/// The process environment (variables that are not valid UTF-8 are skipped).
pub fn from_process() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("environment variable {name}={value:?}: {reason}")]
pub struct EnvError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

fn error(name: &str, value: &str, reason: impl Into<String>) -> EnvError {
    EnvError {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// A Go `strconv.ParseBool` value; `default` when unset or empty.
pub fn bool_var(env: &Env, name: &str, default: bool) -> Result<bool, EnvError> {
    match env.get(name).map(String::as_str) {
        None | Some("") => Ok(default),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(error(name, other, "not a boolean (true or false)")),
    }
}

/// A Go duration (`5s`, `500ms`, `1m30s`); `default` when unset or empty.
pub fn duration_var(env: &Env, name: &str, default: Duration) -> Result<Duration, EnvError> {
    match env.get(name).map(String::as_str) {
        None | Some("") => Ok(default),
        Some(v) => strait_proto::istio::Duration::parse(v)
            .map(|d| d.as_std())
            .map_err(|e| error(name, v, e.to_string())),
    }
}

/// A TCP port number; `default` when unset or empty.
pub fn port_var(env: &Env, name: &str, default: u16) -> Result<u16, EnvError> {
    match env.get(name).map(String::as_str) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| error(name, v, "not a port number (1-65535)")),
    }
}

/// A non-empty value.
pub fn string_var<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn go_booleans() {
        let e = env(&[("A", "true"), ("B", "0"), ("C", "yes"), ("D", "")]);
        assert!(bool_var(&e, "A", false).unwrap());
        assert!(!bool_var(&e, "B", true).unwrap());
        assert!(bool_var(&e, "D", true).unwrap());
        assert!(!bool_var(&e, "missing", false).unwrap());
        let err = bool_var(&e, "C", false).unwrap_err();
        assert_eq!(err.name, "C");
        assert!(err.to_string().contains("C=\"yes\""), "{err}");
    }

    #[test]
    fn go_durations_and_ports() {
        let e = env(&[("D", "1m30s"), ("BAD", "soon"), ("P", "15021"), ("Q", "0")]);
        assert_eq!(
            duration_var(&e, "D", Duration::ZERO).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            duration_var(&e, "X", Duration::from_secs(5)).unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            duration_var(&e, "BAD", Duration::ZERO).unwrap_err().name,
            "BAD"
        );
        assert_eq!(port_var(&e, "P", 1).unwrap(), 15021);
        assert_eq!(port_var(&e, "Q", 1).unwrap_err().name, "Q");
    }
}
