//! Circuit breakers of a cluster (the DEFAULT priority's thresholds): caps on open
//! connections, requests queued for a connection, requests in flight and retries in
//! flight, each held by an RAII guard.
//!
//! A refused acquisition counts an overflow: `upstream_cx_overflow` for connections,
//! `upstream_rq_pending_overflow` for pending requests and (as Envoy documents) for
//! requests, `upstream_rq_retry_overflow` for retries. A request refused by the pending or
//! request breaker is answered with [`overflow_response`]; a refused retry is not retried
//! (the last upstream response stands), and Envoy never retries a response carrying
//! `x-envoy-overloaded`. The access-log response flag is `UO`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::config::cluster::Thresholds;

pub const OVERLOADED_HEADER: &str = "x-envoy-overloaded";

/// The body Envoy's router sends when the upstream request "reset" with reason overflow.
pub const OVERFLOW_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

/// The access-log response flag for a circuit-breaker overflow.
pub const RESPONSE_FLAG: &str = "UO";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Connections,
    PendingRequests,
    Requests,
    Retries,
}

#[derive(Debug)]
pub struct CircuitBreakers {
    thresholds: Thresholds,
    active: [AtomicU64; 4],
    counters: Arc<BreakerCounters>,
}

/// What the breakers have counted: grants and refusals per resource. Shared by every
/// generation of a cluster's breakers, as Envoy's counters live on in its stats store
/// when a cluster's config changes.
#[derive(Debug, Default)]
pub struct BreakerCounters {
    granted: [AtomicU64; 4],
    overflow: [AtomicU64; 4],
}

/// Live breaker state for stats (`circuit_breakers.default.*` and the overflow counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreakerStats {
    pub connections: u64,
    pub pending_requests: u64,
    pub requests: u64,
    pub retries: u64,
    pub remaining_connections: u64,
    pub remaining_pending_requests: u64,
    pub remaining_requests: u64,
    pub remaining_retries: u64,
    pub upstream_cx_overflow: u64,
    pub upstream_rq_pending_overflow: u64,
    pub upstream_rq_retry_overflow: u64,
    /// Requests that had to wait for a connection (`upstream_rq_pending_total`).
    pub upstream_rq_pending_total: u64,
    /// Retries let through (`upstream_rq_retry`).
    pub upstream_rq_retry: u64,
    /// Refusals by the pending-request breaker alone (a request already started upstream).
    pub pending_resource_overflow: u64,
}

impl Resource {
    fn slot(self) -> usize {
        self as usize
    }
}

impl CircuitBreakers {
    pub fn new(thresholds: Thresholds) -> Arc<Self> {
        CircuitBreakers::with_counters(thresholds, Arc::default())
    }

    /// Breakers for a changed cluster config: nothing held, the counts carried on.
    pub fn with_counters(thresholds: Thresholds, counters: Arc<BreakerCounters>) -> Arc<Self> {
        Arc::new(CircuitBreakers {
            thresholds,
            active: Default::default(),
            counters,
        })
    }

    pub fn counters(&self) -> &Arc<BreakerCounters> {
        &self.counters
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    fn max(&self, resource: Resource) -> u64 {
        u64::from(match resource {
            Resource::Connections => self.thresholds.max_connections,
            Resource::PendingRequests => self.thresholds.max_pending_requests,
            Resource::Requests => self.thresholds.max_requests,
            Resource::Retries => self.thresholds.max_retries,
        })
    }

    /// Takes one unit of `resource` if it is below its threshold; otherwise counts the
    /// overflow and returns `None`.
    pub fn try_acquire(self: &Arc<Self>, resource: Resource) -> Option<BreakerGuard> {
        let max = self.max(resource);
        let taken = self.active[resource.slot()]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        let counters = if taken {
            &self.counters.granted
        } else {
            &self.counters.overflow
        };
        counters[resource.slot()].fetch_add(1, Ordering::Relaxed);
        taken.then(|| BreakerGuard {
            breakers: self.clone(),
            resource,
        })
    }

    pub fn try_acquire_connection(self: &Arc<Self>) -> Option<BreakerGuard> {
        self.try_acquire(Resource::Connections)
    }

    pub fn try_acquire_pending_request(self: &Arc<Self>) -> Option<BreakerGuard> {
        self.try_acquire(Resource::PendingRequests)
    }

    pub fn try_acquire_request(self: &Arc<Self>) -> Option<BreakerGuard> {
        self.try_acquire(Resource::Requests)
    }

    pub fn try_acquire_retry(self: &Arc<Self>) -> Option<BreakerGuard> {
        self.try_acquire(Resource::Retries)
    }

    /// Whether one more unit would be granted now, without taking it or counting an
    /// overflow (a pool asks this before deciding to open a connection or queue).
    pub fn can_acquire(&self, resource: Resource) -> bool {
        self.active(resource) < self.max(resource)
    }

    pub fn active(&self, resource: Resource) -> u64 {
        self.active[resource.slot()].load(Ordering::Acquire)
    }

    pub fn stats(&self) -> BreakerStats {
        let remaining = |r| self.max(r).saturating_sub(self.active(r));
        BreakerStats {
            connections: self.active(Resource::Connections),
            pending_requests: self.active(Resource::PendingRequests),
            requests: self.active(Resource::Requests),
            retries: self.active(Resource::Retries),
            remaining_connections: remaining(Resource::Connections),
            remaining_pending_requests: remaining(Resource::PendingRequests),
            remaining_requests: remaining(Resource::Requests),
            remaining_retries: remaining(Resource::Retries),
            upstream_cx_overflow: self.counters.overflow(Resource::Connections),
            // Envoy counts a refused request as a pending overflow too.
            upstream_rq_pending_overflow: self.counters.overflow(Resource::PendingRequests)
                + self.counters.overflow(Resource::Requests),
            upstream_rq_retry_overflow: self.counters.overflow(Resource::Retries),
            upstream_rq_pending_total: self.counters.granted(Resource::PendingRequests),
            upstream_rq_retry: self.counters.granted(Resource::Retries),
            pending_resource_overflow: self.counters.overflow(Resource::PendingRequests),
        }
    }
}

impl BreakerCounters {
    fn granted(&self, resource: Resource) -> u64 {
        self.granted[resource.slot()].load(Ordering::Relaxed)
    }

