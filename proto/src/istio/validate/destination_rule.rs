//! DestinationRule rules (Istio `ValidateDestinationRule`), and the traffic-policy pieces the
//! Sidecar and MeshConfig share.

use super::{Errors, FieldError, SPEC, at, at_index, checks};
use crate::istio::destination_rule::{
    ConnectionPoolSettings, DestinationRule, H2UpgradePolicy, HashAlgorithm, HashKey, LbPolicy,
    LoadBalancerSettings, LocalityLoadBalancerSetting, OutlierDetection, PortTrafficPolicy,
    TrafficPolicy, TunnelSettings,
};
use crate::istio::tls::{ClientTlsMode, ClientTlsSettings};

impl DestinationRule {
    /// Checks the rules Istio's validation webhook enforces for DestinationRules.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        e.check(at(SPEC, "host"), checks::wildcard_domain(&self.host));
        if let Some(tp) = &self.traffic_policy {
            traffic_policy(&mut e, &at(SPEC, "trafficPolicy"), tp);
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, s) in self.subsets.iter().enumerate() {
            let p = at_index(SPEC, "subsets", i);
            if names.contains(&s.name.as_str()) {
                e.add(
                    at(&p, "name"),
                    format!("duplicate subset names: {}", s.name),
                );
            }
            names.push(&s.name);
            e.check(at(&p, "name"), checks::subset_name(&s.name));
            checks::labels(&mut e, &at(&p, "labels"), &s.labels);
            if let Some(tp) = &s.traffic_policy {
                traffic_policy(&mut e, &at(&p, "trafficPolicy"), tp);
            }
        }
        checks::export_to(&mut e, &at(SPEC, "exportTo"), &self.export_to, false);
        if let Some(ws) = &self.workload_selector {
            let wp = at(SPEC, "workloadSelector");
            checks::selector_labels(&mut e, &at(&wp, "matchLabels"), &ws.match_labels);
            if self.export_to.iter().any(|x| x != ".") {
                e.add(
                    at(SPEC, "exportTo"),
                    "destination rule with workload selector cannot have exportTo beyond current namespace",
                );
            }
        }
        e.finish()
    }
}

fn traffic_policy(e: &mut Errors, p: &str, tp: &TrafficPolicy) {
    if *tp == TrafficPolicy::default() {
        e.add(p, "traffic policy must have at least one field");
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        e.add(p, "tunnel and proxyProtocol must not be set together");
    }
    if let Some(o) = &tp.outlier_detection {
        outlier_detection(e, &at(p, "outlierDetection"), o);
    }
    if let Some(c) = &tp.connection_pool {
        connection_pool(e, &at(p, "connectionPool"), c);
    }
    if let Some(lb) = &tp.load_balancer {
        load_balancer(e, &at(p, "loadBalancer"), lb);
    }
    if let Some(t) = &tp.tls {
        client_tls(e, &at(p, "tls"), t);
    }
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        port_policy(e, &at_index(p, "portLevelSettings", i), pl);
    }
    if let Some(t) = &tp.tunnel {
        tunnel(e, &at(p, "tunnel"), t);
    }
    if let Some(rb) = &tp.retry_budget
        && let Some(pc) = rb.percent
        && !(0.0..=100.0).contains(&pc)
    {
        e.add(
            at(p, "retryBudget.percent"),
            format!("percent {pc} is not in range 0..100"),
        );
    }
}

fn port_policy(e: &mut Errors, p: &str, pl: &PortTrafficPolicy) {
    match &pl.port {
        None => e.add(at(p, "port"), "portTrafficPolicy must have valid port"),
        Some(port) => e.check(at(p, "port.number"), checks::port(i64::from(port.number))),
    }
    if pl.load_balancer.is_none()
        && pl.connection_pool.is_none()
        && pl.outlier_detection.is_none()
        && pl.tls.is_none()
    {
        e.add(p, "port traffic policy must have at least one field");
        return;
    }
    if let Some(o) = &pl.outlier_detection {
        outlier_detection(e, &at(p, "outlierDetection"), o);
    }
    if let Some(c) = &pl.connection_pool {
        connection_pool(e, &at(p, "connectionPool"), c);
    }
    if let Some(lb) = &pl.load_balancer {
        load_balancer(e, &at(p, "loadBalancer"), lb);
    }
    if let Some(t) = &pl.tls {
        client_tls(e, &at(p, "tls"), t);
    }
}

