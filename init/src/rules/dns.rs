//! DNS capture (`--redirect-dns`): port 53 to the agent's DNS proxy, and
//! conntrack zones that keep the proxy's own lookups apart from the app's.

use super::builder::Builder;
use super::{ISTIO_INBOUND, ISTIO_OUTPUT, ISTIO_OUTPUT_DNS, OUTPUT, PREROUTING, TableName};
use crate::config::{AGENT_DNS_PORT, Config};

use TableName::{Nat, Raw};

pub fn capture_dns(b: &mut Builder, cfg: &Config) {
    let agent = AGENT_DNS_PORT.to_string();
    let all = cfg.capture_all_dns;
    let v4: Vec<String> = cfg
        .dns_servers_v4
        .iter()
        .map(|s| format!("{s}/32"))
        .collect();
    let v6: Vec<String> = cfg
        .dns_servers_v6
        .iter()
        .map(|s| format!("{s}/128"))
        .collect();

    b.append(Raw, OUTPUT, &["-j", ISTIO_OUTPUT_DNS]);
    // Jump only where there is something to capture in that family.
    if all || !v4.is_empty() {
        b.append_v4(Nat, ISTIO_OUTPUT, &["-j", ISTIO_OUTPUT_DNS]);
    }
    if all || !v6.is_empty() {
        b.append_v6(Nat, ISTIO_OUTPUT, &["-j", ISTIO_OUTPUT_DNS]);
    }

    // Only the resolv.conf servers, so a local resolver chain
    // (app -> agent -> dnsmasq -> upstream) cannot loop back into the agent.
    if all {
        b.append(
            Nat,
            ISTIO_OUTPUT_DNS,
            &[
                "-p",
                "tcp",
                "--dport",
                "53",
                "-j",
                "REDIRECT",
                "--to-ports",
                &agent,
            ],
        );
    } else {
        for server in &v4 {
            b.append_v4(
                Nat,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p",
                    "tcp",
                    "--dport",
                    "53",
                    "-d",
                    server,
                    "-j",
                    "REDIRECT",
                    "--to-ports",
                    &agent,
                ],
            );
        }
        for server in &v6 {
            b.append_v6(
                Nat,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p",
                    "tcp",
                    "--dport",
                    "53",
                    "-d",
                    server,
                    "-j",
                    "REDIRECT",
                    "--to-ports",
                    &agent,
                ],
            );
        }
    }
    if all {
        b.append(
            Nat,
            ISTIO_OUTPUT_DNS,
            &[
                "-p",
                "udp",
                "--dport",
                "53",
                "-j",
                "REDIRECT",
                "--to-port",
                &agent,
            ],
        );
    } else {
        for server in &v4 {
            b.append_v4(
                Nat,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p",
                    "udp",
                    "--dport",
                    "53",
                    "-d",
                    server,
                    "-j",
                    "REDIRECT",
                    "--to-port",
                    &agent,
                ],
            );
        }
        for server in &v6 {
            b.append_v6(
                Nat,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p",
                    "udp",
                    "--dport",
                    "53",
                    "-d",
                    server,
                    "-j",
                    "REDIRECT",
                    "--to-port",
                    &agent,
                ],
            );
        }
    }

    conntrack_zones(b, cfg, &agent, &v4, &v6);
}

/// Zone 1: the proxy and the upstream resolvers. Zone 2: the apps and the
/// agent. Without the split, UDP conntrack entries of the two legs collide.
fn conntrack_zones(b: &mut Builder, cfg: &Config, agent: &str, v4: &[String], v6: &[String]) {
    for (owner_flag, owners) in [
        ("--uid-owner", &cfg.proxy_uids),
        ("--gid-owner", &cfg.proxy_gids),
    ] {
        for owner in owners {
            b.append(
                Raw,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p", "udp", "--dport", "53", "-m", "owner", owner_flag, owner, "-j", "CT",
                    "--zone", "1",
                ],
            );
            b.append(
                Raw,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p", "udp", "--sport", agent, "-m", "owner", owner_flag, owner, "-j", "CT",
                    "--zone", "2",
                ],
            );
        }
    }

    if cfg.capture_all_dns {
        b.append(Raw, PREROUTING, &["-j", ISTIO_INBOUND]);
        b.append(
            Raw,
            ISTIO_OUTPUT_DNS,
            &["-p", "udp", "--dport", "53", "-j", "CT", "--zone", "2"],
        );
        b.append(
            Raw,
            ISTIO_INBOUND,
            &["-p", "udp", "--sport", "53", "-j", "CT", "--zone", "1"],
        );
        return;
    }
    type Append = fn(&mut Builder, TableName, &str, &[&str]);
    let families: [(&[String], Append); 2] = [(v4, Builder::append_v4), (v6, Builder::append_v6)];
    for (servers, append) in families {
        if !servers.is_empty() {
            append(b, Raw, PREROUTING, &["-j", ISTIO_INBOUND]);
        }
        for server in servers {
            append(
                b,
                Raw,
                ISTIO_OUTPUT_DNS,
                &[
                    "-p", "udp", "--dport", "53", "-d", server, "-j", "CT", "--zone", "2",
                ],
            );
            append(
                b,
                Raw,
                ISTIO_INBOUND,
                &[
                    "-p", "udp", "--sport", "53", "-s", server, "-j", "CT", "--zone", "1",
                ],
            );
        }
    }
}
