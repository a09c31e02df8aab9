//! Field-level checks shared by the kinds (names, hosts, ports, durations, regexes, ...).
//! Each returns the reason a value is invalid.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Errors, at};
use crate::istio::common::{Destination, HeaderOperations, Headers, Percent, StringMatch};
use crate::istio::{Duration, WorkloadSelector};

pub(crate) type Check = Result<(), String>;

const DNS1123_LABEL_MAX: usize = 63;

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: lowercase alphanumerics and `-`, alphanumeric at both ends, ≤ 63 chars.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= DNS1123_LABEL_MAX
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
        && b.iter().all(|c| is_alnum_lower(*c) || *c == b'-')
}

/// A label that may carry a wildcard prefix: `*`, `*foo`, `*-foo`, `foo`.
fn is_wildcard_dns1123_label(s: &str) -> bool {
    if s.len() > DNS1123_LABEL_MAX {
        return false;
    }
    if s == "*" {
        return true;
    }
    let rest = s
        .strip_prefix("*-")
        .or_else(|| s.strip_prefix('*'))
        .unwrap_or(s);
    is_dns1123_label(rest)
}

fn dns_preconditions(name: &str) -> Check {
    if name.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    Ok(())
}

fn dns1123_labels(domain: &str, whole: &str) -> Check {
    let parts: Vec<&str> = domain.split('.').collect();
    let last = parts.len() - 1;
    if !parts[last].is_empty() && parts[last].bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "domain name {whole:?} invalid (top level domain {:?} cannot be all-numeric)",
            parts[last]
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        // A trailing dot (`istio.io.`) is allowed.
        if i == last && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {whole:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

/// A fully qualified domain name.
pub(crate) fn fqdn(name: &str) -> Check {
    dns_preconditions(name)?;
    dns1123_labels(name, name)
}

/// A domain name whose first label may be a wildcard (`*.example.com`, `*`).
pub(crate) fn wildcard_domain(name: &str) -> Check {
    dns_preconditions(name)?;
    let (first, rest) = match name.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name {name:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => dns1123_labels(r, name),
        None => Ok(()),
    }
}

pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// An IP address.
pub(crate) fn ip_address(s: &str) -> Check {
    if is_ip(s) {
        Ok(())
    } else {
        Err(format!("{s} is not a valid IP"))
    }
}

/// An IP address or a CIDR block.
pub(crate) fn ip_subnet(s: &str) -> Check {
    match s.split_once('/') {
        None => ip_address(s),
        Some((addr, len)) => {
            let max = match addr.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return Err(format!("{s} is not a valid CIDR block")),
            };
            match len.parse::<u8>() {
                Ok(l) if l <= max && !len.starts_with('+') => Ok(()),
                _ => Err(format!("{s} is not a valid CIDR block")),
            }
        }
    }
}

/// A port number in 1..=65535.
pub(crate) fn port(p: i64) -> Check {
    if (1..=65535).contains(&p) {
        Ok(())
    } else {
        Err(format!("port number {p} must be in the range 1..65535"))
    }
}

/// A port name: a DNS-1123 label.
pub(crate) fn port_name(name: &str) -> Check {
    if is_dns1123_label(name) {
        Ok(())
    } else {
        Err(format!("invalid port name: {name}"))
    }
}

/// Protocols Istio knows (`protocol.Parse`); empty means "detect".
pub(crate) fn protocol(p: &str) -> Check {
    const KNOWN: &[&str] = &[
        "tcp",
        "udp",
        "grpc",
        "grpc-web",
        "http",
        "http_proxy",
        "http2",
        "https",
        "tls",
        "mongo",
        "redis",
        "mysql",
        "hbone",
    ];
    if p.is_empty() || KNOWN.contains(&p.to_ascii_lowercase().as_str()) {
        Ok(())
    } else {
        Err(format!("unsupported protocol: {p}"))
    }
}

/// Whether a protocol name is HTTP-based (HTTP, HTTP2, GRPC, GRPC-Web).
pub(crate) fn is_http_protocol(p: &str) -> bool {
    matches!(
        p.to_ascii_lowercase().as_str(),
        "http" | "http2" | "grpc" | "grpc-web" | "http_proxy"
    )
}

/// Whether a protocol name carries TLS the proxy can route on (HTTPS, TLS).
pub(crate) fn is_tls_protocol(p: &str) -> bool {
    matches!(p.to_ascii_lowercase().as_str(), "https" | "tls")
}

/// A duration Envoy accepts for timeouts: at least 1ms, whole milliseconds.
pub(crate) fn duration(d: &Duration) -> Check {
    let d = d.as_std();
    if d < std::time::Duration::from_millis(1) {
        return Err("duration must be greater than 1ms".into());
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err("only durations to ms precision are supported".into());
    }
    Ok(())
}

/// A fractional percentage: 0, or within [0.0001, 100].
pub(crate) fn percentage(p: &Percent) -> Check {
    let v = p.value;
    if !(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001) {
        return Err(format!(
            "percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"
        ));
    }
    Ok(())
}

/// An integer percentage in 0..=100.
pub(crate) fn int_percent(v: i64) -> Check {
    if (0..=100).contains(&v) {
        Ok(())
    } else {
        Err(format!("percentage {v} is not in range 0..100"))
    }
}

/// Header names usable in matches.
pub(crate) fn header_name(name: &str) -> Check {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        Ok(())
    } else {
        Err(format!("header name {name} is not a valid header name"))
    }
}

