//! The proxy's own config types. Envoy protos from xDS or the bootstrap are converted
//! into these at the edge (`TryFrom`), validated, with errors naming the resource and
//! field; nothing past the edge sees a raw proto.

pub mod access_log;
pub mod cluster;
pub mod common;
pub mod endpoint;
pub mod error;
pub mod listener;
pub mod route;

pub use error::{ConfigError, Ctx};
