//! MeshConfig rules (the parts of Istio's `ValidateMeshConfig` that cover modelled fields).

use super::destination_rule::locality_lb;
use super::{Errors, FieldError, at, checks};
use crate::istio::MeshConfig;

const MESH: &str = "mesh";

impl MeshConfig {
    /// Checks the modelled fields the way Istio's `ValidateMeshConfig` does.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        e.check(
            at(MESH, "proxyListenPort"),
            checks::port(i64::from(self.proxy_listen_port)),
        );
        let ct = self.connect_timeout.as_std();
        let ctp = at(MESH, "connectTimeout");
        e.check(&ctp, checks::duration(&self.connect_timeout));
        if ct > std::time::Duration::from_secs(3600) {
            e.add(&ctp, "connect timeout must be at most 1h");
        }
        if !self
            .protocol_detection_timeout
            .as_std()
            .subsec_nanos()
            .is_multiple_of(1_000_000)
        {
            e.add(
                at(MESH, "protocolDetectionTimeout"),
                "only durations to ms precision are supported",
            );
        }
        let td = &self.trust_domain;
        let td_ok = !td.is_empty()
            && td.split('.').enumerate().all(|(i, l)| {
                checks::is_dns1123_label(l)
                    || (l.is_empty() && i == td.split('.').count() - 1 && i > 0)
            });
        if !td_ok {
            e.add(
                at(MESH, "trustDomain"),
                format!("trust domain name {td:?} invalid"),
            );
        }
        if let Some(l) = &self.locality_lb_setting {
            locality_lb(&mut e, &at(MESH, "localityLbSetting"), l);
        }
        let pc = at(MESH, "defaultConfig");
        e.check(
            at(&pc, "proxyAdminPort"),
            checks::port(i64::from(self.default_config.proxy_admin_port)),
        );
        e.check(
            at(&pc, "statusPort"),
            checks::port(i64::from(self.default_config.status_port)),
        );
        let dd = &self.default_config.drain_duration;
        e.check(at(&pc, "drainDuration"), checks::duration(dd));
        if dd.as_std().subsec_nanos() != 0 {
            e.add(
                at(&pc, "drainDuration"),
                "drain time only supports durations to seconds precision",
            );
        }
        if let Some(c) = self.default_config.concurrency
            && c < 0
        {
            e.add(
                at(&pc, "concurrency"),
                "concurrency must be greater than or equal to 0",
            );
        }
        e.finish()
    }
}
