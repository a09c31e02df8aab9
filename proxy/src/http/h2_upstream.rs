//! HTTP/2 to upstream hosts on the `h2` crate directly. The task that forwards a request
//! drives its stream itself; hyper's client connection would add a spawned task, a
//! dispatch channel and two one-shot channels to every request, which on a sidecar is
//! a large share of the CPU an HTTP/2 request costs. Only a request body that is still
//! streaming when the request goes out gets a task of its own, as in hyper.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::RecvStream;
use h2::client::{ResponseFuture, SendRequest};
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Body;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::body::ProxyBody;
use super::coalesce::CoalescingIo;
pub use super::h2_body::H2Body;
use super::h2_body::{PipeBody, set_content_length_if_missing, strip_connection_headers};
use super::reset::AttemptError;

// The windows and limits hyper's client uses, so switching from it changes nothing on
// the wire but the number of tasks.
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const INITIAL_MAX_SEND_STREAMS: usize = 100;

/// A handle on one upstream HTTP/2 connection; clones share it. The connection closes
/// (GOAWAY, once its streams are done) when the last handle is dropped.
#[derive(Clone)]
pub struct H2Sender {
    send: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
    _handles: Arc<oneshot::Sender<()>>,
}

impl H2Sender {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until the connection can open one more stream (the peer's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`); an error when the connection is gone.
    pub async fn ready(&mut self) -> Result<(), h2::Error> {
        std::future::poll_fn(|cx| self.send.poll_ready(cx)).await
    }
}

/// Performs the HTTP/2 handshake on `io`. The returned future is the connection: it
/// must be spawned, and ends when the connection closes.
pub async fn handshake(
    io: TcpStream,
) -> Result<(H2Sender, impl Future<Output = ()> + Send + 'static), h2::Error> {
    let (io, flusher) = CoalescingIo::new(io, None, None);
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await?;
    let connection = flusher.drive(connection);
    let closed = Arc::new(AtomicBool::new(false));
    let (handles, all_dropped) = oneshot::channel::<()>();
    let done = closed.clone();
    let run = async move {
        tokio::pin!(connection);
        // h2 does not wake a parked connection when its last `SendRequest` goes away;
        // the dropped one-shot does, and from then on the connection closes itself once
        // it has no streams.
        tokio::select! {
            _ = &mut connection => {}
            _ = all_dropped => { let _ = connection.await; }
        }
        done.store(true, Ordering::Release);
    };
    Ok((
        H2Sender {
            send,
            closed,
            _handles: Arc::new(handles),
        },
        run,
    ))
}

/// A body with a known length gets a `content-length`, unless it is empty on a method
/// whose request carries no payload.
fn set_content_length(method: &Method, headers: &mut HeaderMap, body: &ProxyBody) {
    let Some(len) = body.size_hint().exact() else {
        return;
    };
    let no_payload = matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    );
    if len != 0 || !no_payload {
        set_content_length_if_missing(headers, len);
    }
}

/// Sends `request` on the connection and waits for its response headers. The request
/// must carry an absolute URI (scheme and authority become the pseudo-headers).
pub async fn send(
    sender: &mut H2Sender,
    request: Request<ProxyBody>,
) -> Result<Response<H2Body>, AttemptError> {
    sender
        .ready()
        .await
        .map_err(|e| AttemptError::from_h2(&e, false))?;
    let (mut parts, body) = request.into_parts();
    strip_connection_headers(&mut parts.headers, true);
    set_content_length(&parts.method, &mut parts.headers, &body);
    let end_of_stream = body.is_end_stream();
    let (response, stream) = sender
        .send
        .send_request(Request::from_parts(parts, ()), end_of_stream)
        .map_err(|e| AttemptError::from_h2(&e, false))?;
    let cancel = if end_of_stream {
        CancelBody(None)
    } else {
        let (cancel, cancelled) = oneshot::channel();
        tokio::spawn(PipeBody::new(body, stream, h2::Reason::CANCEL).cancelled_by(cancelled));
        CancelBody(Some(cancel))
    };
    let response = AwaitResponse {
        response,
        cancel: Some(cancel),
    }
    .await
    .map_err(|e| AttemptError::from_h2(&e, true))?;
    let (parts, recv) = response.into_parts();
    let body = H2Body::new(recv, &parts.headers);
    Ok(Response::from_parts(parts, body))
}

/// Resets a request whose body is still being sent when its response is no longer
/// awaited (a timeout, or the downstream went away) before the response headers came.
struct CancelBody(Option<oneshot::Sender<()>>);

impl CancelBody {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelBody {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            let _ = cancel.send(());
        }
    }
}

struct AwaitResponse {
    response: ResponseFuture,
    cancel: Option<CancelBody>,
}

