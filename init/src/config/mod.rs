//! The validated configuration. Every value a flag or variable carries is
//! checked here, before anything touches the network stack, and every error
//! names the flag it came from.

mod duration;
mod host;
mod values;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

pub use duration::parse_go_duration;
pub use host::{HostFacts, RESOLV_CONF, nameservers};
pub use values::{Cidr, CidrSelection, PortSelection, PortSpec, split_list};

use crate::cli::Args;

/// Istio's default proxy user and group.
pub const DEFAULT_PROXY_UID: u32 = 1337;
/// Where the agent's DNS proxy listens.
pub const AGENT_DNS_PORT: u16 = 15053;
/// Istio caps the owner groups a single rule may list.
const MAX_OWNER_GROUPS_INCLUDE: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value that cannot be used; `flag` is the flag (`--istio-service-cidr`)
    /// or variable (`$ISTIO_OUTBOUND_OWNER_GROUPS`) it came from.
    #[error("{flag}: {message}")]
    Invalid { flag: String, message: String },
    #[error("{first} and {second} cannot be used together: {why}")]
    Conflict {
        first: &'static str,
        second: &'static str,
        why: &'static str,
    },
}

fn invalid(flag: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag: flag.to_owned(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterceptionMode {
    Redirect,
    Tproxy,
}

/// Which owners' outbound traffic is captured at all
/// (`ISTIO_OUTBOUND_OWNER_GROUPS[_EXCLUDE]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerGroups {
    /// Every group except these.
    AllExcept(Vec<String>),
    /// Only these groups (none: nobody's traffic is captured).
    Only(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub proxy_port: u16,
    pub inbound_capture_port: u16,
    pub inbound_tunnel_port: u16,
    pub proxy_uids: Vec<String>,
    pub proxy_gids: Vec<String>,
    pub mode: InterceptionMode,
    pub inbound_ports: PortSelection,
    pub inbound_ports_exclude: Vec<PortSpec>,
    pub exclude_interfaces: Vec<String>,
    pub outbound_ip_ranges_include: CidrSelection,
    pub outbound_ip_ranges_exclude: Vec<Cidr>,
    pub outbound_ports_include: Vec<PortSpec>,
    pub outbound_ports_exclude: Vec<PortSpec>,
    pub kube_virt_interfaces: Vec<String>,
    pub tproxy_mark: u32,
    pub tproxy_route_table: u32,
    pub dry_run: bool,
    pub skip_rule_apply: bool,
    pub run_validation: bool,
    pub probe_port: u16,
    pub probe_timeout: Duration,
    pub redirect_dns: bool,
    pub capture_all_dns: bool,
    pub drop_invalid: bool,
    pub dual_stack: bool,
    pub cleanup_only: bool,
    pub force_apply: bool,
    /// Whether ip6tables rules are programmed.
    pub enable_ipv6: bool,
    /// Whether the workload's first address is IPv6 (the validation probe
    /// then uses ::1 and ::6).
    pub host_ipv6: bool,
    pub dns_servers_v4: Vec<Ipv4Addr>,
    pub dns_servers_v6: Vec<Ipv6Addr>,
    /// `ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR`: what counts as "to localhost".
    pub host_ipv4_loopback_cidr: Cidr,
    pub owner_groups: OwnerGroups,
    /// `--force-iptables-binary`, normalised to its IPv4 name.
    pub iptables_binary: Option<String>,
}

impl Config {
    /// Validates the flags against the host facts. Warnings (settings that
    /// are legal but have no effect) are logged.
    pub fn from_args(args: &Args, host: &HostFacts) -> Result<Self, ConfigError> {
        let proxy_port =
            values::parse_port(&args.envoy_port).map_err(|m| invalid("--envoy-port", m))?;
        let inbound_capture_port = values::parse_port(&args.inbound_capture_port)
            .map_err(|m| invalid("--inbound-capture-port", m))?;
        let inbound_tunnel_port = values::parse_port(&args.inbound_tunnel_port)
            .map_err(|m| invalid("--inbound-tunnel-port", m))?;

        let proxy_uids = match non_empty(args.proxy_uid.as_deref()) {
            Some(value) => owner_list(value, "user", "--proxy-uid")?,
            None => vec![host.envoy_user_uid.unwrap_or(DEFAULT_PROXY_UID).to_string()],
        };
        let proxy_gids = match non_empty(args.proxy_gid.as_deref()) {
            Some(value) => owner_list(value, "group", "--proxy-gid")?,
            None => proxy_uids.clone(),
        };

        let mode_text = non_empty(args.istio_inbound_interception_mode.as_deref())
            .or_else(|| non_empty(host.env("INBOUND_INTERCEPTION_MODE")));
        let mode = match mode_text {
            None | Some("REDIRECT") => InterceptionMode::Redirect,
            Some("TPROXY") => InterceptionMode::Tproxy,
            Some(other) => {
                return Err(invalid(
                    "--istio-inbound-interception-mode",
                    format!("{other:?} is not REDIRECT or TPROXY"),
                ));
            }
        };

        let inbound_ports = values::parse_port_selection(&args.istio_inbound_ports)
            .map_err(|m| invalid("--istio-inbound-ports", m))?;
        let inbound_ports_exclude = values::parse_port_list(&args.istio_local_exclude_ports)
            .map_err(|m| invalid("--istio-local-exclude-ports", m))?;
        let exclude_interfaces = values::parse_interface_list(&args.istio_exclude_interfaces)
            .map_err(|m| invalid("--istio-exclude-interfaces", m))?;
        let outbound_ip_ranges_include = values::parse_cidr_selection(&args.istio_service_cidr)
            .map_err(|m| invalid("--istio-service-cidr", m))?;
        let outbound_ip_ranges_exclude =
            match values::parse_cidr_selection(&args.istio_service_exclude_cidr) {
                Ok(CidrSelection::List(cidrs)) => cidrs,
                Ok(CidrSelection::All) => {
                    return Err(invalid(
                        "--istio-service-exclude-cidr",
                        "\"*\" cannot be excluded; list the CIDRs to exclude",
                    ));
                }
                Err(m) => return Err(invalid("--istio-service-exclude-cidr", m)),
            };
        let outbound_ports_include = values::parse_port_list(&args.istio_outbound_ports)
            .map_err(|m| invalid("--istio-outbound-ports", m))?;
        let outbound_ports_exclude =
            values::parse_port_list(&args.istio_local_outbound_ports_exclude)
                .map_err(|m| invalid("--istio-local-outbound-ports-exclude", m))?;
        let kube_virt_interfaces = values::parse_interface_list(&args.kube_virt_interfaces)
            .map_err(|m| invalid("--kube-virt-interfaces", m))?;

        let tproxy_mark = positive_u32(&args.istio_inbound_tproxy_mark)
            .map_err(|m| invalid("--istio-inbound-tproxy-mark", m))?;
        let tproxy_route_table = positive_u32(&args.istio_inbound_tproxy_route_table)
            .map_err(|m| invalid("--istio-inbound-tproxy-route-table", m))?;
        let probe_port = values::parse_port(&args.iptables_probe_port)
            .map_err(|m| invalid("--iptables-probe-port", m))?;
        let probe_timeout =
            parse_go_duration(&args.probe_timeout).map_err(|m| invalid("--probe-timeout", m))?;
        if probe_timeout.is_zero() && args.run_validation {
            return Err(invalid(
                "--probe-timeout",
                "must be more than 0 with --run-validation",
            ));
        }

        let redirect_dns = args.redirect_dns
            || (host.env("REDIRECT_DNS").is_none() && host.env_bool("ISTIO_META_DNS_CAPTURE"));
        let drop_invalid = args.drop_invalid
            || (host.env("DROP_INVALID").is_none() && host.env_bool("INVALID_DROP"));
        let dual_stack = args.dual_stack
            || (host.env("DUAL_STACK").is_none() && host.env_bool("ISTIO_DUAL_STACK"));

        let host_ipv4_loopback_cidr = loopback_cidr(
            host.env("ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR")
                .unwrap_or("127.0.0.1/32"),
        )?;
        let owner_groups = owner_groups(
            host.env("ISTIO_OUTBOUND_OWNER_GROUPS").unwrap_or("*"),
            host.env("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE")
                .unwrap_or(""),
        )?;

        let iptables_binary = match non_empty(args.force_iptables_binary.as_deref()) {
            None => None,
            Some(name) => Some(iptables_flavour(name)?),
        };

        conflicts(args)?;

        let (dns_servers_v4, dns_servers_v6) = if redirect_dns && !args.capture_all_dns {
            let conf = host.resolv_conf.as_deref().map_err(|e| {
                invalid("--redirect-dns", format!("needs the DNS servers, but {e}"))
            })?;
            split_families(&nameservers(conf))
        } else {
            (Vec::new(), Vec::new())
        };

        let host_ipv6 = host.addresses.first().is_some_and(IpAddr::is_ipv6);
        let v6_cidr_given = match &outbound_ip_ranges_include {
            CidrSelection::All => false,
            CidrSelection::List(cidrs) => cidrs.iter().any(|c| !c.is_ipv4()),
        } || outbound_ip_ranges_exclude.iter().any(|c| !c.is_ipv4());
        let enable_ipv6 = dual_stack || host_ipv6 || v6_cidr_given;

        let config = Self {
            proxy_port,
            inbound_capture_port,
            inbound_tunnel_port,
            proxy_uids,
            proxy_gids,
            mode,
            inbound_ports,
            inbound_ports_exclude,
            exclude_interfaces,
            outbound_ip_ranges_include,
            outbound_ip_ranges_exclude,
            outbound_ports_include,
            outbound_ports_exclude,
            kube_virt_interfaces,
            tproxy_mark,
            tproxy_route_table,
            dry_run: args.dry_run,
            skip_rule_apply: args.skip_rule_apply,
            run_validation: args.run_validation,
            probe_port,
            probe_timeout,
            redirect_dns,
            capture_all_dns: args.capture_all_dns,
            drop_invalid,
            dual_stack,
            cleanup_only: args.cleanup_only,
            force_apply: args.force_apply,
            enable_ipv6,
            host_ipv6,
            dns_servers_v4,
            dns_servers_v6,
            host_ipv4_loopback_cidr,
            owner_groups,
            iptables_binary,
        };
        config.warn_about_no_ops();
        Ok(config)
    }

    /// DNS capture happens only when there is something to capture: Istio
    /// turns it off when no server is known and capture-all is off.
    pub fn dns_capture_active(&self) -> bool {
        self.redirect_dns
            && (self.capture_all_dns
                || !self.dns_servers_v4.is_empty()
                || !self.dns_servers_v6.is_empty())
    }

    fn warn_about_no_ops(&self) {
        if !self.inbound_ports_exclude.is_empty() && self.inbound_ports != PortSelection::All {
            tracing::warn!(
                "--istio-local-exclude-ports only applies with --istio-inbound-ports '*'; ignored"
            );
        }
        if self.capture_all_dns && !self.redirect_dns {
            tracing::warn!("--capture-all-dns only applies with --redirect-dns; ignored");
        }
        if self.redirect_dns && !self.dns_capture_active() {
            tracing::warn!(
                "--redirect-dns is set but no DNS server was found in {RESOLV_CONF} and \
                 --capture-all-dns is off: DNS capture disabled"
            );
        }
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn owner_list(value: &str, kind: &str, flag: &str) -> Result<Vec<String>, ConfigError> {
    let owners = values::parse_owner_list(value, kind).map_err(|m| invalid(flag, m))?;
    if owners.is_empty() {
        return Err(invalid(flag, format!("{value:?} names no {kind}")));
    }
    Ok(owners)
}

fn positive_u32(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a number from 1 to 4294967295")),
        Ok(n) => Ok(n),
    }
}

fn loopback_cidr(text: &str) -> Result<Cidr, ConfigError> {
    const SOURCE: &str = "$ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR";
    let cidr = values::parse_cidr(text.trim()).map_err(|m| invalid(SOURCE, m))?;
    if !cidr.is_ipv4() || !cidr.is_loopback() {
        return Err(invalid(
            SOURCE,
            format!("{text:?} is not an IPv4 loopback CIDR"),
        ));
    }
    if !(8..=32).contains(&cidr.prefix) {
        return Err(invalid(
            SOURCE,
            format!("{text:?}: the mask must be from /8 to /32"),
        ));
    }
    Ok(cidr)
}

fn owner_groups(include: &str, exclude: &str) -> Result<OwnerGroups, ConfigError> {
    if include.trim() == "*" {
        let groups = values::parse_owner_list(exclude, "group")
            .map_err(|m| invalid("$ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", m))?;
        return Ok(OwnerGroups::AllExcept(groups));
    }
    let groups = values::parse_owner_list(include, "group")
        .map_err(|m| invalid("$ISTIO_OUTBOUND_OWNER_GROUPS", m))?;
    if groups.len() > MAX_OWNER_GROUPS_INCLUDE {
        return Err(invalid(
            "$ISTIO_OUTBOUND_OWNER_GROUPS",
            format!(
                "at most {MAX_OWNER_GROUPS_INCLUDE} groups fit in one rule, got {}",
                groups.len()
            ),
        ));
    }
    Ok(OwnerGroups::Only(groups))
}

fn iptables_flavour(name: &str) -> Result<String, ConfigError> {
    match name {
        "iptables" | "ip6tables" => Ok("iptables".to_owned()),
        "iptables-nft" | "ip6tables-nft" => Ok("iptables-nft".to_owned()),
        "iptables-legacy" | "ip6tables-legacy" => Ok("iptables-legacy".to_owned()),
        other => Err(invalid(
            "--force-iptables-binary",
            format!("{other:?} is not iptables, iptables-nft or iptables-legacy"),
        )),
    }
}

fn conflicts(args: &Args) -> Result<(), ConfigError> {
    let pairs: [(bool, &'static str, &'static str, &'static str); 3] = [
        (
            args.cleanup_only && args.skip_rule_apply,
            "--cleanup-only",
            "--skip-rule-apply",
            "one removes rules, the other says not to touch them",
        ),
        (
            args.cleanup_only && args.force_apply,
            "--cleanup-only",
            "--force-apply",
            "one removes rules, the other applies them",
        ),
        (
            args.cleanup_only && args.run_validation,
            "--cleanup-only",
            "--run-validation",
            "validation needs the rules that cleanup removes",
        ),
    ];
    for (conflicting, first, second, why) in pairs {
        if conflicting {
            return Err(ConfigError::Conflict { first, second, why });
        }
    }
    Ok(())
}

fn split_families(addrs: &[IpAddr]) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for addr in addrs {
        match addr {
            IpAddr::V4(a) => v4.push(*a),
            IpAddr::V6(a) => v6.push(*a),
        }
    }
    (v4, v6)
}
