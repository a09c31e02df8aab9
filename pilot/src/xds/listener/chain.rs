//! A filter chain before it becomes Envoy config: its match criteria and what it runs.
//! Outbound listeners collect these from several services and merge them, so conflicts are
//! decided on this form (Istio's `filterChainOpts`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use strait_proto::envoy::config::core::v3::{CidrRange, Metadata};
use strait_proto::envoy::config::listener::v3::{Filter, FilterChainMatch};

use crate::xds::route::wkt;

/// What a chain does with a connection.
#[derive(Clone, Debug, PartialEq)]
pub enum ChainAction {
    /// An HCM fetching routes over RDS under this name.
    Http { rds: String },
    /// Ready-made network filters (a `tcp_proxy`).
    Network(Vec<Filter>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChainOpts {
    pub sni_hosts: Vec<String>,
    pub destination_cidrs: Vec<String>,
    pub application_protocols: Vec<String>,
    pub transport_protocol: String,
    pub metadata: Option<Metadata>,
    pub action: ChainAction,
}

impl ChainOpts {
    pub fn network(filters: Vec<Filter>) -> ChainOpts {
        ChainOpts {
            sni_hosts: Vec::new(),
            destination_cidrs: Vec::new(),
            application_protocols: Vec::new(),
            transport_protocol: String::new(),
            metadata: None,
            action: ChainAction::Network(filters),
        }
    }

    pub fn http(rds: String) -> ChainOpts {
        ChainOpts {
            action: ChainAction::Http { rds },
            ..ChainOpts::network(Vec::new())
        }
    }

    /// Only reached for plaintext HTTP detected by the HTTP inspector.
    pub fn sniffed_http(mut self) -> ChainOpts {
        self.application_protocols = super::names::PLAINTEXT_HTTP_ALPNS
            .iter()
            .map(|s| s.to_string())
            .collect();
        self.transport_protocol = super::names::RAW_BUFFER.to_string();
        self
    }

    /// Whether the chain matches every connection (then it becomes the default chain).
    pub fn is_match_all(&self) -> bool {
        (self.sni_hosts.is_empty() || self.sni_hosts.iter().any(|h| h == "*"))
            && self.application_protocols.is_empty()
            && self.transport_protocol.is_empty()
            && self.destination_cidrs.is_empty()
    }

    /// Whether two chains would match the same connections; Envoy rejects a listener with
    /// two such chains.
    pub fn conflicts_with(&self, other: &ChainOpts) -> bool {
        self.transport_protocol == other.transport_protocol
            && self.application_protocols == other.application_protocols
            && sni_set(&self.sni_hosts) == sni_set(&other.sni_hosts)
            && cidr_set(&self.destination_cidrs) == cidr_set(&other.destination_cidrs)
    }

    pub fn to_filter_chain_match(&self) -> Option<FilterChainMatch> {
        if self.is_match_all() {
            return None;
        }
        let mut server_names = Vec::new();
        if !self.sni_hosts.iter().any(|h| h == "*") {
            server_names = self.sni_hosts.clone();
            server_names.sort();
        }
        let mut cidrs = self.destination_cidrs.clone();
        cidrs.sort();
        Some(FilterChainMatch {
            application_protocols: self.application_protocols.clone(),
            transport_protocol: self.transport_protocol.clone(),
            server_names,
            prefix_ranges: cidrs
                .iter()
                .filter_map(|c| cidr_range(c))
                .filter(|r| r.address_prefix != "0.0.0.0")
                .collect(),
            ..Default::default()
        })
    }
}

fn sni_set(hosts: &[String]) -> BTreeSet<&str> {
    hosts
        .iter()
        .map(String::as_str)
        .filter(|h| *h != "*")
        .collect()
}

fn cidr_set(cidrs: &[String]) -> BTreeSet<(IpAddr, u8)> {
    cidrs
        .iter()
        .filter_map(|c| parse_cidr(c))
        .filter(|(ip, _)| !ip.is_unspecified())
        .map(|(ip, len)| (mask(ip, len), len))
        .collect()
}

/// Parses `10.0.0.0/8` or a bare address (a host prefix).
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
        None => {
            let ip: IpAddr = s.parse().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

pub fn cidr_range(s: &str) -> Option<CidrRange> {
    let (ip, len) = parse_cidr(s)?;
    Some(CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(wkt::u32_value(u32::from(len))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_all_and_conflicts() {
        let tcp = ChainOpts::network(Vec::new());
        assert!(tcp.is_match_all());
        assert!(tcp.to_filter_chain_match().is_none());
        let http = ChainOpts::http("80".into()).sniffed_http();
        assert!(!http.is_match_all());
        assert!(!http.conflicts_with(&tcp));
        let m = http.to_filter_chain_match().unwrap();
        assert_eq!(m.application_protocols, ["http/1.1", "h2c"]);
        assert_eq!(m.transport_protocol, "raw_buffer");
        assert!(tcp.conflicts_with(&ChainOpts::network(Vec::new())));
    }

    #[test]
    fn cidrs_compare_masked() {
        let mut a = ChainOpts::network(Vec::new());
        a.destination_cidrs = vec!["10.1.2.3/8".into()];
        let mut b = ChainOpts::network(Vec::new());
        b.destination_cidrs = vec!["10.9.9.9/8".into()];
        assert!(a.conflicts_with(&b));
        let m = a.to_filter_chain_match().unwrap();
        assert_eq!(m.prefix_ranges[0].address_prefix, "10.1.2.3");
        assert_eq!(m.prefix_ranges[0].prefix_len, Some(wkt::u32_value(8)));
        assert_eq!(
            parse_cidr("fd00::1"),
            Some(("fd00::1".parse().unwrap(), 128))
        );
        assert_eq!(parse_cidr("1.2.3.4/33"), None);
    }

    #[test]
    fn sni_wildcard_means_no_server_names() {
        let mut a = ChainOpts::network(Vec::new());
        a.sni_hosts = vec!["b.com".into(), "a.com".into()];
        a.transport_protocol = "tls".into();
        assert_eq!(
            a.to_filter_chain_match().unwrap().server_names,
            ["a.com", "b.com"]
        );
        a.sni_hosts.push("*".into());
        assert!(a.to_filter_chain_match().unwrap().server_names.is_empty());
    }
}
