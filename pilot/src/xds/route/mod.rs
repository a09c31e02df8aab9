//! Route generation: VirtualServices and services → Envoy `RouteConfiguration`s (RDS for
//! outbound ports, inline for inbound chains), following Istio's sidecar behaviour.

pub mod action;
pub mod cors;
pub mod defaults;
pub mod fault;
pub mod hash;
pub mod headers;
pub mod inbound;
pub mod matcher;
pub mod outbound;
pub mod redirect;
pub mod retry;
pub mod translate;
pub mod vhost;
pub mod wkt;

#[cfg(test)]
pub mod fixture;
#[cfg(test)]
mod rds_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{ConfigMeta, Proxy, PushContext, Service, metric};

/// The services reachable on one listener port, by hostname.
pub type Registry = BTreeMap<String, Arc<Service>>;

/// What route translation needs to know besides the config itself.
pub struct RouteContext<'a> {
    pub proxy: &'a Proxy,
    pub push: &'a PushContext,
    /// The port the routes are built for (the RDS name).
    pub listener_port: u16,
    pub registry: &'a Registry,
    /// The namespace of the config being translated; short host names resolve in it.
    pub config_namespace: &'a str,
}

/// Problems found while translating one config object: values that validation should have
/// rejected and that Envoy would refuse. They are skipped, never fatal, and end up in push
/// status under `pilot_invalid_config`.
#[derive(Debug, Default)]
pub struct Problems {
    messages: Vec<String>,
    scope: String,
}

impl Problems {
    /// Prefixes later messages with a field path such as `http[0].match[1]`.
    pub fn in_scope(&mut self, scope: String) -> &mut Problems {
        self.scope = scope;
        self
    }

    pub fn push(&mut self, message: impl Into<String>) {
        let message = message.into();
        if self.scope.is_empty() {
            self.messages.push(message);
        } else {
            self.messages.push(format!("{}: {message}", self.scope));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn report(&self, push: &PushContext, kind: &str, meta: &ConfigMeta) {
        if self.messages.is_empty() {
            return;
        }
        let key = format!("{kind}/{}/{}", meta.namespace, meta.name);
        let mut message = self.messages.join("; ");
        if !meta.source.is_empty() {
            message = format!("{}: {message}", meta.source);
        }
        push.status.add(metric::INVALID_CONFIG, key, message);
    }
}

/// Istio's `host.Name.Matches`: equal names, or a `*.suffix` wildcard on either side covering
/// the other (two wildcards match when one suffix contains the other).
pub fn hosts_match(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => {
            if sa.len() > sb.len() {
                sa.ends_with(sb)
            } else {
                sb.ends_with(sa)
            }
        }
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matching() {
        assert!(hosts_match("a.b.c", "a.b.c"));
        assert!(!hosts_match("a.b.c", "x.b.c"));
        assert!(hosts_match("*.b.c", "a.b.c"));
        assert!(hosts_match("a.b.c", "*.b.c"));
        assert!(hosts_match("*", "anything"));
        assert!(hosts_match("*.c", "*.b.c"));
        assert!(!hosts_match("*.x.c", "*.b.c"));
    }

    #[test]
    fn problems_are_scoped() {
        let mut p = Problems::default();
        p.in_scope("http[0]".into()).push("bad");
        p.push("worse");
        assert_eq!(p.messages, ["http[0]: bad", "http[0]: worse"]);
        assert_eq!(p.len(), 2);
    }
}
