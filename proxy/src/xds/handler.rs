//! What the client hands the rest of the proxy, and what it gets back.

use strait_proto::xds::any::Any;

/// One resource from a response, named and unwrapped.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceUpdate {
    pub name: String,
    /// The resource's version: its own in delta, the response's `version_info` in SotW.
    pub version: String,
    pub resource: Any,
}

/// A resource the handler refused, and why. The message goes to the control plane in
/// the NACK's `error_detail`, so it should name the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub name: String,
    pub error: String,
}

impl Rejected {
    pub fn new(name: impl Into<String>, error: impl Into<String>) -> Rejected {
        Rejected {
            name: name.into(),
            error: error.into(),
        }
    }
}

/// Applies updates to the proxy's config. Implemented by the snapshot code; runs
/// synchronously on the client task, which ACKs only after `apply` returned `Ok`, i.e.
/// once the new snapshot is in place.
pub trait XdsHandler: Send + 'static {
    /// Applies one response of `type_url`.
    ///
    /// SotW: `full_state` is true and `updated` is the complete set. For the wildcard
    /// types (CDS, LDS) names absent from it are removed; EDS and RDS responses carry
    /// only the requested names, so absence there means nothing.
    /// Delta: `full_state` is false and `removed` lists the removed names.
    ///
    /// All or nothing: on any rejection the last good state must stay in place, and
    /// every rejected resource is returned.
    fn apply(
        &mut self,
        type_url: &str,
        updated: Vec<ResourceUpdate>,
        removed: Vec<String>,
        full_state: bool,
    ) -> Result<(), Vec<Rejected>>;

    /// Names of a named type (EDS, RDS) the current config needs: the EDS service names
    /// of the applied clusters, the RDS route config names of the applied listeners.
    /// The client subscribes to exactly these.
    fn wanted(&self, type_url: &str) -> Vec<String>;
}
