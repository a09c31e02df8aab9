//! The hub-and-workloads layout on one /24.

use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, Once};

use anyhow::{Context, Result, anyhow, bail};

use super::manage::{create_netns, delete_netns, kill_processes_in, sweep_stale_namespaces};
use super::{Netns, ip};
use crate::unique::{self, NETNS_PREFIX};

static STALE_SWEEP: Once = Once::new();

/// Subnets are 10.<a>.<b>.0/24 with `a` in this range: clear of the
/// 10.96.0.0/12 range that tests use for service VIPs.
const SUBNET_FIRST_OCTET: u32 = 200;
const SUBNET_SLOTS: u32 = 50 * 256;
const PREFIX_LEN: u8 = 24;
const HUB_HOST: u8 = 1;
const FIRST_WORKLOAD_HOST: u8 = 2;
const LAST_WORKLOAD_HOST: u8 = 254;

/// A set of namespaces on one /24: the hub (`.1`, owner of the bridge) and
/// workloads (`.2` onwards), each with `lo` up and a default route via the hub.
/// Dropping it kills every process in its namespaces and deletes them.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    subnet: [u8; 2],
    hub: Netns,
    workloads: Mutex<Vec<Netns>>,
}

impl Topology {
    /// Creates the hub namespace and its bridge.
    pub fn new() -> Result<Self> {
        STALE_SWEEP.call_once(sweep_stale_namespaces);
        let pid = unique::pid();
        let n = unique::next();
        let slot = (pid.wrapping_mul(97).wrapping_add(n)) % SUBNET_SLOTS;
        let subnet = [
            u8::try_from(SUBNET_FIRST_OCTET + slot / 256)?,
            u8::try_from(slot % 256)?,
        ];
        let prefix = format!("{NETNS_PREFIX}{pid}-{n}-");
        let hub_ip = Ipv4Addr::new(10, subnet[0], subnet[1], HUB_HOST);
        let hub = Netns {
            name: format!("{prefix}hub"),
            ip: hub_ip,
            gateway: hub_ip,
        };
        let topology = Self {
            prefix,
            subnet,
            hub,
            workloads: Mutex::new(Vec::new()),
        };
        // From here on, Drop cleans up whatever was created before a failure.
        topology.create_hub()?;
        Ok(topology)
    }

    fn create_hub(&self) -> Result<()> {
        let hub = self.hub.name();
        create_netns(hub)?;
        let cidr = format!("{}/{PREFIX_LEN}", self.hub.ip);
        ip(&["-n", hub, "link", "set", "lo", "up"])?;
        ip(&["-n", hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", hub, "addr", "add", &cidr, "dev", "br0"])?;
        ip(&["-n", hub, "link", "set", "br0", "up"])?;
        Ok(())
    }

    /// The hub namespace (bridge owner; where pilot-discovery runs).
    pub fn hub(&self) -> &Netns {
        &self.hub
    }

    /// The topology's subnet, e.g. `10.201.17.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.{}.{}.0/{PREFIX_LEN}", self.subnet[0], self.subnet[1])
    }

    /// Names of all namespaces created so far (hub first).
    pub fn netns_names(&self) -> Vec<String> {
        let mut names = vec![self.hub.name.clone()];
        names.extend(self.workloads().into_iter().map(|w| w.name));
        names
    }

    /// The workloads created so far.
    pub fn workloads(&self) -> Vec<Netns> {
        self.workloads_guard().clone()
    }

    /// The workload created under `name`, if any.
    pub fn workload(&self, name: &str) -> Option<Netns> {
        let full = format!("{}{name}", self.prefix);
        self.workloads_guard()
            .iter()
            .find(|w| w.name == full)
            .cloned()
    }

    fn workloads_guard(&self) -> MutexGuard<'_, Vec<Netns>> {
        self.workloads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates a workload namespace attached to the bridge with the next free
    /// address. `name` (lowercase letters, digits, `-`) must be unique here.
    pub fn add_workload(&self, name: &str) -> Result<Netns> {
        validate_name(name)?;
        let mut workloads = self.workloads_guard();
        let full = format!("{}{name}", self.prefix);
        if workloads.iter().any(|w| w.name == full) {
            bail!("workload {name:?} already exists in this topology");
        }
        let host = usize::from(FIRST_WORKLOAD_HOST) + workloads.len();
        let host = u8::try_from(host)
            .ok()
            .filter(|h| *h <= LAST_WORKLOAD_HOST)
            .ok_or_else(|| anyhow!("no free address left in {}", self.subnet()))?;
        let netns = Netns {
            name: full,
            ip: Ipv4Addr::new(10, self.subnet[0], self.subnet[1], host),
            gateway: self.hub.ip,
        };
        create_netns(&netns.name)?;
        // Registered before configuring, so Drop deletes it even if setup fails.
        workloads.push(netns.clone());
        drop(workloads);
        self.attach(&netns, host)
            .with_context(|| format!("attaching workload {name:?}"))?;
        Ok(netns)
    }

    fn attach(&self, netns: &Netns, host: u8) -> Result<()> {
        let hub = self.hub.name();
        let wl = netns.name();
        let hub_side = format!("vh{host}");
        let cidr = format!("{}/{PREFIX_LEN}", netns.ip);
        let gateway = self.hub.ip.to_string();
        // Created from inside the hub with the peer placed straight into the
        // workload: no interface ever appears in the root namespace.
        ip(&[
            "-n", hub, "link", "add", &hub_side, "type", "veth", "peer", "name", "eth0", "netns",
            wl,
        ])?;
        ip(&["-n", hub, "link", "set", &hub_side, "master", "br0"])?;
        ip(&["-n", hub, "link", "set", &hub_side, "up"])?;
        ip(&["-n", wl, "link", "set", "lo", "up"])?;
        ip(&["-n", wl, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", wl, "link", "set", "eth0", "up"])?;
        ip(&["-n", wl, "route", "add", "default", "via", &gateway])?;
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let mut names: Vec<String> = self
            .workloads_guard()
            .iter()
            .map(|w| w.name.clone())
            .collect();
        names.push(self.hub.name.clone());
        for name in &names {
            kill_processes_in(name);
        }
        for name in &names {
            if let Err(e) = delete_netns(name) {
                eprintln!("strait-e2e: {e:#}");
            }
        }
    }
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name != "hub"
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("invalid workload name {name:?}: use 1-40 of [a-z0-9-], not \"hub\"");
    }
    Ok(())
}
