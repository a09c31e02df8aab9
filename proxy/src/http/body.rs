//! The one body type that flows through the proxy, so requests and responses from
//! either side (hyper's `Incoming`, replayed buffers, local replies) can be mixed.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Body;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends or receives, boxed.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn full(bytes: Bytes) -> ProxyBody {
    if bytes.is_empty() {
        return empty();
    }
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// An error the proxy itself puts into a body (timeouts, replay limits), so the peer's
/// stream is reset instead of ending cleanly.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("stream idle timeout")]
    IdleTimeout,
    #[error("upstream request timeout")]
    RouteTimeout,
    #[error("request body exceeded the retry/shadow buffer")]
    ReplayUnavailable,
    #[error("request body superseded by a later attempt")]
    Superseded,
    #[error("downstream request body failed: {0}")]
    Downstream(String),
}
