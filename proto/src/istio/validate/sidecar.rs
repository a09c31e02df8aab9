//! Sidecar rules (Istio `ValidateSidecar`).

use std::net::SocketAddr;

use super::destination_rule::connection_pool;
use super::workload_entry::unix_address;
use super::{Errors, FieldError, SPEC, at, at_index, checks};
use crate::istio::sidecar::{
    CaptureMode, IstioEgressListener, IstioIngressListener, OutboundTrafficMode,
    OutboundTrafficPolicy, Sidecar, SidecarPort,
};
use crate::istio::tls::ServerTlsMode;

const UNIX_PREFIX: &str = "unix://";

impl Sidecar {
    /// Checks the rules Istio's validation webhook enforces for Sidecars.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        if let Some(ws) = &self.workload_selector {
            checks::workload_selector(&mut e, &at(SPEC, "workloadSelector"), ws);
        }
        if self.egress.is_empty()
            && self.ingress.is_empty()
            && self.outbound_traffic_policy.is_none()
            && self.inbound_connection_pool.is_none()
        {
            e.add(SPEC, "sidecar: empty configuration provided");
        }
        let mut ports: Vec<u32> = Vec::new();
        for (i, l) in self.ingress.iter().enumerate() {
            ingress(&mut e, &at_index(SPEC, "ingress", i), l, &mut ports);
        }
        if let Some(c) = &self.inbound_connection_pool {
            connection_pool(&mut e, &at(SPEC, "inboundConnectionPool"), c);
        }
        let mut ports: Vec<u32> = Vec::new();
        let mut sockets: Vec<&str> = Vec::new();
        let last = self.egress.len().saturating_sub(1);
        let mut catch_all_seen = false;
        for (i, l) in self.egress.iter().enumerate() {
            let p = at_index(SPEC, "egress", i);
            match &l.port {
                None => {
                    if catch_all_seen {
                        e.add(
                            &p,
                            "sidecar: egress can have only one listener with empty port",
                        );
                    } else if i != last {
                        e.add(&p, "sidecar: the egress listener with empty port should be the last listener in the list");
                    }
                    catch_all_seen = true;
                }
                Some(port) => egress_port(&mut e, &p, l, port, &mut ports, &mut sockets),
            }
            egress_hosts(&mut e, &p, l);
        }
        if let Some(otp) = &self.outbound_traffic_policy {
            outbound_policy(&mut e, &at(SPEC, "outboundTrafficPolicy"), otp);
        }
        e.finish()
    }
}

fn port_common(e: &mut Errors, p: &str, port: &SidecarPort) {
    if !port.name.is_empty() {
        e.check(at(p, "name"), checks::port_name(&port.name));
    }
    e.check(at(p, "protocol"), checks::protocol(&port.protocol));
    if port.target_port > 0 {
        e.add(at(p, "targetPort"), "targetPort has no impact on Sidecars");
    }
}

fn ingress(e: &mut Errors, p: &str, l: &IstioIngressListener, ports: &mut Vec<u32>) {
    let pp = at(p, "port");
    port_common(e, &pp, &l.port);
    e.check(at(&pp, "number"), checks::port(i64::from(l.port.number)));
    if !l.bind.is_empty() {
        e.check(at(p, "bind"), checks::ip_address(&l.bind));
    }
    if ports.contains(&l.port.number) {
        e.add(
            at(&pp, "number"),
            "sidecar: ports on IP bound listeners must be unique",
        );
    }
    ports.push(l.port.number);
    if !l.default_endpoint.is_empty() {
        e.check(
            at(p, "defaultEndpoint"),
            default_endpoint(&l.default_endpoint),
        );
    }
    if let Some(t) = &l.tls {
        let tp = at(p, "tls");
        if !t.subject_alt_names.is_empty() {
            e.add(
                at(&tp, "subjectAltNames"),
                "sidecar: subjectAltNames is not supported in ingress tls",
            );
        }
        if t.https_redirect {
            e.add(
                at(&tp, "httpsRedirect"),
                "sidecar: httpsRedirect is not supported",
            );
        }
        if !t.credential_name.is_empty() {
            e.add(
                at(&tp, "credentialName"),
                "sidecar: credentialName is not currently supported",
            );
        }
        if matches!(
            t.mode,
            ServerTlsMode::IstioMutual | ServerTlsMode::AutoPassthrough
        ) {
            e.add(
                at(&tp, "mode"),
                "cannot set mode to ISTIO_MUTUAL or AUTO_PASSTHROUGH in sidecar ingress tls",
            );
        }
        if !t.credential_names.is_empty()
            && (!t.credential_name.is_empty() || !t.tls_certificates.is_empty())
        {
            e.add(
                at(&tp, "credentialNames"),
                "only one of credentialName, credentialNames or tlsCertificates may be set",
            );
        }
        let with_files = t.credential_name.is_empty()
            && t.credential_names.is_empty()
            && t.tls_certificates.is_empty();
        if with_files
            && matches!(
                t.mode,
                ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
            )
        {
            if t.server_certificate.is_empty() {
                e.add(
                    at(&tp, "serverCertificate"),
                    "TLS requires a server certificate",
                );
            }
            if t.private_key.is_empty() {
                e.add(at(&tp, "privateKey"), "TLS requires a private key");
            }
            if t.mode != ServerTlsMode::Simple && t.ca_certificates.is_empty() {
                e.add(
                    at(&tp, "caCertificates"),
                    "MUTUAL TLS requires a client CA bundle",
                );
            }
        }
    }
    if let Some(c) = &l.connection_pool {
        connection_pool(e, &at(p, "connectionPool"), c);
    }
}

