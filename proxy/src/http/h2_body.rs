//! Bodies on the `h2` crate's streams, for both sides of the proxy: [`H2Body`] reads
//! one (a downstream request, an upstream response) and [`PipeBody`] writes one (an
//! upstream request, a downstream response) as the peer's flow control allows.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, TE};
use http::{HeaderMap, HeaderValue};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use super::body::{BoxError, ProxyBody};

/// Headers that only mean something to one HTTP/1 connection; h2 refuses to send them.
const CONNECTION_SPECIFIC: [HeaderName; 4] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Removes what HTTP/2 forbids in a message head: the connection-specific headers, the
/// ones `connection` lists, and `te` (except `te: trailers` on a request).
pub fn strip_connection_headers(headers: &mut HeaderMap, request: bool) {
    for name in &CONNECTION_SPECIFIC {
        headers.remove(name);
    }
    if headers
        .get(TE)
        .is_some_and(|te| !request || te != "trailers")
    {
        headers.remove(TE);
    }
    if let Some(listed) = headers.remove(CONNECTION)
        && let Ok(listed) = listed.to_str()
    {
        for name in listed.split(',') {
            headers.remove(name.trim());
        }
    }
}

/// Sets `content-length` to `len` unless the head already has one.
pub fn set_content_length_if_missing(headers: &mut HeaderMap, len: u64) {
    if !headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// A body arriving on an HTTP/2 stream: data as it comes (its flow-control window is
/// given back at once, as hyper does), then the trailers.
pub struct H2Body {
    recv: RecvStream,
    data_done: bool,
    remaining: Option<u64>,
}

impl H2Body {
    /// `headers` is the message's head; its `content-length` gives the size hint.
    pub fn new(recv: RecvStream, headers: &HeaderMap) -> H2Body {
        let remaining = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        H2Body {
            recv,
            data_done: false,
            remaining,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(r) = &mut this.remaining {
                        *r = r.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None if self.recv.is_end_stream() => SizeHint::with_exact(0),
            None => SizeHint::default(),
        }
    }
}

/// Writes a body into an HTTP/2 stream whose head has gone out, as the peer's flow
/// control allows; ends when the body has, or when the stream is reset.
pub struct PipeBody {
    body: ProxyBody,
    stream: SendStream<Bytes>,
    /// Fires when the stream must be reset with CANCEL (nobody awaits its response).
    cancelled: Option<oneshot::Receiver<()>>,
    /// The reset sent when the body itself fails, so the peer never takes a truncated
    /// body for a whole one.
    on_body_error: Reason,
    /// A chunk taken from the body that waits for window.
    waiting: Option<(Bytes, bool)>,
}

impl PipeBody {
    pub fn new(body: ProxyBody, stream: SendStream<Bytes>, on_body_error: Reason) -> PipeBody {
        PipeBody {
            body,
            stream,
            cancelled: None,
            on_body_error,
            waiting: None,
        }
    }

    /// Resets the stream with CANCEL when `cancelled` fires; a dropped sender disarms it.
    pub fn cancelled_by(mut self, cancelled: oneshot::Receiver<()>) -> PipeBody {
        self.cancelled = Some(cancelled);
        self
    }
}

impl Future for PipeBody {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Some(cancelled) = &mut this.cancelled {
            match Pin::new(cancelled).poll(cx) {
                Poll::Ready(Ok(())) => {
                    this.stream.send_reset(Reason::CANCEL);
                    return Poll::Ready(());
                }
                // Disarmed: the response arrived, and the body goes on (a gRPC stream).
                Poll::Ready(Err(_)) => this.cancelled = None,
                Poll::Pending => {}
            }
        }
        loop {
            // The peer reset the stream or the connection failed: nobody reads the rest.
            if this.stream.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            if let Some((data, end)) = this.waiting.take() {
                while this.stream.capacity() == 0 {
                    match this.stream.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(None | Some(Err(_))) => return Poll::Ready(()),
                        Poll::Pending => {
                            this.waiting = Some((data, end));
                            return Poll::Pending;
                        }
                    }
                }
                if this.stream.send_data(data, end).is_err() || end {
                    return Poll::Ready(());
                }
                continue;
            }
            // The next frame comes before any window is claimed: window held for a body
            // with nothing to send could starve the connection's other streams.
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                None => {
                    let _ = this.stream.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
                Some(Err(_)) => {
                    this.stream.send_reset(this.on_body_error);
                    return Poll::Ready(());
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = this.body.is_end_stream();
                        if data.is_empty() {
                            if this.stream.send_data(data, end).is_err() || end {
                                return Poll::Ready(());
                            }
                            continue;
                        }
                        // A claim of one byte: h2 raises it to the chunk's length when the
                        // chunk is sent, and buffers what the window does not yet allow.
                        this.stream.reserve_capacity(1);
                        this.waiting = Some((data, end));
                    }
                    Err(frame) => {
                        this.stream.reserve_capacity(0);
                        if let Ok(trailers) = frame.into_trailers() {
                            let _ = this.stream.send_trailers(trailers);
                        } else {
                            let _ = this.stream.send_data(Bytes::new(), true);
                        }
                        return Poll::Ready(());
                    }
                },
            }
        }
    }
}
