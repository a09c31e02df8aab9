//! pilot-discovery's HTTP debug (`:8080`) and monitoring (`:15014`) servers, with
//! Istio's `/debug/*` endpoints, `/ready`, `/metrics` and `/version` (inventory §1, §2).
//!
//! Handlers read everything through [`DebugSource`], which the server implements.

mod adsz;
mod config;
mod config_dump;
mod push_status;
mod registry;
mod respond;
mod router;
mod source;
mod syncz;
mod time;

pub use router::{build_version, debug_router, monitoring_router};
pub use source::DebugSource;
