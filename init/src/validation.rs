//! `--run-validation`: proves that redirection works before the workload
//! starts, the way Istio's validator does. It listens on localhost at the
//! outbound and inbound capture ports and connects from localhost to
//! 127.0.0.6 (`::6`) at the probe port, where nothing listens: only a working
//! redirect lands the connection on a listener, whose original destination
//! (SO_ORIGINAL_DST) is then the probe port.

use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, connect, getsockopt, socket,
    sockopt,
};

use crate::config::Config;

/// Istio's exit code for a failed validation.
pub const VALIDATION_ERROR_CODE: u8 = 126;

#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("iptables validation failed: cannot listen on any of {addresses}: {reason}")]
    NoListener { addresses: String, reason: String },
    #[error(
        "iptables validation failed: no connection to {probe} was redirected within {timeout:?}; \
         the workload is not ready for the mesh"
    )]
    Timeout {
        probe: SocketAddr,
        timeout: Duration,
    },
}

const CLIENT_INTERVAL: Duration = Duration::from_secs(1);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

pub fn run_validation(cfg: &Config) -> Result<(), ValidationError> {
    let (local, magic): (IpAddr, IpAddr) = if cfg.host_ipv6 {
        (
            Ipv6Addr::LOCALHOST.into(),
            Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6).into(),
        )
    } else {
        (
            Ipv4Addr::LOCALHOST.into(),
            Ipv4Addr::new(127, 0, 0, 6).into(),
        )
    };
    let probe = SocketAddr::new(magic, cfg.probe_port);
    let addresses: Vec<SocketAddr> = [cfg.proxy_port, cfg.inbound_capture_port]
        .into_iter()
        .map(|port| SocketAddr::new(local, port))
        .collect();

    let mut listeners = Vec::new();
    let mut reason = String::new();
    for addr in &addresses {
        match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(listener) => {
                tracing::info!(%addr, "validation listening");
                listeners.push(listener);
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "validation cannot listen");
                reason = e.to_string();
            }
        }
    }
    if listeners.is_empty() {
        return Err(ValidationError::NoListener {
            addresses: addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            reason,
        });
    }

    let deadline = Instant::now() + cfg.probe_timeout;
    let mut next_probe = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_probe {
            // A refused connection just means the redirect is not there yet.
            if let Err(e) = connect_from(local, probe) {
                tracing::debug!(%probe, error = %e, "validation probe not redirected");
            }
            next_probe = now + CLIENT_INTERVAL;
        }
        for listener in &listeners {
            if accepted_probe(listener, cfg.probe_port) {
                tracing::info!("validation passed: iptables rules are in place");
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(ValidationError::Timeout {
                probe,
                timeout: cfg.probe_timeout,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Drains `listener`; true once a connection arrives whose original
/// destination port is the probe's.
fn accepted_probe(listener: &TcpListener, probe_port: u16) -> bool {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => {
                tracing::debug!(error = %e, "validation accept failed");
                return false;
            }
        };
        let Some(original) = original_destination(&stream) else {
            continue;
        };
        // Answer with the port seen, which helps when debugging by hand.
        let _ = (&stream).write_all(original.port().to_string().as_bytes());
        if original.port() == probe_port {
            return true;
        }
    }
}

/// The destination a redirected connection was sent to (SO_ORIGINAL_DST).
pub fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    match stream.local_addr().ok()? {
        SocketAddr::V4(_) => {
            let addr = getsockopt(stream, sockopt::OriginalDst).ok()?;
            Some(SocketAddr::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)).into(),
                u16::from_be(addr.sin_port),
            ))
        }
        SocketAddr::V6(_) => {
            let addr = getsockopt(stream, sockopt::Ip6tOriginalDst).ok()?;
            Some(SocketAddr::new(
                Ipv6Addr::from(addr.sin6_addr.s6_addr).into(),
                u16::from_be(addr.sin6_port),
            ))
        }
    }
}

/// Connects to `to` from `from` (any port); the source must be loopback so
/// the connection leaves through lo, as Istio's probe does.
fn connect_from(from: IpAddr, to: SocketAddr) -> nix::Result<TcpStream> {
    let family = if to.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let local = SocketAddr::new(from, 0);
    match (local, to) {
        (SocketAddr::V4(l), SocketAddr::V4(r)) => {
            bind(fd.as_raw_fd(), &SockaddrIn::from(l))?;
            connect(fd.as_raw_fd(), &SockaddrIn::from(r))?;
        }
        (SocketAddr::V6(l), SocketAddr::V6(r)) => {
            bind(fd.as_raw_fd(), &SockaddrIn6::from(l))?;
            connect(fd.as_raw_fd(), &SockaddrIn6::from(r))?;
        }
        _ => return Err(nix::errno::Errno::EAFNOSUPPORT),
    }
    Ok(TcpStream::from(fd))
}
