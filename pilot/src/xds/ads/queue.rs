//! The push queue (Istio's `PushQueue`): connections waiting for a push, in FIFO order,
//! each at most once. A connection enqueued again while it waits has the requests
//! merged; one enqueued while its push is being processed is queued again when that
//! push is done, so it never runs two pushes at once and never misses one.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::push::request::PushRequest;

/// A request taken off the queue.
#[derive(Debug)]
pub struct Dequeued<K> {
    pub key: K,
    pub req: PushRequest,
    /// When the connection was first enqueued for this (merged) request.
    pub enqueued: Instant,
}

#[derive(Debug)]
struct Queued {
    req: PushRequest,
    enqueued: Instant,
}

impl Queued {
    fn merge(self, req: PushRequest) -> Queued {
        Queued {
            req: self.req.merge(req),
            enqueued: self.enqueued,
        }
    }
}

#[derive(Debug)]
struct Inner<K> {
    order: VecDeque<K>,
    pending: HashMap<K, Queued>,
    /// Dequeued and not yet marked done; `Some` holds a request that arrived meanwhile.
    processing: HashMap<K, Option<Queued>>,
    closed: bool,
}

#[derive(Debug)]
pub struct PushQueue<K> {
    inner: Mutex<Inner<K>>,
    ready: Notify,
}

impl<K: Clone + Eq + Hash> Default for PushQueue<K> {
    fn default() -> Self {
        PushQueue::new()
    }
}

impl<K: Clone + Eq + Hash> PushQueue<K> {
    pub fn new() -> PushQueue<K> {
        PushQueue {
            inner: Mutex::new(Inner {
                order: VecDeque::new(),
                pending: HashMap::new(),
                processing: HashMap::new(),
                closed: false,
            }),
            ready: Notify::new(),
        }
    }

    pub fn enqueue(&self, key: K, req: PushRequest) {
        let mut inner = self.inner.lock();
        if inner.closed {
            return;
        }
        if let Some(slot) = inner.processing.get_mut(&key) {
            *slot = Some(match slot.take() {
                Some(queued) => queued.merge(req),
                None => Queued {
                    req,
                    enqueued: Instant::now(),
                },
            });
            return;
        }
        if let Some(queued) = inner.pending.remove(&key) {
            inner.pending.insert(key, queued.merge(req));
            return;
        }
        inner.pending.insert(
            key.clone(),
            Queued {
                req,
                enqueued: Instant::now(),
            },
        );
        inner.order.push_back(key);
        drop(inner);
        self.ready.notify_one();
    }

    /// Waits for the next connection to push to; `None` once the queue is closed.
    pub async fn dequeue(&self) -> Option<Dequeued<K>> {
        loop {
            let ready = self.ready.notified();
            {
                let mut inner = self.inner.lock();
                if inner.closed {
                    return None;
                }
                while let Some(key) = inner.order.pop_front() {
                    if let Some(Queued { req, enqueued }) = inner.pending.remove(&key) {
                        inner.processing.insert(key.clone(), None);
                        return Some(Dequeued { key, req, enqueued });
                    }
                }
            }
            ready.await;
        }
    }

    /// The push for `key` finished: a request that arrived meanwhile is queued now.
    pub fn mark_done(&self, key: &K) {
        let mut inner = self.inner.lock();
        let Some(Some(queued)) = inner.processing.remove(key) else {
            return;
        };
        if inner.closed {
            return;
        }
        inner.pending.insert(key.clone(), queued);
        inner.order.push_back(key.clone());
        drop(inner);
        self.ready.notify_one();
    }

    /// Forgets a connection that went away.
    pub fn remove(&self, key: &K) {
        let mut inner = self.inner.lock();
        inner.pending.remove(key);
        inner.processing.remove(key);
        inner.order.retain(|k| k != key);
    }

    /// Stops the queue: `dequeue` returns `None` from now on.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.ready.notify_waiters();
        self.ready.notify_one();
    }

    /// Connections waiting (not counting those being processed).
    pub fn pending(&self) -> usize {
        self.inner.lock().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::push::request::TriggerReason;

    fn full() -> PushRequest {
        PushRequest::full(TriggerReason::Config, [])
    }

    fn eds(host: &str) -> PushRequest {
        PushRequest::endpoints([("default".to_string(), host.to_string())])
    }

    async fn next(q: &PushQueue<&'static str>) -> Dequeued<&'static str> {
        tokio::time::timeout(Duration::from_secs(1), q.dequeue())
            .await
            .expect("dequeue timed out")
            .expect("queue closed")
    }

    #[tokio::test]
    async fn fifo_order() {
        let q = PushQueue::new();
        q.enqueue("a", full());
        q.enqueue("b", full());
        q.enqueue("c", full());
        assert_eq!(next(&q).await.key, "a");
        assert_eq!(next(&q).await.key, "b");
        assert_eq!(next(&q).await.key, "c");
    }

    #[tokio::test]
    async fn pending_requests_merge_in_place() {
        let q = PushQueue::new();
        q.enqueue("a", eds("x.default.svc.cluster.local"));
        q.enqueue("b", full());
        q.enqueue("a", eds("y.default.svc.cluster.local"));
        assert_eq!(q.pending(), 2);
        let a = next(&q).await;
        assert_eq!(a.key, "a", "a keeps its place in line");
        assert!(!a.req.full);
        assert_eq!(a.req.updated_endpoint_hosts().count(), 2);
        q.enqueue("a", full());
        assert_eq!(next(&q).await.key, "b");
    }

    #[tokio::test]
    async fn enqueue_while_processing_is_requeued_when_done() {
        let q = PushQueue::new();
        q.enqueue("a", eds("x.default.svc.cluster.local"));
        let first = next(&q).await;
        assert!(!first.req.full);
        q.enqueue("a", full());
        q.enqueue("a", eds("z.default.svc.cluster.local"));
        assert_eq!(q.pending(), 0, "not queued twice while processing");
        let waiting = tokio::time::timeout(Duration::from_millis(50), q.dequeue()).await;
        assert!(
            waiting.is_err(),
            "nothing to dequeue until the push is done"
        );
        q.mark_done(&"a");
        let second = next(&q).await;
        assert_eq!(second.key, "a");
        assert!(second.req.full, "merged requests while processing");
        assert_eq!(second.req.updated_endpoint_hosts().count(), 1);
        q.mark_done(&"a");
        assert_eq!(q.pending(), 0);
    }

    #[tokio::test]
    async fn removed_connections_are_skipped() {
        let q = PushQueue::new();
        q.enqueue("a", full());
        q.enqueue("b", full());
        q.remove(&"a");
        assert_eq!(next(&q).await.key, "b");
    }

    #[tokio::test]
    async fn dequeue_waits_for_enqueue_and_close_ends_it() {
        let q = Arc::new(PushQueue::new());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.dequeue().await.map(|d| d.key) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.enqueue("a", full());
        assert_eq!(waiter.await.unwrap(), Some("a"));

        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.dequeue().await.map(|d| d.key) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.close();
        assert_eq!(waiter.await.unwrap(), None);
        q.enqueue("b", full());
        assert!(q.dequeue().await.is_none());
    }
}
