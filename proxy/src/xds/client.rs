//! The I/O around [`AdsState`]: connect, run one ADS stream until it fails, reconnect
//! with backoff, forever. The handler and the protocol state outlive streams, so the
//! last good config keeps serving while the control plane is away.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strait_proto::envoy::config::core::v3::Node;
use strait_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use strait_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};
use tracing::{Instrument, info, info_span, warn};

use super::backoff::Backoff;
use super::handler::XdsHandler;
use super::state::AdsState;
use super::stats::XdsStats;

/// Which ADS flavour to speak: the bootstrap's `ads_config.api_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiType {
    /// `GRPC`: state of the world.
    Grpc,
    /// `DELTA_GRPC`: incremental.
    DeltaGrpc,
}

impl ApiType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiType::Grpc => "GRPC",
            ApiType::DeltaGrpc => "DELTA_GRPC",
        }
    }
}

#[derive(Clone, Debug)]
pub struct XdsConfig {
    /// The ADS server: `host:port`, or a URI such as `http://host:port`.
    pub address: String,
    pub api: ApiType,
    /// Sent on the first request of every stream.
    pub node: Node,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
}

impl XdsConfig {
    /// Defaults: reconnects back off from 100 ms up to 15 s; connects time out after 1 s
    /// (Istio's `xds-grpc` cluster).
    pub fn new(address: impl Into<String>, api: ApiType, node: Node) -> XdsConfig {
        XdsConfig {
            address: address.into(),
            api,
            node,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(1),
        }
    }

    fn endpoint(&self) -> Result<Endpoint, XdsClientError> {
        let uri = if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("http://{}", self.address)
        };
        let endpoint =
            Endpoint::from_shared(uri).map_err(|source| XdsClientError::InvalidAddress {
                address: self.address.clone(),
                source,
            })?;
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XdsClientError {
    #[error("invalid ADS server address {address:?}: {source}")]
    InvalidAddress {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("the xDS client must be started on a tokio runtime")]
    NoRuntime,
}

/// A running client. Dropping it leaves the client running; [`XdsClient::abort`] stops it.
#[derive(Debug)]
pub struct XdsClient {
    ready: watch::Receiver<bool>,
    stats: Arc<XdsStats>,
    task: JoinHandle<()>,
}

impl XdsClient {
    /// Starts the client on the current tokio runtime.
    pub fn spawn<H: XdsHandler>(
        config: XdsConfig,
        handler: H,
    ) -> Result<XdsClient, XdsClientError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| XdsClientError::NoRuntime)?;
        XdsClient::spawn_on(&runtime, config, handler)
    }

    /// Starts the client on `runtime` (e.g. the control-plane runtime, apart from the
    /// data-plane workers).
    pub fn spawn_on<H: XdsHandler>(
        runtime: &tokio::runtime::Handle,
        config: XdsConfig,
        handler: H,
    ) -> Result<XdsClient, XdsClientError> {
        let endpoint = config.endpoint()?;
        let stats = Arc::new(XdsStats::default());
        let (ready_tx, ready) = watch::channel(false);
        let worker = Worker {
            endpoint,
            api: config.api,
            backoff: Backoff::new(config.backoff_base, config.backoff_max),
            state: AdsState::new(config.node, stats.clone()),
            handler,
            ready: ready_tx,
            stats: stats.clone(),
        };
        let task = runtime.spawn(worker.run());
        Ok(XdsClient { ready, stats, task })
    }

    /// Flips to `true` once, when the initial config is applied (see `readiness`).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the initial config is applied.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        // The sender lives as long as the task; if it is gone the client was stopped.
        let _ = ready.wait_for(|r| *r).await;
    }

    pub fn stats(&self) -> Arc<XdsStats> {
        self.stats.clone()
    }

    /// Stops the client; the handler (and the config it applied) is dropped with it.
    pub fn abort(&self) {
        self.task.abort();
    }
}

type AdsClient = AggregatedDiscoveryServiceClient<Channel>;

/// The two ADS flavours, as the stream loop sees them.
trait Protocol {
    type Request: Send + 'static;
    type Response: Send + 'static;

    fn initial(state: &mut AdsState) -> Vec<Self::Request>;

    fn on_response(
        state: &mut AdsState,
        resp: Self::Response,
        handler: &mut dyn XdsHandler,
    ) -> Vec<Self::Request>;

    fn open(
        client: &mut AdsClient,
        requests: UnboundedReceiverStream<Self::Request>,
    ) -> impl Future<Output = Result<Streaming<Self::Response>, Status>> + Send + '_;
}

struct Sotw;

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn initial(state: &mut AdsState) -> Vec<DiscoveryRequest> {
        state.initial_sotw_requests()
    }

    fn on_response(
        state: &mut AdsState,
        resp: DiscoveryResponse,
        handler: &mut dyn XdsHandler,
    ) -> Vec<DiscoveryRequest> {
        state.on_sotw_response(resp, handler)
    }

    async fn open(
        client: &mut AdsClient,
        requests: UnboundedReceiverStream<DiscoveryRequest>,
    ) -> Result<Streaming<DiscoveryResponse>, Status> {
        client
            .stream_aggregated_resources(requests)
            .await
            .map(tonic::Response::into_inner)
    }
}

