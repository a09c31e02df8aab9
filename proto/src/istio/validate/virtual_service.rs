//! VirtualService rules (Istio `ValidateVirtualService`).

use super::{Errors, FieldError, SPEC, at, at_index, checks};
use crate::istio::common::StringMatch;
use crate::istio::virtual_service::{
    AbortError, CorsPolicy, DelayKind, HttpBody, HttpFaultInjection, HttpMatchRequest,
    HttpRedirect, HttpRetry, HttpRewrite, HttpRoute, HttpRouteDestination, L4MatchAttributes,
    RedirectPort, RouteDestination, TcpRoute, TlsMatchAttributes, TlsRoute, VirtualService,
};

/// Retry conditions Envoy understands (`x-envoy-retry-on` and `x-envoy-retry-grpc-on`).
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// gRPC status names accepted for abort faults.
const GRPC_STATUS: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

const MAX_DIRECT_RESPONSE_BODY: usize = 1024 * 1024;

impl VirtualService {
    /// Checks the rules Istio's validation webhook enforces for VirtualServices.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        let delegate = self.hosts.is_empty();
        if delegate {
            // A VirtualService without hosts can only be a delegate, which carries HTTP routes.
            if !self.gateways.is_empty() {
                e.add(
                    at(SPEC, "gateways"),
                    "delegate virtual service must have no gateways specified",
                );
            }
            if !self.tls.is_empty() {
                e.add(
                    at(SPEC, "tls"),
                    "delegate virtual service must have no tls route specified",
                );
            }
            if !self.tcp.is_empty() {
                e.add(
                    at(SPEC, "tcp"),
                    "delegate virtual service must have no tcp route specified",
                );
            }
        }
        let applies_to_mesh = self.gateways.is_empty() || self.gateways.iter().any(|g| g == "mesh");
        checks::gateway_names(&mut e, &at(SPEC, "gateways"), &self.gateways);
        self.validate_hosts(&mut e, applies_to_mesh);
        if self.http.is_empty() && self.tcp.is_empty() && self.tls.is_empty() {
            e.add(SPEC, "http, tcp or tls must be provided in virtual service");
        }
        for (i, r) in self.http.iter().enumerate() {
            http_route(
                &mut e,
                &at_index(SPEC, "http", i),
                r,
                delegate,
                applies_to_mesh,
            );
        }
        for (i, r) in self.tls.iter().enumerate() {
            tls_route(&mut e, &at_index(SPEC, "tls", i), r, &self.hosts);
        }
        for (i, r) in self.tcp.iter().enumerate() {
            tcp_route(&mut e, &at_index(SPEC, "tcp", i), r);
        }
        checks::export_to(&mut e, &at(SPEC, "exportTo"), &self.export_to, false);
        e.finish()
    }

    fn validate_hosts(&self, e: &mut Errors, applies_to_mesh: bool) {
        let mut all_valid = true;
        for (i, h) in self.hosts.iter().enumerate() {
            let p = at_index(SPEC, "hosts", i);
            if let Err(reason) = checks::wildcard_domain(h) {
                if !checks::is_ip(h) {
                    e.add(&p, reason);
                    all_valid = false;
                }
            } else if applies_to_mesh && h == "*" {
                e.add(
                    &p,
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                );
                all_valid = false;
            }
        }
        if !all_valid {
            return;
        }
        for (i, a) in self.hosts.iter().enumerate() {
            for b in &self.hosts[i + 1..] {
                if hosts_overlap(a, b) {
                    e.add(
                        at_index(SPEC, "hosts", i),
                        format!("duplicate hosts in virtual service: {a} & {b}"),
                    );
                }
            }
        }
    }
}

/// Whether one host pattern matches the other (`*.foo.com` covers `a.foo.com`, `*` covers all).
fn hosts_overlap(a: &str, b: &str) -> bool {
    fn covers(pattern: &str, host: &str) -> bool {
        match pattern.strip_prefix('*') {
            Some(suffix) => host.ends_with(suffix),
            None => pattern == host,
        }
    }
    covers(a, b) || covers(b, a)
}

