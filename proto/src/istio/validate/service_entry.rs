//! ServiceEntry rules (Istio `ValidateServiceEntry`).

use super::workload_entry::{AddressRule, workload_entry};
use super::{Errors, FieldError, SPEC, at, at_index, checks};
use crate::istio::service_entry::{Resolution, ServiceEntry};

impl ServiceEntry {
    /// Checks the rules Istio's validation webhook enforces for ServiceEntries.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        if let Some(ws) = &self.workload_selector {
            checks::workload_selector(&mut e, &at(SPEC, "workloadSelector"), ws);
            if !self.endpoints.is_empty() {
                e.add(
                    SPEC,
                    "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
                );
            }
        }
        if self.hosts.is_empty() {
            e.add(
                at(SPEC, "hosts"),
                "service entry must have at least one host",
            );
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let hp = at_index(SPEC, "hosts", i);
            if h == "*" {
                e.add(&hp, format!("invalid host {h}"));
            } else {
                e.check(&hp, checks::wildcard_domain(h));
            }
        }
        let mut cidr = false;
        for (i, a) in self.addresses.iter().enumerate() {
            cidr |= a.contains('/');
            e.check(at_index(SPEC, "addresses", i), checks::ip_subnet(a));
        }
        if cidr && !matches!(self.resolution, Resolution::None | Resolution::Static) {
            e.add(
                at(SPEC, "addresses"),
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            );
        }
        let mut names: Vec<&str> = Vec::new();
        let mut numbers: Vec<u32> = Vec::new();
        for (i, port) in self.ports.iter().enumerate() {
            let pp = at_index(SPEC, "ports", i);
            if names.contains(&port.name.as_str()) {
                e.add(
                    at(&pp, "name"),
                    format!("service entry port name {:?} already defined", port.name),
                );
            }
            if numbers.contains(&port.number) {
                e.add(
                    at(&pp, "number"),
                    format!("service entry port {} already defined", port.number),
                );
            }
            names.push(&port.name);
            numbers.push(port.number);
            if port.target_port != 0 {
                e.check(
                    at(&pp, "targetPort"),
                    checks::port(i64::from(port.target_port)),
                );
            }
            e.check(at(&pp, "name"), checks::port_name(&port.name));
            e.check(at(&pp, "protocol"), checks::protocol(&port.protocol));
            e.check(at(&pp, "number"), checks::port(i64::from(port.number)));
        }
        self.validate_resolution(&mut e, &names);
        if self.resolution != Resolution::None && self.hosts.len() > 1 {
            let opaque = self.ports.iter().any(|p| {
                !checks::is_http_protocol(&p.protocol) && !checks::is_tls_protocol(&p.protocol)
            });
            if opaque {
                e.add(
                    at(SPEC, "hosts"),
                    "multiple hosts provided with non-HTTP, non-TLS ports",
                );
            }
        }
        checks::export_to(&mut e, &at(SPEC, "exportTo"), &self.export_to, true);
        e.finish()
    }

    fn validate_resolution(&self, e: &mut Errors, port_names: &[&str]) {
        let ep = at(SPEC, "endpoints");
        match self.resolution {
            Resolution::None => {
                if !self.endpoints.is_empty() {
                    e.add(
                        &ep,
                        "no endpoints should be provided for resolution type none",
                    );
                }
            }
            Resolution::Static => {
                for (i, we) in self.endpoints.iter().enumerate() {
                    workload_entry(
                        e,
                        &format!("{ep}[{i}]"),
                        we,
                        Some(port_names),
                        AddressRule::IpOnly,
                    );
                }
            }
            Resolution::Dns | Resolution::DnsRoundRobin | Resolution::DynamicDns => {
                if self.endpoints.is_empty() && self.resolution != Resolution::DynamicDns {
                    for (i, h) in self.hosts.iter().enumerate() {
                        if checks::fqdn(h).is_err() {
                            e.add(
                                at_index(SPEC, "hosts", i),
                                "hosts must be FQDN if no endpoints are provided for DNS resolution",
                            );
                        }
                    }
                }
                if self.resolution == Resolution::DnsRoundRobin && self.endpoints.len() > 1 {
                    e.add(
                        &ep,
                        "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
                    );
                }
                for (i, we) in self.endpoints.iter().enumerate() {
                    workload_entry(
                        e,
                        &format!("{ep}[{i}]"),
                        we,
                        Some(port_names),
                        AddressRule::IpOrFqdn,
                    );
                }
            }
        }
    }
}