/// Header names in matches may also be JWT claims (`@request.auth.claims.<name>`).
pub(crate) fn is_jwt_claim_header(name: &str) -> bool {
    name.strip_prefix("@request.auth.claims")
        .is_some_and(|rest| rest.len() > 1 && (rest.starts_with('.') || rest.starts_with('[')))
}

/// A header value Envoy accepts: no control characters, `%` only as `%%` or `%VAR%`.
pub(crate) fn header_value(value: &str) -> Check {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("header value configuration {value:?} is invalid"));
    }
    let mut rest = value;
    while let Some(i) = rest.find('%') {
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            rest = tail;
            continue;
        }
        match after.find('%') {
            Some(0) | None => {
                return Err(format!(
                    "header value configuration {value:?}: unmatched '%' (use '%%' for a literal '%')"
                ));
            }
            Some(j) => rest = &after[j + 1..],
        }
    }
    Ok(())
}

/// A regex Istio accepts: RE2 syntax (approximated by the `regex` crate), at most 1024 bytes.
pub(crate) fn regex(re: &str) -> Check {
    if re.is_empty() {
        return Err("regex string match should not be empty".into());
    }
    if re.len() > 1024 {
        return Err("regex is too large, max length allowed is 1024".into());
    }
    regex::Regex::new(re).map(|_| ()).map_err(|e| {
        let first = e.to_string();
        let summary = first
            .lines()
            .last()
            .unwrap_or("invalid regex")
            .trim()
            .to_owned();
        format!("invalid regex {re:?}: {summary}")
    })
}

/// The regex of a string match, if it is one, must compile.
pub(crate) fn string_match(errs: &mut Errors, path: &str, m: &StringMatch) {
    if let StringMatch::Regex(r) = m {
        errs.check(at(path, "regex"), regex(r));
    }
}

/// Kubernetes label key (`[prefix/]name`).
fn label_key(key: &str) -> Check {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || fqdn(p).is_err())
    {
        return Err(format!("invalid label key {key:?}: bad prefix"));
    }
    if !is_label_name(name) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(())
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Kubernetes labels (keys and values).
pub(crate) fn labels(errs: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        errs.check(at(path, k), label_key(k));
        if !v.is_empty() && !is_label_name(v) {
            errs.add(at(path, k), format!("invalid label value {v:?}"));
        }
    }
}

/// A label selector: no empty keys, no wildcards.
pub(crate) fn selector_labels(errs: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        if k.is_empty() {
            errs.add(
                path,
                format!("empty key is not supported in selector: \"={v}\""),
            );
        }
        if k.contains('*') || v.contains('*') {
            errs.add(
                at(path, k),
                format!("wildcard is not supported in selector: \"{k}={v}\""),
            );
        }
    }
}

pub(crate) fn workload_selector(errs: &mut Errors, path: &str, s: &WorkloadSelector) {
    selector_labels(errs, &at(path, "labels"), &s.labels);
}

