//! Tag extraction: Envoy names stats with dotted strings that embed variable parts
//! (`cluster.<name>.upstream_rq_200`); exporters that want labels (Prometheus) pull
//! those parts out as tags and print the rest as the metric name.
//!
//! Semantics follow Envoy's `TagProducerImpl`: every extractor sees the full name; the
//! first capture group of a regex is cut out of the name and the second (or the first,
//! when there is no second) is the tag value; extractors without a leading literal token
//! run first, then those whose leading token (`^cluster\.` → `cluster`) equals the
//! name's first token; of several extractors sharing a tag name only the first match
//! counts. Token patterns (`cluster.$.**`) are Envoy's faster form of the same rule.
//!
//! User regexes (bootstrap `stats_tags`) are ECMAScript in Envoy, so look-ahead is
//! allowed and Istio's bootstrap uses it; they are compiled with `fancy-regex`.

use std::collections::{HashMap, HashSet};

use fancy_regex::Regex;

/// A tag name and value, e.g. `envoy.cluster_name` = `outbound|80||a.ns.svc.cluster.local`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

impl Tag {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag {
            name: name.into(),
            value: value.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TagError {
    #[error("tag_name cannot be empty")]
    EmptyName,
    #[error("invalid regex for tag '{name}': {reason}")]
    Regex { name: String, reason: String },
    #[error("no regex specified for tag specifier and no default regex for name: '{0}'")]
    NoDefault(String),
}

#[derive(Debug)]
enum Kind {
    Regex {
        regex: Box<Regex>,
        substr: Option<&'static str>,
        negative_match: Option<&'static str>,
    },
    /// Dot-separated tokens: a literal, `*` (any one token), `**` (any run of tokens) or
    /// `$` (the token taken as the value).
    Tokens {
        tokens: Vec<String>,
        value_index: usize,
    },
    Fixed(String),
}

#[derive(Debug)]
pub struct TagExtractor {
    name: String,
    prefix: Option<String>,
    kind: Kind,
}

/// A half-open byte range to cut out of the stat name.
type Cut = (usize, usize);

impl TagExtractor {
    pub fn regex(name: &str, pattern: &str) -> Result<TagExtractor, TagError> {
        TagExtractor::regex_with(name, pattern, None, None)
    }

