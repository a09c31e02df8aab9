//! WorkloadEntry rules (Istio `ValidateWorkloadEntry`), also applied to ServiceEntry endpoints.

use super::{Errors, FieldError, SPEC, at, checks};
use crate::istio::WorkloadEntry;

const UNIX_PREFIX: &str = "unix://";

/// An absolute path to a socket, or an abstract socket (`@name`).
pub(crate) fn unix_address(addr: &str) -> checks::Check {
    if addr.is_empty() {
        return Err("unix address must not be empty".into());
    }
    if addr.starts_with('@') {
        return Ok(());
    }
    if !addr.starts_with('/') || addr.ends_with('/') {
        return Err(format!("{addr} is not an absolute path to a file"));
    }
    Ok(())
}

/// How strictly endpoint addresses are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressRule {
    /// IP, hostname or unix socket (WorkloadEntry, or unknown resolution).
    IpOrFqdn,
    /// IP or unix socket only (`STATIC` ServiceEntry endpoints).
    IpOnly,
}

/// Checks one workload entry at `p`; `service_ports` are the port names of the enclosing
/// ServiceEntry, if any.
pub(crate) fn workload_entry(
    e: &mut Errors,
    p: &str,
    we: &WorkloadEntry,
    service_ports: Option<&[&str]>,
    rule: AddressRule,
) {
    let ap = at(p, "address");
    if we.address.is_empty() {
        if we.network.is_empty() {
            e.add(&ap, "address is required");
        }
    } else if let Some(path) = we.address.strip_prefix(UNIX_PREFIX) {
        e.check(&ap, unix_address(path));
        if !we.ports.is_empty() {
            e.add(
                at(p, "ports"),
                format!("unix endpoint {} must not include ports", we.address),
            );
        }
    } else if !checks::is_ip(&we.address) {
        match rule {
            AddressRule::IpOnly => {
                e.add(
                    &ap,
                    format!(
                        "endpoint address {:?} is not a valid IP address",
                        we.address
                    ),
                );
            }
            AddressRule::IpOrFqdn => {
                if checks::fqdn(&we.address).is_err() {
                    e.add(
                        &ap,
                        format!(
                            "endpoint address {:?} is not a valid FQDN or an IP address",
                            we.address
                        ),
                    );
                }
            }
        }
    }
    for (name, port) in &we.ports {
        let pp = format!("{p}.ports.{name}");
        if let Some(sp) = service_ports
            && !sp.contains(&name.as_str())
        {
            e.add(
                &pp,
                format!("endpoint port {port} is not defined by the service entry"),
            );
        }
        e.check(&pp, checks::port_name(name));
        e.check(&pp, checks::port(i64::from(*port)));
    }
    checks::labels(e, &at(p, "labels"), &we.labels);
    if !we.locality.is_empty() {
        e.check(at(p, "locality"), checks::locality(&we.locality));
    }
}

impl WorkloadEntry {
    /// Checks the rules Istio's validation webhook enforces for WorkloadEntries.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        workload_entry(&mut e, SPEC, self, None, AddressRule::IpOrFqdn);
        e.finish()
    }
}
