//! Turning "what is there" and "what should be there" into one restore
//! transaction per family, so a change is all or nothing.
//!
//! Within each table the transaction:
//! 1. declares every chain it will fill (`:ISTIO_X - [0:0]` creates it, or
//!    empties it if it exists) and every stale ISTIO_* chain (emptied);
//! 2. deletes our rules in built-in chains: every jump into an ISTIO_* chain,
//!    and the non-jump rules Istio's layout puts there (interface RETURNs,
//!    TPROXY marks), found by their text;
//! 3. removes the stale chains;
//! 4. adds the wanted rules.
//!
//! Running it on a host that already has the same rules leaves them the same;
//! running it after a different configuration leaves only the new one.

use crate::iptables::{SavedRule, Snapshot};
use crate::rules::{RuleSet, TableName, is_builtin_chain, is_own_chain};

/// `--set-mark 1338` (rules::OUTBOUND_MARK) as iptables-save prints it.
const OUTBOUND_MARK_SAVED: &str = "0x53a/0xffffffff";

/// The transaction that replaces whatever of ours is in `current` with
/// `desired` (`None`: with nothing). `known` is every rule the configuration
/// could write, to recognise its non-jump rules. `None` when there is
/// nothing to do.
pub fn transaction(
    desired: Option<&RuleSet>,
    known: &RuleSet,
    current: &Snapshot,
) -> Option<String> {
    let ours_present = current.has_own_chains();
    let mut out = String::new();
    for name in TableName::ALL {
        if let Some(block) = table_block(name, desired, known, current, ours_present) {
            out.push_str(&block);
        }
    }
    (!out.is_empty()).then_some(out)
}