fn outlier_detection(e: &mut Errors, p: &str, o: &OutlierDetection) {
    if let Some(d) = &o.base_ejection_time {
        e.check(at(p, "baseEjectionTime"), checks::duration(d));
    }
    if let Some(d) = &o.interval {
        e.check(at(p, "interval"), checks::duration(d));
    }
    if !o.split_external_local_origin_errors
        && o.consecutive_local_origin_failures.is_some_and(|v| v > 0)
    {
        e.add(
            at(p, "consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
    }
    e.check(
        at(p, "maxEjectionPercent"),
        checks::int_percent(i64::from(o.max_ejection_percent)),
    );
    e.check(
        at(p, "minHealthPercent"),
        checks::int_percent(i64::from(o.min_health_percent)),
    );
    for (i, code) in o.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            e.add(
                at_index(p, "outlierDetectionHttpErrorCodes", i),
                format!("HTTP status {code} is not in range 100-599"),
            );
        }
    }
}

/// Connection pool limits (DestinationRule, Sidecar inbound).
pub(crate) fn connection_pool(e: &mut Errors, p: &str, c: &ConnectionPoolSettings) {
    if c.http.is_none() && c.tcp.is_none() {
        e.add(p, "connection pool must have at least one field");
        return;
    }
    if let Some(h) = &c.http {
        let hp = at(p, "http");
        for (name, v) in [
            ("http1MaxPendingRequests", h.http1_max_pending_requests),
            ("http2MaxRequests", h.http2_max_requests),
            ("maxRequestsPerConnection", h.max_requests_per_connection),
            ("maxRetries", h.max_retries),
            ("maxConcurrentStreams", h.max_concurrent_streams),
        ] {
            if v < 0 {
                e.add(at(&hp, name), format!("{name} must be non-negative"));
            }
        }
        if let Some(d) = &h.idle_timeout {
            e.check(at(&hp, "idleTimeout"), checks::duration(d));
        }
        if h.h2_upgrade_policy == H2UpgradePolicy::Upgrade && h.use_client_protocol {
            e.add(
                &hp,
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            );
        }
        if let Some(ka) = &h.http2_keep_alive {
            for (name, d) in [("interval", &ka.interval), ("timeout", &ka.timeout)] {
                if let Some(d) = d {
                    e.check(format!("{hp}.http2KeepAlive.{name}"), checks::duration(d));
                }
            }
        }
    }
    if let Some(t) = &c.tcp {
        let tp = at(p, "tcp");
        if t.max_connections < 0 {
            e.add(
                at(&tp, "maxConnections"),
                "max connections must be non-negative",
            );
        }
        for (name, d) in [
            ("connectTimeout", &t.connect_timeout),
            ("maxConnectionDuration", &t.max_connection_duration),
            ("idleTimeout", &t.idle_timeout),
        ] {
            if let Some(d) = d {
                e.check(at(&tp, name), checks::duration(d));
            }
        }
        if let Some(ka) = &t.tcp_keepalive {
            for (name, d) in [("time", &ka.time), ("interval", &ka.interval)] {
                if let Some(d) = d {
                    e.check(format!("{tp}.tcpKeepalive.{name}"), checks::duration(d));
                }
            }
        }
    }
}

fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x.is_multiple_of(2) {
        return false;
    }
    let mut f = 3u64;
    while f.saturating_mul(f) <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

