//! Why an xDS resource was rejected: named resource, field path, reason. The text goes
//! into the NACK's `error_detail`, so it must let a person find the problem.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// e.g. `Listener virtualOutbound`, `Cluster outbound|80||a.b.svc.cluster.local`.
    pub resource: String,
    /// Proto field path inside the resource, e.g. `filter_chains[2].filters[0].typed_config`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.resource, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.resource, self.field, self.reason)
        }
    }
}

/// Builds errors for one resource while walking its fields.
#[derive(Clone, Debug)]
pub struct Ctx {
    resource: String,
    path: String,
}

impl Ctx {
    pub fn new(kind: &str, name: &str) -> Ctx {
        Ctx {
            resource: format!("{kind} {name}"),
            path: String::new(),
        }
    }

    /// A nested field: `ctx.field("filter_chains").index(2).field("filters")`.
    pub fn field(&self, name: &str) -> Ctx {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        Ctx {
            resource: self.resource.clone(),
            path,
        }
    }

    pub fn index(&self, i: usize) -> Ctx {
        Ctx {
            resource: self.resource.clone(),
            path: format!("{}[{i}]", self.path),
        }
    }

    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            resource: self.resource.clone(),
            field: self.path.clone(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ConfigError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_field() {
        let ctx = Ctx::new("Listener", "virtualOutbound");
        let e = ctx
            .field("filter_chains")
            .index(2)
            .field("filters")
            .index(0)
            .error("unknown filter");
        assert_eq!(
            e.to_string(),
            "Listener virtualOutbound: filter_chains[2].filters[0]: unknown filter"
        );
        assert_eq!(ctx.error("x").to_string(), "Listener virtualOutbound: x");
    }
}
