//! `stats_config.stats_matcher`: which stats exist at all. A rejected stat still hands
//! out a working handle (the data plane does not care) but is never registered or
//! printed, as Envoy's null stats. Istio's bootstrap uses an inclusion list to keep the
//! per-cluster stats of a large mesh out of every sidecar's memory.

use regex::Regex;

#[derive(Clone, Debug)]
pub enum NamePattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// Must match the whole name, as Envoy's `safe_regex`.
    Regex(Regex),
}

#[derive(Clone, Debug)]
pub struct NameMatcher {
    pub pattern: NamePattern,
    pub ignore_case: bool,
}

impl NameMatcher {
    pub fn prefix(p: &str) -> NameMatcher {
        NameMatcher {
            pattern: NamePattern::Prefix(p.to_string()),
            ignore_case: false,
        }
    }

    pub fn suffix(s: &str) -> NameMatcher {
        NameMatcher {
            pattern: NamePattern::Suffix(s.to_string()),
            ignore_case: false,
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        let fold = |s: &str| {
            if self.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        match &self.pattern {
            NamePattern::Regex(r) => r.is_match(name),
            NamePattern::Exact(s) => fold(name) == fold(s),
            NamePattern::Prefix(s) => fold(name).starts_with(&fold(s)),
            NamePattern::Suffix(s) => fold(name).ends_with(&fold(s)),
            NamePattern::Contains(s) => fold(name).contains(&fold(s)),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub enum StatsMatcher {
    #[default]
    AcceptAll,
    RejectAll,
    /// Only stats matching one of these.
    Inclusion(Vec<NameMatcher>),
    /// Every stat except those matching one of these.
    Exclusion(Vec<NameMatcher>),
}

impl StatsMatcher {
    pub fn accepts(&self, name: &str) -> bool {
        match self {
            StatsMatcher::AcceptAll => true,
            StatsMatcher::RejectAll => false,
            StatsMatcher::Inclusion(list) => list.iter().any(|m| m.matches(name)),
            StatsMatcher::Exclusion(list) => !list.iter().any(|m| m.matches(name)),
        }
    }

    /// The inclusion list Istio's bootstrap writes for a sidecar with the default
    /// `proxyStatsMatcher`: its standard metrics plus what its agent and readiness
    /// checks read.
    pub fn istio_default() -> StatsMatcher {
        let mut list: Vec<NameMatcher> = [
            "reporter=",
            "cluster_manager",
            "listener_manager",
            "server",
            "cluster.xds-grpc",
            "wasm",
            "component",
            "istio",
        ]
        .iter()
        .map(|p| NameMatcher::prefix(p))
        .collect();
        list.extend(
            [
                "rbac.allowed",
                "rbac.denied",
                "shadow_allowed",
                "shadow_denied",
                "downstream_cx_active",
            ]
            .iter()
            .map(|s| NameMatcher::suffix(s)),
        );
        if let Ok(r) = Regex::new(r"^(?:vhost\..*\.route\..*)$") {
            list.push(NameMatcher {
                pattern: NamePattern::Regex(r),
                ignore_case: false,
            });
        }
        StatsMatcher::Inclusion(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusion_exclusion_reject() {
        let istio = StatsMatcher::istio_default();
        assert!(istio.accepts("server.live"));
        assert!(istio.accepts("cluster.xds-grpc.upstream_rq_total"));
        assert!(istio.accepts("istiocustom.istio_requests_total.reporter.source"));
        assert!(istio.accepts("listener.0.0.0.0_15001.downstream_cx_active"));
        assert!(!istio.accepts("cluster.outbound|80||a.upstream_rq_total"));
        assert!(StatsMatcher::AcceptAll.accepts("x"));
        assert!(!StatsMatcher::RejectAll.accepts("x"));
        let ex = StatsMatcher::Exclusion(vec![NameMatcher {
            pattern: NamePattern::Contains("UPSTREAM".into()),
            ignore_case: true,
        }]);
        assert!(!ex.accepts("cluster.a.upstream_rq_total"));
        assert!(ex.accepts("server.live"));
    }
}
