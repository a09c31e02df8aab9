//! strait-init against real iptables (iptables-nft here), each test in
//! network namespaces it creates itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{A_IP, B_IP, INJECTOR, Netns, Pair, Responder, ask, ask_as_proxy_user};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Rules (`-A` lines) of one family's save output.
fn rules(save: &str) -> Vec<&str> {
    save.lines().filter(|l| l.starts_with("-A ")).collect()
}

/// The injector's flags plus `extra`.
fn with(extra: &[&'static str]) -> Vec<&'static str> {
    INJECTOR.iter().chain(extra).copied().collect()
}

#[test]
fn apply_twice_is_identical_and_clean_removes_everything() {
    let ns = Netns::new("apply");
    ns.init_ok(INJECTOR);
    let first = ns.save("iptables-save");
    for expected in [
        ":ISTIO_INBOUND - [0:0]",
        ":ISTIO_IN_REDIRECT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
        ":ISTIO_REDIRECT - [0:0]",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15021 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ] {
        assert!(
            first.lines().any(|l| l == expected),
            "missing {expected:?} in\n{first}"
        );
    }
    // Injector-default: IPv4 only (no IPv6 address, no --dual-stack).
    assert!(!ns.save("ip6tables-save").contains("ISTIO_"));

    ns.init_ok(INJECTOR);
    assert_eq!(
        ns.save("iptables-save"),
        first,
        "second apply changed the rules"
    );

    ns.init_ok(&["clean"]);
    let cleaned = ns.save("iptables-save");
    assert!(!cleaned.contains("ISTIO_"), "left behind:\n{cleaned}");
    assert!(rules(&cleaned).is_empty(), "rules left behind:\n{cleaned}");

    // Cleaning a clean namespace is fine, and so is --cleanup-only.
    ns.init_ok(&["clean"]);
    ns.init_ok(&["--cleanup-only"]);
    assert_eq!(ns.save("iptables-save"), cleaned);
}

#[test]
fn everything_at_once_applies_idempotently_and_cleans_up() {
    let ns = Netns::new("tproxy");
    let args = [
        "-m",
        "TPROXY",
        "-b",
        "*",
        "-d",
        "15020,15021",
        "-i",
        "*",
        "-x",
        "10.96.0.0/12",
        "-c",
        "eth9",
        "-k",
        "kv0",
        "-q",
        "3306",
        "-o",
        "5432",
        "--drop-invalid",
        "--redirect-dns",
        "--capture-all-dns",
        "--dual-stack",
    ];
    ns.init_ok(&args);
    let first = ns.save_all();
    for expected in [
        "-A PREROUTING -i eth9 -j RETURN",
        "-A PREROUTING -i kv0 -j RETURN",
        "-A PREROUTING -i kv0 -j ISTIO_REDIRECT",
        "-A PREROUTING -m conntrack --ctstate INVALID -j ISTIO_DROP",
        "-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x539/0xffffffff",
        "-A ISTIO_TPROXY ! -d ::1/128 -p tcp -j TPROXY --on-port 15006 --on-ip :: --tproxy-mark 0x539/0xffffffff",
        "-A OUTPUT -j ISTIO_OUTPUT_DNS",
        "-A ISTIO_OUTPUT_DNS -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053",
    ] {
        assert!(
            first.lines().any(|l| l == expected),
            "missing {expected:?} in\n{first}"
        );
    }
    let rule_line = |ns: &Netns| {
        ns.ok(&["ip", "-4", "rule", "show"])
            .lines()
            .filter(|l| l.contains("fwmark 0x539 lookup 133"))
            .count()
    };
    assert_eq!(rule_line(&ns), 1);
    assert!(
        ns.ok(&["ip", "-6", "addr", "show", "dev", "lo"])
            .contains("::6/128")
    );

    ns.init_ok(&args);
    assert_eq!(ns.save_all(), first, "second apply changed the rules");
    assert_eq!(
        rule_line(&ns),
        1,
        "second apply duplicated the policy route"
    );

    ns.init_ok(&[
        "clean",
        "-m",
        "TPROXY",
        "-c",
        "eth9",
        "-k",
        "kv0",
        "--drop-invalid",
    ]);
    let cleaned = ns.save_all();
    assert!(!cleaned.contains("ISTIO_"), "left behind:\n{cleaned}");
    assert!(rules(&cleaned).is_empty(), "rules left behind:\n{cleaned}");
    assert_eq!(rule_line(&ns), 0, "policy route left behind");
}

#[test]
fn a_new_configuration_replaces_the_old_one_entirely() {
    let changed = Netns::new("changed");
    changed.init_ok(&with(&[
        "-c",
        "eth9",
        "-k",
        "kv0",
        "--drop-invalid",
        "--dual-stack",
        "-o",
        "22",
    ]));
    changed.init_ok(INJECTOR);

    let fresh = Netns::new("fresh");
    fresh.init_ok(INJECTOR);

    // Chains the first run created in tables the second does not use stay
    // as empty tables, which iptables-save still lists; compare rules only.
    let rules_of = |ns: &Netns| {
        let all = ns.save_all();
        all.lines()
            .filter(|l| l.starts_with("-A ") || (l.starts_with(':') && l.contains("ISTIO_")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(rules_of(&changed), rules_of(&fresh));
}

#[test]
fn invalid_flags_write_nothing() {
    let ns = Netns::new("invalid");
    ns.init_ok(INJECTOR);
    let before = ns.save_all();

    let out = ns.init(&with(&["-i", "10.0.0.0/33"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(r#"--istio-service-cidr: "10.0.0.0/33" is not a CIDR"#),
        "{}",
        stderr(&out)
    );

    let out = ns.init(&["-m", "TPROXY", "-b", "*", "-p", "70000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--envoy-port: \"70000\" is not a port"),
        "{}",
        stderr(&out)
    );

    let out = ns.init(&["-m", "BRIDGE"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--istio-inbound-interception-mode"),
        "{}",
        stderr(&out)
    );

    let out = ns.init(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));

    let out = ns.init(&["--cleanup-only", "--skip-rule-apply"]);
    assert_eq!(out.status.code(), Some(2));

    assert_eq!(ns.save_all(), before);
}

#[test]
fn dry_run_prints_the_golden_rules_and_touches_nothing() {
    let ns = Netns::new("dryrun");
    let before = ns.save_all();
    let out = ns.init_ok(&with(&["--dry-run"]));
    let golden = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/injector-default.golden"
    ))
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), golden);
    assert_eq!(ns.save_all(), before);
}

#[test]
fn missing_iptables_is_a_clear_error() {
    let ns = Netns::new("nopath");
    let out = ns
        .command("env")
        .args(["PATH=/nonexistent", common::BIN])
        .args(INJECTOR)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("iptables-restore not found in PATH: install iptables"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn traffic_is_captured_except_the_proxys_own() {
    let pair = Pair::new();
    pair.a.init_ok(INJECTOR);

    let _outbound = Responder::start(&pair.a, "0.0.0.0:15001", "outbound-capture");
    let _inbound = Responder::start(&pair.a, "0.0.0.0:15006", "inbound-capture");
    let _excluded = Responder::start(&pair.a, "0.0.0.0:15021", "direct-15021");
    let _server = Responder::start(&pair.b, "0.0.0.0:8080", "server-b");

    // The app (root, not uid 1337) calling out lands on the proxy, which can
    // still tell where it was going.
    assert_eq!(
        ask(&pair.a, &format!("{B_IP}:8080")),
        format!("outbound-capture {B_IP}:8080")
    );

    // The proxy calling out is left alone: no loop.
    let answer = ask_as_proxy_user(&pair.a, B_IP, 8080);
    assert!(
        answer.starts_with("server-b "),
        "uid 1337 was captured: {answer:?}"
    );

    // Inbound to a captured port lands on 15006 with its original address.
    assert_eq!(
        ask(&pair.b, &format!("{A_IP}:9080")),
        format!("inbound-capture {A_IP}:9080")
    );

    // Inbound to an excluded port (-d) reaches it directly.
    let answer = ask(&pair.b, &format!("{A_IP}:15021"));
    assert!(answer.starts_with("direct-15021 "), "{answer:?}");

    // The app talking to itself over localhost is not captured either.
    let answer = ask(&pair.a, "127.0.0.1:15021");
    assert!(answer.starts_with("direct-15021 "), "{answer:?}");
}

#[test]
fn validation_passes_only_when_redirection_works() {
    let validate = [
        "--skip-rule-apply",
        "--run-validation",
        "--probe-timeout",
        "3s",
    ];
    let as_proxy_user = |ns: &Netns| {
        let mut argv = vec![
            "setpriv",
            "--reuid",
            "1337",
            "--regid",
            "1337",
            "--clear-groups",
            common::BIN,
        ];
        argv.extend(validate);
        ns.run(&argv)
    };

    let without_rules = Netns::new("noval");
    let out = as_proxy_user(&without_rules);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));

    let with_rules = Netns::new("val");
    with_rules.init_ok(INJECTOR);
    let out = as_proxy_user(&with_rules);
    assert!(out.status.success(), "validation failed: {}", stderr(&out));

    // As root, loopback traffic is app-to-app traffic and is not redirected,
    // so the probe cannot land: Istio validates as the proxy user too.
    let out = with_rules.init(&validate);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
}

#[test]
fn without_cap_net_admin_nothing_is_written() {
    let ns = Netns::new("nocap");
    let before = ns.save_all();
    let as_user = |extra: &[&str]| {
        let mut argv = vec![
            "setpriv",
            "--reuid",
            "1337",
            "--regid",
            "1337",
            "--clear-groups",
            common::BIN,
        ];
        argv.extend(["-m", "TPROXY", "-b", "*"]);
        argv.extend(extra);
        ns.run(&argv)
    };
    let out = as_user(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--istio-inbound-interception-mode: TPROXY needs CAP_NET_ADMIN"),
        "{}",
        stderr(&out)
    );
    // Printing the rules needs no privilege.
    let out = as_user(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("-j TPROXY --tproxy-mark 1337/0xffffffff")
    );
    assert_eq!(ns.save_all(), before);
}

#[test]
fn a_forced_iptables_flavour_is_used() {
    let ns = Netns::new("flavour");
    ns.init_ok(&with(&["--force-iptables-binary", "iptables-nft"]));
    assert!(
        ns.save("iptables-save")
            .contains("-A OUTPUT -j ISTIO_OUTPUT")
    );
    let out = ns.init(&with(&["--force-iptables-binary", "nftables"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--force-iptables-binary"),
        "{}",
        stderr(&out)
    );
}