    fn regex_with(
        name: &str,
        pattern: &str,
        substr: Option<&'static str>,
        negative_match: Option<&'static str>,
    ) -> Result<TagExtractor, TagError> {
        if name.is_empty() {
            return Err(TagError::EmptyName);
        }
        let regex = Regex::new(pattern).map_err(|e| TagError::Regex {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        Ok(TagExtractor {
            name: name.to_string(),
            prefix: regex_prefix(pattern),
            kind: Kind::Regex {
                regex: Box::new(regex),
                substr,
                negative_match,
            },
        })
    }

    fn tokens(name: &str, pattern: &str) -> TagExtractor {
        let tokens: Vec<String> = pattern.split('.').map(str::to_string).collect();
        let value_index = tokens.iter().position(|t| t == "$").unwrap_or(0);
        let prefix = tokens
            .first()
            .filter(|t| !matches!(t.as_str(), "$" | "*" | "**"))
            .cloned();
        TagExtractor {
            name: name.to_string(),
            prefix,
            kind: Kind::Tokens {
                tokens,
                value_index,
            },
        }
    }

    pub fn fixed(name: &str, value: &str) -> Result<TagExtractor, TagError> {
        if name.is_empty() {
            return Err(TagError::EmptyName);
        }
        Ok(TagExtractor {
            name: name.to_string(),
            prefix: None,
            kind: Kind::Fixed(value.to_string()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn extract(&self, stat: &str, tokens: &[&str]) -> Option<(String, Option<Cut>)> {
        match &self.kind {
            Kind::Fixed(value) => Some((value.clone(), None)),
            Kind::Regex {
                regex,
                substr,
                negative_match,
            } => {
                if substr.is_some_and(|s| !stat.contains(s)) {
                    return None;
                }
                let caps = regex.captures(stat).ok()??;
                let remove = caps.get(1).filter(|m| !m.as_str().is_empty())?;
                let value = caps
                    .get(2)
                    .filter(|m| !m.as_str().is_empty())
                    .unwrap_or(remove)
                    .as_str();
                if negative_match.is_some_and(|n| n == value) {
                    return None;
                }
                Some((value.to_string(), Some((remove.start(), remove.end()))))
            }
            Kind::Tokens {
                tokens: pattern,
                value_index,
            } => {
                let (index, start) = match_tokens(pattern, *value_index, tokens, 0, 0, 0)?;
                let value = tokens.get(index)?;
                let mut start = start;
                let mut end = start + value.len();
                // Cut the dot after the token, or before it when it is the last one.
                if index + 1 < tokens.len() {
                    end += 1;
                } else {
                    start = start.saturating_sub(1);
                }
                Some((value.to_string(), Some((start, end))))
            }
        }
    }
}

/// Finds where `pattern` matches all of `input` (from the given positions); returns the
/// index and byte offset of the input token at the pattern's `$`.
fn match_tokens(
    pattern: &[String],
    value_index: usize,
    input: &[&str],
    mut p: usize,
    mut i: usize,
    mut offset: usize,
) -> Option<(usize, usize)> {
    let mut found = None;
    while p < pattern.len() && i < input.len() {
        if p == value_index {
            found = Some((i, offset));
        } else if pattern[p] == "**" {
            if p + 1 == pattern.len() {
                return found;
            }
            // `**` in the middle: try every suffix of the input for the rest.
            for j in i..input.len() {
                if let Some(m) = match_tokens(pattern, value_index, input, p + 1, j, offset) {
                    return Some(m);
                }
                offset += input[j].len() + 1;
            }
            return None;
        } else if pattern[p] != "*" && pattern[p] != input[i] {
            return None;
        }
        offset += input[i].len() + 1;
        p += 1;
        i += 1;
    }
    if p == pattern.len() && i == input.len() {
        found
    } else {
        None
    }
}

/// Envoy's shortcut: a regex starting `^word\.` (or `^word(?=\.)`, or `^word$`) only
/// matches names whose first token is `word`.
fn regex_prefix(regex: &str) -> Option<String> {
    let rest = regex.strip_prefix('^')?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let after = &rest[end..];
    (after.starts_with("\\.") || after.starts_with("(?=\\.)") || after == "$")
        .then(|| rest[..end].to_string())
}

/// A `stats_tags` entry of the bootstrap's `stats_config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagSpecifier {
    /// A regex extractor.
    Regex { name: String, regex: String },
    /// A tag with the same value on every stat.
    Fixed { name: String, value: String },
    /// Envoy's built-in extractor(s) of that name.
    Default(String),
}

/// Turns stat names into a tag-extracted name and tags.
#[derive(Debug, Default)]
pub struct TagProducer {
    without_prefix: Vec<TagExtractor>,
    by_prefix: HashMap<String, Vec<TagExtractor>>,
    /// Tag names with more than one extractor: the first match wins.
    shared_names: HashSet<String>,
}

const TAG_VALUE: &str = r"[^\.]+";
const ADDRESS: &str = r"(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)";

/// One built-in extractor of Envoy's `well_known_names`.
enum Builtin {
    Re(
        &'static str,
        String,
        Option<&'static str>,
        Option<&'static str>,
    ),
    Tok(&'static str, &'static str),
}

fn builtins() -> Vec<Builtin> {
    use Builtin::{Re, Tok};
    let v = TAG_VALUE;
    let lc = r"(?:listener|cluster)\..*?";
    vec![
        Re(
            "envoy.response_code",
            r"_rq(_(\d{3}))$".into(),
            Some("_rq_"),
            None,
        ),
        Re(
            "envoy.response_code_class",
            r"_rq_((\d))xx$".into(),
            Some("_rq_"),
            None,
        ),
        Tok(
            "envoy.mongo_callsite",
            "mongo.*.collection.*.callsite.$.query.**",
        ),
        Tok("envoy.mongo_collection", "mongo.*.collection.$.**.query.*"),
        Tok("envoy.mongo_cmd", "mongo.*.cmd.$.**"),
        Tok("envoy.grpc_bridge_method", "cluster.*.grpc.*.$.**"),
        Tok("envoy.http_user_agent", "http.*.user_agent.$.**"),
        Tok("envoy.virtual_cluster", "vhost.*.vcluster.$.**"),
        Tok("envoy.fault_downstream_cluster", "http.*.fault.$.**"),
        Re(
            "envoy.ssl_cipher",
            r"^listener\..*?\.ssl\.ciphers(\.([\w-]+))$".into(),
            Some(".ssl.ciphers."),
            None,
        ),
        Re(
            "envoy.ssl_curve",
            format!(r"^{lc}\.ssl\.curves(\.([\w-]+))$"),
            Some(".ssl.curves."),
            None,
        ),
        Re(
            "envoy.ssl_sigalg",
            format!(r"^{lc}\.ssl\.sigalgs(\.([\w-]+))$"),
            Some(".ssl.sigalgs."),
            None,
        ),
        Re(
            "envoy.ssl_version",
            format!(r"^{lc}\.ssl\.versions(\.(TLSv\d\.\d))$"),
            Some(".ssl.versions."),
            None,
        ),
        Re(
            "envoy.ssl_cipher_suite",
            format!(r"^cluster\.{v}\.ssl\.ciphers(\.([\w-]+))$"),
            Some(".ssl.ciphers."),
            None,
        ),
        Tok("envoy.grpc_bridge_service", "cluster.*.grpc.$.**"),
        Tok("envoy.tcp_prefix", "tcp.$.**"),
        Tok("envoy.udp_prefix", "udp.$.**"),
        Tok("envoy.clientssl_prefix", "auth.clientssl.$.**"),
        Tok("envoy.ratelimit_prefix", "ratelimit.$.**"),
        Tok("envoy.cluster_name", "cluster.$.**"),
        Re(
            "envoy.http_conn_manager_prefix",
            format!(r"^listener\..*?\.http\.(({v})\.)"),
            Some(".http."),
            None,
        ),
        Tok("envoy.ext_authz_prefix", "cluster.*.ext_authz.$.**"),
        Tok("envoy.ext_authz_prefix", "http.*.ext_authz.$.**"),
        Tok("envoy.http_conn_manager_prefix", "http.$.**"),
        Re(
            "envoy.worker_id",
            format!(
                r"^(?:listener\.(?:{ADDRESS}|{v})\.|server\.|listener_manager\.)worker_((\d+)\.)"
            ),
            None,
            None,
        ),
        Re(
            "envoy.listener_address",
            format!(r"^listener\.(({ADDRESS}|{v})\.)"),
            None,
            Some("admin"),
        ),
        Tok("envoy.virtual_host", "vhost.$.**"),
        Tok("envoy.mongo_prefix", "mongo.$.**"),
        Re(
            "envoy.rds_route_config",
            format!(r"^http\.{v}\.rds\.(([\w\-.]+)\.)\w+?$"),
            Some(".rds."),
            None,
        ),
        Tok("envoy.route", "vhost.*.route.$.**"),
        Tok("envoy.thrift_prefix", "thrift.$.**"),
        Tok("envoy.redis_prefix", "redis.$.**"),
        Tok(
            "envoy.local_http_ratelimit_prefix",
            "$.http_local_rate_limit.**",
        ),
        Tok(
            "envoy.local_network_ratelimit_prefix",
            "local_rate_limit.$.**",
        ),
        Tok(
            "envoy.local_listener_ratelimit_prefix",
            "listener_local_ratelimit.$.**",
        ),
        Tok("envoy.dns_filter_prefix", "dns_filter.$.**"),
    ]
}

fn builtin_extractor(b: Builtin) -> Result<TagExtractor, TagError> {
    match b {
        Builtin::Re(name, regex, substr, negative) => {
            TagExtractor::regex_with(name, &regex, substr, negative)
        }
        Builtin::Tok(name, tokens) => Ok(TagExtractor::tokens(name, tokens)),
    }
}

impl TagProducer {
    /// No tags: every stat keeps its full name.
    pub fn none() -> TagProducer {
        TagProducer::default()
    }

    /// Envoy's built-in extractors (a bootstrap without `stats_config`).
    pub fn envoy_default() -> TagProducer {
        let mut producer = TagProducer::default();
        for b in builtins() {
            // The built-in patterns are constants; one that failed to compile would be a
            // bug caught by the tests, so it is skipped rather than failing the proxy.
            if let Ok(extractor) = builtin_extractor(b) {
                producer.add(extractor);
            }
        }
        producer
    }

    /// Envoy's rules for `stats_config`: the built-ins unless `use_all_default_tags` is
    /// false, then each specifier in order.
    pub fn new(
        specifiers: &[TagSpecifier],
        use_all_default_tags: bool,
    ) -> Result<TagProducer, TagError> {
        let mut producer = if use_all_default_tags {
            TagProducer::envoy_default()
        } else {
            TagProducer::default()
        };
        for spec in specifiers {
            match spec {
                TagSpecifier::Regex { name, regex } => {
                    producer.add(TagExtractor::regex(name, regex)?);
                }
                TagSpecifier::Fixed { name, value } => {
                    producer.add(TagExtractor::fixed(name, value)?);
                }
                TagSpecifier::Default(name) => {
                    let matching: Vec<Builtin> = builtins()
                        .into_iter()
                        .filter(|b| match b {
                            Builtin::Re(n, ..) | Builtin::Tok(n, _) => n == name,
                        })
                        .collect();
                    if matching.is_empty() {
                        return Err(TagError::NoDefault(name.clone()));
                    }
                    for b in matching {
                        producer.add(builtin_extractor(b)?);
                    }
                }
            }
        }
        Ok(producer)
    }

    /// Istio's sidecar bootstrap `stats_config.stats_tags` (its
    /// `envoy_bootstrap.json`), with `use_all_default_tags: false`.
    pub fn istio() -> TagProducer {
        let specs: Vec<TagSpecifier> = ISTIO_STATS_TAGS
            .iter()
            .map(|(name, regex)| TagSpecifier::Regex {
                name: (*name).to_string(),
                regex: (*regex).to_string(),
            })
            .collect();
        TagProducer::new(&specs, false).unwrap_or_default()
    }

    pub fn add(&mut self, extractor: TagExtractor) {
        let exists = self
            .without_prefix
            .iter()
            .chain(self.by_prefix.values().flatten())
            .any(|e| e.name == extractor.name);
        if exists {
            self.shared_names.insert(extractor.name.clone());
        }
        match extractor.prefix.clone() {
            Some(prefix) => self.by_prefix.entry(prefix).or_default().push(extractor),
            None => self.without_prefix.push(extractor),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.without_prefix.is_empty() && self.by_prefix.is_empty()
    }

    /// The tag-extracted name and the tags of `stat`.
    pub fn produce(&self, stat: &str) -> (String, Vec<Tag>) {
        if self.is_empty() {
            return (stat.to_string(), Vec::new());
        }
        let tokens: Vec<&str> = stat.split('.').collect();
        let first = stat.split('.').next().unwrap_or_default();
        let candidates = self
            .without_prefix
            .iter()
            .chain(self.by_prefix.get(first).into_iter().flatten());
        let mut tags: Vec<Tag> = Vec::new();
        let mut cuts: Vec<Cut> = Vec::new();
        for extractor in candidates {
            if self.shared_names.contains(&extractor.name)
                && tags.iter().any(|t| t.name == extractor.name)
            {
                continue;
            }
            if let Some((value, cut)) = extractor.extract(stat, &tokens) {
                tags.push(Tag::new(extractor.name.clone(), value));
                cuts.extend(cut);
            }
        }
        (remove_ranges(stat, &mut cuts), tags)
    }
}

fn remove_ranges(s: &str, cuts: &mut [Cut]) -> String {
    if cuts.is_empty() {
        return s.to_string();
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    for &(start, end) in cuts.iter() {
        if start > pos {
            out.push_str(s.get(pos..start).unwrap_or_default());
        }
        pos = pos.max(end);
    }
    out.push_str(s.get(pos..).unwrap_or_default());
    out
}

/// The `stats_tags` of Istio's sidecar bootstrap that apply to Envoy's own stats (the
/// mongo, wasm, rbac and custom-tag ones never match stats strait-proxy produces but are
/// kept so the names come out exactly as Istio's do).
pub const ISTIO_STATS_TAGS: &[(&str, &str)] = &[
    (
        "cluster_name",
        r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)",
    ),
    ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
    (
        "http_conn_manager_listener_prefix",
        r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    (
        "http_conn_manager_prefix",
        r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    (
        "listener_address",
        r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    (
        "mongo_prefix",
        r"^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$",
    ),
    (r"cache", r"(cache\.(.+?)\.)"),
    (r"component", r"(component\.(.+?)\.)"),
    (r"tag", r"(tag\.(.+?);\.)"),
    (r"wasm_filter", r"(wasm_filter\.(.+?)\.)"),
    ("authz_enforce_result", r"rbac(\.(allowed|denied))"),
    ("authz_dry_run_action", r"(\.istio_dry_run_(allow|deny)_)"),
    ("authz_dry_run_result", r"(\.shadow_(allowed|denied))"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[(&str, &str)]) -> Vec<Tag> {
        t.iter().map(|(n, v)| Tag::new(*n, *v)).collect()
    }

    #[test]
    fn builtins_compile() {
        for b in builtins() {
            let name = match &b {
                Builtin::Re(n, ..) | Builtin::Tok(n, _) => *n,
            };
            assert!(builtin_extractor(b).is_ok(), "{name}");
        }
        let specs: Vec<TagSpecifier> = ISTIO_STATS_TAGS
            .iter()
            .map(|(n, r)| TagSpecifier::Regex {
                name: n.to_string(),
                regex: r.to_string(),
            })
            .collect();
        TagProducer::new(&specs, false).unwrap();
    }

    #[test]
    fn envoy_defaults_on_common_names() {
        let p = TagProducer::envoy_default();
        assert_eq!(
            p.produce("cluster.xds-grpc.upstream_rq_200"),
            (
                "cluster.upstream_rq".to_string(),
                tags(&[
                    ("envoy.response_code", "200"),
                    ("envoy.cluster_name", "xds-grpc")
                ])
            )
        );
        assert_eq!(
            p.produce("http.ingress_http.downstream_rq_2xx"),
            (
                "http.downstream_rq_xx".to_string(),
                tags(&[
                    ("envoy.response_code_class", "2"),
                    ("envoy.http_conn_manager_prefix", "ingress_http")
                ])
            )
        );
        // A tag value never holds a dot under Envoy's defaults, which is why Istio's
        // bootstrap replaces them.
        assert_eq!(
            p.produce("http.outbound_0.0.0.0_9080.downstream_rq_2xx"),
            (
                "http.0.0.0_9080.downstream_rq_xx".to_string(),
                tags(&[
                    ("envoy.response_code_class", "2"),
                    ("envoy.http_conn_manager_prefix", "outbound_0")
                ])
            )
        );
        assert_eq!(
            p.produce("listener.0.0.0.0_15001.downstream_cx_total"),
            (
                "listener.downstream_cx_total".to_string(),
                tags(&[("envoy.listener_address", "0.0.0.0_15001")])
            )
        );
        assert_eq!(
            p.produce("listener.[__]_15001.downstream_cx_total").1,
            tags(&[("envoy.listener_address", "[__]_15001")])
        );
        assert_eq!(
            p.produce("listener.0.0.0.0_15001.http.inbound_0.downstream_rq_completed"),
            (
                "listener.http.downstream_rq_completed".to_string(),
                tags(&[
                    ("envoy.http_conn_manager_prefix", "inbound_0"),
                    ("envoy.listener_address", "0.0.0.0_15001")
                ])
            )
        );
        assert_eq!(
            p.produce("tcp.outbound|9080||x.tcp_total").1,
            tags(&[("envoy.tcp_prefix", "outbound|9080||x")])
        );
        assert_eq!(
            p.produce("listener.admin.downstream_cx_total").1,
            Vec::<Tag>::new(),
            "admin is excluded"
        );
        assert_eq!(
            p.produce("server.live"),
            ("server.live".to_string(), vec![])
        );
    }

    #[test]
    fn istio_tags_keep_dotted_cluster_names() {
        let p = TagProducer::istio();
        assert_eq!(
            p.produce("cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_200"),
            (
                "cluster.upstream_rq".to_string(),
                tags(&[
                    ("response_code", "200"),
                    (
                        "cluster_name",
                        "outbound|9080||reviews.default.svc.cluster.local"
                    )
                ])
            )
        );
        assert_eq!(
            p.produce("cluster.xds-grpc.upstream_rq_2xx").1,
            tags(&[("response_code_class", "2xx"), ("cluster_name", "xds-grpc")])
        );
        assert_eq!(
            p.produce("http.0.0.0.0_9080.downstream_rq_total"),
            (
                "http.downstream_rq_total".to_string(),
                tags(&[("http_conn_manager_prefix", "0.0.0.0_9080")])
            )
        );
        assert_eq!(
            p.produce("listener.0.0.0.0_15006.http.10.0.0.1_9080.downstream_rq_5xx"),
            (
                "listener.http.downstream_rq".to_string(),
                tags(&[
                    ("response_code_class", "5xx"),
                    ("http_conn_manager_listener_prefix", "10.0.0.1_9080"),
                    ("listener_address", "0.0.0.0_15006"),
                ])
            )
        );
    }

    #[test]
    fn fixed_and_default_specifiers() {
        let p = TagProducer::new(
            &[
                TagSpecifier::Fixed {
                    name: "mesh".into(),
                    value: "m1".into(),
                },
                TagSpecifier::Default("envoy.cluster_name".into()),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            p.produce("cluster.a.upstream_rq_200"),
            (
                "cluster.upstream_rq_200".to_string(),
                tags(&[("mesh", "m1"), ("envoy.cluster_name", "a")])
            )
        );
        assert!(matches!(
            TagProducer::new(&[TagSpecifier::Default("nope".into())], false),
            Err(TagError::NoDefault(_))
        ));
        assert!(matches!(
            TagProducer::new(
                &[TagSpecifier::Regex {
                    name: "x".into(),
                    regex: "(".into()
                }],
                false
            ),
            Err(TagError::Regex { .. })
        ));
    }

    #[test]
    fn token_patterns() {
        let e = TagExtractor::tokens("t", "a.**.b.c.$");
        let extract = |name: &str| {
            let tokens: Vec<&str> = name.split('.').collect();
            e.extract(name, &tokens)
        };
        // `**` must be able to swallow a token equal to the next literal.
        assert_eq!(extract("a.x.b.b.c.d"), Some(("d".into(), Some((9, 11)))));
        assert_eq!(extract("a.b.c.d"), Some(("d".into(), Some((5, 7)))));
        assert_eq!(extract("a.x.b.c"), None);
        assert_eq!(extract("z.x.b.c.d"), None);
        assert_eq!(regex_prefix(r"^cluster\.((.*?)\.)"), Some("cluster".into()));
        assert_eq!(regex_prefix(r"^listener(?=\.).*?"), Some("listener".into()));
        assert_eq!(regex_prefix(r"_rq(_(\d{3}))$"), None);
        assert_eq!(regex_prefix(r"^(?:a|b)\."), None);
    }
}
