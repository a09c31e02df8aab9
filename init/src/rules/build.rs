//! The rule generator: a pure function of the configuration. The order of
//! the rules is Istio's (tools/istio-iptables/pkg/capture/run.go); so are the
//! match arguments, so `iptables-save` shows what an Istio pod shows.

use super::builder::Builder;
use super::{
    ISTIO_DIVERT, ISTIO_DROP, ISTIO_IN_REDIRECT, ISTIO_INBOUND, ISTIO_OUTPUT, ISTIO_REDIRECT,
    ISTIO_TPROXY, OUTBOUND_MARK, OUTPUT, PREROUTING, RuleSet, Rules, TableName, dns,
};
use crate::config::{Cidr, CidrSelection, Config, InterceptionMode, OwnerGroups, PortSelection};

use TableName::{Mangle, Nat};

/// Where the proxy's inbound passthrough connections come from.
const INBOUND_PASSTHROUGH: (&str, &str) = ("127.0.0.6/32", "::6/128");
const IPV6_LOOPBACK: &str = "::1/128";

pub fn build_rules(cfg: &Config) -> Rules {
    let mut b = Builder::default();
    let tproxy = cfg.mode == InterceptionMode::Tproxy;
    let dns = cfg.dns_capture_active();
    let tunnel = cfg.inbound_tunnel_port.to_string();
    let loopback_v4 = cfg.host_ipv4_loopback_cidr.to_string();
    let loopback = (loopback_v4.as_str(), IPV6_LOOPBACK);
    let (include_v4, include_v6) = by_family(&cfg.outbound_ip_ranges_include);
    // Listing a loopback range to capture means app-to-app loopback traffic
    // must not be waved through.
    let include_has_loopback = [&include_v4, &include_v6]
        .iter()
        .any(|sel| matches!(sel, CidrSelection::List(c) if c.iter().any(Cidr::is_loopback)));

    for iface in &cfg.exclude_interfaces {
        b.append(Nat, PREROUTING, &["-i", iface, "-j", "RETURN"]);
        b.append(Nat, OUTPUT, &["-o", iface, "-j", "RETURN"]);
    }
    if tproxy {
        for iface in &cfg.exclude_interfaces {
            b.append(Mangle, PREROUTING, &["-i", iface, "-j", "RETURN"]);
            b.append(Mangle, OUTPUT, &["-o", iface, "-j", "RETURN"]);
        }
    }
    for iface in &cfg.kube_virt_interfaces {
        b.insert(Nat, PREROUTING, 1, &["-i", iface, "-j", "RETURN"]);
    }
    if cfg.drop_invalid {
        b.append(
            Mangle,
            PREROUTING,
            &["-m", "conntrack", "--ctstate", "INVALID", "-j", ISTIO_DROP],
        );
        b.append(Mangle, ISTIO_DROP, &["-j", "DROP"]);
    }

    b.append(
        Nat,
        ISTIO_INBOUND,
        &["-p", "tcp", "--dport", &tunnel, "-j", "RETURN"],
    );
    b.append(
        Nat,
        ISTIO_REDIRECT,
        &[
            "-p",
            "tcp",
            "-j",
            "REDIRECT",
            "--to-ports",
            &cfg.proxy_port.to_string(),
        ],
    );
    b.append(
        Nat,
        ISTIO_IN_REDIRECT,
        &[
            "-p",
            "tcp",
            "-j",
            "REDIRECT",
            "--to-ports",
            &cfg.inbound_capture_port.to_string(),
        ],
    );

    inbound(&mut b, cfg, loopback);

    b.append(Nat, OUTPUT, &["-j", ISTIO_OUTPUT]);
    for port in &cfg.outbound_ports_exclude {
        let port = port.to_string();
        b.append(
            Nat,
            ISTIO_OUTPUT,
            &["-p", "tcp", "--dport", &port, "-j", "RETURN"],
        );
        b.append(
            Nat,
            ISTIO_OUTPUT,
            &["-p", "udp", "--dport", &port, "-j", "RETURN"],
        );
    }
    b.append_per_family(Nat, ISTIO_OUTPUT, INBOUND_PASSTHROUGH, |src| {
        args!["-o", "lo", "-s", src, "-j", "RETURN"]
    });

    for uid in &cfg.proxy_uids {
        // The proxy calling its own pod through a service address: send it
        // back through inbound capture. DNS to the agent is not looped.
        if dns {
            let ports = format!("53,{tunnel}");
            b.append_per_family(Nat, ISTIO_OUTPUT, loopback, |dst| {
                args![
                    "-o",
                    "lo",
                    "!",
                    "-d",
                    dst,
                    "-p",
                    "tcp",
                    "-m",
                    "multiport",
                    "!",
                    "--dports",
                    ports,
                    "-m",
                    "owner",
                    "--uid-owner",
                    uid,
                    "-j",
                    ISTIO_IN_REDIRECT
                ]
            });
        } else {
            b.append_per_family(Nat, ISTIO_OUTPUT, loopback, |dst| {
                args![
                    "-o",
                    "lo",
                    "!",
                    "-d",
                    dst,
                    "-p",
                    "tcp",
                    "!",
                    "--dport",
                    tunnel,
                    "-m",
                    "owner",
                    "--uid-owner",
                    uid,
                    "-j",
                    ISTIO_IN_REDIRECT
                ]
            });
        }
        local_app_traffic(&mut b, "--uid-owner", uid, dns, include_has_loopback);
        // Everything else the proxy sends leaves as is: no capture loop.
        b.append(
            Nat,
            ISTIO_OUTPUT,
            &["-m", "owner", "--uid-owner", uid, "-j", "RETURN"],
        );
    }
    for gid in &cfg.proxy_gids {
        b.append_per_family(Nat, ISTIO_OUTPUT, loopback, |dst| {
            args![
                "-o",
                "lo",
                "!",
                "-d",
                dst,
                "-p",
                "tcp",
                "!",
                "--dport",
                tunnel,
                "-m",
                "owner",
                "--gid-owner",
                gid,
                "-j",
                ISTIO_IN_REDIRECT
            ]
        });
        local_app_traffic(&mut b, "--gid-owner", gid, dns, include_has_loopback);
        b.append(
            Nat,
            ISTIO_OUTPUT,
            &["-m", "owner", "--gid-owner", gid, "-j", "RETURN"],
        );
    }

    match &cfg.owner_groups {
        OwnerGroups::AllExcept(groups) => {
            for group in groups {
                b.append(
                    Nat,
                    ISTIO_OUTPUT,
                    &["-m", "owner", "--gid-owner", group, "-j", "RETURN"],
                );
            }
        }
        OwnerGroups::Only(groups) => {
            let mut args: Vec<&str> = Vec::new();
            for group in groups {
                args.extend(["-m", "owner", "!", "--gid-owner", group]);
            }
            args.extend(["-j", "RETURN"]);
            b.append(Nat, ISTIO_OUTPUT, &args);
        }
    }

    if dns {
        dns::capture_dns(&mut b, cfg);
    }

    // Calls to localhost are the app's own business.
    b.append_per_family(Nat, ISTIO_OUTPUT, loopback, |dst| {
        args!["-d", dst, "-j", "RETURN"]
    });
    let (exclude_v4, exclude_v6): (Vec<&Cidr>, Vec<&Cidr>) = cfg
        .outbound_ip_ranges_exclude
        .iter()
        .partition(|c| c.is_ipv4());
    for cidr in exclude_v4 {
        b.append_v4(
            Nat,
            ISTIO_OUTPUT,
            &["-d", &cidr.to_string(), "-j", "RETURN"],
        );
    }
    for cidr in exclude_v6 {
        b.append_v6(
            Nat,
            ISTIO_OUTPUT,
            &["-d", &cidr.to_string(), "-j", "RETURN"],
        );
    }
    for port in &cfg.outbound_ports_include {
        let port = port.to_string();
        b.append(
            Nat,
            ISTIO_OUTPUT,
            &["-p", "tcp", "--dport", &port, "-j", ISTIO_REDIRECT],
        );
    }
    outbound_include(
        &mut b,
        cfg,
        &include_v4,
        Builder::append_v4,
        Builder::insert_v4,
    );
    outbound_include(
        &mut b,
        cfg,
        &include_v6,
        Builder::append_v6,
        Builder::insert_v6,
    );

    if tproxy {
        tproxy_marks(&mut b, cfg, loopback);
    }

    Rules {
        v4: RuleSet::from_rules(b.v4),
        v6: cfg.enable_ipv6.then(|| RuleSet::from_rules(b.v6)),
    }
}

