//! Where an HCM's routes come from: RDS configurations by name (stored by the xDS side
//! into a [`RouteTable`] and swapped atomically, so each new stream sees the newest), or
//! the HCM's inline configuration. The router's virtual-host index is built once per
//! configuration and cached per worker thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::listener::RouteSource;
use crate::config::route::RouteConfig;
use crate::router;

/// RDS route configurations by name.
pub type RouteTable = Arc<ArcSwap<HashMap<String, Arc<RouteConfig>>>>;

pub fn new_route_table() -> RouteTable {
    Arc::new(ArcSwap::from_pointee(HashMap::new()))
}

/// Replace every RDS configuration (state-of-the-world).
pub fn store_all(table: &RouteTable, configs: impl IntoIterator<Item = Arc<RouteConfig>>) {
    let map = configs
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect::<HashMap<_, _>>();
    table.store(Arc::new(map));
}

/// Add or replace some configurations and remove others (incremental).
pub fn apply(table: &RouteTable, upserts: Vec<Arc<RouteConfig>>, removals: &[String]) {
    table.rcu(|current| {
        let mut next = HashMap::clone(current);
        for name in removals {
            next.remove(name);
        }
        for c in &upserts {
            next.insert(c.name.clone(), c.clone());
        }
        next
    });
}

/// Cache entries with no other owner are dropped once the cache has this many.
const PRUNE_AT: usize = 64;

thread_local! {
    static INDEXED: RefCell<HashMap<usize, Arc<router::RouteTable>>> = RefCell::new(HashMap::new());
}

/// The indexed form of a configuration, built at most once per worker.
pub fn indexed(config: &Arc<RouteConfig>) -> Arc<router::RouteTable> {
    let key = Arc::as_ptr(config) as usize;
    INDEXED.with(|cache| {
        let mut cache = cache.borrow_mut();
        // The cache keeps its configurations alive, so an address in it is never reused
        // by another configuration; the pointer check is for clarity.
        if let Some(t) = cache.get(&key)
            && Arc::ptr_eq(&t.config, config)
        {
            return t.clone();
        }
        if cache.len() >= PRUNE_AT {
            cache.retain(|_, t| Arc::strong_count(&t.config) > 1);
        }
        let table = Arc::new(router::RouteTable::new(config.clone()));
        cache.insert(key, table.clone());
        table
    })
}

/// The routes an HCM uses for a new stream; `None` while its RDS configuration has not
/// arrived (every request is then a 404, as in Envoy).
pub fn resolve(source: &RouteSource, table: &RouteTable) -> Option<Arc<router::RouteTable>> {
    match source {
        RouteSource::Inline(config) => Some(indexed(config)),
        RouteSource::Rds(name) => table.load().get(name).map(indexed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> Arc<RouteConfig> {
        Arc::new(RouteConfig {
            name: name.into(),
            ..Default::default()
        })
    }

    #[test]
    fn rds_lookups_see_the_latest_store() {
        let table = new_route_table();
        let source = RouteSource::Rds("80".into());
        assert!(resolve(&source, &table).is_none());
        let first = config("80");
        store_all(&table, [first.clone()]);
        let got = resolve(&source, &table).unwrap();
        assert!(Arc::ptr_eq(&got.config, &first));
        // The same configuration is indexed once.
        assert!(Arc::ptr_eq(&got, &resolve(&source, &table).unwrap()));
        let second = config("80");
        apply(&table, vec![second.clone(), config("81")], &[]);
        assert!(Arc::ptr_eq(
            &resolve(&source, &table).unwrap().config,
            &second
        ));
        apply(&table, vec![], &["80".to_string()]);
        assert!(resolve(&source, &table).is_none());
        assert_eq!(table.load().len(), 1);
    }

    #[test]
    fn inline_routes_need_no_table() {
        let table = new_route_table();
        let inline = config("inline");
        let got = resolve(&RouteSource::Inline(inline.clone()), &table).unwrap();
        assert!(Arc::ptr_eq(&got.config, &inline));
    }
}
