//! A request body that can be sent more than once: retries and mirrors. As in Envoy, the
//! body streams to the current attempt as it arrives while a copy is kept, up to a limit
//! (the connection's buffer limit, 1 MiB by default); past the limit the copy is dropped
//! and the request can no longer be retried or mirrored, but the attempt in flight keeps
//! streaming.
//!
//! One [`ReplayLog`] holds the downstream body and the copy. Each attempt reads it through
//! a [`primary`](ReplayLog::primary) reader; only the newest primary pulls from the
//! downstream body (an abandoned attempt's reader fails instead of stealing frames).
//! Mirrors read through [`shadow`](ReplayLog::shadow) readers, which only follow the copy
//! and never pull, so a mirror can neither speed up nor starve the real request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};
use parking_lot::Mutex;

use super::body::{BodyError, BoxError, ProxyBody};

/// Envoy's default `per_connection_buffer_limit_bytes`, which bounds the retry/shadow copy.
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
enum Stored {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Stored {
    fn to_frame(&self) -> Frame<Bytes> {
        match self {
            Stored::Data(b) => Frame::data(b.clone()),
            Stored::Trailers(t) => Frame::trailers(t.clone()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SourceState {
    Open,
    Done,
    Failed,
}

struct Log {
    source: Option<ProxyBody>,
    state: SourceState,
    /// Logical index of `frames[0]`: frames before it were dropped on overflow.
    base: usize,
    frames: Vec<Stored>,
    buffered: usize,
    limit: usize,
    overflowed: bool,
    generation: u64,
    shadow_wakers: Vec<Waker>,
}

impl Log {
    fn end(&self) -> usize {
        self.base + self.frames.len()
    }

    fn wake_shadows(&mut self) {
        for w in self.shadow_wakers.drain(..) {
            w.wake();
        }
    }

    fn store(&mut self, frame: &Frame<Bytes>) {
        if self.overflowed {
            self.base += 1;
            return;
        }
        let stored = if let Some(d) = frame.data_ref() {
            self.buffered += d.len();
            Stored::Data(d.clone())
        } else if let Some(t) = frame.trailers_ref() {
            Stored::Trailers(t.clone())
        } else {
            self.base += 1;
            return;
        };
        self.frames.push(stored);
        if self.buffered > self.limit {
            self.overflowed = true;
            self.base += self.frames.len();
            self.frames = Vec::new();
        }
    }

    fn remaining_bytes(&self, pos: usize) -> u64 {
        let skip = pos.saturating_sub(self.base);
        self.frames
            .iter()
            .skip(skip)
            .map(|f| match f {
                Stored::Data(b) => b.len() as u64,
                Stored::Trailers(_) => 0,
            })
            .sum()
    }
}

/// The downstream body of a request that may be retried or mirrored.
#[derive(Clone)]
pub struct ReplayLog {
    log: Arc<Mutex<Log>>,
}

impl ReplayLog {
    pub fn new(source: ProxyBody, limit: usize) -> ReplayLog {
        let done = source.is_end_stream();
        ReplayLog {
            log: Arc::new(Mutex::new(Log {
                source: (!done).then_some(source),
                state: if done {
                    SourceState::Done
                } else {
                    SourceState::Open
                },
                base: 0,
                frames: Vec::new(),
                buffered: 0,
                limit,
                overflowed: false,
                generation: 0,
                shadow_wakers: Vec::new(),
            })),
        }
    }

    /// Whether a new reader could still send the whole body.
    pub fn replayable(&self) -> bool {
        let log = self.log.lock();
        !log.overflowed && log.state != SourceState::Failed
    }

    /// The body is complete and fits the copy.
    pub fn complete(&self) -> bool {
        let log = self.log.lock();
        !log.overflowed && log.state == SourceState::Done
    }

    /// A reader for a new attempt; older attempts' readers stop pulling.
    pub fn primary(&self) -> ReplayBody {
        let mut log = self.log.lock();
        log.generation += 1;
        ReplayBody {
            log: self.log.clone(),
            role: Role::Primary(log.generation),
            pos: 0,
        }
    }

    /// A reader for a mirror.
    pub fn shadow(&self) -> ReplayBody {
        ReplayBody {
            log: self.log.clone(),
            role: Role::Shadow,
            pos: 0,
        }
    }
}

#[derive(Clone, Copy)]
enum Role {
    Primary(u64),
    Shadow,
}

pub struct ReplayBody {
    log: Arc<Mutex<Log>>,
    role: Role,
    pos: usize,
}

fn unavailable() -> BoxError {
    Box::new(BodyError::ReplayUnavailable)
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut log = this.log.lock();
        if let Role::Primary(generation) = this.role
            && generation != log.generation
        {
            return Poll::Ready(Some(Err(Box::new(BodyError::Superseded))));
        }
        if this.pos < log.base {
            return Poll::Ready(Some(Err(unavailable())));
        }
        if this.pos < log.end() {
            let frame = log.frames[this.pos - log.base].to_frame();
            this.pos += 1;
            return Poll::Ready(Some(Ok(frame)));
        }
        match log.state {
            SourceState::Done => return Poll::Ready(None),
            SourceState::Failed => {
                return Poll::Ready(Some(Err(Box::new(BodyError::Downstream(
                    "downstream request body failed".into(),
                )))));
            }
            SourceState::Open => {}
        }
        if let Role::Shadow = this.role {
            log.shadow_wakers.push(cx.waker().clone());
            return Poll::Pending;
        }
        let Some(source) = log.source.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                log.state = SourceState::Done;
                log.source = None;
                log.wake_shadows();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                log.state = SourceState::Failed;
                log.source = None;
                log.wake_shadows();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                log.store(&frame);
                if log.source.as_ref().is_some_and(|s| s.is_end_stream()) {
                    log.state = SourceState::Done;
                    log.source = None;
                }
                this.pos = log.end();
                log.wake_shadows();
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let log = self.log.lock();
        log.state == SourceState::Done && self.pos >= log.end()
    }

    fn size_hint(&self) -> SizeHint {
        let log = self.log.lock();
        match (log.state, &log.source) {
            (SourceState::Done, _) if self.pos >= log.base => {
                SizeHint::with_exact(log.remaining_bytes(self.pos))
            }
            (SourceState::Open, Some(source)) if self.pos == log.end() => source.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(parts: &[&'static str]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        body::boxed(StreamBody::new(tokio_stream::iter(frames)))
    }

    async fn read_all(b: ReplayBody) -> Result<Bytes, BoxError> {
        Ok(b.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn a_retry_replays_what_the_first_attempt_read() {
        let log = ReplayLog::new(chunks(&["ab", "cd", "ef"]), 100);
        let mut first = log.primary();
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "ab");
        // The attempt fails; a new one gets everything, the old reader is cut off.
        let second = log.primary();
        assert!(first.frame().await.unwrap().is_err());
        assert_eq!(read_all(second).await.unwrap(), "abcdef");
        assert!(log.complete());
        assert_eq!(read_all(log.primary()).await.unwrap(), "abcdef");
        assert_eq!(read_all(log.shadow()).await.unwrap(), "abcdef");
    }

    #[tokio::test]
    async fn past_the_limit_the_attempt_streams_on_but_nothing_replays() {
        let log = ReplayLog::new(chunks(&["aaaa", "bbbb", "cccc"]), 6);
        let shadow = log.shadow();
        assert_eq!(read_all(log.primary()).await.unwrap(), "aaaabbbbcccc");
        assert!(!log.replayable());
        assert!(read_all(log.primary()).await.is_err());
        assert!(read_all(shadow).await.is_err());
    }

    #[tokio::test]
    async fn shadows_wait_for_the_primary() {
        let log = ReplayLog::new(chunks(&["x", "y"]), 100);
        let shadow = tokio::spawn(read_all(log.shadow()));
        tokio::task::yield_now().await;
        assert!(!shadow.is_finished());
        assert_eq!(read_all(log.primary()).await.unwrap(), "xy");
        assert_eq!(shadow.await.unwrap().unwrap(), "xy");
    }

    #[tokio::test]
    async fn trailers_are_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"msg"))),
            Ok(Frame::trailers(trailers)),
        ];
        let log = ReplayLog::new(
            body::boxed(StreamBody::new(tokio_stream::iter(frames))),
            100,
        );
        let first = log.primary().collect().await.unwrap();
        assert_eq!(first.trailers().unwrap()["grpc-status"], "0");
        let again = log.primary().collect().await.unwrap();
        assert_eq!(again.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(again.to_bytes(), "msg");
    }
}
