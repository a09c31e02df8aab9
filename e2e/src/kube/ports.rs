//! Free TCP ports for the control plane's listeners.
//!
//! The kernel picks each port (bind to port 0), then the listener is closed and
//! the port handed to etcd or the apiserver. A process-wide set keeps parallel
//! tests of one binary from being handed the same port twice; another process
//! could still grab one in between, which start-up then reports as a bind error
//! in the component's log.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Tries before giving up on finding ports this process has not handed out.
const ATTEMPTS: usize = 64;

/// `n` distinct ports free on `ip`, in `netns` (the caller's namespace when
/// `None`).
pub fn free_ports(netns: Option<&Netns>, ip: Ipv4Addr, n: usize) -> Result<Vec<u16>> {
    match netns {
        Some(ns) => ns.run(|| pick(ip, n))?,
        None => pick(ip, n),
    }
}

fn pick(ip: Ipv4Addr, n: usize) -> Result<Vec<u16>> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = guard.get_or_insert_with(HashSet::new);
    // All listeners stay open until every port is chosen, so the kernel cannot
    // return one port twice within a call.
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..ATTEMPTS {
        if ports.len() == n {
            break;
        }
        let listener =
            TcpListener::bind((ip, 0)).with_context(|| format!("binding a free port on {ip}"))?;
        let port = listener.local_addr()?.port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        listeners.push(listener);
    }
    if ports.len() != n {
        bail!("found only {} of {n} unused ports on {ip}", ports.len());
    }
    Ok(ports)
}
