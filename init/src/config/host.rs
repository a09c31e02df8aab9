//! Facts about the machine the configuration depends on, gathered once so
//! that [`super::Config::from_args`] stays a pure function of its inputs.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Where Istio reads the DNS servers to capture from.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, Clone)]
pub struct HostFacts {
    /// The environment, for the variables that have no flag
    /// (`ISTIO_OUTBOUND_*`, `ENVOY_USER`) and the second names some flags take.
    pub env: BTreeMap<String, String>,
    /// The UID of the user `$ENVOY_USER` (default `istio-proxy`) names, if it exists.
    pub envoy_user_uid: Option<u32>,
    /// The text of /etc/resolv.conf, or the reason it could not be read.
    pub resolv_conf: Result<String, String>,
    /// The workload's addresses (not loopback, not link-local), in interface order.
    pub addresses: Vec<IpAddr>,
}

impl HostFacts {
    /// Reads the real environment, user database, resolv.conf and interfaces.
    pub fn from_system() -> Self {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let envoy_user = env
            .get("ENVOY_USER")
            .cloned()
            .unwrap_or_else(|| "istio-proxy".to_owned());
        let envoy_user_uid = nix::unistd::User::from_name(&envoy_user)
            .ok()
            .flatten()
            .map(|user| user.uid.as_raw());
        let resolv_conf =
            std::fs::read_to_string(RESOLV_CONF).map_err(|e| format!("reading {RESOLV_CONF}: {e}"));
        Self {
            env,
            envoy_user_uid,
            resolv_conf,
            addresses: workload_addresses(),
        }
    }

    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// A boolean variable the way Go's strconv.ParseBool reads it; unset or
    /// unparsable is false.
    pub fn env_bool(&self, name: &str) -> bool {
        matches!(
            self.env(name).map(str::trim),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }
}

impl Default for HostFacts {
    /// No environment, no user, no resolv.conf, no addresses.
    fn default() -> Self {
        Self {
            env: BTreeMap::new(),
            envoy_user_uid: None,
            resolv_conf: Err("not read".to_owned()),
            addresses: Vec::new(),
        }
    }
}

fn workload_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifaddr in addrs {
        // lo may carry ::6 (added for IPv6 capture), which is not the workload's.
        if ifaddr
            .flags
            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
        {
            continue;
        }
        let Some(storage) = ifaddr.address else {
            continue;
        };
        let ip = if let Some(v4) = storage.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = storage.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if is_workload_address(ip) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

fn is_workload_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_unspecified(),
    }
}

/// The `nameserver` lines of a resolv.conf, split by family. Scoped IPv6
/// addresses (`fe80::1%eth0`) are skipped: iptables cannot match on them.
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers() {
        let conf = "# comment\nsearch default.svc.cluster.local\nnameserver 10.96.0.10\n\
                    nameserver fd00::a\nnameserver fe80::1%eth0\noptions ndots:5\n";
        let servers: Vec<String> = nameservers(conf).iter().map(ToString::to_string).collect();
        assert_eq!(servers, vec!["10.96.0.10", "fd00::a"]);
    }

    #[test]
    fn bools_follow_go() {
        let mut facts = HostFacts::default();
        facts.env.insert("A".into(), "true".into());
        facts.env.insert("B".into(), "1".into());
        facts.env.insert("C".into(), "no".into());
        assert!(facts.env_bool("A"));
        assert!(facts.env_bool("B"));
        assert!(!facts.env_bool("C"));
        assert!(!facts.env_bool("D"));
    }
}
