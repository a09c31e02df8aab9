//! The backends' WebSocket mode: a request asking to upgrade to `websocket` is answered
//! `101 Switching Protocols` (with `x-backend`, so tests see who answered), and every
//! text or binary message that arrives afterwards is sent back unchanged until the
//! client closes.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::handler::{BACKEND_HEADER, State};

/// True for an HTTP/1.1 request asking to upgrade to WebSocket.
pub(crate) fn is_upgrade(request: &Request<Incoming>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// Accepts the upgrade and echoes messages on the upgraded connection in the background.
pub(crate) async fn accept(
    state: Arc<State>,
    mut request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let Some(key) = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"no sec-websocket-key")));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        // A client that goes away before or during the exchange is normal test traffic.
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        echo(ws).await;
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Ok(id) = HeaderValue::from_str(&state.id()) {
        headers.insert(BACKEND_HEADER, id);
    }
    Ok(response)
}

async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            // tungstenite answers pings and the close handshake itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(_) => break,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
    // Flushes the close reply tungstenite queued.
    let _ = ws.close(None).await;
}
