//! Addresses and CIDR ranges. strait-proxy speaks TCP over IP only, so pipes, internal
//! addresses, UDP, named ports and custom resolvers are rejected here.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use strait_proto::envoy::config::core::v3::{
    Address, CidrRange, SocketAddress, address, socket_address,
};

use super::wkt;
use crate::config::error::{Ctx, Result};

/// A socket address whose host is an IP literal.
pub fn socket_addr(a: &Address, allow_zero_port: bool, ctx: &Ctx) -> Result<SocketAddr> {
    let sa = tcp_socket_address(a, ctx)?;
    let ctx = ctx.field("socket_address");
    let ip = parse_ip(&sa.address).ok_or_else(|| {
        ctx.field("address")
            .error(format!("'{}' is not an IP address", sa.address))
    })?;
    Ok(SocketAddr::new(ip, port_of(sa, allow_zero_port, &ctx)?))
}

/// A host and port where the host may be a DNS name (DNS clusters).
pub fn host_port(a: &Address, ctx: &Ctx) -> Result<(String, u16)> {
    let sa = tcp_socket_address(a, ctx)?;
    let ctx = ctx.field("socket_address");
    if sa.address.is_empty() {
        return Err(ctx.field("address").error("address is required"));
    }
    Ok((sa.address.clone(), port_of(sa, false, &ctx)?))
}

/// A bare `SocketAddress` (e.g. `upstream_bind_config.source_address`) with an IP host.
pub fn bare_socket_addr(sa: &SocketAddress, ctx: &Ctx) -> Result<SocketAddr> {
    check_tcp(sa, ctx)?;
    let ip = parse_ip(&sa.address).ok_or_else(|| {
        ctx.field("address")
            .error(format!("'{}' is not an IP address", sa.address))
    })?;
    Ok(SocketAddr::new(ip, port_of(sa, true, ctx)?))
}

fn tcp_socket_address<'a>(a: &'a Address, ctx: &Ctx) -> Result<&'a SocketAddress> {
    match &a.address {
        Some(address::Address::SocketAddress(sa)) => {
            check_tcp(sa, &ctx.field("socket_address"))?;
            Ok(sa)
        }
        Some(address::Address::Pipe(_)) => Err(ctx
            .field("pipe")
            .error("unix domain socket addresses are not supported")),
        Some(address::Address::EnvoyInternalAddress(_)) => Err(ctx
            .field("envoy_internal_address")
            .error("internal addresses are not supported")),
        None => Err(ctx.error("address is required")),
    }
}

fn check_tcp(sa: &SocketAddress, ctx: &Ctx) -> Result<()> {
    if sa.protocol != socket_address::Protocol::Tcp as i32 {
        return Err(ctx.field("protocol").error("only TCP is supported"));
    }
    if !sa.resolver_name.is_empty() {
        return Err(ctx.field("resolver_name").error(format!(
            "custom resolver '{}' is not supported",
            sa.resolver_name
        )));
    }
    if !sa.network_namespace_filepath.is_empty() {
        return Err(ctx
            .field("network_namespace_filepath")
            .error("network namespaces are not supported"));
    }
    Ok(())
}

fn port_of(sa: &SocketAddress, allow_zero: bool, ctx: &Ctx) -> Result<u16> {
    match &sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(p)) => {
            wkt::port(*p, allow_zero, &ctx.field("port_value"))
        }
        Some(socket_address::PortSpecifier::NamedPort(n)) => Err(ctx
            .field("named_port")
            .error(format!("named port '{n}' is not supported"))),
        None if allow_zero => Ok(0),
        None => Err(ctx.field("port_value").error("port is required")),
    }
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// A CIDR range; host bits are cleared, as Envoy does. An unset `prefix_len` is 0.
pub fn cidr(c: &CidrRange, ctx: &Ctx) -> Result<IpNet> {
    let ip = parse_ip(&c.address_prefix).ok_or_else(|| {
        ctx.field("address_prefix")
            .error(format!("'{}' is not an IP address", c.address_prefix))
    })?;
    let len = wkt::u32_or(c.prefix_len.as_ref(), 0);
    let net = u8::try_from(len)
        .ok()
        .and_then(|l| IpNet::new(ip, l).ok())
        .ok_or_else(|| {
            ctx.field("prefix_len")
                .error(format!("prefix length {len} is too long for {ip}"))
        })?;
    Ok(net.trunc())
}

pub fn cidrs(list: &[CidrRange], ctx: &Ctx) -> Result<Vec<IpNet>> {
    list.iter()
        .enumerate()
        .map(|(i, c)| cidr(c, &ctx.index(i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::google::protobuf::UInt32Value;

    fn sock(addr: &str, port: u32) -> Address {
        Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: addr.into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn socket_addresses() {
        let ctx = Ctx::new("Listener", "l").field("address");
        assert_eq!(
            socket_addr(&sock("10.0.0.1", 80), false, &ctx).unwrap(),
            "10.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            socket_addr(&sock("::", 15001), false, &ctx).unwrap(),
            "[::]:15001".parse().unwrap()
        );
        let e = socket_addr(&sock("example.com", 80), false, &ctx).unwrap_err();
        assert_eq!(e.field, "address.socket_address.address");
        let e = socket_addr(&sock("10.0.0.1", 65536), false, &ctx).unwrap_err();
        assert_eq!(e.field, "address.socket_address.port_value");
        assert_eq!(
            host_port(&sock("example.com", 443), &ctx).unwrap(),
            ("example.com".to_string(), 443)
        );
        let pipe = Address {
            address: Some(address::Address::Pipe(Default::default())),
        };
        assert!(
            socket_addr(&pipe, false, &ctx)
                .unwrap_err()
                .reason
                .contains("unix")
        );
    }

    #[test]
    fn cidr_ranges_clear_host_bits() {
        let ctx = Ctx::new("Listener", "l");
        let c = |p: &str, len| CidrRange {
            address_prefix: p.into(),
            prefix_len: Some(UInt32Value { value: len }),
        };
        assert_eq!(
            cidr(&c("10.1.2.3", 16), &ctx).unwrap(),
            "10.1.0.0/16".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            cidr(&c("fd00::1", 128), &ctx).unwrap(),
            "fd00::1/128".parse::<IpNet>().unwrap()
        );
        assert!(cidr(&c("10.0.0.1", 33), &ctx).is_err());
        assert!(cidr(&c("nope", 8), &ctx).is_err());
        assert!(cidr(&c("10.0.0.1", 300), &ctx).is_err());
    }
}