fn load_balancer(e: &mut Errors, p: &str, lb: &LoadBalancerSettings) {
    if let Some(LbPolicy::ConsistentHash(ch)) = &lb.policy {
        let cp = at(p, "consistentHash");
        if let Some(HashKey::HttpCookie(c)) = &ch.hash_key {
            if c.name.is_empty() {
                e.add(at(&cp, "httpCookie.name"), "name required for HttpCookie");
            }
            if let Some(ttl) = &c.ttl
                && !ttl.as_std().subsec_nanos().is_multiple_of(1_000_000)
            {
                e.add(
                    at(&cp, "httpCookie.ttl"),
                    "only durations to ms precision are supported",
                );
            }
        }
        if ch.minimum_ring_size != 0 && ch.hash_algorithm.is_some() {
            e.add(
                &cp,
                "only one of MinimumRingSize or Maglev/Ringhash can be specified",
            );
        }
        if let Some(HashAlgorithm::Maglev(m)) = &ch.hash_algorithm {
            let tp = at(&cp, "maglev.tableSize");
            if m.table_size == 0 {
                e.add(&tp, "tableSize must be set for maglev");
            } else if m.table_size >= 5_000_011 {
                e.add(&tp, "tableSize must be less than 5000011 for maglev");
            } else if !is_prime(m.table_size) {
                e.add(&tp, "tableSize must be a prime number for maglev");
            }
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        locality_lb(e, &at(p, "localityLbSetting"), l);
    }
    if let Some(d) = &lb.warmup_duration_secs {
        e.check(at(p, "warmupDurationSecs"), checks::duration(d));
    }
    if let Some(w) = &lb.warmup {
        let wp = at(p, "warmup");
        e.check(at(&wp, "duration"), checks::duration(&w.duration));
        if let Some(mp) = w.minimum_percent
            && !(0.0..=100.0).contains(&mp)
        {
            e.add(
                at(&wp, "minimumPercent"),
                format!("minimumPercent {mp} is not in range 0..100"),
            );
        }
        if let Some(a) = w.aggression
            && a < 1.0
        {
            e.add(
                at(&wp, "aggression"),
                format!("aggression {a} must be at least 1.0"),
            );
        }
    }
}

/// Locality load balancing (DestinationRule, MeshConfig).
pub(crate) fn locality_lb(e: &mut Errors, p: &str, l: &LocalityLoadBalancerSetting) {
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        e.add(
            p,
            "can not simultaneously specify 'distribute' and 'failover'",
        );
        return;
    }
    const TOPOLOGY_LABELS: &[&str] = &[
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.istio.io/subzone",
    ];
    if !l.failover.is_empty()
        && let Some(label) = l
            .failover_priority
            .iter()
            .find(|x| TOPOLOGY_LABELS.contains(&x.as_str()))
    {
        e.add(
            at(p, "failoverPriority"),
            format!("can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'"),
        );
    }
    for (i, d) in l.distribute.iter().enumerate() {
        let dp = at_index(p, "distribute", i);
        e.check(at(&dp, "from"), checks::locality(&d.from));
        let mut total: u64 = 0;
        for (loc, w) in &d.to {
            let tp = format!("{dp}.to.{loc}");
            e.check(&tp, checks::locality(loc));
            if *w == 0 || *w > 100 {
                e.add(&tp, "locality weight must be in range [1, 100]");
            }
            total += u64::from(*w);
        }
        if total != 100 {
            e.add(
                at(&dp, "to"),
                format!("total locality weight {total} != 100"),
            );
        }
    }
    for (i, f) in l.failover.iter().enumerate() {
        let fp = at_index(p, "failover", i);
        if f.from == f.to {
            e.add(
                &fp,
                "locality lb failover settings must specify different regions",
            );
        }
        if f.from.contains('/') || f.to.contains('/') {
            e.add(&fp, "locality lb failover only specify region");
        }
        if f.from.contains('*') || f.to.contains('*') {
            e.add(
                &fp,
                "locality lb failover region should not contain '*' wildcard",
            );
        }
    }
}

fn client_tls(e: &mut Errors, p: &str, t: &ClientTlsSettings) {
    if t.insecure_skip_verify == Some(true) {
        let conflicting = match t.mode {
            ClientTlsMode::Simple => {
                !t.ca_certificates.is_empty()
                    || !t.credential_name.is_empty()
                    || !t.subject_alt_names.is_empty()
            }
            ClientTlsMode::Mutual => {
                !t.ca_certificates.is_empty() || !t.subject_alt_names.is_empty()
            }
            _ => false,
        };
        if conflicting {
            e.add(
                p,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
            );
        }
    }
    let user_certs = matches!(t.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual);
    if user_certs && !t.credential_name.is_empty() {
        if !t.client_certificate.is_empty()
            || !t.ca_certificates.is_empty()
            || !t.private_key.is_empty()
            || !t.ca_crl.is_empty()
        {
            e.add(
                p,
                "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
            );
        }
        return;
    }
    if t.mode == ClientTlsMode::Mutual {
        if t.client_certificate.is_empty() {
            e.add(
                at(p, "clientCertificate"),
                "client certificate required for mutual tls",
            );
        }
        if t.private_key.is_empty() {
            e.add(at(p, "privateKey"), "private key required for mutual tls");
        }
    }
}

fn tunnel(e: &mut Errors, p: &str, t: &TunnelSettings) {
    if !t.protocol.is_empty() && t.protocol != "CONNECT" && t.protocol != "POST" {
        e.add(
            at(p, "protocol"),
            "tunnel protocol must be \"CONNECT\" or \"POST\"",
        );
    }
    if checks::fqdn(&t.target_host).is_err() && !checks::is_ip(&t.target_host) {
        e.add(
            at(p, "targetHost"),
            "tunnel target host must be valid FQDN or IP address",
        );
    }
    e.check(at(p, "targetPort"), checks::port(i64::from(t.target_port)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(2));
        assert!(!is_prime(65536));
        assert!(!is_prime(9));
    }
}