/// `exportTo`: `.`, `*`, namespaces (and `~` for ServiceEntries); no duplicates, `*`/`~` alone.
pub(crate) fn export_to(errs: &mut Errors, path: &str, list: &[String], allow_none: bool) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let e = e.as_str();
        if seen.contains(&e) {
            errs.add(&p, format!("duplicate entries in exportTo for entry {e}"));
            continue;
        }
        seen.push(e);
        let ok = e == "." || e == "*" || (allow_none && e == "~") || is_dns1123_label(e);
        if !ok {
            errs.add(
                &p,
                format!("only .,*, or a valid DNS 1123 label is allowed as exportTo entry: {e:?}"),
            );
        }
    }
    if list.len() > 1 && seen.contains(&"*") {
        errs.add(
            path,
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
    if list.len() > 1 && seen.contains(&"~") {
        errs.add(
            path,
            "cannot export service entry to no one (~) and someone",
        );
    }
}

/// A routing destination: host (not `*`), subset name, port.
pub(crate) fn destination(errs: &mut Errors, path: &str, d: &Destination) {
    let host_path = at(path, "host");
    if d.host == "*" {
        errs.add(&host_path, format!("invalid destination host {}", d.host));
    } else {
        errs.check(&host_path, wildcard_domain(&d.host));
    }
    if !d.subset.is_empty() {
        errs.check(at(path, "subset"), subset_name(&d.subset));
    }
    if let Some(p) = &d.port {
        errs.check(at(path, "port.number"), port(i64::from(p.number)));
    }
}

/// Subset names are DNS-1123 labels.
pub(crate) fn subset_name(name: &str) -> Check {
    if name.is_empty() {
        return Err("subset name cannot be empty".into());
    }
    if !is_dns1123_label(name) {
        return Err(format!("subset name is invalid: {name}"));
    }
    Ok(())
}

/// Gateway references: `<namespace>/<name>` with DNS labels, or a bare FQDN-style name.
pub(crate) fn gateway_names(errs: &mut Errors, path: &str, names: &[String]) {
    for (i, g) in names.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match g.split_once('/') {
            None => errs.check(&p, fqdn(g)),
            Some((ns, name)) => {
                if ns.is_empty() || name.is_empty() {
                    errs.add(&p, "config namespace and gateway name cannot be empty");
                } else if !is_dns1123_label(ns) {
                    errs.add(&p, format!("invalid value for namespace: {ns:?}"));
                } else if !is_dns1123_label(name) {
                    errs.add(&p, format!("invalid value for gateway name: {name:?}"));
                }
            }
        }
    }
}

fn header_operation_name(name: &str, allow_authority: bool) -> Check {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    let is_authority = name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host");
    if allow_authority && is_authority {
        return Ok(());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if name.starts_with(':') {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

fn header_operations(errs: &mut Errors, path: &str, ops: &HeaderOperations, request: bool) {
    for (kind, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            let p = format!("{path}.{kind}.{name}");
            errs.check(&p, header_operation_name(name, request));
            errs.check(&p, header_value(value));
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        errs.check(
            format!("{path}.remove[{i}]"),
            header_operation_name(name, false),
        );
    }
}

/// Header manipulation: valid names (no pseudo-headers; Host only via request set/add) and values.
pub(crate) fn headers(errs: &mut Errors, path: &str, h: &Headers) {
    if let Some(r) = &h.request {
        header_operations(errs, &at(path, "request"), r, true);
    }
    if let Some(r) = &h.response {
        header_operations(errs, &at(path, "response"), r, false);
    }
}

/// Locality strings `region[/zone[/subzone]]`, `*` only as the last character.
pub(crate) fn locality(l: &str) -> Check {
    let stars = l.matches('*').count();
    if stars > 1 || (stars == 1 && !l.ends_with('*')) {
        return Err(format!(
            "locality {l} wildcard '*' number can not exceed 1 and must be in the end"
        ));
    }
    if l.splitn(3, '/').any(str::is_empty) {
        return Err(format!(
            "locality {l} must not contain empty region/zone/subzone info"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert!(wildcard_domain("reviews").is_ok());
        assert!(wildcard_domain("reviews.default.svc.cluster.local").is_ok());
        assert!(wildcard_domain("*.bookinfo.com").is_ok());
        assert!(wildcard_domain("*").is_ok());
        assert!(wildcard_domain("istio.io.").is_ok());
        assert!(wildcard_domain("foo.*.com").is_err());
        assert!(wildcard_domain("Reviews").is_err());
        assert!(wildcard_domain("a.123").is_err());
        assert!(wildcard_domain("").is_err());
        assert!(fqdn("*.x.com").is_err());
    }

    #[test]
    fn subnets_and_ports() {
        assert!(ip_subnet("10.0.0.0/8").is_ok());
        assert!(ip_subnet("2001:db8::/32").is_ok());
        assert!(ip_subnet("10.0.0.1").is_ok());
        assert!(ip_subnet("10.0.0.0/33").is_err());
        assert!(ip_subnet("foo/8").is_err());
        assert!(port(0).is_err() && port(65536).is_err() && port(80).is_ok());
    }

    #[test]
    fn headers_and_regexes() {
        assert!(header_name("x-request-id").is_ok());
        assert!(header_name("x request").is_err());
        assert!(is_jwt_claim_header("@request.auth.claims.group"));
        assert!(!is_jwt_claim_header("@request.auth.claims"));
        assert!(header_value("100%%").is_ok());
        assert!(header_value("prefix %HOSTNAME% suffix").is_ok());
        assert!(header_value("abc%123").is_err());
        assert!(header_value("a\nb").is_err());
        assert!(regex("^/api/v[0-9]+").is_ok());
        assert!(regex("(unclosed").is_err());
        assert!(regex("*").is_err());
        assert!(regex(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn durations() {
        assert!(duration(&Duration::from_millis(1)).is_ok());
        assert!(duration(&Duration::ZERO).is_err());
        assert!(duration(&Duration::parse("1.0005s").unwrap()).is_err());
    }
}