fn http_route(e: &mut Errors, p: &str, r: &HttpRoute, in_delegate: bool, applies_to_mesh: bool) {
    route_conflicts(e, p, r, in_delegate);
    let root = r.delegate.is_some() && !in_delegate;
    for (i, m) in r.matches.iter().enumerate() {
        http_match(
            e,
            &at_index(p, "match", i),
            m,
            root || in_delegate,
            applies_to_mesh,
        );
    }
    if let Some(h) = &r.headers {
        checks::headers(e, &at(p, "headers"), h);
    }
    if let Some(c) = &r.cors_policy {
        cors(e, &at(p, "corsPolicy"), c);
    }
    if let Some(f) = &r.fault {
        fault(e, &at(p, "fault"), f);
    }
    if let Some(v) = r.mirror_percent
        && v > 100
    {
        e.add(
            at(p, "mirrorPercent"),
            format!("mirror_percent must have a max value of 100 (it has {v})"),
        );
    }
    if let Some(v) = r.mirror_percent_legacy
        && v > 100
    {
        e.add(
            at(p, "mirror_percent"),
            format!("mirror_percent must have a max value of 100 (it has {v})"),
        );
    }
    if let Some(m) = &r.mirror_percentage
        && !(0.0..=100.0).contains(&m.value)
    {
        e.add(
            at(p, "mirrorPercentage.value"),
            format!(
                "mirror_percentage must be in range 0..100 (it has {})",
                m.value
            ),
        );
    }
    if let Some(m) = &r.mirror {
        checks::destination(e, &at(p, "mirror"), m);
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let mp = at_index(p, "mirrors", i);
        checks::destination(e, &at(&mp, "destination"), &m.destination);
        if let Some(pc) = &m.percentage
            && !(0.0..=100.0).contains(&pc.value)
        {
            e.add(
                at(&mp, "percentage.value"),
                format!(
                    "mirror percentage must be in range 0..100 (it has {})",
                    pc.value
                ),
            );
        }
    }
    if let Some(rd) = &r.redirect {
        redirect(e, &at(p, "redirect"), rd);
    }
    if let Some(d) = &r.direct_response {
        let dp = at(p, "directResponse");
        e.check(at(&dp, "status"), http_status(i64::from(d.status)));
        if let Some(b) = &d.body
            && b.as_bytes().len() > MAX_DIRECT_RESPONSE_BODY
        {
            let field = match b {
                HttpBody::String(_) => "body.string",
                HttpBody::Bytes(_) => "body.bytes",
            };
            e.add(
                at(&dp, field),
                "large direct_responses may impact control plane performance, must be less than 1MB",
            );
        }
    }
    if let Some(rt) = &r.retries {
        retry(e, &at(p, "retries"), rt);
    }
    if let Some(rw) = &r.rewrite {
        rewrite(e, &at(p, "rewrite"), rw);
    }
    authority_rewrite(e, p, r);
    http_destinations(e, &at(p, "route"), &r.route);
    if let Some(t) = &r.timeout {
        e.check(at(p, "timeout"), checks::duration(t));
    }
}

