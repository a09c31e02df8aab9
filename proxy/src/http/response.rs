//! The downstream end of a request: [`Completion`] collects what access logs need and
//! reports it when dropped; [`ResponseBody`] carries the response to the client, counts
//! its bytes, keeps the stream idle and route timeouts running while the body streams,
//! and owns the completion so the report goes out once the last byte is sent (or the
//! stream dies).

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::body::{BodyError, BoxError, ProxyBody};
use super::observer::{RequestInfo, RequestObserver, ResponseFlag};
use super::progress::Progress;
use super::server::StreamTicket;

/// Everything known about a request so far; reported to the observer on drop.
pub struct Completion {
    info: RequestInfo,
    start: Instant,
    observer: Option<Arc<dyn RequestObserver>>,
    progress: Option<Arc<Progress>>,
    /// The connection's count of active streams, held until the request is done.
    stream: Option<StreamTicket>,
    /// Held until the request is done (fault gauges, ...).
    guards: Vec<Box<dyn Any + Send>>,
    finished: bool,
}

impl Completion {
    pub fn new(
        info: RequestInfo,
        start: Instant,
        observer: Option<Arc<dyn RequestObserver>>,
    ) -> Completion {
        Completion {
            info,
            start,
            observer,
            progress: None,
            stream: None,
            guards: Vec::new(),
            finished: false,
        }
    }

    pub fn info(&self) -> &RequestInfo {
        &self.info
    }

    pub fn info_mut(&mut self) -> &mut RequestInfo {
        &mut self.info
    }

    pub fn flag(&mut self, flag: ResponseFlag) {
        self.info.response_flags.insert(flag);
    }

    pub fn set_progress(&mut self, progress: Arc<Progress>) {
        self.progress = Some(progress);
    }

    /// Counts the request as one of its connection's active streams until it is done.
    pub fn hold_stream(&mut self, ticket: StreamTicket) {
        self.stream = Some(ticket);
    }

    pub fn hold(&mut self, guard: impl Any + Send) {
        self.guards.push(Box::new(guard));
    }

    /// The response head is going downstream.
    pub fn response_started<B>(&mut self, response: &Response<B>) {
        self.info.status = Some(response.status().as_u16());
        self.info.response_duration = Some(self.start.elapsed());
        if self.observer.as_ref().is_some_and(|o| o.wants_headers()) {
            self.info.response_headers = response.headers().clone();
        }
        if let Some(g) = grpc_status(response.headers()) {
            self.info.grpc_status = Some(g);
        }
    }

    /// The response went out completely.
    pub fn mark_finished(&mut self) {
        self.finished = true;
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.info.duration = self.start.elapsed();
        if let Some(progress) = &self.progress {
            self.info.bytes_received += progress.bytes_received();
            self.info.request_duration = progress.ended_at().map(|at| at - self.start);
        }
        if !self.finished && self.info.response_flags.is_empty() {
            // Nothing of ours ended the stream early: the client went away.
            self.info
                .response_flags
                .insert(ResponseFlag::DownstreamConnectionTermination);
        }
        if let Some(observer) = &self.observer {
            observer.on_request_done(&self.info);
        }
    }
}

/// Timers that keep running while the response body streams.
#[derive(Clone, Copy, Debug, Default)]
pub struct BodyTimers {
    /// The stream idle timeout (route `idle_timeout`, else the HCM's).
    pub idle: Option<Duration>,
    /// The route timeout's deadline, when it is already known.
    pub deadline: Option<Instant>,
}

pub struct ResponseBody {
    inner: ProxyBody,
    completion: Completion,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    deadline: Option<Pin<Box<Sleep>>>,
    done: bool,
}

/// Wrap a response for the client: records its head in `completion` and hands the
/// completion to the body.
pub fn finish(
    response: Response<ProxyBody>,
    mut completion: Completion,
    timers: BodyTimers,
) -> Response<ProxyBody> {
    completion.response_started(&response);
    let (parts, inner) = response.into_parts();
    let done = inner.is_end_stream();
    if done {
        completion.mark_finished();
    }
    let body = ResponseBody {
        inner,
        completion,
        idle: timers.idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
        deadline: timers
            .deadline
            .map(|at| Box::pin(tokio::time::sleep_until(at))),
        done,
    };
    Response::from_parts(parts, super::body::boxed(body))
}

impl ResponseBody {
    fn fail(
        &mut self,
        flag: ResponseFlag,
        error: BodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        self.completion.flag(flag);
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.completion.info.bytes_sent += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let Some(g) = grpc_status(trailers) {
                        this.completion.info.grpc_status = Some(g);
                    }
                    this.completion.info.response_trailers = trailers.clone();
                }
                if let Some((d, sleep)) = &mut this.idle {
                    sleep.as_mut().reset(Instant::now() + *d);
                }
                if this.inner.is_end_stream() {
                    this.done = true;
                    this.completion.mark_finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.completion.mark_finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                if this.completion.info.response_flags.is_empty() {
                    this.completion
                        .flag(ResponseFlag::UpstreamConnectionTermination);
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                if let Some(deadline) = &mut this.deadline
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    return this.fail(
                        ResponseFlag::UpstreamRequestTimeout,
                        BodyError::RouteTimeout,
                    );
                }
                if let Some((_, sleep)) = &mut this.idle
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    return this.fail(ResponseFlag::StreamIdleTimeout, BodyError::IdleTimeout);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
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
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<RequestInfo>>);

    impl RequestObserver for Record {
        fn on_request_done(&self, info: &RequestInfo) {
            self.0.lock().push(info.clone());
        }
    }

    fn info() -> RequestInfo {
        RequestInfo::new(
            http::Method::GET,
            http::uri::PathAndQuery::from_static("/"),
            http::Version::HTTP_11,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
    }

    #[tokio::test]
    async fn the_report_goes_out_when_the_body_is_done() {
        let record = Arc::new(Record::default());
        let c = Completion::new(info(), Instant::now(), Some(record.clone()));
        let resp = Response::new(body::full(Bytes::from_static(b"hello")));
        let resp = finish(resp, c, BodyTimers::default());
        assert!(record.0.lock().is_empty());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        let done = record.0.lock();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].status, Some(200));
        assert_eq!(done[0].bytes_sent, 5);
        assert!(done[0].response_flags.is_empty());
    }

    #[tokio::test]
    async fn an_abandoned_stream_is_a_downstream_termination() {
        let record = Arc::new(Record::default());
        drop(Completion::new(
            info(),
            Instant::now(),
            Some(record.clone()),
        ));
        assert_eq!(record.0.lock()[0].response_flags.to_string(), "DC");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_hits_the_idle_timeout() {
        let record = Arc::new(Record::default());
        let c = Completion::new(info(), Instant::now(), Some(record.clone()));
        let stalled = body::boxed(http_body_util::StreamBody::new(futures_pending()));
        let resp = finish(
            Response::new(stalled),
            c,
            BodyTimers {
                idle: Some(Duration::from_secs(1)),
                deadline: None,
            },
        );
        assert!(resp.into_body().collect().await.is_err());
        assert_eq!(record.0.lock()[0].response_flags.to_string(), "SI");
    }

    fn futures_pending() -> impl tokio_stream::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send
    {
        tokio_stream::pending()
    }
}
