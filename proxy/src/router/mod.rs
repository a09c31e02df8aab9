//! The router's decisions as plain functions over the config types: which virtual host
//! and route a request takes, where it goes (cluster, rewrites, headers, timeouts,
//! retries, mirrors), or what is answered locally (redirects, direct responses, fault
//! aborts, CORS preflights). No I/O: the HTTP connection manager carries the
//! [`RoutingDecision`] out.
//!
//! The HTTP connection manager's part, per request:
//! 1. [`downstream::mutate_request_headers`] (XFF, XFP, `x-request-id`, internal-only
//!    `x-envoy-*` stripped from external requests);
//! 2. [`RouteTable::route_request`] with a [`RequestView`] of the request;
//! 3. wait out [`RoutingDecision::delay`], then send the [`LocalReply`] of a redirect or
//!    direct outcome, or for [`Outcome::Forward`]: [`ForwardDecision::apply_to_parts`],
//!    pick a host of `cluster` (then [`ForwardDecision::apply_auto_host`]), send, and
//!    feed failures to the [`RetryState`] from [`ForwardDecision::retry_state`]
//!    (re-applying [`ForwardDecision::apply_attempt_headers`] on each retry); finally
//!    [`ForwardDecision::apply_to_response`] on the response headers.
//!
//! Regexes in the config follow the conversion layer's contract: matchers are compiled
//! anchored (full match), rewrite regexes unanchored, and their substitutions translated
//! to the regex crate's syntax (`${1}`).

pub mod cluster_pick;
pub mod cors;
pub mod decide;
pub mod decision;
pub mod downstream;
pub mod fault;
pub mod headers;
pub mod local_reply;
pub mod matchers;
pub mod matching;
pub mod re2;
pub mod redirect;
pub mod request;
pub mod retry;
pub mod rewrite;
pub mod timeout;
pub mod vhost;

#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod pilot_tests;
#[cfg(test)]
pub(crate) mod testutil;

pub use decide::{RouteTable, RouterOptions, route_request};
pub use decision::{DirectReason, ForwardDecision, Outcome, RouterError, RoutingDecision};
pub use local_reply::LocalReply;
pub use request::RequestView;
pub use retry::{ResetKind, RetryDecision, RetryState};