fn route_conflicts(e: &mut Errors, p: &str, r: &HttpRoute, in_delegate: bool) {
    if r.delegate.is_some() {
        if in_delegate {
            e.add(
                at(p, "delegate"),
                "delegate HTTP route cannot contain delegate",
            );
        } else {
            if r.redirect.is_some() {
                e.add(
                    at(p, "redirect"),
                    format!("root HTTP route {} must not specify redirect", r.name),
                );
            }
            if !r.route.is_empty() {
                e.add(
                    at(p, "route"),
                    format!("root HTTP route {} must not specify route", r.name),
                );
            }
            if r.direct_response.is_some() {
                e.add(
                    at(p, "directResponse"),
                    format!("root HTTP route {} must not specify directResponse", r.name),
                );
            }
            return;
        }
    }
    if r.redirect.is_some() {
        if !r.route.is_empty() {
            e.add(p, "HTTP route cannot contain both route and redirect");
        }
        if r.fault.is_some() {
            e.add(p, "HTTP route cannot contain both fault and redirect");
        }
        if r.rewrite.is_some() {
            e.add(
                p,
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if r.direct_response.is_some() {
            e.add(
                p,
                "HTTP route rule cannot contain both direct_response and redirect",
            );
        }
    } else if r.direct_response.is_some() {
        if !r.route.is_empty() {
            e.add(
                p,
                "HTTP route cannot contain both route and direct_response",
            );
        }
        if r.fault.is_some() {
            e.add(
                p,
                "HTTP route cannot contain both fault and direct_response",
            );
        }
        if r.rewrite.is_some() {
            e.add(
                p,
                "HTTP route rule cannot contain both rewrite and direct_response",
            );
        }
    } else if r.route.is_empty() {
        e.add(p, "HTTP route, redirect or direct_response is required");
    }
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        e.add(p, "HTTP route cannot contain both mirror and mirrors");
    }
}

fn http_match(
    e: &mut Errors,
    p: &str,
    m: &HttpMatchRequest,
    delegating: bool,
    applies_to_mesh: bool,
) {
    let singles = [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ];
    for (name, sm) in singles {
        if let Some(sm) = sm {
            string_match(e, &at(p, name), sm, delegating);
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            let hp = format!("{p}.{field}.{name}");
            if checks::is_jwt_claim_header(name) {
                if applies_to_mesh {
                    e.add(
                        &hp,
                        format!(
                            "JWT claim based routing (key: {name}) is only supported for gateway"
                        ),
                    );
                }
            } else {
                e.check(&hp, checks::header_name(name));
            }
            string_match(e, &hp, sm, delegating);
        }
    }
    for (name, sm) in &m.query_params {
        string_match(e, &format!("{p}.queryParams.{name}"), sm, delegating);
    }
    if m.port != 0 {
        e.check(at(p, "port"), checks::port(i64::from(m.port)));
    }
    checks::labels(e, &at(p, "sourceLabels"), &m.source_labels);
    checks::gateway_names(e, &at(p, "gateways"), &m.gateways);
    if !m.source_namespace.is_empty() && !checks::is_dns1123_label(&m.source_namespace) {
        e.add(
            at(p, "sourceNamespace"),
            format!("sourceNamespace match {} is invalid", m.source_namespace),
        );
    }
}

fn string_match(e: &mut Errors, p: &str, m: &StringMatch, delegating: bool) {
    if delegating && m.regex().is_some() {
        e.add(
            at(p, "regex"),
            "regex match is not supported for delegating routes",
        );
        return;
    }
    checks::string_match(e, p, m);
}

fn cors(e: &mut Errors, p: &str, c: &CorsPolicy) {
    for (i, o) in c.allow_origins.iter().enumerate() {
        let op = at_index(p, "allowOrigins", i);
        let empty = match o {
            StringMatch::Any => true,
            StringMatch::Exact(s) | StringMatch::Prefix(s) | StringMatch::Regex(s) => s.is_empty(),
        };
        if empty {
            e.add(&op, "'' is not a valid match type for CORS allow origins");
        } else {
            checks::string_match(e, &op, o);
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !HTTP_METHODS.contains(&m.as_str()) {
            e.add(
                at_index(p, "allowMethods", i),
                format!("{m:?} is not a supported HTTP method"),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            if h != "*" {
                e.check(at_index(p, field, i), checks::header_name(h));
            }
        }
    }
    if let Some(age) = &c.max_age {
        let ap = at(p, "maxAge");
        e.check(&ap, checks::duration(age));
        if age.as_std().subsec_nanos() > 0 {
            e.add(
                &ap,
                "max_age duration is accurate only to seconds precision",
            );
        }
    }
}

fn fault(e: &mut Errors, p: &str, f: &HttpFaultInjection) {
    if f.abort.is_none() && f.delay.is_none() {
        e.add(p, "HTTP fault injection must have an abort and/or a delay");
    }
    if let Some(a) = &f.abort {
        let ap = at(p, "abort");
        if let Some(pc) = &a.percentage {
            e.check(at(&ap, "percentage.value"), checks::percentage(pc));
        }
        match &a.error {
            Some(AbortError::HttpStatus(s)) => {
                e.check(at(&ap, "httpStatus"), http_status(i64::from(*s)));
            }
            Some(AbortError::GrpcStatus(s)) => {
                if !GRPC_STATUS.contains(&s.as_str()) {
                    e.add(
                        at(&ap, "grpcStatus"),
                        format!("gRPC status {s:?} is not supported"),
                    );
                }
            }
            Some(AbortError::Http2Error(_)) => {
                e.add(
                    at(&ap, "http2Error"),
                    "HTTP/2 abort fault injection not supported yet",
                );
            }
            None => e.add(
                &ap,
                "abort must set one of httpStatus, grpcStatus or http2Error",
            ),
        }
    }
    if let Some(d) = &f.delay {
        let dp = at(p, "delay");
        if let Some(pc) = &d.percentage {
            e.check(at(&dp, "percentage.value"), checks::percentage(pc));
        }
        if d.percent != 0 {
            e.check(
                at(&dp, "percent"),
                checks::int_percent(i64::from(d.percent)),
            );
        }
        match &d.delay {
            Some(DelayKind::Fixed(v)) => e.check(at(&dp, "fixedDelay"), checks::duration(v)),
            Some(DelayKind::Exponential(_)) => {
                e.add(
                    at(&dp, "exponentialDelay"),
                    "exponentialDelay not supported yet",
                );
            }
            None => e.add(&dp, "delay must set fixedDelay"),
        }
    }
}

/// Status codes Istio accepts for aborts and direct responses.
fn http_status(s: i64) -> Result<(), String> {
    if (200..=600).contains(&s) {
        Ok(())
    } else {
        Err(format!("HTTP status {s} is not in range 200-599"))
    }
}

fn redirect(e: &mut Errors, p: &str, r: &HttpRedirect) {
    if r.uri.is_empty()
        && r.authority.is_empty()
        && r.redirect_port.is_none()
        && r.scheme.is_empty()
        && r.prefix_rewrite.is_empty()
    {
        e.add(p, "redirect must specify URI, authority, scheme, or port");
    }
    if r.redirect_code != 0 && !(300..=399).contains(&r.redirect_code) {
        e.add(
            at(p, "redirectCode"),
            format!(
                "{} is not a valid redirect code, must be 3xx",
                r.redirect_code
            ),
        );
    }
    if !r.scheme.is_empty() && r.scheme != "http" && r.scheme != "https" {
        e.add(
            at(p, "scheme"),
            "invalid redirect scheme, must be \"http\" or \"https\"",
        );
    }
    if let Some(RedirectPort::Port(port)) = r.redirect_port {
        e.check(at(p, "port"), checks::port(i64::from(port)));
    }
    if !r.uri.is_empty() && !r.prefix_rewrite.is_empty() {
        e.add(p, "redirect may only contain one of uri or prefixRewrite");
    }
}

fn retry(e: &mut Errors, p: &str, r: &HttpRetry) {
    if r.attempts < 0 {
        e.add(at(p, "attempts"), "attempts cannot be negative");
    }
    if r.attempts == 0
        && (r.per_try_timeout.is_some()
            || !r.retry_on.is_empty()
            || r.retry_remote_localities.is_some())
    {
        e.add(
            p,
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    if let Some(t) = &r.per_try_timeout {
        e.check(at(p, "perTryTimeout"), checks::duration(t));
    }
    if let Some(b) = &r.backoff {
        e.check(at(p, "backoff"), checks::duration(b));
    }
    for policy in r.retry_on.split(',').filter(|s| !s.is_empty()) {
        let is_status = policy
            .parse::<u16>()
            .is_ok_and(|c| (100..=599).contains(&c));
        if !is_status && !RETRY_ON.contains(&policy) {
            e.add(
                at(p, "retryOn"),
                format!("{policy:?} is not a valid retryOn policy"),
            );
        }
    }
}

fn rewrite(e: &mut Errors, p: &str, r: &HttpRewrite) {
    if !r.uri.is_empty() && r.uri_regex_rewrite.is_some() {
        e.add(p, "rewrite may only contain one of URI or UriRegexRewrite");
    }
    if r.uri.is_empty() && r.uri_regex_rewrite.is_none() && r.authority.is_empty() {
        e.add(
            p,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority",
        );
    }
    if let Some(rr) = &r.uri_regex_rewrite {
        let rp = at(p, "uriRegexRewrite");
        if rr.pattern.is_empty() || rr.rewrite.is_empty() {
            e.add(
                &rp,
                "UriRegexRewrite requires both Rewrite and Match fields to be specified",
            );
        } else {
            e.check(at(&rp, "match"), checks::regex(&rr.pattern));
        }
    }
}

/// The authority may be rewritten in one place only (rewrite, or a request header set/add).
fn authority_rewrite(e: &mut Errors, p: &str, r: &HttpRoute) {
    let mut sources = 0;
    if r.rewrite
        .as_ref()
        .is_some_and(|rw| !rw.authority.is_empty())
    {
        sources += 1;
    }
    if let Some(req) = r.headers.as_ref().and_then(|h| h.request.as_ref()) {
        sources += req
            .set
            .keys()
            .chain(req.add.keys())
            .filter(|k| k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host"))
            .count();
    }
    if sources > 1 {
        e.add(p, "authority header cannot be set multiple times");
    }
}

fn weight(e: &mut Errors, p: &str, w: i32) {
    if w < 0 {
        e.add(at(p, "weight"), format!("weight {w} < 0"));
    }
}

/// Istio's current rule: weights are non-negative and, with several destinations, not all 0
/// (they are relative; they need not sum to 100).
fn total_weight(e: &mut Errors, p: &str, weights: impl Iterator<Item = i32>) {
    let (count, total) = weights.fold((0usize, 0i64), |(c, t), w| (c + 1, t + i64::from(w)));
    if count > 1 && total == 0 {
        e.add(p, "total destination weight = 0");
    }
}

fn http_destinations(e: &mut Errors, p: &str, dests: &[HttpRouteDestination]) {
    for (i, d) in dests.iter().enumerate() {
        let dp = format!("{p}[{i}]");
        checks::destination(e, &at(&dp, "destination"), &d.destination);
        weight(e, &dp, d.weight);
        if let Some(h) = &d.headers {
            checks::headers(e, &at(&dp, "headers"), h);
        }
    }
    total_weight(e, p, dests.iter().map(|d| d.weight));
}

fn route_destinations(e: &mut Errors, p: &str, dests: &[RouteDestination]) {
    for (i, d) in dests.iter().enumerate() {
        let dp = format!("{p}[{i}]");
        checks::destination(e, &at(&dp, "destination"), &d.destination);
        weight(e, &dp, d.weight);
    }
    total_weight(e, p, dests.iter().map(|d| d.weight));
}

fn tls_route(e: &mut Errors, p: &str, r: &TlsRoute, vs_hosts: &[String]) {
    if r.matches.is_empty() {
        e.add(
            at(p, "match"),
            "TLS route must have at least one match condition",
        );
    }
    for (i, m) in r.matches.iter().enumerate() {
        tls_match(e, &at_index(p, "match", i), m, vs_hosts);
    }
    if r.route.is_empty() {
        e.add(at(p, "route"), "TLS route is required");
    }
    route_destinations(e, &at(p, "route"), &r.route);
}

fn tls_match(e: &mut Errors, p: &str, m: &TlsMatchAttributes, vs_hosts: &[String]) {
    if m.sni_hosts.is_empty() {
        e.add(
            at(p, "sniHosts"),
            "TLS match must have at least one SNI host",
        );
    }
    for (i, sni) in m.sni_hosts.iter().enumerate() {
        let sp = at_index(p, "sniHosts", i);
        if checks::is_ip(sni) {
            continue;
        }
        if let Err(reason) = checks::wildcard_domain(sni) {
            e.add(&sp, reason);
            continue;
        }
        if !vs_hosts.iter().any(|h| sni_within(sni, h)) {
            e.add(
                &sp,
                format!(
                    "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
                    vs_hosts.join(", ")
                ),
            );
        }
    }
    l4_common(
        e,
        p,
        &m.destination_subnets,
        m.port,
        &m.source_labels,
        &m.gateways,
    );
}

/// Whether every name matched by `sni` is also matched by `host`.
fn sni_within(sni: &str, host: &str) -> bool {
    match host.strip_prefix('*') {
        None => sni == host,
        Some(suffix) => match sni.strip_prefix('*') {
            Some(sni_suffix) => sni_suffix.ends_with(suffix),
            None => sni.ends_with(suffix),
        },
    }
}

fn tcp_route(e: &mut Errors, p: &str, r: &TcpRoute) {
    for (i, m) in r.matches.iter().enumerate() {
        tcp_match(e, &at_index(p, "match", i), m);
    }
    if r.route.is_empty() {
        e.add(at(p, "route"), "TCP route is required");
    }
    route_destinations(e, &at(p, "route"), &r.route);
}

fn tcp_match(e: &mut Errors, p: &str, m: &L4MatchAttributes) {
    l4_common(
        e,
        p,
        &m.destination_subnets,
        m.port,
        &m.source_labels,
        &m.gateways,
    );
}

fn l4_common(
    e: &mut Errors,
    p: &str,
    subnets: &[String],
    port: u32,
    source_labels: &std::collections::BTreeMap<String, String>,
    gateways: &[String],
) {
    for (i, s) in subnets.iter().enumerate() {
        e.check(at_index(p, "destinationSubnets", i), checks::ip_subnet(s));
    }
    if port != 0 {
        e.check(at(p, "port"), checks::port(i64::from(port)));
    }
    checks::labels(e, &at(p, "sourceLabels"), source_labels);
    checks::gateway_names(e, &at(p, "gateways"), gateways);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_overlap() {
        assert!(hosts_overlap("a.foo.com", "a.foo.com"));
        assert!(hosts_overlap("*.foo.com", "a.foo.com"));
        assert!(hosts_overlap("*.com", "*.foo.com"));
        assert!(!hosts_overlap("a.foo.com", "b.foo.com"));
    }

    #[test]
    fn sni_subset() {
        assert!(sni_within("login.bookinfo.com", "*.bookinfo.com"));
        assert!(sni_within("*.a.bookinfo.com", "*.bookinfo.com"));
        assert!(!sni_within("*.com", "*.bookinfo.com"));
        assert!(!sni_within("other.com", "*.bookinfo.com"));
    }
}
