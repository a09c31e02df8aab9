//! How far the downstream request has come: when its body ended (the route and per-try
//! timeouts start there, as in Envoy), when it last moved (stream idle timeout), and how
//! many body bytes arrived (access logs).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::body::{BoxError, ProxyBody};

#[derive(Debug)]
pub struct Progress {
    start: Instant,
    ended: AtomicBool,
    ended_at: Mutex<Option<Instant>>,
    /// Milliseconds after `start` of the last request activity.
    last_activity_ms: AtomicU64,
    bytes: AtomicU64,
    /// The body failed (downstream reset or idle timeout).
    failed: AtomicBool,
    notify: Notify,
}

impl Progress {
    pub fn new(start: Instant) -> Arc<Progress> {
        Arc::new(Progress {
            start,
            ended: AtomicBool::new(false),
            ended_at: Mutex::new(None),
            last_activity_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub fn ended_at(&self) -> Option<Instant> {
        *self.ended_at.lock()
    }

    pub fn bytes_received(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn mark_ended(&self) {
        let now = Instant::now();
        let mut at = self.ended_at.lock();
        if at.is_none() {
            *at = Some(now);
        }
        drop(at);
        self.ended.store(true, Ordering::Release);
        self.touch_at(now);
        self.notify.notify_waiters();
    }

    fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    pub fn touch(&self) {
        self.touch_at(Instant::now());
    }

    fn touch_at(&self, now: Instant) {
        let ms = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX);
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    pub fn last_activity(&self) -> Instant {
        self.start + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }

    /// Resolves once the request body has ended.
    pub async fn wait_end(&self) -> Instant {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = self.ended_at() {
                return at;
            }
            notified.await;
        }
    }

    /// Resolves when `timeout` has passed since the request ended (never when `None`).
    pub async fn after_end(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        let end = self.wait_end().await;
        tokio::time::sleep_until(end + timeout).await;
    }

    /// Resolves when `timeout` passed since the later of `from` and the request's end.
    pub async fn after_end_or(&self, from: Instant, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        let end = self.wait_end().await;
        tokio::time::sleep_until(end.max(from) + timeout).await;
    }

    /// Resolves when nothing happened on the request for `idle` (never when `None`).
    pub async fn idle(&self, idle: Option<Duration>) {
        let Some(idle) = idle else {
            return std::future::pending().await;
        };
        loop {
            let deadline = self.last_activity() + idle;
            tokio::time::sleep_until(deadline).await;
            if self.last_activity() + idle <= Instant::now() {
                return;
            }
        }
    }

    /// Resolves when the request is still incomplete `timeout` after it started (the
    /// HCM's `request_timeout`; never when `None`).
    pub async fn request_timeout(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(self.start + timeout).await;
        if self.is_ended() {
            std::future::pending::<()>().await;
        }
    }
}

/// The downstream request body, reporting into [`Progress`].
pub struct TrackedBody<B = ProxyBody> {
    inner: B,
    progress: Arc<Progress>,
}

impl<B: Body> TrackedBody<B> {
    pub fn new(inner: B, progress: Arc<Progress>) -> TrackedBody<B> {
        if inner.is_end_stream() {
            progress.mark_ended();
        }
        TrackedBody { inner, progress }
    }
}

impl<B> Body for TrackedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|result| result.map_err(Into::into)));
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.progress
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                self.progress.touch();
                if frame.is_trailers() || self.inner.is_end_stream() {
                    self.progress.mark_ended();
                }
            }
            Poll::Ready(None) => self.progress.mark_ended(),
            Poll::Ready(Some(Err(_))) => self.progress.mark_failed(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn end_and_bytes_are_recorded() {
        let progress = Progress::new(Instant::now());
        let b = TrackedBody::new(body::full(Bytes::from_static(b"hello")), progress.clone());
        assert!(!progress.is_ended());
        let collected = b.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello");
        assert!(progress.is_ended());
        assert_eq!(progress.bytes_received(), 5);

        let empty = Progress::new(Instant::now());
        let _b = TrackedBody::new(body::empty(), empty.clone());
        assert!(empty.is_ended(), "a bodyless request has ended at once");
    }

    #[tokio::test(start_paused = true)]
    async fn timers_start_at_the_end_of_the_request() {
        let start = Instant::now();
        let progress = Progress::new(start);
        let p = progress.clone();
        let timer = tokio::spawn(async move {
            p.after_end(Some(Duration::from_secs(1))).await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        progress.mark_ended();
        let fired = timer.await.unwrap();
        assert_eq!(fired - start, Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_is_pushed_back_by_activity() {
        let start = Instant::now();
        let progress = Progress::new(start);
        let p = progress.clone();
        let timer = tokio::spawn(async move {
            p.idle(Some(Duration::from_secs(2))).await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress.touch();
        assert_eq!(timer.await.unwrap() - start, Duration::from_secs(3));
    }
}