    fn overflow(&self, resource: Resource) -> u64 {
        self.overflow[resource.slot()].load(Ordering::Relaxed)
    }
}

/// Holds one unit of a breaker resource until dropped.
#[must_use = "the breaker unit is released when the guard drops"]
#[derive(Debug)]
pub struct BreakerGuard {
    breakers: Arc<CircuitBreakers>,
    resource: Resource,
}

impl BreakerGuard {
    pub fn resource(&self) -> Resource {
        self.resource
    }
}

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        self.breakers.active[self.resource.slot()].fetch_sub(1, Ordering::AcqRel);
    }
}

/// The local reply for a request refused by a breaker: 503 with
/// `x-envoy-overloaded: true` (left out when the router has `suppress_envoy_headers`).
pub fn overflow_response(suppress_envoy_headers: bool) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(OVERFLOW_BODY.as_bytes()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(OVERFLOW_BODY.len()),
    );
    if !suppress_envoy_headers {
        headers.insert(OVERLOADED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers() -> Arc<CircuitBreakers> {
        CircuitBreakers::new(Thresholds {
            max_connections: 2,
            max_pending_requests: 1,
            max_requests: 3,
            max_retries: 1,
        })
    }

    #[test]
    fn acquire_up_to_max_then_overflow_is_counted() {
        let b = breakers();
        let held: Vec<_> = (0..3).map(|_| b.try_acquire_request().unwrap()).collect();
        assert!(b.try_acquire_request().is_none());
        assert!(b.try_acquire_request().is_none());
        let stats = b.stats();
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.remaining_requests, 0);
        assert_eq!(stats.upstream_rq_pending_overflow, 2);
        assert!(!b.can_acquire(Resource::Requests));
        drop(held);
        assert_eq!(b.stats().requests, 0);
        assert!(b.try_acquire_request().is_some());
    }

    #[test]
    fn each_resource_has_its_own_limit_and_counter() {
        let b = breakers();
        let _c = (
            b.try_acquire_connection().unwrap(),
            b.try_acquire_connection().unwrap(),
        );
        assert!(b.try_acquire_connection().is_none());
        let _p = b.try_acquire_pending_request().unwrap();
        assert!(b.try_acquire_pending_request().is_none());
        let r = b.try_acquire_retry().unwrap();
        assert!(b.try_acquire_retry().is_none());
        assert_eq!(r.resource(), Resource::Retries);
        let s = b.stats();
        assert_eq!(
            (
                s.upstream_cx_overflow,
                s.upstream_rq_pending_overflow,
                s.upstream_rq_retry_overflow
            ),
            (1, 1, 1)
        );
        assert_eq!(s.requests, 0);
        assert_eq!(s.remaining_requests, 3);
    }

    #[test]
    fn grants_are_counted_and_counts_outlive_a_config_change() {
        let b = breakers();
        drop(b.try_acquire_retry());
        drop(b.try_acquire_pending_request());
        let _held = b.try_acquire_pending_request().unwrap();
        assert!(b.try_acquire_pending_request().is_none());
        let s = b.stats();
        assert_eq!((s.upstream_rq_retry, s.upstream_rq_pending_total), (1, 2));
        assert_eq!(s.pending_resource_overflow, 1);
        let next = CircuitBreakers::with_counters(Thresholds::default(), b.counters().clone());
        assert_eq!(
            next.stats().pending_requests,
            0,
            "nothing held by the new config"
        );
        assert_eq!(next.stats().upstream_rq_pending_overflow, 1);
        drop(next.try_acquire_retry());
        assert_eq!(b.stats().upstream_rq_retry, 2);
    }

    #[test]
    fn guards_release_on_drop_from_other_threads() {
        let b = CircuitBreakers::new(Thresholds {
            max_requests: 100,
            ..Thresholds::default()
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter_map(|_| b.try_acquire_request())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let held: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(held.len(), 100);
        assert_eq!(b.stats().upstream_rq_pending_overflow, 100);
        drop(held);
        assert_eq!(b.active(Resource::Requests), 0);
    }

    #[test]
    fn overflow_response_is_503_with_overloaded_header() {
        let r = overflow_response(false);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[OVERLOADED_HEADER], "true");
        assert_eq!(r.body().as_ref(), OVERFLOW_BODY.as_bytes());
        assert!(
            overflow_response(true)
                .headers()
                .get(OVERLOADED_HEADER)
                .is_none()
        );
    }
}