struct Delta;

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn initial(state: &mut AdsState) -> Vec<DeltaDiscoveryRequest> {
        state.initial_delta_requests()
    }

    fn on_response(
        state: &mut AdsState,
        resp: DeltaDiscoveryResponse,
        handler: &mut dyn XdsHandler,
    ) -> Vec<DeltaDiscoveryRequest> {
        state.on_delta_response(resp, handler)
    }

    async fn open(
        client: &mut AdsClient,
        requests: UnboundedReceiverStream<DeltaDiscoveryRequest>,
    ) -> Result<Streaming<DeltaDiscoveryResponse>, Status> {
        client
            .delta_aggregated_resources(requests)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Why a stream ended.
enum StreamEnd {
    Connect(tonic::transport::Error),
    Open(Status),
    Failed(Status),
    /// The server ended the stream cleanly (e.g. a max connection age).
    Closed,
}

impl fmt::Display for StreamEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamEnd::Connect(e) => write!(f, "connect failed: {e}"),
            StreamEnd::Open(s) => write!(f, "stream refused: {} {}", s.code(), s.message()),
            StreamEnd::Failed(s) => write!(f, "stream failed: {} {}", s.code(), s.message()),
            StreamEnd::Closed => write!(f, "stream closed by the server"),
        }
    }
}

struct Worker<H> {
    endpoint: Endpoint,
    api: ApiType,
    backoff: Backoff,
    state: AdsState,
    handler: H,
    ready: watch::Sender<bool>,
    stats: Arc<XdsStats>,
}

impl<H: XdsHandler> Worker<H> {
    async fn run(mut self) {
        let mut stream_id: u64 = 0;
        loop {
            stream_id += 1;
            let span = info_span!("xds", stream = stream_id, api = self.api.as_str(), server = %self.endpoint.uri());
            let (end, responses) = match self.api {
                ApiType::Grpc => self.stream::<Sotw>().instrument(span.clone()).await,
                ApiType::DeltaGrpc => self.stream::<Delta>().instrument(span.clone()).await,
            };
            self.stats.set_connected(false);
            self.state.stream_failed();
            // A stream that delivered config means the server was healthy; start the
            // backoff over rather than punish a routine reconnect.
            if responses > 0 {
                self.backoff.reset();
            }
            let delay = self.backoff.next_delay(&mut rand::rng());
            span.in_scope(|| warn!(responses, "ADS {end}; reconnecting in {delay:?}"));
            tokio::time::sleep(delay).await;
        }
    }

    /// Runs one stream to its end; returns why it ended and how many responses it
    /// delivered.
    async fn stream<P: Protocol>(&mut self) -> (StreamEnd, u64) {
        let channel = match self.endpoint.connect().await {
            Ok(channel) => channel,
            Err(e) => return (StreamEnd::Connect(e), 0),
        };
        // The control plane is trusted and a large mesh's CDS easily exceeds tonic's
        // 4 MiB default; Envoy sets no limit either.
        let mut client = AdsClient::new(channel).max_decoding_message_size(usize::MAX);
        self.state.start_stream();
        // Unbounded: requests only follow responses, and a bounded queue could block
        // the reader on a server that waits for us to read.
        let (tx, rx) = mpsc::unbounded_channel();
        for req in P::initial(&mut self.state) {
            let _ = tx.send(req);
        }
        let mut responses = match P::open(&mut client, UnboundedReceiverStream::new(rx)).await {
            Ok(responses) => responses,
            Err(status) => return (StreamEnd::Open(status), 0),
        };
        self.stats.set_connected(true);
        info!("ADS stream connected");
        let mut count = 0;
        loop {
            let resp = match responses.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return (StreamEnd::Closed, count),
                Err(status) => return (StreamEnd::Failed(status), count),
            };
            count += 1;
            let requests = P::on_response(&mut self.state, resp, &mut self.handler);
            if self.state.is_ready() {
                self.ready
                    .send_if_modified(|ready| !std::mem::replace(ready, true));
            }
            for req in requests {
                // The request side only closes with the stream, whose error the next
                // read reports.
                let _ = tx.send(req);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_host_port_or_a_uri() {
        let config = XdsConfig::new(
            "istiod.istio-system.svc:15010",
            ApiType::Grpc,
            Node::default(),
        );
        assert_eq!(
            config.endpoint().unwrap().uri().to_string(),
            "http://istiod.istio-system.svc:15010/"
        );
        let config = XdsConfig::new(
            "http://127.0.0.1:15010",
            ApiType::DeltaGrpc,
            Node::default(),
        );
        assert_eq!(
            config.endpoint().unwrap().uri().to_string(),
            "http://127.0.0.1:15010/"
        );
        let config = XdsConfig::new("not a host", ApiType::Grpc, Node::default());
        assert!(matches!(
            config.endpoint(),
            Err(XdsClientError::InvalidAddress { .. })
        ));
    }

    #[derive(Default)]
    struct Nothing;

    impl XdsHandler for Nothing {
        fn apply(
            &mut self,
            _: &str,
            _: Vec<crate::xds::ResourceUpdate>,
            _: Vec<String>,
            _: bool,
        ) -> Result<(), Vec<crate::xds::Rejected>> {
            Ok(())
        }

        fn wanted(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
    }

    #[test]
    fn spawn_outside_a_runtime_is_an_error() {
        let config = XdsConfig::new("127.0.0.1:15010", ApiType::Grpc, Node::default());
        assert!(matches!(
            XdsClient::spawn(config, Nothing),
            Err(XdsClientError::NoRuntime)
        ));
    }

    #[tokio::test]
    async fn an_unreachable_server_counts_failures_and_stays_unready() {
        // A port nothing listens on: bind, note it, close.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut config = XdsConfig::new(addr.to_string(), ApiType::Grpc, Node::default());
        config.backoff_base = Duration::from_millis(1);
        config.backoff_max = Duration::from_millis(5);
        let client = XdsClient::spawn(config, Nothing).unwrap();
        let stats = client.stats();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stats.cds.failures() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reconnect attempts"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!stats.is_connected());
        assert!(!client.is_ready());
        client.abort();
    }
}