fn table_block(
    name: TableName,
    desired: Option<&RuleSet>,
    known: &RuleSet,
    current: &Snapshot,
    ours_present: bool,
) -> Option<String> {
    let wanted = desired.and_then(|d| d.table(name));
    let wanted_chains: &[String] = wanted.map(|t| t.chains.as_slice()).unwrap_or_default();
    let saved = current.table(name);

    let stale: Vec<&str> = saved
        .map(|t| {
            t.chains
                .iter()
                .filter(|c| is_own_chain(c) && !wanted_chains.contains(c))
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();

    let deletions: Vec<String> = saved
        .map(|t| {
            t.rules
                .iter()
                .filter(|r| is_ours(name, r, known, ours_present))
                .map(|r| format!("-D {} {}", r.chain, r.spec))
                .collect()
        })
        .unwrap_or_default();

    if wanted.is_none() && stale.is_empty() && deletions.is_empty() {
        return None;
    }

    let mut block = format!("*{name}\n");
    for chain in wanted_chains
        .iter()
        .map(String::as_str)
        .chain(stale.iter().copied())
    {
        block.push_str(&format!(":{chain} - [0:0]\n"));
    }
    for line in &deletions {
        block.push_str(line);
        block.push('\n');
    }
    for chain in &stale {
        block.push_str(&format!("-X {chain}\n"));
    }
    if let Some(table) = wanted {
        for rule in &table.rules {
            block.push_str(&rule.render());
            block.push('\n');
        }
    }
    block.push_str("COMMIT\n");
    Some(block)
}

/// Whether a saved rule in a built-in chain is one of ours: a jump into an
/// ISTIO_* chain; a rule the configuration writes, word for word; or, when
/// ISTIO_* chains show that Istio's layout is in place, a rule of a shape
/// only that layout uses (left by an earlier configuration).
fn is_ours(table: TableName, rule: &SavedRule, known: &RuleSet, ours_present: bool) -> bool {
    if !is_builtin_chain(&rule.chain) {
        return false;
    }
    if rule.target().is_some_and(is_own_chain) {
        return true;
    }
    let written_by_config = known.table(table).is_some_and(|t| {
        t.rules
            .iter()
            .any(|r| r.chain == rule.chain && r.spec() == rule.spec)
    });
    written_by_config || (ours_present && istio_shape(table, rule))
}

/// The non-jump rules Istio puts in built-in chains, as iptables-save
/// prints them (marks in hex, options it adds spelled out).
fn istio_shape(table: TableName, rule: &SavedRule) -> bool {
    let words: Vec<&str> = rule.spec.split_whitespace().collect();
    let has = |seq: &[&str]| words.windows(seq.len()).any(|w| w == seq);
    let interface_return = matches!(
        (rule.chain.as_str(), words.as_slice()),
        ("PREROUTING", ["-i", _, "-j", "RETURN"]) | ("OUTPUT", ["-o", _, "-j", "RETURN"])
    );
    match table {
        TableName::Nat => interface_return,
        TableName::Mangle => {
            interface_return
                || (rule.chain == "PREROUTING"
                    && has(&["-m", "mark"])
                    && has(&["-j", "CONNMARK", "--save-mark"]))
                || (rule.chain == "OUTPUT"
                    && (has(&["-m", "connmark"]) && has(&["-j", "CONNMARK", "--restore-mark"])
                        || has(&["-o", "lo"]) && has(&["-m", "mark"]) && has(&["-j", "RETURN"])
                        || has(&["-o", "lo"])
                            && has(&["-m", "owner"])
                            && has(&["-j", "MARK", "--set-xmark", OUTBOUND_MARK_SAVED])))
        }
        TableName::Raw => false,
    }
}

/// The tables a transaction writes, for rolling back.
pub fn tables_touched(transaction: &str) -> Vec<TableName> {
    transaction
        .lines()
        .filter_map(|l| l.strip_prefix('*'))
        .filter_map(TableName::from_name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::parse_save;
    use crate::rules::Rule;

    fn rule(table: TableName, chain: &str, args: &[&str]) -> Rule {
        Rule {
            table,
            chain: chain.into(),
            position: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    fn desired() -> RuleSet {
        RuleSet::from_rules(vec![
            rule(
                TableName::Nat,
                "PREROUTING",
                &["-i", "eth9", "-j", "RETURN"],
            ),
            rule(TableName::Nat, "OUTPUT", &["-j", "ISTIO_OUTPUT"]),
            rule(TableName::Nat, "ISTIO_OUTPUT", &["-j", "ISTIO_REDIRECT"]),
            rule(
                TableName::Nat,
                "ISTIO_REDIRECT",
                &["-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001"],
            ),
        ])
    }

    #[test]
    fn fresh_host_gets_the_plain_restore() {
        let set = desired();
        let tx = transaction(Some(&set), &set, &Snapshot::default()).unwrap();
        assert_eq!(tx, set.to_restore());
    }

    #[test]
    fn existing_rules_are_replaced_and_stale_chains_removed() {
        let set = desired();
        let current = parse_save(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:ISTIO_OUTPUT - [0:0]\n\
             :ISTIO_OLD - [0:0]\n:USER - [0:0]\n-A PREROUTING -i eth9 -j RETURN\n\
             -A PREROUTING -i kv0 -j RETURN\n-A PREROUTING -p tcp -j ISTIO_OLD\n\
             -A PREROUTING -p tcp -j USER\n-A OUTPUT -j ISTIO_OUTPUT\n-A OUTPUT -j USER\n\
             -A ISTIO_OUTPUT -j ISTIO_OLD\nCOMMIT\n",
        );
        let tx = transaction(Some(&set), &set, &current).unwrap();
        assert_eq!(
            tx,
            "*nat\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_REDIRECT - [0:0]\n:ISTIO_OLD - [0:0]\n\
             -D PREROUTING -i eth9 -j RETURN\n-D PREROUTING -i kv0 -j RETURN\n\
             -D PREROUTING -p tcp -j ISTIO_OLD\n-D OUTPUT -j ISTIO_OUTPUT\n-X ISTIO_OLD\n\
             -A PREROUTING -i eth9 -j RETURN\n-A OUTPUT -j ISTIO_OUTPUT\n\
             -A ISTIO_OUTPUT -j ISTIO_REDIRECT\n\
             -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n"
        );
        assert_eq!(tables_touched(&tx), vec![TableName::Nat]);
    }

    #[test]
    fn without_our_chains_only_our_exact_rules_count() {
        let current = parse_save(
            "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i eth9 -j RETURN\n\
             -A PREROUTING -i user0 -j RETURN\n-A PREROUTING -j USER\nCOMMIT\n",
        );
        let tx = transaction(None, &desired(), &current).unwrap();
        assert_eq!(tx, "*nat\n-D PREROUTING -i eth9 -j RETURN\nCOMMIT\n");
    }

    #[test]
    fn cleaning_a_clean_host_does_nothing() {
        let current = parse_save("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j USER\nCOMMIT\n");
        assert_eq!(transaction(None, &desired(), &current), None);
    }

    #[test]
    fn cleaning_removes_tproxy_leftovers_as_iptables_save_prints_them() {
        let current = parse_save(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:ISTIO_INBOUND - [0:0]\n\
             -A PREROUTING -i eth9 -j RETURN\n-A PREROUTING -p tcp -j ISTIO_INBOUND\n\
             -A PREROUTING -p tcp -m mark --mark 0x539 -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff\n\
             -A OUTPUT -o lo -p tcp -m mark --mark 0x539 -j RETURN\n\
             -A OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --uid-owner 1337 -j MARK --set-xmark 0x53a/0xffffffff\n\
             -A OUTPUT -p tcp -m connmark --mark 0x539 -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff\n\
             -A OUTPUT -p udp -j MARK --set-xmark 0x1/0xffffffff\n\
             -A ISTIO_INBOUND -p tcp -j RETURN\nCOMMIT\n",
        );
        let tx = transaction(None, &RuleSet::default(), &current).unwrap();
        let deleted: Vec<&str> = tx.lines().filter(|l| l.starts_with("-D ")).collect();
        assert_eq!(deleted.len(), 6, "{tx}");
        assert!(
            !tx.contains("--set-xmark 0x1/"),
            "a user's rule was taken for ours:\n{tx}"
        );
        assert!(tx.contains(":ISTIO_INBOUND - [0:0]\n") && tx.contains("-X ISTIO_INBOUND\n"));
    }
}