/// `127.0.0.1:<port>`, `0.0.0.0:<port>`, `[::1]:<port>`, `[::]:<port>`, `:<port>` or `unix://<path>`.
fn default_endpoint(ep: &str) -> checks::Check {
    if let Some(path) = ep.strip_prefix(UNIX_PREFIX) {
        return unix_address(path);
    }
    let normalized = match ep.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => ep.to_owned(),
    };
    let Ok(addr) = normalized.parse::<SocketAddr>() else {
        return Err(format!(
            "sidecar: defaultEndpoint {ep:?} is not of the form host:port"
        ));
    };
    let ip = addr.ip();
    if !(ip.is_loopback() && (ip.to_string() == "127.0.0.1" || ip.to_string() == "::1"))
        && !ip.is_unspecified()
    {
        return Err(
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset"
                .into(),
        );
    }
    checks::port(i64::from(addr.port()))
}

fn egress_port<'a>(
    e: &mut Errors,
    p: &str,
    l: &'a IstioEgressListener,
    port: &SidecarPort,
    ports: &mut Vec<u32>,
    sockets: &mut Vec<&'a str>,
) {
    let pp = at(p, "port");
    port_common(e, &pp, port);
    if port.number == 0 {
        match l.bind.strip_prefix(UNIX_PREFIX) {
            None => e.add(
                at(p, "bind"),
                "sidecar: ports with 0 value must have a unix domain socket bind address",
            ),
            Some(path) => e.check(at(p, "bind"), unix_address(path)),
        }
        if !matches!(l.capture_mode, CaptureMode::Default | CaptureMode::None) {
            e.add(
                at(p, "captureMode"),
                "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
            );
        }
        if sockets.contains(&l.bind.as_str()) {
            e.add(
                at(p, "bind"),
                "sidecar: unix domain socket values for listeners must be unique",
            );
        }
        sockets.push(&l.bind);
    } else {
        e.check(at(&pp, "number"), checks::port(i64::from(port.number)));
        if !l.bind.is_empty() {
            e.check(at(p, "bind"), checks::ip_address(&l.bind));
        }
        if ports.contains(&port.number) {
            e.add(
                at(&pp, "number"),
                "sidecar: ports on IP bound listeners must be unique",
            );
        }
        ports.push(port.number);
    }
}

/// Egress hosts are `namespace/dnsName`; namespace may be `*`, `.`, `~` or a DNS label.
fn egress_hosts(e: &mut Errors, p: &str, l: &IstioEgressListener) {
    if l.hosts.is_empty() {
        e.add(
            at(p, "hosts"),
            "sidecar: egress listener must contain at least one host",
        );
    }
    for (i, h) in l.hosts.iter().enumerate() {
        let hp = at_index(p, "hosts", i);
        let Some((ns, name)) = h.split_once('/') else {
            e.add(&hp, "host must be of form namespace/dnsName");
            continue;
        };
        if ns.is_empty() || name.is_empty() {
            e.add(
                &hp,
                "config namespace and dnsName in host entry cannot be empty",
            );
            continue;
        }
        if !matches!(ns, "*" | "." | "~") && !checks::is_dns1123_label(ns) {
            e.add(&hp, format!("invalid namespace value {ns:?} in sidecar"));
        }
        if name != "*" && !name.contains('.') {
            e.add(&hp, "short names (non FQDN) are not allowed");
        }
        e.check(&hp, checks::wildcard_domain(name));
        if name.contains('*') && name != "*" && !name.starts_with("*.") {
            e.add(&hp, format!("partial wildcard {name:?} not allowed"));
        }
    }
}

fn outbound_policy(e: &mut Errors, p: &str, otp: &OutboundTrafficPolicy) {
    let Some(proxy) = &otp.egress_proxy else {
        return;
    };
    let ep = at(p, "egressProxy");
    if otp.mode != OutboundTrafficMode::AllowAny {
        e.add(
            &ep,
            "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
        );
        return;
    }
    e.check(at(&ep, "host"), checks::fqdn(&proxy.host));
    if proxy.port.is_none() {
        e.add(
            at(&ep, "port"),
            "sidecar: egress_proxy port must be non-nil",
        );
        return;
    }
    checks::destination(e, &ep, proxy);
}
