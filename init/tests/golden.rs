//! Golden tests: flag combinations → the exact iptables-restore input.
//!
//! The files under tests/golden/ were written by this generator
//! (`UPDATE_GOLDEN=1 cargo test -p strait-init --test golden`) and reviewed
//! against Istio's own goldens for the same settings
//! (tools/istio-iptables/pkg/capture/testdata/*.golden).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use clap::Parser;
use strait_init::{Cli, Config, HostFacts, build_rules};

/// What Istio's injector passes to istio-iptables by default.
const INJECTOR: &[&str] = &[
    "-p",
    "15001",
    "-z",
    "15006",
    "-u",
    "1337",
    "-m",
    "REDIRECT",
    "-i",
    "*",
    "-x",
    "",
    "-b",
    "*",
    "-d",
    "15090,15021,15020",
];

struct Case {
    name: &'static str,
    args: Vec<&'static str>,
    resolv_conf: &'static str,
    env: &'static [(&'static str, &'static str)],
}

fn case(name: &'static str, args: &[&'static str]) -> Case {
    Case {
        name,
        args: args.to_vec(),
        resolv_conf: "",
        env: &[],
    }
}

fn injector(extra: &[&'static str]) -> Vec<&'static str> {
    INJECTOR.iter().chain(extra).copied().collect()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            args: injector(&[]),
            ..case("injector-default", &[])
        },
        Case {
            args: injector(&["--dual-stack"]),
            ..case("injector-default-dual-stack", &[])
        },
        case("empty", &[]),
        case("inbound-ports-include", &["-b", "32000,31000"]),
        case("inbound-ports-wildcard", &["-b", "*"]),
        case("ipnets", &["-i", "10.0.0.0/8"]),
        case(
            "include-exclude-cidrs",
            &[
                "-i",
                "10.0.0.0/8,172.16.0.0/12",
                "-x",
                "10.96.0.0/12,10.0.0.1/32",
            ],
        ),
        case("kube-virt-interfaces", &["-k", "eth1,eth2", "-i", "*"]),
        case(
            "ipnets-with-kube-virt-interfaces",
            &["-k", "eth1,eth2", "-i", "10.0.0.0/8"],
        ),
        case("basic-exclude-nic", &["-c", "not-istio-nic"]),
        Case {
            args: injector(&["-c", "eth9", "-k", "kv0"]),
            ..case("injector-exclude-nic-virt", &[])
        },
        case("outbound-ports-include", &["-q", "32000,31000"]),
        case("outbound-ports-exclude", &["-o", "22,80,443"]),
        Case {
            args: injector(&["-q", "3306", "-o", "5432,6379"]),
            ..case("injector-outbound-ports", &[])
        },
        case(
            "inbound-ports-tproxy",
            &["-b", "32000,31000", "-m", "TPROXY"],
        ),
        case(
            "inbound-ports-wildcard-tproxy",
            &["-b", "*", "-m", "TPROXY"],
        ),
        Case {
            resolv_conf: "nameserver 127.0.0.53\n",
            ..case(
                "tproxy",
                &[
                    "-m",
                    "TPROXY",
                    "-b",
                    "*",
                    "-x",
                    "1.1.0.0/16",
                    "-i",
                    "9.9.0.0/16",
                    "--redirect-dns",
                    "-u",
                    "1337",
                    "-g",
                    "1337",
                    "-c",
                    "not-istio-nic",
                    "--dual-stack",
                ],
            )
        },
        Case {
            resolv_conf: "nameserver 127.0.0.53\n",
            ..case(
                "ip-range",
                &[
                    "-x",
                    "1.1.0.0/16",
                    "-i",
                    "9.9.0.0/16",
                    "--redirect-dns",
                    "-g",
                    "1,2",
                    "-u",
                    "3,4",
                ],
            )
        },
        Case {
            resolv_conf: "nameserver 127.0.0.53\nnameserver fd00::53\n",
            ..case(
                "dns-uid-gid",
                &["--redirect-dns", "-g", "1,2", "-u", "3,4", "--dual-stack"],
            )
        },
        Case {
            resolv_conf: "nameserver 10.96.0.10\n",
            args: injector(&["--redirect-dns"]),
            ..case("injector-redirect-dns", &[])
        },
        Case {
            args: injector(&["--redirect-dns", "--capture-all-dns"]),
            ..case("dns-capture-all", &[])
        },
        case("dns-without-servers", &["--redirect-dns", "-i", "*"]),
        Case {
            resolv_conf: "nameserver 127.0.0.53\n",
            ..case(
                "loopback-outbound-iprange",
                &[
                    "-i",
                    "127.1.2.3/32",
                    "--redirect-dns",
                    "-g",
                    "1,2",
                    "-u",
                    "3,4",
                ],
            )
        },
        case("drop-invalid", &["--drop-invalid"]),
        case("ipv6-empty-inbound-ports", &["--dual-stack"]),
        case("ipv6-inbound-ports", &["-b", "4000,5000", "--dual-stack"]),
        case(
            "ipv6-virt-interfaces",
            &["-b", "4000,5000", "-k", "eth0,eth1", "--dual-stack"],
        ),
        case(
            "ipv6-ipnets",
            &[
                "-b",
                "4000,5000",
                "-d",
                "6000,7000,",
                "-k",
                "eth0,eth1",
                "-x",
                "2001:db8::/32",
                "-i",
                "2001:db8::/32",
            ],
        ),
        case(
            "ipv6-uid-gid",
            &[
                "-b",
                "4000,5000",
                "-d",
                "6000,7000",
                "-k",
                "eth0,eth1",
                "-g",
                "1,2",
                "-u",
                "3,4",
                "--dual-stack",
                "-x",
                "2001:db8::/32",
                "-i",
                "2001:db8::/32",
            ],
        ),
        case(
            "ipv6-outbound-ports",
            &["-q", "32000,31000", "--dual-stack"],
        ),
        Case {
            env: &[("ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR", "127.0.0.1/8")],
            ..case("host-ipv4-loopback-cidr", &[])
        },
        Case {
            env: &[("ISTIO_OUTBOUND_OWNER_GROUPS", "java,202")],
            ..case("outbound-owner-groups", &[])
        },
        Case {
            env: &[("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", "888,ftp")],
            ..case("outbound-owner-groups-exclude", &[])
        },
        case(
            "custom-ports-and-marks",
            &[
                "-p", "16001", "-z", "16006", "-e", "16008", "-b", "*", "-m", "TPROXY", "-t",
                "4242", "-r", "77",
            ],
        ),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn render(case: &Case) -> String {
    let argv = std::iter::once("strait-init").chain(case.args.iter().copied());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let mut host = HostFacts {
        resolv_conf: Ok(case.resolv_conf.to_owned()),
        ..HostFacts::default()
    };
    for (k, v) in case.env {
        host.env.insert((*k).to_owned(), (*v).to_owned());
    }
    let cfg = Config::from_args(&cli.args, &host).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    build_rules(&cfg).to_dry_run()
}

#[test]
fn rules_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        let got = render(&case);
        let path = golden_dir().join(format!("{}.golden", case.name));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
                path.display()
            )
        });
        if got != want {
            failures.push(format!("--- {}\n{}", case.name, diff(&want, &got)));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_golden_file_has_a_case() {
    let names: Vec<String> = cases()
        .iter()
        .map(|c| format!("{}.golden", c.name))
        .collect();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(names.contains(&file), "{file} has no case");
    }
}

/// Lines only in `want` (-) and only in `got` (+), in order.
fn diff(want: &str, got: &str) -> String {
    let want: Vec<&str> = want.lines().collect();
    let got: Vec<&str> = got.lines().collect();
    let mut out = String::new();
    for line in &want {
        if !got.contains(line) {
            out.push_str(&format!("- {line}\n"));
        }
    }
    for line in &got {
        if !want.contains(line) {
            out.push_str(&format!("+ {line}\n"));
        }
    }
    if out.is_empty() {
        out.push_str("(same lines, different order)\n");
    }
    out
}
