//! The rules, as data: per address family, per table, the chains to declare
//! and the rules in order, and their `iptables-restore` text.

#[macro_use]
mod builder;
mod build;
mod dns;

use std::fmt;

pub use build::build_rules;

pub const ISTIO_INBOUND: &str = "ISTIO_INBOUND";
pub const ISTIO_OUTPUT: &str = "ISTIO_OUTPUT";
pub const ISTIO_OUTPUT_DNS: &str = "ISTIO_OUTPUT_DNS";
pub const ISTIO_REDIRECT: &str = "ISTIO_REDIRECT";
pub const ISTIO_IN_REDIRECT: &str = "ISTIO_IN_REDIRECT";
pub const ISTIO_DIVERT: &str = "ISTIO_DIVERT";
pub const ISTIO_TPROXY: &str = "ISTIO_TPROXY";
pub const ISTIO_DROP: &str = "ISTIO_DROP";

/// Every chain Strait (and Istio) creates starts with this.
pub const CHAIN_PREFIX: &str = "ISTIO_";

pub const PREROUTING: &str = "PREROUTING";
pub const OUTPUT: &str = "OUTPUT";

/// The mark TPROXY mode puts on the proxy's own connections to the workload.
pub const OUTBOUND_MARK: &str = "1338";

pub fn is_builtin_chain(chain: &str) -> bool {
    matches!(
        chain,
        "PREROUTING" | "INPUT" | "FORWARD" | "OUTPUT" | "POSTROUTING"
    )
}

pub fn is_own_chain(chain: &str) -> bool {
    chain.starts_with(CHAIN_PREFIX)
}

/// The tables the rules use, in the order they are written (by name, as
/// Istio writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableName {
    Mangle,
    Nat,
    Raw,
}

impl TableName {
    pub const ALL: [TableName; 3] = [TableName::Mangle, TableName::Nat, TableName::Raw];

    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Mangle => "mangle",
            TableName::Nat => "nat",
            TableName::Raw => "raw",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// One rule: appended (`-A`) or inserted at a 1-based position (`-I`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: TableName,
    pub chain: String,
    pub position: Option<u32>,
    pub args: Vec<String>,
}

impl Rule {
    /// The match and target, without the command and chain.
    pub fn spec(&self) -> String {
        self.args.join(" ")
    }

    /// The restore line: `-A CHAIN spec` or `-I CHAIN N spec`.
    pub fn render(&self) -> String {
        match self.position {
            None => format!("-A {} {}", self.chain, self.spec()),
            Some(n) => format!("-I {} {n} {}", self.chain, self.spec()),
        }
    }

    /// The chain this rule ends with a jump to, if it is one of ours.
    pub fn jump_to_own_chain(&self) -> Option<&str> {
        match self.args.as_slice() {
            [.., j, target] if j == "-j" && is_own_chain(target) => Some(target),
            _ => None,
        }
    }
}

/// One table's part of a restore: the chains to create (or flush), then the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: TableName,
    pub chains: Vec<String>,
    pub rules: Vec<Rule>,
}

/// Everything for one address family, tables in writing order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleSet {
    pub tables: Vec<Table>,
}

impl RuleSet {
    /// Groups rules by table and works out which chains each table needs:
    /// every non-built-in chain a rule is in, then every chain a rule jumps to,
    /// each in order of first use.
    pub fn from_rules(rules: Vec<Rule>) -> Self {
        let mut tables = Vec::new();
        for name in TableName::ALL {
            let rules: Vec<Rule> = rules.iter().filter(|r| r.table == name).cloned().collect();
            if rules.is_empty() {
                continue;
            }
            let mut chains: Vec<String> = Vec::new();
            for rule in &rules {
                if !is_builtin_chain(&rule.chain) && !chains.contains(&rule.chain) {
                    chains.push(rule.chain.clone());
                }
            }
            for rule in &rules {
                if let Some(target) = rule.jump_to_own_chain()
                    && !chains.iter().any(|c| c == target)
                {
                    chains.push(target.to_owned());
                }
            }
            tables.push(Table {
                name,
                chains,
                rules,
            });
        }
        Self { tables }
    }

    pub fn table(&self, name: TableName) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Input for `iptables-restore --noflush` on a host without our chains.
    /// A `:CHAIN - [0:0]` line creates the chain, or empties it if it exists.
    pub fn to_restore(&self) -> String {
        let mut out = String::new();
        for table in &self.tables {
            out.push_str(&format!("*{}\n", table.name));
            for chain in &table.chains {
                out.push_str(&format!(":{chain} - [0:0]\n"));
            }
            for rule in &table.rules {
                out.push_str(&rule.render());
                out.push('\n');
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

/// The whole configuration: IPv4 always, IPv6 when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub v4: RuleSet,
    pub v6: Option<RuleSet>,
}

impl Rules {
    pub fn family(&self, family: Family) -> Option<&RuleSet> {
        match family {
            Family::V4 => Some(&self.v4),
            Family::V6 => self.v6.as_ref(),
        }
    }

    /// What `--dry-run` prints: each family's restore input under a comment
    /// naming the tool it is for (comments are valid restore input).
    pub fn to_dry_run(&self) -> String {
        let mut out = String::from("# iptables-restore --noflush\n");
        out.push_str(&self.v4.to_restore());
        if let Some(v6) = &self.v6 {
            out.push_str("# ip6tables-restore --noflush\n");
            out.push_str(&v6.to_restore());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(table: TableName, chain: &str, args: &[&str]) -> Rule {
        Rule {
            table,
            chain: chain.to_owned(),
            position: None,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn chains_are_declared_in_first_use_order_including_jump_targets() {
        let set = RuleSet::from_rules(vec![
            rule(TableName::Nat, "OUTPUT", &["-j", "ISTIO_OUTPUT"]),
            rule(TableName::Nat, "ISTIO_B", &["-j", "RETURN"]),
            rule(TableName::Raw, "OUTPUT", &["-j", "ISTIO_OUTPUT_DNS"]),
            rule(TableName::Mangle, "ISTIO_DIVERT", &["-j", "ACCEPT"]),
        ]);
        let names: Vec<_> = set.tables.iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            vec![TableName::Mangle, TableName::Nat, TableName::Raw]
        );
        assert_eq!(
            set.table(TableName::Nat).unwrap().chains,
            vec!["ISTIO_B", "ISTIO_OUTPUT"]
        );
        assert_eq!(
            set.to_restore(),
            "*mangle\n:ISTIO_DIVERT - [0:0]\n-A ISTIO_DIVERT -j ACCEPT\nCOMMIT\n\
             *nat\n:ISTIO_B - [0:0]\n:ISTIO_OUTPUT - [0:0]\n-A OUTPUT -j ISTIO_OUTPUT\n\
             -A ISTIO_B -j RETURN\nCOMMIT\n\
             *raw\n:ISTIO_OUTPUT_DNS - [0:0]\n-A OUTPUT -j ISTIO_OUTPUT_DNS\nCOMMIT\n"
        );
    }

    #[test]
    fn inserts_render_with_position() {
        let mut r = rule(
            TableName::Nat,
            "PREROUTING",
            &["-i", "eth1", "-j", "RETURN"],
        );
        r.position = Some(1);
        assert_eq!(r.render(), "-I PREROUTING 1 -i eth1 -j RETURN");
        assert_eq!(r.jump_to_own_chain(), None);
    }
}
