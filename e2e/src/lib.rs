//! End-to-end harness for Strait.
//!
//! The pieces are deliberately small and composable: a [`Topology`] of network
//! namespaces joined by a bridge, in-process test [`Backend`]s, an [`HttpClient`]
//! whose sockets live in a chosen namespace, a stock [`Envoy`] sidecar and the
//! [`Pilot`] control plane running as real processes inside those namespaces.
//!
//! Everything needs root (network namespaces, veth pairs, iptables). Nothing here
//! touches the root network namespace: every interface, route and iptables rule
//! is created inside a namespace that the harness made and removes on drop.

pub mod backend;
pub mod bins;
pub mod capture;
pub mod client;
pub mod envoy;
pub mod kube;
pub mod mesh;
pub mod netns;
pub mod pilot;
pub mod process;
pub mod sidecar;
pub mod unique;
pub mod wait;
pub mod workdir;

pub use backend::{Backend, ReceivedRequest};
pub use client::{HttpClient, Protocol, RequestSpec, Response, Tally};
pub use envoy::{AdsApi, Bootstrap, Envoy, SidecarNode};
pub use netns::{Netns, Topology};
pub use pilot::{Pilot, PilotOptions};
pub use wait::{GiveUp, wait_until};
