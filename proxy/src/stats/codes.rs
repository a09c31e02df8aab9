//! Response-code counters: Envoy counts each completed upstream request three times,
//! as `<prefix>_completed`, by class (`<prefix>_2xx`) and by code (`<prefix>_200`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::store::Collector;

#[derive(Debug, Default)]
pub struct ResponseCodeStats {
    completed: AtomicU64,
    classes: [AtomicU64; 5],
    /// Few distinct codes ever occur; the write lock is taken once per new code.
    codes: RwLock<BTreeMap<u16, AtomicU64>>,
}

impl ResponseCodeStats {
    pub fn record(&self, code: u16) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if let Some(class) = usize::from(code / 100)
            .checked_sub(1)
            .and_then(|i| self.classes.get(i))
        {
            class.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = self.codes.read().get(&code) {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.codes
            .write()
            .entry(code)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Count of responses of class `class` (1..=5).
    pub fn class(&self, class: u16) -> u64 {
        usize::from(class)
            .checked_sub(1)
            .and_then(|i| self.classes.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn code(&self, code: u16) -> u64 {
        self.codes
            .read()
            .get(&code)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Reports `<scope>.<prefix>_completed`, `_Nxx` (only classes seen, as Envoy creates
    /// them on first use) and `_NNN`.
    pub fn collect(&self, out: &mut Collector<'_>, scope: &str, prefix: &str) {
        out.counter(format!("{scope}.{prefix}_completed"), self.completed());
        for class in 1..=5u16 {
            let n = self.class(class);
            if n != 0 {
                out.counter(format!("{scope}.{prefix}_{class}xx"), n);
            }
        }
        for (code, n) in self.codes.read().iter() {
            out.counter(
                format!("{scope}.{prefix}_{code}"),
                n.load(Ordering::Relaxed),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class_and_code() {
        let s = ResponseCodeStats::default();
        for code in [200, 200, 204, 503, 99, 600] {
            s.record(code);
        }
        assert_eq!(s.completed(), 6);
        assert_eq!(s.class(2), 3);
        assert_eq!(s.class(5), 1);
        assert_eq!(s.code(200), 2);
        assert_eq!(s.code(404), 0);
    }
}
