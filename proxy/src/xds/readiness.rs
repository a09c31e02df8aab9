//! When the proxy is ready to serve: Envoy's initialization rule. Clusters warm until
//! their endpoints arrived and listeners until their routes did, and the server
//! initializes once the first CDS and LDS updates and everything they warm are done.
//!
//! Here: ready once the first CDS and LDS responses were applied and every EDS and RDS
//! name the applied config wants was answered by an applied response, even an empty
//! assignment or, in delta, a removal. A SotW response that omits a name does not
//! answer it, as Envoy keeps such a cluster warming. Readiness never goes back: later
//! warming resources do not make a serving proxy unready.

use std::collections::BTreeSet;

use strait_proto::xds::type_url;

#[derive(Clone, Debug, Default)]
pub struct Readiness {
    clusters: bool,
    listeners: bool,
    endpoints: BTreeSet<String>,
    routes: BTreeSet<String>,
    ready: bool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Records an applied response of `type_url` that answered `names`.
    pub fn applied<'a>(&mut self, type_url: &str, names: impl IntoIterator<Item = &'a str>) {
        if self.ready {
            return;
        }
        match type_url {
            type_url::CLUSTER => self.clusters = true,
            type_url::LISTENER => self.listeners = true,
            type_url::ENDPOINT => self.endpoints.extend(names.into_iter().map(str::to_string)),
            type_url::ROUTE => self.routes.extend(names.into_iter().map(str::to_string)),
            _ => {}
        }
    }

    /// Re-evaluates against what the applied clusters and listeners want now; returns
    /// whether the proxy is ready.
    pub fn update(
        &mut self,
        wanted_endpoints: &BTreeSet<String>,
        wanted_routes: &BTreeSet<String>,
    ) -> bool {
        if !self.ready
            && self.clusters
            && self.listeners
            && wanted_endpoints.is_subset(&self.endpoints)
            && wanted_routes.is_subset(&self.routes)
        {
            self.ready = true;
            // Only needed until now.
            self.endpoints.clear();
            self.routes.clear();
        }
        self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn needs_clusters_listeners_and_everything_they_reference() {
        let mut r = Readiness::default();
        let eds = set(&["c1", "c2"]);
        let rds = set(&["80"]);
        assert!(!r.update(&BTreeSet::new(), &BTreeSet::new()));
        r.applied(type_url::CLUSTER, []);
        assert!(!r.update(&eds, &BTreeSet::new()), "no listeners yet");
        r.applied(type_url::LISTENER, []);
        assert!(!r.update(&eds, &rds), "clusters still warming");
        r.applied(type_url::ENDPOINT, ["c1"]);
        assert!(!r.update(&eds, &rds), "c2 still warming");
        r.applied(type_url::ENDPOINT, ["c2"]);
        assert!(!r.update(&eds, &rds), "listener still warming");
        r.applied(type_url::ROUTE, ["80"]);
        assert!(r.update(&eds, &rds));
        assert!(r.is_ready());
    }

    #[test]
    fn config_without_references_is_ready_after_cds_and_lds() {
        let mut r = Readiness::default();
        r.applied(type_url::LISTENER, []);
        assert!(!r.update(&BTreeSet::new(), &BTreeSet::new()));
        r.applied(type_url::CLUSTER, []);
        assert!(r.update(&BTreeSet::new(), &BTreeSet::new()));
    }

    #[test]
    fn stays_ready_when_new_resources_warm() {
        let mut r = Readiness::default();
        r.applied(type_url::CLUSTER, []);
        r.applied(type_url::LISTENER, []);
        assert!(r.update(&BTreeSet::new(), &BTreeSet::new()));
        assert!(r.update(&set(&["new"]), &set(&["new"])));
    }

    #[test]
    fn names_answered_before_they_are_wanted_count() {
        let mut r = Readiness::default();
        r.applied(type_url::ENDPOINT, ["c1"]);
        r.applied(type_url::CLUSTER, []);
        r.applied(type_url::LISTENER, []);
        assert!(r.update(&set(&["c1"]), &BTreeSet::new()));
    }
}
