//! Downstream HTTP/2 on the `h2` crate directly. Every stream of a connection is served
//! inside the connection's own task, as Envoy serves a connection's streams on one
//! event loop: a stream that finishes its response has its frames encoded, and written
//! out with the connection's other frames, in the same pass. hyper's server would give
//! each stream a task of its own, and each response body another future that pipes it.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use h2::Reason;
use h2::server::{Connection, Handshake, SendResponse};
use http::header::DATE;
use http::{HeaderValue, Request, Response};
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::body::ProxyBody;
use super::h2_body::{H2Body, PipeBody, set_content_length_if_missing, strip_connection_headers};

// hyper's server defaults, kept so that serving on h2 directly changes nothing on the
// wire.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
const STREAM_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_CONCURRENT_STREAMS: u32 = 200;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

enum State<T> {
    Handshaking(Pin<Box<Handshake<T, Bytes>>>),
    Serving(Box<Connection<T, Bytes>>),
    /// Shut down before the handshake completed.
    Closed,
}

/// One downstream HTTP/2 connection and its streams; `service` answers each request.
/// Resolves once the connection has closed and every stream has finished.
pub struct H2Connection<T, S> {
    state: State<T>,
    accepting: bool,
    streams: FuturesUnordered<StreamFuture>,
    service: S,
}

impl<T, S, F> H2Connection<T, S>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: FnMut(Request<H2Body>) -> F + Unpin,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    /// `max_header_list` bounds a request head (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub fn new(io: T, max_header_list: u32, service: S) -> H2Connection<T, S> {
        let handshake = h2::server::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_header_list_size(max_header_list)
            .handshake(io);
        H2Connection {
            state: State::Handshaking(Box::pin(handshake)),
            accepting: true,
            streams: FuturesUnordered::new(),
            service,
        }
    }

    /// Sends GOAWAY: streams already open finish, no new ones are accepted. A connection
    /// still in its handshake just closes.
    pub fn graceful_shutdown(&mut self) {
        match &mut self.state {
            State::Serving(connection) => connection.graceful_shutdown(),
            State::Handshaking(_) => self.state = State::Closed,
            State::Closed => {}
        }
    }

    fn accept(&mut self, request: Request<h2::RecvStream>, reply: SendResponse<Bytes>) {
        let (parts, recv) = request.into_parts();
        let body = H2Body::new(recv, &parts.headers);
        let responding = (self.service)(Request::from_parts(parts, body));
        self.streams.push(Box::pin(serve_stream(responding, reply)));
    }
}

impl<T, S, F> Future for H2Connection<T, S>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: FnMut(Request<H2Body>) -> F + Unpin,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    type Output = Result<(), h2::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let State::Handshaking(handshake) = &mut this.state {
            match ready!(handshake.as_mut().poll(cx)) {
                Ok(connection) => this.state = State::Serving(Box::new(connection)),
                Err(e) => {
                    this.state = State::Closed;
                    return Poll::Ready(Err(e));
                }
            }
        }
        loop {
            let mut accepted = false;
            while this.accepting {
                let State::Serving(connection) = &mut this.state else {
                    this.accepting = false;
                    break;
                };
                // Also reads the socket and encodes what the streams have queued.
                match connection.poll_accept(cx) {
                    Poll::Ready(Some(Ok((request, reply)))) => {
                        this.accept(request, reply);
                        accepted = true;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => this.accepting = false,
                    Poll::Pending => break,
                }
            }
            let mut finished = false;
            while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {
                finished = true;
            }
            if !this.accepting && this.streams.is_empty() {
                return Poll::Ready(Ok(()));
            }
            // A finished stream has queued its last frames: one more turn of the
            // connection encodes them before this pass ends.
            if !(accepted || finished) || !this.accepting {
                return Poll::Pending;
            }
        }
    }
}

