//! The `networking.istio.io` kinds we serve, their Kubernetes names and versions.

use std::fmt;

use serde_json::Value;

use super::parse::{SpecError, parse_spec};
use super::validate::FieldError;
use super::{DestinationRule, ServiceEntry, Sidecar, VirtualService, WorkloadEntry};

/// API group of every kind here.
pub const GROUP: &str = "networking.istio.io";

/// Served versions, storage version first. All share one schema.
pub const VERSIONS: [&str; 3] = ["v1", "v1alpha3", "v1beta1"];

/// The version objects are stored in.
pub const STORAGE_VERSION: &str = "v1";

/// A `networking.istio.io` kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    Sidecar,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 5] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::Sidecar,
    ];

    /// The `kind` field value, e.g. `VirtualService`.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Sidecar => "Sidecar",
        }
    }

    /// Resource (plural) name, e.g. `virtualservices`.
    pub const fn plural(self) -> &'static str {
        match self {
            Kind::VirtualService => "virtualservices",
            Kind::DestinationRule => "destinationrules",
            Kind::ServiceEntry => "serviceentries",
            Kind::WorkloadEntry => "workloadentries",
            Kind::Sidecar => "sidecars",
        }
    }

    /// Singular resource name, e.g. `virtualservice`.
    pub const fn singular(self) -> &'static str {
        match self {
            Kind::VirtualService => "virtualservice",
            Kind::DestinationRule => "destinationrule",
            Kind::ServiceEntry => "serviceentry",
            Kind::WorkloadEntry => "workloadentry",
            Kind::Sidecar => "sidecar",
        }
    }

    /// kubectl short names.
    pub const fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::VirtualService => &["vs"],
            Kind::DestinationRule => &["dr"],
            Kind::ServiceEntry => &["se"],
            Kind::WorkloadEntry => &["we"],
            Kind::Sidecar => &[],
        }
    }

    /// kubectl categories.
    pub const fn categories(self) -> &'static [&'static str] {
        &["istio-io", "networking-istio-io"]
    }

    /// `<Kind>List`.
    pub fn list_kind(self) -> String {
        format!("{}List", self.name())
    }

    /// CRD name, e.g. `virtualservices.networking.istio.io`.
    pub fn crd_name(self) -> String {
        format!("{}.{GROUP}", self.plural())
    }

    /// Looks a kind up by its `kind` name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Looks a kind up by plural, singular or short name (as kubectl does).
    pub fn from_resource(resource: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            k.plural() == resource
                || k.singular() == resource
                || k.short_names().contains(&resource)
        })
    }

    /// Whether `apiVersion` (`group/version`) is served for this kind.
    pub fn serves_api_version(self, api_version: &str) -> bool {
        api_version
            .strip_prefix(GROUP)
            .and_then(|v| v.strip_prefix('/'))
            .is_some_and(|v| VERSIONS.contains(&v))
    }

    /// Decodes a spec of this kind.
    pub fn parse_spec(self, value: Value) -> Result<Spec, SpecError> {
        Ok(match self {
            Kind::VirtualService => Spec::VirtualService(Box::new(parse_spec(value)?)),
            Kind::DestinationRule => Spec::DestinationRule(Box::new(parse_spec(value)?)),
            Kind::ServiceEntry => Spec::ServiceEntry(Box::new(parse_spec(value)?)),
            Kind::WorkloadEntry => Spec::WorkloadEntry(Box::new(parse_spec(value)?)),
            Kind::Sidecar => Spec::Sidecar(Box::new(parse_spec(value)?)),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded spec of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    VirtualService(Box<VirtualService>),
    DestinationRule(Box<DestinationRule>),
    ServiceEntry(Box<ServiceEntry>),
    WorkloadEntry(Box<WorkloadEntry>),
    Sidecar(Box<Sidecar>),
}

impl Spec {
    /// The kind of this spec.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::VirtualService(_) => Kind::VirtualService,
            Spec::DestinationRule(_) => Kind::DestinationRule,
            Spec::ServiceEntry(_) => Kind::ServiceEntry,
            Spec::WorkloadEntry(_) => Kind::WorkloadEntry,
            Spec::Sidecar(_) => Kind::Sidecar,
        }
    }

    /// Semantic validation (see each kind's `validate`).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        match self {
            Spec::VirtualService(s) => s.validate(),
            Spec::DestinationRule(s) => s.validate(),
            Spec::ServiceEntry(s) => s.validate(),
            Spec::WorkloadEntry(s) => s.validate(),
            Spec::Sidecar(s) => s.validate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            Kind::VirtualService.crd_name(),
            "virtualservices.networking.istio.io"
        );
        assert_eq!(Kind::ServiceEntry.list_kind(), "ServiceEntryList");
        assert_eq!(Kind::from_resource("dr"), Some(Kind::DestinationRule));
        assert_eq!(Kind::from_resource("we"), Some(Kind::WorkloadEntry));
        assert_eq!(Kind::from_name("Sidecar"), Some(Kind::Sidecar));
        assert_eq!(Kind::from_name("Gateway"), None);
        assert!(Kind::Sidecar.serves_api_version("networking.istio.io/v1beta1"));
        assert!(!Kind::Sidecar.serves_api_version("networking.istio.io/v2"));
        assert!(!Kind::Sidecar.serves_api_version("security.istio.io/v1"));
    }

    #[test]
    fn parse_by_kind() {
        let spec = Kind::WorkloadEntry
            .parse_spec(serde_json::json!({"address": "10.0.0.1"}))
            .unwrap();
        assert_eq!(spec.kind(), Kind::WorkloadEntry);
        assert!(spec.validate().is_ok());
    }
}