/// App-to-app traffic over loopback is not captured, unless a loopback
/// range was asked for; with DNS capture, TCP port 53 still is.
fn local_app_traffic(b: &mut Builder, owner_flag: &str, owner: &str, dns: bool, keep: bool) {
    if keep {
        return;
    }
    if dns {
        b.append(
            Nat,
            ISTIO_OUTPUT,
            &[
                "-o", "lo", "-p", "tcp", "!", "--dport", "53", "-m", "owner", "!", owner_flag,
                owner, "-j", "RETURN",
            ],
        );
    } else {
        b.append(
            Nat,
            ISTIO_OUTPUT,
            &[
                "-o", "lo", "-m", "owner", "!", owner_flag, owner, "-j", "RETURN",
            ],
        );
    }
}

fn inbound(b: &mut Builder, cfg: &Config, loopback: (&str, &str)) {
    if cfg.inbound_ports == PortSelection::List(Vec::new()) {
        return;
    }
    let tproxy = cfg.mode == InterceptionMode::Tproxy;
    let mark = cfg.tproxy_mark.to_string();
    let table = if tproxy {
        // Marked packets are routed to loopback, where TPROXY hands them to
        // the proxy's inbound listener.
        b.append(Mangle, ISTIO_DIVERT, &["-j", "MARK", "--set-mark", &mark]);
        b.append(Mangle, ISTIO_DIVERT, &["-j", "ACCEPT"]);
        let tproxy_mark = format!("{mark}/0xffffffff");
        let port = cfg.inbound_capture_port.to_string();
        b.append_per_family(Mangle, ISTIO_TPROXY, loopback, |dst| {
            args![
                "!",
                "-d",
                dst,
                "-p",
                "tcp",
                "-j",
                "TPROXY",
                "--tproxy-mark",
                tproxy_mark,
                "--on-port",
                port
            ]
        });
        Mangle
    } else {
        Nat
    };
    b.append(table, PREROUTING, &["-p", "tcp", "-j", ISTIO_INBOUND]);

    match &cfg.inbound_ports {
        PortSelection::All => {
            for port in &cfg.inbound_ports_exclude {
                let port = port.to_string();
                b.append(
                    table,
                    ISTIO_INBOUND,
                    &["-p", "tcp", "--dport", &port, "-j", "RETURN"],
                );
            }
            if tproxy {
                b.append(
                    Mangle,
                    ISTIO_INBOUND,
                    &[
                        "-p",
                        "tcp",
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "RELATED,ESTABLISHED",
                        "-j",
                        ISTIO_DIVERT,
                    ],
                );
                b.append(Mangle, ISTIO_INBOUND, &["-p", "tcp", "-j", ISTIO_TPROXY]);
            } else {
                b.append(Nat, ISTIO_INBOUND, &["-p", "tcp", "-j", ISTIO_IN_REDIRECT]);
            }
        }
        PortSelection::List(ports) => {
            for port in ports {
                let port = port.to_string();
                if tproxy {
                    b.append(
                        Mangle,
                        ISTIO_INBOUND,
                        &[
                            "-p",
                            "tcp",
                            "--dport",
                            &port,
                            "-m",
                            "conntrack",
                            "--ctstate",
                            "RELATED,ESTABLISHED",
                            "-j",
                            ISTIO_DIVERT,
                        ],
                    );
                    b.append(
                        Mangle,
                        ISTIO_INBOUND,
                        &["-p", "tcp", "--dport", &port, "-j", ISTIO_TPROXY],
                    );
                } else {
                    b.append(
                        Nat,
                        ISTIO_INBOUND,
                        &["-p", "tcp", "--dport", &port, "-j", ISTIO_IN_REDIRECT],
                    );
                }
            }
        }
    }
}