/// One stream: the service's response, unless the client resets the stream first (the
/// request is then dropped, which cancels what it had started), then its body.
async fn serve_stream<F>(responding: F, mut reply: SendResponse<Bytes>)
where
    F: Future<Output = Response<ProxyBody>>,
{
    let mut responding = std::pin::pin!(responding);
    let response = poll_fn(|cx| {
        if let Poll::Ready(response) = responding.as_mut().poll(cx) {
            return Poll::Ready(Some(response));
        }
        if reply.poll_reset(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    let Some(response) = response else {
        debug!("downstream reset the stream before its response");
        return;
    };
    let (mut head, body) = response.into_parts();
    strip_connection_headers(&mut head.headers, false);
    head.headers.entry(DATE).or_insert_with(http_date);
    let end = body.is_end_stream();
    if !end && let Some(len) = body.size_hint().exact() {
        set_content_length_if_missing(&mut head.headers, len);
    }
    match reply.send_response(Response::from_parts(head, ()), end) {
        Ok(stream) => {
            if !end {
                PipeBody::new(body, stream, Reason::INTERNAL_ERROR).await;
            }
        }
        Err(e) => {
            debug!(error = %e, "the response head could not be sent");
            reply.send_reset(Reason::INTERNAL_ERROR);
        }
    }
}

/// The `date` header for now, formatted once a second per thread.
fn http_date() -> HeaderValue {
    thread_local! {
        static CACHED: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        match &*cached {
            Some((at, value)) if *at == second => value.clone(),
            _ => {
                let value = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                    .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
                *cached = Some((second, value.clone()));
                value
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body;
    use crate::http::test_support::tcp_pair;
    use http::HeaderMap;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Serves one connection with `service`; returns a real h2 client on it.
    async fn client_for<S, F>(service: S) -> h2::client::SendRequest<Bytes>
    where
        S: FnMut(Request<H2Body>) -> F + Unpin + Send + 'static,
        F: Future<Output = Response<ProxyBody>> + Send + 'static,
    {
        let (client_io, server_io) = tcp_pair().await;
        tokio::spawn(H2Connection::new(server_io, 16 * 1024, service));
        let (send, connection) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(connection);
        send
    }

    #[tokio::test]
    async fn responses_lose_connection_headers_and_gain_date_and_length() {
        let mut send = client_for(|request: Request<H2Body>| async move {
            // The request's body and its length reach the service.
            assert_eq!(request.body().size_hint().exact(), Some(4));
            let got = request.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got, "ping");
            Response::builder()
                .header("connection", "keep-alive, x-hop")
                .header("x-hop", "1")
                .header("transfer-encoding", "chunked")
                .header("te", "trailers")
                .header("x-kept", "yes")
                .body(body::full(Bytes::from_static(b"pong!")))
                .unwrap()
        })
        .await;
        let request = Request::post("http://backend/echo")
            .header("content-length", "4")
            .body(())
            .unwrap();
        let (response, mut stream) = send.send_request(request, false).unwrap();
        stream.send_data(Bytes::from_static(b"ping"), true).unwrap();
        let response = response.await.unwrap();
        let headers = response.headers();
        for gone in ["connection", "x-hop", "transfer-encoding", "te"] {
            assert!(headers.get(gone).is_none(), "{gone} was sent");
        }
        assert_eq!(headers["x-kept"], "yes");
        assert_eq!(headers["content-length"], "5");
        assert!(httpdate::parse_http_date(headers["date"].to_str().unwrap()).is_ok());
        let mut body = response.into_body();
        let chunk = body.data().await.unwrap().unwrap();
        assert_eq!(chunk, "pong!");
    }

    #[tokio::test]
    async fn a_streamed_response_keeps_its_trailers() {
        let mut send = client_for(|_request: Request<H2Body>| async move {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames: Vec<Result<Frame<Bytes>, crate::http::body::BoxError>> = vec![
                Ok(Frame::data(Bytes::from_static(b"one "))),
                Ok(Frame::data(Bytes::from_static(b"two"))),
                Ok(Frame::trailers(trailers)),
            ];
            let stream = tokio_stream::iter(frames);
            Response::new(body::boxed(StreamBody::new(stream)))
        })
        .await;
        let (response, _) = send
            .send_request(Request::get("http://backend/").body(()).unwrap(), true)
            .unwrap();
        let response = response.await.unwrap();
        assert!(response.headers().get("content-length").is_none());
        let mut body = response.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, b"one two");
        assert_eq!(body.trailers().await.unwrap().unwrap()["grpc-status"], "0");
    }

    /// Flags its drop: the request it belongs to was cancelled.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_client_reset_cancels_the_request_in_flight() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let mut send = client_for(move |_request: Request<H2Body>| {
            let guard = DropFlag(flag.clone());
            async move {
                let _guard = guard;
                std::future::pending::<Response<ProxyBody>>().await
            }
        })
        .await;
        let (response, mut stream) = send
            .send_request(Request::get("http://backend/").body(()).unwrap(), false)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!dropped.load(Ordering::SeqCst));
        stream.send_reset(Reason::CANCEL);
        drop(response);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !dropped.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the service's future is dropped after the reset");
    }

    #[tokio::test]
    async fn graceful_shutdown_lets_open_streams_finish() {
        let (client_io, server_io) = tcp_pair().await;
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let release = Arc::new(parking_lot::Mutex::new(Some(release_rx)));
        let mut connection = H2Connection::new(server_io, 16 * 1024, move |_r: Request<H2Body>| {
            let release = release.lock().take();
            async move {
                if let Some(release) = release {
                    let _ = release.await;
                }
                Response::new(body::full(Bytes::from_static(b"done")))
            }
        });
        let (mut send, client_conn) = h2::client::handshake(client_io).await.unwrap();
        let client_done = tokio::spawn(client_conn);
        let (response, _) = send
            .send_request(Request::get("http://backend/").body(()).unwrap(), true)
            .unwrap();
        // Serve until the stream is open, then shut down while it waits.
        let served = tokio::spawn(async move {
            tokio::select! {
                _ = &mut connection => panic!("connection ended early"),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            connection.graceful_shutdown();
            connection.await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        release_tx.send(()).unwrap();
        let response = response.await.unwrap();
        let body = response.into_body().data().await.unwrap().unwrap();
        assert_eq!(body, "done");
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the connection ends once its last stream is done")
            .unwrap()
            .unwrap();
        drop(send);
        let _ = client_done.await;
    }
}
