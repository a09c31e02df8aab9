//! A gRPC echo service (`strait.test.Echo`, HTTP/2 cleartext) for tests through the
//! sidecars, with its client. Written against tonic's codegen-free API, so the tests
//! need no `.proto` file or build step.
//!
//! `Unary` answers the request's text with the backend's name; a non-zero `code` makes it
//! fail with that gRPC status instead (message `failed: <text>`, metadata `x-detail`).
//! `Stream` sends `count` replies, then ends with `code` the same way.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result};
use futures::Stream;
use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use tonic::body::Body;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use super::tcp::ServerThread;
use crate::client::HttpClient;
use crate::netns::Netns;

/// The service's full name, as in the request path.
pub const SERVICE: &str = "strait.test.Echo";
const UNARY_PATH: &str = "/strait.test.Echo/Unary";
const STREAM_PATH: &str = "/strait.test.Echo/Stream";
/// Response header (unary) and trailer (failures) naming the backend.
pub const BACKEND_METADATA: &str = "x-backend";
pub const DETAIL_METADATA: &str = "x-detail";

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub text: String,
    /// Replies a `Stream` call sends before it ends.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// The gRPC status code the call ends with (0: OK).
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub text: String,
    /// `<name>-<version>` of the backend that answered.
    #[prost(string, tag = "2")]
    pub backend: String,
    #[prost(uint32, tag = "3")]
    pub index: u32,
}

#[derive(Clone)]
struct Echo {
    id: Arc<str>,
    calls: Arc<AtomicU64>,
}

impl Echo {
    fn failure(&self, request: &EchoRequest) -> Option<Status> {
        if request.code == 0 {
            return None;
        }
        let mut metadata = MetadataMap::new();
        if let Ok(v) = MetadataValue::try_from(&*self.id) {
            metadata.insert(DETAIL_METADATA, v);
        }
        Some(Status::with_metadata(
            Code::from(request.code),
            format!("failed: {}", request.text),
            metadata,
        ))
    }
}

impl NamedService for Echo {
    const NAME: &'static str = SERVICE;
}

struct UnaryCall(Echo);

impl UnaryService<EchoRequest> for UnaryCall {
    type Response = EchoReply;
    type Future = BoxFuture<'static, Result<Response<EchoReply>, Status>>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let echo = self.0.clone();
        Box::pin(async move {
            let request = request.into_inner();
            if let Some(status) = echo.failure(&request) {
                return Err(status);
            }
            let mut response = Response::new(EchoReply {
                text: request.text,
                backend: echo.id.to_string(),
                index: 0,
            });
            if let Ok(v) = MetadataValue::try_from(&*echo.id) {
                response.metadata_mut().insert(BACKEND_METADATA, v);
            }
            Ok(response)
        })
    }
}

/// The replies of a `Stream` call, then its failure if it asked for one.
struct Replies {
    items: std::vec::IntoIter<Result<EchoReply, Status>>,
}

impl Stream for Replies {
    type Item = Result<EchoReply, Status>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.items.next())
    }
}

struct StreamCall(Echo);

impl ServerStreamingService<EchoRequest> for StreamCall {
    type Response = EchoReply;
    type ResponseStream = Replies;
    type Future = BoxFuture<'static, Result<Response<Replies>, Status>>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let echo = self.0.clone();
        Box::pin(async move {
            let request = request.into_inner();
            let mut items: Vec<Result<EchoReply, Status>> = (0..request.count)
                .map(|index| {
                    Ok(EchoReply {
                        text: request.text.clone(),
                        backend: echo.id.to_string(),
                        index,
                    })
                })
                .collect();
            if let Some(status) = echo.failure(&request) {
                items.push(Err(status));
            }
            Ok(Response::new(Replies {
                items: items.into_iter(),
            }))
        })
    }
}

impl tower::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let echo = self.clone();
        echo.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            let response = match request.uri().path() {
                UNARY_PATH => grpc.unary(UnaryCall(echo), request).await,
                STREAM_PATH => grpc.server_streaming(StreamCall(echo), request).await,
                other => Status::unimplemented(format!("no method {other}")).into_http(),
            };
            Ok(response)
        })
    }
}

/// A running echo server (HTTP/2 cleartext) on `0.0.0.0:<port>` in a namespace.
pub struct GrpcBackend {
    server: ServerThread,
    calls: Arc<AtomicU64>,
}

impl GrpcBackend {
    /// Starts the server in `netns` on `port` (0 picks one), answering as
    /// `<name>-<version>`.
    pub fn start(netns: &Netns, port: u16, name: &str, version: &str) -> Result<Self> {
        let calls = Arc::new(AtomicU64::new(0));
        let echo = Echo {
            id: Arc::from(format!("{name}-{version}")),
            calls: calls.clone(),
        };
        let server = ServerThread::spawn(netns, port, "grpc", move |listener, stop| async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let served = tonic::transport::Server::builder()
                .add_service(echo)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("strait-e2e: gRPC backend: {e}");
            }
        })?;
        Ok(Self { server, calls })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Calls received so far (every attempt counts, retries included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A client of the echo service, connecting from a namespace (through its capture).
#[derive(Clone)]
pub struct GrpcEchoClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl GrpcEchoClient {
    /// One HTTP/2 connection to `addr`, with `:authority` `authority`.
    pub async fn connect(client: &HttpClient, addr: SocketAddr, authority: &str) -> Result<Self> {
        let client = client.clone();
        let connector = tower::service_fn(move |_: http::Uri| {
            let client = client.clone();
            async move {
                client
                    .connect(addr)
                    .await
                    .map(TokioIo::new)
                    .map_err(|e| std::io::Error::other(format!("{e:#}")))
            }
        });
        let channel = Endpoint::from_shared(format!("http://{authority}"))?
            .connect_with_connector(connector)
            .await
            .with_context(|| format!("gRPC connection to {addr} ({authority})"))?;
        Ok(Self {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    /// A `Unary` call, with request metadata `headers`.
    pub async fn unary(
        &mut self,
        request: EchoRequest,
        headers: &[(&'static str, &str)],
    ) -> Result<Response<EchoReply>, Status> {
        let request = with_metadata(request, headers)?;
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        self.grpc
            .unary(
                request,
                PathAndQuery::from_static(UNARY_PATH),
                ProstCodec::default(),
            )
            .await
    }

    /// A `Stream` call: the response (headers, then the message stream).
    pub async fn stream(
        &mut self,
        request: EchoRequest,
    ) -> Result<Response<Streaming<EchoReply>>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        self.grpc
            .server_streaming(
                Request::new(request),
                PathAndQuery::from_static(STREAM_PATH),
                ProstCodec::default(),
            )
            .await
    }
}

fn with_metadata(
    request: EchoRequest,
    headers: &[(&'static str, &str)],
) -> Result<Request<EchoRequest>, Status> {
    let mut request = Request::new(request);
    for (name, value) in headers {
        let value = MetadataValue::try_from(*value)
            .map_err(|e| Status::invalid_argument(format!("metadata {name}: {e}")))?;
        request.metadata_mut().insert(*name, value);
    }
    Ok(request)
}
