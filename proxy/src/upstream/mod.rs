//! Upstream selection: which host of which cluster a request or connection goes to.
//!
//! Everything here is plain data and functions (no sockets): immutable host sets built
//! from a cluster's endpoints, the load balancing policies, circuit breakers and outlier
//! detection, tied together by [`ClusterState`] and [`ClusterManager`]. Envoy's
//! documentation is the source of the semantics; where a detail is simplified, the module
//! doing it says so.

pub mod breaker;
pub mod cluster_state;
pub mod hash;
pub mod host;
pub mod host_set;
pub mod lb;
pub mod manager;
pub mod outlier;
pub mod random;

#[cfg(test)]
pub(crate) mod test_util;

pub use breaker::{BreakerGuard, BreakerStats, CircuitBreakers, Resource};
pub use cluster_state::{ClusterState, ClusterStats, NoHealthyUpstream};
pub use host::{ConnectionGuard, Host, HostStats, RequestGuard};
pub use host_set::{HostSet, PriorityLevel};
pub use lb::{LbContext, LoadBalancer};
pub use manager::{ClusterChanges, ClusterManager};
pub use outlier::{Outcome, OutlierConfig, OutlierDetector, OutlierStats};
pub use random::{RandomSource, SeededRandom, ThreadRandom};