type Append = fn(&mut Builder, TableName, &str, &[&str]);
type Insert = fn(&mut Builder, TableName, &str, u32, &[&str]);

fn outbound_include(
    b: &mut Builder,
    cfg: &Config,
    include: &CidrSelection,
    append: Append,
    insert: Insert,
) {
    match include {
        CidrSelection::All => {
            append(b, Nat, ISTIO_OUTPUT, &["-j", ISTIO_REDIRECT]);
            for iface in &cfg.kube_virt_interfaces {
                insert(b, Nat, PREROUTING, 1, &["-i", iface, "-j", ISTIO_REDIRECT]);
            }
        }
        CidrSelection::List(cidrs) => {
            for cidr in cidrs {
                let cidr = cidr.to_string();
                for iface in &cfg.kube_virt_interfaces {
                    insert(
                        b,
                        Nat,
                        PREROUTING,
                        1,
                        &["-i", iface, "-d", &cidr, "-j", ISTIO_REDIRECT],
                    );
                }
                append(b, Nat, ISTIO_OUTPUT, &["-d", &cidr, "-j", ISTIO_REDIRECT]);
            }
        }
    }
}

/// TPROXY mode: keep the marks that route inbound traffic to the proxy off
/// the proxy's own connections, and restore them on replies.
fn tproxy_marks(b: &mut Builder, cfg: &Config, loopback: (&str, &str)) {
    let mark = cfg.tproxy_mark.to_string();
    b.append(
        Mangle,
        PREROUTING,
        &[
            "-p",
            "tcp",
            "-m",
            "mark",
            "--mark",
            &mark,
            "-j",
            "CONNMARK",
            "--save-mark",
        ],
    );
    b.append(
        Mangle,
        OUTPUT,
        &[
            "-p", "tcp", "-o", "lo", "-m", "mark", "--mark", &mark, "-j", "RETURN",
        ],
    );
    for (owner_flag, owners) in [
        ("--uid-owner", &cfg.proxy_uids),
        ("--gid-owner", &cfg.proxy_gids),
    ] {
        for owner in owners {
            b.append_per_family(Mangle, OUTPUT, loopback, |dst| {
                args![
                    "!",
                    "-d",
                    dst,
                    "-p",
                    "tcp",
                    "-o",
                    "lo",
                    "-m",
                    "owner",
                    owner_flag,
                    owner,
                    "-j",
                    "MARK",
                    "--set-mark",
                    OUTBOUND_MARK
                ]
            });
        }
    }
    b.append(
        Mangle,
        OUTPUT,
        &[
            "-p",
            "tcp",
            "-m",
            "connmark",
            "--mark",
            &mark,
            "-j",
            "CONNMARK",
            "--restore-mark",
        ],
    );
    b.insert(
        Mangle,
        ISTIO_INBOUND,
        1,
        &["-p", "tcp", "-m", "mark", "--mark", &mark, "-j", "RETURN"],
    );
    b.insert_v4(
        Mangle,
        ISTIO_INBOUND,
        2,
        &[
            "-p",
            "tcp",
            "-s",
            INBOUND_PASSTHROUGH.0,
            "-i",
            "lo",
            "-j",
            "RETURN",
        ],
    );
    b.insert_v6(
        Mangle,
        ISTIO_INBOUND,
        2,
        &[
            "-p",
            "tcp",
            "-s",
            INBOUND_PASSTHROUGH.1,
            "-i",
            "lo",
            "-j",
            "RETURN",
        ],
    );
    b.insert(
        Mangle,
        ISTIO_INBOUND,
        3,
        &[
            "-p",
            "tcp",
            "-i",
            "lo",
            "-m",
            "mark",
            "!",
            "--mark",
            OUTBOUND_MARK,
            "-j",
            "RETURN",
        ],
    );
}

fn by_family(selection: &CidrSelection) -> (CidrSelection, CidrSelection) {
    match selection {
        CidrSelection::All => (CidrSelection::All, CidrSelection::All),
        CidrSelection::List(cidrs) => {
            let (v4, v6): (Vec<Cidr>, Vec<Cidr>) = cidrs.iter().partition(|c| c.is_ipv4());
            (CidrSelection::List(v4), CidrSelection::List(v6))
        }
    }
}
