//! Listeners: accepting connections, the original-destination handoff, listener
//! filters (TLS and HTTP inspectors) and filter-chain selection.

pub mod connection;
pub mod filter_chain;
pub mod inspect;
pub mod manager;
pub mod original_dst;
