//! Semantic validation of decoded specs, following Istio's validation webhook
//! (`pkg/config/validation`): the rules that stop config which cannot work. Every error names
//! the JSON path of the field at fault. Warnings Istio only logs are not reported.

use std::fmt;

pub(crate) mod checks;
mod destination_rule;
mod mesh;
mod service_entry;
mod sidecar;
mod virtual_service;
mod workload_entry;

/// One validation failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.http[0].match[0].uri.regex`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Semantic validation, for code generic over the kinds. Each type also has an inherent
/// `validate` method, so the trait need not be imported to call it on a concrete type.
pub trait Validate {
    /// Checks Istio's semantic rules; every error names the JSON path at fault.
    fn validate(&self) -> Result<(), Vec<FieldError>>;
}

macro_rules! impl_validate {
    ($($t:ty),*) => {$(
        impl Validate for $t {
            fn validate(&self) -> Result<(), Vec<FieldError>> {
                <$t>::validate(self)
            }
        }
    )*};
}

impl_validate!(
    crate::istio::VirtualService,
    crate::istio::DestinationRule,
    crate::istio::ServiceEntry,
    crate::istio::WorkloadEntry,
    crate::istio::Sidecar,
    crate::istio::MeshConfig
);

/// Collects errors while walking a spec.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn add(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Records `result`'s error, if any, against `path`.
    pub(crate) fn check(&mut self, path: impl Into<String>, result: Result<(), String>) {
        if let Err(reason) = result {
            self.add(path, reason);
        }
    }

    pub(crate) fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// `parent.name`
pub(crate) fn at(parent: &str, name: &str) -> String {
    format!("{parent}.{name}")
}

/// `parent.name[index]`
pub(crate) fn at_index(parent: &str, name: &str, index: usize) -> String {
    format!("{parent}.{name}[{index}]")
}

/// The root path of a spec.
pub(crate) const SPEC: &str = "spec";