impl Future for AwaitResponse {
    type Output = Result<Response<RecvStream>, h2::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = ready!(Pin::new(&mut self.response).poll(cx));
        if polled.is_ok()
            && let Some(mut cancel) = self.cancel.take()
        {
            cancel.disarm();
        }
        Poll::Ready(polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::BoxError;
    use http::HeaderValue;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use std::time::Duration;

    /// A real HTTP/2 server on the h2 crate; every accepted request is handed over.
    async fn server() -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<(
            Request<RecvStream>,
            h2::server::SendResponse<Bytes>,
        )>,
        tokio::sync::oneshot::Receiver<()>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(socket).await.unwrap();
            while let Some(Ok(stream)) = conn.accept().await {
                let _ = tx.send(stream);
            }
            let _ = closed_tx.send(());
        });
        (addr, rx, closed_rx)
    }

    async fn connect(addr: std::net::SocketAddr) -> H2Sender {
        let io = TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = handshake(io).await.unwrap();
        tokio::spawn(connection);
        sender
    }

    fn request(body: ProxyBody) -> Request<ProxyBody> {
        Request::builder()
            .method("POST")
            .uri("http://backend:8080/echo")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "1")
            .header("te", "trailers")
            .body(body)
            .unwrap()
    }

    #[tokio::test]
    async fn a_streamed_request_and_its_response_keep_bodies_trailers_and_headers() {
        let (addr, mut accepted, _) = server().await;
        let mut sender = connect(addr).await;
        let (chunks_tx, chunks_rx) =
            tokio::sync::mpsc::unbounded_channel::<Result<Frame<Bytes>, BoxError>>();
        let body = super::super::body::boxed(StreamBody::new(
            tokio_stream::wrappers::UnboundedReceiverStream::new(chunks_rx),
        ));
        let client = tokio::spawn(async move { send(&mut sender, request(body)).await });

        let (req, mut respond) = accepted.recv().await.unwrap();
        assert_eq!(req.uri(), "http://backend:8080/echo");
        // Connection-specific headers are gone; `te: trailers` may stay.
        assert!(req.headers().get("connection").is_none());
        assert!(req.headers().get("x-hop").is_none());
        assert_eq!(req.headers()["te"], "trailers");
        // The request went out before its body was complete.
        chunks_tx
            .send(Ok(Frame::data(Bytes::from("hello "))))
            .unwrap();
        chunks_tx
            .send(Ok(Frame::data(Bytes::from("world"))))
            .unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        chunks_tx.send(Ok(Frame::trailers(trailers))).unwrap();
        drop(chunks_tx);
        let mut recv = req.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.unwrap();
            let _ = recv.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, b"hello world");
        assert_eq!(recv.trailers().await.unwrap().unwrap()["grpc-status"], "0");

        let response = Response::builder()
            .status(200)
            .header("content-length", "5")
            .body(())
            .unwrap();
        let mut stream = respond.send_response(response, false).unwrap();
        stream.send_data(Bytes::from("reply"), true).unwrap();

        let response = client.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body().size_hint().exact(), Some(5));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "reply");
    }

    #[tokio::test]
    async fn giving_up_before_the_response_resets_a_stream_still_sending() {
        let (addr, mut accepted, _) = server().await;
        let mut sender = connect(addr).await;
        let (_chunks_tx, chunks_rx) =
            tokio::sync::mpsc::unbounded_channel::<Result<Frame<Bytes>, BoxError>>();
        let body = super::super::body::boxed(StreamBody::new(
            tokio_stream::wrappers::UnboundedReceiverStream::new(chunks_rx),
        ));
        let waiting = tokio::spawn(async move { send(&mut sender, request(body)).await });
        let (req, _respond) = accepted.recv().await.unwrap();
        // A route timeout, say: the attempt is dropped while its body is open.
        waiting.abort();
        let mut recv = req.into_body();
        let ended = tokio::time::timeout(Duration::from_secs(5), recv.data())
            .await
            .expect("the server hears of the cancelled stream");
        let err = ended.unwrap().unwrap_err();
        assert_eq!(err.reason(), Some(h2::Reason::CANCEL));
    }

    #[tokio::test]
    async fn a_refused_stream_is_retriable_and_the_connection_closes_with_its_last_handle() {
        let (addr, mut accepted, closed) = server().await;
        let mut sender = connect(addr).await;
        let probe = sender.clone();
        let client = tokio::spawn(async move {
            let result = send(&mut sender, request(super::super::body::empty())).await;
            (result.map(|_| ()), sender)
        });
        let (_req, mut respond) = accepted.recv().await.unwrap();
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        let (result, sender) = client.await.unwrap();
        let err = result.unwrap_err();
        assert_eq!(
            err.reason,
            super::super::reset::ResetReason::RemoteRefusedStreamReset
        );
        assert_eq!(err.kind, crate::router::ResetKind::RefusedStream);
        assert!(!probe.is_closed());

        drop((sender, probe));
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .expect("the connection closes once no handle is left")
            .unwrap();
    }
}
