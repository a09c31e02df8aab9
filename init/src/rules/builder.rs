//! Collects rules for both families in the order they are added, so the
//! generator can read like the list of rules it produces.

use super::{Rule, TableName};

#[derive(Debug, Default)]
pub struct Builder {
    pub v4: Vec<Rule>,
    pub v6: Vec<Rule>,
}

fn rule(table: TableName, chain: &str, position: Option<u32>, args: &[&str]) -> Rule {
    Rule {
        table,
        chain: chain.to_owned(),
        position,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

impl Builder {
    pub fn append(&mut self, table: TableName, chain: &str, args: &[&str]) {
        self.append_v4(table, chain, args);
        self.append_v6(table, chain, args);
    }

    pub fn append_v4(&mut self, table: TableName, chain: &str, args: &[&str]) {
        self.v4.push(rule(table, chain, None, args));
    }

    pub fn append_v6(&mut self, table: TableName, chain: &str, args: &[&str]) {
        self.v6.push(rule(table, chain, None, args));
    }

    pub fn insert(&mut self, table: TableName, chain: &str, position: u32, args: &[&str]) {
        self.insert_v4(table, chain, position, args);
        self.insert_v6(table, chain, position, args);
    }

    pub fn insert_v4(&mut self, table: TableName, chain: &str, position: u32, args: &[&str]) {
        self.v4.push(rule(table, chain, Some(position), args));
    }

    pub fn insert_v6(&mut self, table: TableName, chain: &str, position: u32, args: &[&str]) {
        self.v6.push(rule(table, chain, Some(position), args));
    }

    /// Appends a rule that differs between families only by an address:
    /// `make` is called with `v4` for the IPv4 rule and `v6` for the IPv6 one.
    pub fn append_per_family(
        &mut self,
        table: TableName,
        chain: &str,
        (v4, v6): (&str, &str),
        make: impl Fn(&str) -> Vec<String>,
    ) {
        let v4_args = make(v4);
        let v6_args = make(v6);
        self.append_v4(table, chain, &as_strs(&v4_args));
        self.append_v6(table, chain, &as_strs(&v6_args));
    }
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Owned argument lists from a mix of literals and formatted values.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        vec![$(::std::string::ToString::to_string(&$arg)),*]
    };
}
