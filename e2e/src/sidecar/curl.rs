//! curl inside a namespace, through `ip netns exec` (so `/etc/netns/<ns>/hosts` names
//! resolve and the namespace's capture rules apply), optionally as the proxy's user.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::PROXY_UID;
use crate::netns::Netns;

/// Marker between the body and curl's write-out.
const SEPARATOR: &str = "\n--curl--\n";

/// What curl saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurlOutput {
    pub status: u16,
    pub body: String,
    /// The local port of the connection curl made.
    pub local_port: u16,
}

/// A curl invocation.
#[derive(Debug, Clone)]
pub struct Curl {
    args: Vec<String>,
    as_proxy_user: bool,
    timeout: Duration,
}

impl Curl {
    pub fn new(url: &str) -> Curl {
        Curl {
            args: vec![url.to_owned()],
            as_proxy_user: false,
            timeout: Duration::from_secs(5),
        }
    }

    /// Runs as UID/GID 1337, the identity the capture rules let through.
    pub fn as_proxy_user(mut self) -> Curl {
        self.as_proxy_user = true;
        self
    }

    pub fn method(mut self, method: &str) -> Curl {
        self.args.extend(["-X".to_owned(), method.to_owned()]);
        self
    }

    /// Runs it inside `netns`; a connection failure is an error.
    pub fn run(&self, netns: &Netns) -> Result<CurlOutput> {
        let mut cmd = if self.as_proxy_user {
            let mut c = netns.command("setpriv");
            c.args([
                format!("--reuid={PROXY_UID}"),
                format!("--regid={PROXY_UID}"),
                "--clear-groups".to_owned(),
                "curl".to_owned(),
            ]);
            c
        } else {
            netns.command("curl")
        };
        cmd.args([
            "-sS",
            "-m",
            &self.timeout.as_secs().max(1).to_string(),
            "-w",
            &format!("{SEPARATOR}%{{http_code}} %{{local_port}}"),
        ])
        .args(&self.args);
        let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{cmd:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                stdout
            );
        }
        let (body, tail) = stdout
            .rsplit_once(SEPARATOR)
            .with_context(|| format!("curl output without write-out: {stdout:?}"))?;
        let (status, port) = tail
            .trim()
            .split_once(' ')
            .with_context(|| format!("curl write-out {tail:?}"))?;
        Ok(CurlOutput {
            status: status
                .parse()
                .with_context(|| format!("status {status:?}"))?,
            body: body.to_owned(),
            local_port: port.parse().with_context(|| format!("port {port:?}"))?,
        })
    }
}
