//! The non-iptables half of capture, done with iproute2 as Istio does with
//! netlink: the `::6` source address on lo for IPv6, and for TPROXY the
//! policy route that sends marked packets to the local stack.

use std::process::Command;

use crate::config::{Config, InterceptionMode, PortSelection};
use crate::iptables::{ToolError, find_in_path, run};

fn ip() -> Result<Command, ToolError> {
    match find_in_path("ip") {
        Some(path) => Ok(Command::new(path)),
        None => Err(ToolError::Missing {
            binary: "ip".to_owned(),
            package: "iproute2",
        }),
    }
}

/// Runs `ip args`, treating "File exists" as done: these steps are idempotent.
fn ip_idempotent(args: &[&str]) -> Result<(), ToolError> {
    match run(ip()?.args(args), None) {
        Ok(_) => Ok(()),
        Err(ToolError::Failed { stderr, .. })
            if stderr.contains("File exists") || stderr.contains("already assigned") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn tproxy_active(cfg: &Config) -> bool {
    cfg.mode == InterceptionMode::Tproxy && cfg.inbound_ports != PortSelection::List(Vec::new())
}

pub fn configure(cfg: &Config) -> Result<(), ToolError> {
    if cfg.enable_ipv6 {
        // The proxy's passthrough connections come from ::6, which must be a
        // local address (IPv4's 127/8 covers 127.0.0.6 already).
        ip_idempotent(&["-6", "addr", "add", "::6/128", "dev", "lo"])?;
    }
    if !tproxy_active(cfg) {
        return Ok(());
    }
    let mark = cfg.tproxy_mark.to_string();
    let table = cfg.tproxy_route_table.to_string();
    let mut families = vec![("-4", "0.0.0.0/0")];
    if cfg.enable_ipv6 {
        families.push(("-6", "::/0"));
    }
    for (family, everything) in families {
        // `ip rule add` happily adds duplicates, so look first.
        let rules = run(ip()?.args([family, "rule", "show"]), None)?;
        let wanted = format!("fwmark {:#x} lookup {table}", cfg.tproxy_mark);
        if !rules.lines().any(|l| l.contains(&wanted)) {
            run(
                ip()?.args([family, "rule", "add", "fwmark", &mark, "lookup", &table]),
                None,
            )?;
        }
        ip_idempotent(&[
            family, "route", "add", "local", everything, "dev", "lo", "table", &table,
        ])?;
    }
    Ok(())
}

/// Best effort: removes what [`configure`] added for TPROXY.
pub fn remove(cfg: &Config) {
    if cfg.mode != InterceptionMode::Tproxy {
        return;
    }
    let mark = cfg.tproxy_mark.to_string();
    let table = cfg.tproxy_route_table.to_string();
    for (family, everything) in [("-4", "0.0.0.0/0"), ("-6", "::/0")] {
        let Ok(mut cmd) = ip() else { return };
        // Bounded: a rule may have been added more than once by other tools.
        for _ in 0..16 {
            let deleted = run(
                cmd.args([family, "rule", "del", "fwmark", &mark, "lookup", &table]),
                None,
            );
            if deleted.is_err() {
                break;
            }
            let Ok(next) = ip() else { return };
            cmd = next;
        }
        if let Ok(mut cmd) = ip() {
            let _ = run(
                cmd.args([
                    family, "route", "del", "local", everything, "dev", "lo", "table", &table,
                ]),
                None,
            );
        }
    }
}
