//! The destination a connection had before iptables REDIRECT rewrote it
//! (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST), as Envoy's original_dst listener filter reads.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, sockopt};

/// The original destination, or `None` when the connection was not redirected (the
/// kernel then has no conntrack entry to report).
pub fn original_destination<S: AsFd>(socket: &S, local: SocketAddr) -> Option<SocketAddr> {
    match local {
        SocketAddr::V4(_) => {
            let raw = getsockopt(socket, sockopt::OriginalDst).ok()?;
            let ip = Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(raw.sin_port),
            )))
        }
        SocketAddr::V6(v6) => {
            let raw = getsockopt(socket, sockopt::Ip6tOriginalDst).ok()?;
            let ip = Ipv6Addr::from(raw.sin6_addr.s6_addr);
            // An IPv4 connection on a dual-stack socket reports a mapped address.
            let port = u16::from_be(raw.sin6_port);
            match ip.to_ipv4_mapped() {
                Some(v4) => Some(SocketAddr::V4(SocketAddrV4::new(v4, port))),
                None => Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    0,
                    v6.scope_id(),
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unredirected_connection_has_no_original_destination() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        // Without a REDIRECT rule there is no NAT entry; the kernel says so with an
        // error, which must come back as None rather than a bogus address.
        let got = original_destination(&server, server.local_addr().unwrap());
        assert!(got.is_none() || got == Some(addr), "{got:?}");
    }
}
