//! `/etc/netns/<namespace>/hosts`: name resolution for processes started with
//! `ip netns exec`, which bind-mounts the file over `/etc/hosts`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::netns::Netns;

/// The hosts file of one namespace; its directory is removed on drop.
#[derive(Debug)]
pub struct HostsFile {
    dir: PathBuf,
}

impl HostsFile {
    /// Writes `localhost` plus one line per entry: an address and its names.
    pub fn write(netns: &Netns, entries: &[(IpAddr, Vec<String>)]) -> Result<HostsFile> {
        let dir = Path::new("/etc/netns").join(netns.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let hosts = HostsFile { dir };
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost\n");
        for (ip, names) in entries {
            let _ = writeln!(text, "{ip} {}", names.join(" "));
        }
        let path = hosts.path();
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(hosts)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// The address a name resolves to in this file.
    pub fn lookup(&self, name: &str) -> Option<IpAddr> {
        let text = std::fs::read_to_string(self.path()).ok()?;
        text.lines().find_map(|line| {
            let mut parts = line.split_whitespace();
            let ip = parts.next()?.parse().ok()?;
            parts.any(|n| n == name).then_some(ip)
        })
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("strait-e2e: removing {}: {e}", self.dir.display());
        }
    }
}
