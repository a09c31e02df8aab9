//! Parsers for the value kinds the flags take: ports, CIDRs, interface names,
//! user and group ids. Each returns a message without the flag name; the
//! caller prefixes it.

use std::fmt;
use std::net::IpAddr;

/// Istio splits every list on commas and drops empty items, so "80,,90," is
/// two ports; we also trim blanks around items.
pub fn split_list(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

/// One port or an inclusive range `first:last`, as iptables' `--dport` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub first: u16,
    pub last: u16,
}

impl PortSpec {
    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

pub fn parse_port(item: &str) -> Result<u16, String> {
    match item.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{item:?} is not a port (1-65535)")),
        Ok(port) => Ok(port),
    }
}

pub fn parse_port_spec(item: &str) -> Result<PortSpec, String> {
    match item.split_once(':') {
        None => parse_port(item).map(PortSpec::single),
        Some((first, last)) => {
            let range_error =
                || format!("{item:?} is not a port or a port range (80 or 8000:8999)");
            let first = parse_port(first).map_err(|_| range_error())?;
            let last = parse_port(last).map_err(|_| range_error())?;
            if first > last {
                return Err(range_error());
            }
            Ok(PortSpec { first, last })
        }
    }
}

pub fn parse_port_list(value: &str) -> Result<Vec<PortSpec>, String> {
    split_list(value).into_iter().map(parse_port_spec).collect()
}

/// An address with a prefix length, printed exactly as given ("10.1.2.3/8"
/// stays so, as Istio prints it; iptables masks it when it stores the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn is_loopback(&self) -> bool {
        self.addr.is_loopback()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

pub fn parse_cidr(item: &str) -> Result<Cidr, String> {
    let not_cidr = || format!("{item:?} is not a CIDR");
    let Some((addr, prefix)) = item.split_once('/') else {
        return Err(match item.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => format!("{item:?} is not a CIDR (write {item}/32)"),
            Ok(IpAddr::V6(_)) => format!("{item:?} is not a CIDR (write {item}/128)"),
            Err(_) => not_cidr(),
        });
    };
    let addr: IpAddr = addr.parse().map_err(|_| not_cidr())?;
    // A prefix must be plain decimal digits: "+8" or "08" are not CIDR syntax.
    if prefix.is_empty()
        || !prefix.bytes().all(|b| b.is_ascii_digit())
        || (prefix.len() > 1 && prefix.starts_with('0'))
    {
        return Err(not_cidr());
    }
    let prefix: u8 = prefix.parse().map_err(|_| not_cidr())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(not_cidr());
    }
    Ok(Cidr { addr, prefix })
}

/// What an include list of CIDRs selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrSelection {
    /// `*`: everything.
    All,
    /// The listed ranges; empty selects nothing.
    List(Vec<Cidr>),
}

pub fn parse_cidr_selection(value: &str) -> Result<CidrSelection, String> {
    let items = split_list(value);
    if items.contains(&"*") {
        if items.len() == 1 {
            return Ok(CidrSelection::All);
        }
        return Err(format!("{value:?}: \"*\" must be the only value"));
    }
    items
        .into_iter()
        .map(parse_cidr)
        .collect::<Result<_, _>>()
        .map(CidrSelection::List)
}

/// What an include list of ports selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelection {
    /// `*`: every port.
    All,
    /// The listed ports; empty selects nothing.
    List(Vec<PortSpec>),
}

pub fn parse_port_selection(value: &str) -> Result<PortSelection, String> {
    let items = split_list(value);
    if items.contains(&"*") {
        if items.len() == 1 {
            return Ok(PortSelection::All);
        }
        return Err(format!("{value:?}: \"*\" must be the only value"));
    }
    items
        .into_iter()
        .map(parse_port_spec)
        .collect::<Result<_, _>>()
        .map(PortSelection::List)
}

/// Linux interface names: at most 15 bytes, no '/', ':' or blanks; iptables
/// also takes a trailing '+' as a wildcard.
pub fn parse_interface(item: &str) -> Result<String, String> {
    let valid = !item.is_empty()
        && item.len() <= 15
        && item != "."
        && item != ".."
        && item
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':' && b != b'"' && b != b'\'');
    if valid {
        Ok(item.to_owned())
    } else {
        Err(format!("{item:?} is not an interface name"))
    }
}

pub fn parse_interface_list(value: &str) -> Result<Vec<String>, String> {
    split_list(value).into_iter().map(parse_interface).collect()
}

/// A numeric id or a user/group name, as iptables' owner match takes it.
pub fn parse_owner(item: &str, kind: &str) -> Result<String, String> {
    let numeric = item.bytes().all(|b| b.is_ascii_digit());
    if numeric {
        return match item.parse::<u32>() {
            Ok(_) => Ok(item.to_owned()),
            Err(_) => Err(format!("{item:?} is not a {kind} id")),
        };
    }
    let name_ok = item.len() <= 32
        && item
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && item.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric()
                || b == b'_'
                || b == b'-'
                || b == b'.'
                || (b == b'$' && i + 1 == item.len())
        });
    if name_ok {
        Ok(item.to_owned())
    } else {
        Err(format!("{item:?} is not a {kind} id or name"))
    }
}

pub fn parse_owner_list(value: &str, kind: &str) -> Result<Vec<String>, String> {
    split_list(value)
        .into_iter()
        .map(|item| parse_owner(item, kind))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_drop_empty_items_and_blanks() {
        assert_eq!(split_list("15090,15021,"), vec!["15090", "15021"]);
        assert_eq!(split_list(" a , ,b"), vec!["a", "b"]);
        assert!(split_list("").is_empty());
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(parse_port_spec("80").unwrap().to_string(), "80");
        assert_eq!(
            parse_port_spec("8000:8999").unwrap().to_string(),
            "8000:8999"
        );
        assert!(parse_port_spec("0").is_err());
        assert!(parse_port_spec("65536").is_err());
        assert!(parse_port_spec("90:80").is_err());
        assert!(parse_port_spec("http").is_err());
    }

    #[test]
    fn cidrs_are_strict() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_cidr("2001:DB8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            parse_cidr("10.0.0.0/33").unwrap_err(),
            "\"10.0.0.0/33\" is not a CIDR"
        );
        assert!(parse_cidr("10.0.0.1").unwrap_err().contains("10.0.0.1/32"));
        assert!(parse_cidr("10.0.0/8").is_err());
        assert!(parse_cidr("10.0.0.0/+8").is_err());
        assert!(parse_cidr("::/129").is_err());
    }

    #[test]
    fn wildcard_must_stand_alone() {
        assert_eq!(parse_cidr_selection("*").unwrap(), CidrSelection::All);
        assert_eq!(
            parse_cidr_selection("").unwrap(),
            CidrSelection::List(vec![])
        );
        assert!(parse_cidr_selection("*,10.0.0.0/8").is_err());
        assert_eq!(parse_port_selection("*").unwrap(), PortSelection::All);
        assert!(parse_port_selection("80,*").is_err());
    }

    #[test]
    fn interface_and_owner_names() {
        assert!(parse_interface("eth0").is_ok());
        assert!(parse_interface("veth+").is_ok());
        assert!(parse_interface("a-very-long-interface").is_err());
        assert!(parse_interface("eth0 ").is_err());
        assert!(parse_owner("1337", "user").is_ok());
        assert!(parse_owner("istio-proxy", "user").is_ok());
        assert!(parse_owner("99999999999", "user").is_err());
        assert!(parse_owner("bad name", "user").is_err());
        assert!(parse_owner("-x", "group").is_err());
    }
}
