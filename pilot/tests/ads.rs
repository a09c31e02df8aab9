//! The ADS server in-process: a tonic server on loopback, driven by envoy-types'
//! generated ADS client over SotW and Delta streams.

// The stream helpers below are shared by the tests but are not `#[test]` functions
// themselves, so clippy.toml's allowance for tests does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use strait_pilot::metrics::Metrics;
use strait_pilot::model::service::outbound_cluster_name;
use strait_pilot::model::{
    Endpoint, EndpointIndex, HealthStatus, Locality, Protocol, Provider, PushContext,
    PushContextInput, Resolution, Service, ServicePort, ShardKey, Visibility,
};
use strait_pilot::push::request::{PushRequest, TriggerReason};
use strait_pilot::xds::ads::{XdsOptions, XdsServer};
use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::core::v3::{Node, address, socket_address};
use strait_proto::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use strait_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use strait_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use strait_proto::google::protobuf::{Struct, Value, value::Kind};
use strait_proto::google::rpc::Status as RpcStatus;
use strait_proto::xds::{any, type_url};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint as ChannelEndpoint};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn host(name: &str) -> String {
    format!("{name}.default.svc.cluster.local")
}

fn cluster_of(name: &str) -> String {
    outbound_cluster_name(80, "", &host(name))
}

fn service(name: &str, index: usize) -> Arc<Service> {
    Arc::new(Service {
        hostname: host(name).into(),
        name: name.to_string(),
        namespace: "default".to_string(),
        addresses: vec![
            format!("10.96.{}.{}", index / 250, index % 250 + 1)
                .parse()
                .unwrap(),
        ],
        ports: vec![ServicePort {
            name: "http".to_string(),
            port: 80,
            protocol: Protocol::Http,
            target_port: Some(8080),
        }],
        resolution: Resolution::ClientSideLb,
        mesh_external: false,
        visibility: Visibility::Public,
        labels: BTreeMap::new(),
        provider: Provider::Kubernetes,
        external_name: None,
        creation_time: None,
        service_accounts: Vec::new(),
    })
}

fn endpoint(ip: &str) -> Endpoint {
    Endpoint {
        address: ip.parse().unwrap(),
        endpoint_port: 8080,
        service_port_name: "http".to_string(),
        labels: BTreeMap::new(),
        locality: Locality::default(),
        weight: 0,
        health: HealthStatus::Healthy,
        service_account: String::new(),
        namespace: "default".to_string(),
        workload_name: String::new(),
        tls_mode: String::new(),
    }
}

/// A context with one HTTP service per name; each gets an endpoint in the shared index.
fn context(version: &str, names: &[String], index: &Arc<EndpointIndex>) -> Arc<PushContext> {
    let services: Vec<Arc<Service>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| service(n, i))
        .collect();
    for (i, svc) in services.iter().enumerate() {
        if index.endpoints(&svc.hostname, "default").is_empty() {
            let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
            index.update(
                &svc.hostname,
                "default",
                ShardKey::kubernetes(),
                vec![endpoint(&ip)],
            );
        }
    }
    Arc::new(PushContext::build(PushContextInput {
        version: version.to_string(),
        services,
        configs: Default::default(),
        config_errors: Vec::new(),
        mesh: Default::default(),
        endpoints: index.clone(),
        domain_suffix: "cluster.local".to_string(),
    }))
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

struct Harness {
    server: Arc<XdsServer>,
    push: Arc<ArcSwap<PushContext>>,
    index: Arc<EndpointIndex>,
    metrics: Arc<Metrics>,
    addr: SocketAddr,
}

impl Harness {
    async fn start(options: XdsOptions, services: &[String]) -> Harness {
        let index = Arc::new(EndpointIndex::new());
        let push = Arc::new(ArcSwap::new(context("v1", services, &index)));
        let metrics = Arc::new(Metrics::new());
        let server = XdsServer::new(push.clone(), metrics.clone(), options);
        server.set_ready();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let service = server.service();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        Harness {
            server,
            push,
            index,
            metrics,
            addr,
        }
    }

    /// Swaps in a new context and pushes it, as the pusher does.
    fn push_full(&self, version: &str, services: &[String]) -> Arc<PushContext> {
        let ctx = context(version, services, &self.index);
        self.push.store(ctx.clone());
        let mut req = PushRequest::full(TriggerReason::Config, []);
        req.push = Some(ctx.clone());
        self.server.push(req);
        ctx
    }

    fn metric(&self, line_prefix: &str) -> f64 {
        let text = self.metrics.encode();
        text.lines()
            .find_map(|l| l.strip_prefix(line_prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn channel(&self) -> Channel {
        ChannelEndpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn sotw(&self, pod: &str) -> Sotw {
        Sotw::open(self.channel().await, pod).await
    }

    async fn delta(&self, pod: &str) -> DeltaClient {
        DeltaClient::open(self.channel().await, pod).await
    }
}

fn node(pod: &str) -> Node {
    Node {
        id: format!("sidecar~10.0.0.1~{pod}.default~default.svc.cluster.local"),
        metadata: Some(Struct {
            fields: [(
                "ISTIO_VERSION".to_string(),
                Value {
                    kind: Some(Kind::StringValue("1.30.0".to_string())),
                },
            )]
            .into(),
        }),
        ..Node::default()
    }
}

struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
    node: Option<Node>,
}

impl Sotw {
    async fn open(channel: Channel, pod: &str) -> Sotw {
        let (tx, rx) = mpsc::channel(16);
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let rx = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Sotw {
            tx,
            rx,
            node: Some(node(pod)),
        }
    }

    async fn send(&mut self, type_url: &str, names: &[String], nonce: &str, version: &str) {
        self.send_req(DiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names: names.to_vec(),
            response_nonce: nonce.to_string(),
            version_info: version.to_string(),
            ..DiscoveryRequest::default()
        })
        .await;
    }

    async fn send_req(&mut self, mut req: DiscoveryRequest) {
        // Envoy's `set_node_on_first_message_only`.
        req.node = self.node.take();
        self.tx.send(req).await.unwrap();
    }

    async fn ack(&mut self, resp: &DiscoveryResponse, names: &[String]) {
        self.send(&resp.type_url, names, &resp.nonce, &resp.version_info)
            .await;
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.next())
            .await
            .expect("no response in time")
            .expect("stream ended")
            .expect("stream failed")
    }

    async fn quiet(&mut self) {
        if let Ok(resp) = tokio::time::timeout(QUIET, self.rx.next()).await {
            panic!("unexpected response: {resp:?}");
        }
    }
}

struct DeltaClient {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
    node: Option<Node>,
}

impl DeltaClient {
    async fn open(channel: Channel, pod: &str) -> DeltaClient {
        let (tx, rx) = mpsc::channel(16);
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let rx = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        DeltaClient {
            tx,
            rx,
            node: Some(node(pod)),
        }
    }

    async fn send(&mut self, mut req: DeltaDiscoveryRequest) {
        req.node = self.node.take();
        self.tx.send(req).await.unwrap();
    }

    async fn subscribe(&mut self, type_url: &str, names: &[String]) {
        self.send(DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names_subscribe: names.to_vec(),
            ..DeltaDiscoveryRequest::default()
        })
        .await;
    }

    async fn ack(&mut self, resp: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..DeltaDiscoveryRequest::default()
        })
        .await;
    }

    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.next())
            .await
            .expect("no response in time")
            .expect("stream ended")
            .expect("stream failed")
    }

    async fn quiet(&mut self) {
        if let Ok(resp) = tokio::time::timeout(QUIET, self.rx.next()).await {
            panic!("unexpected response: {resp:?}");
        }
    }
}

fn cluster_names(resp: &DiscoveryResponse) -> Vec<String> {
    resp.resources
        .iter()
        .map(|a| any::unpack::<Cluster>(a).unwrap().name)
        .collect()
}

fn endpoint_addresses(cla: &ClusterLoadAssignment) -> Vec<String> {
    cla.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|lb| match &lb.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(e)) => e.address.as_ref(),
            _ => None,
        })
        .filter_map(|a| match &a.address {
            Some(address::Address::SocketAddress(s)) => Some(match s.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => format!("{}:{p}", s.address),
                _ => s.address.clone(),
            }),
            _ => None,
        })
        .collect()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_request_ack_nack_and_stale_nonce() {
    let h = Harness::start(XdsOptions::default(), &names(&["echo"])).await;
    let mut c = h.sotw("app").await;

    c.send(type_url::CLUSTER, &[], "", "").await;
    let cds = c.recv().await;
    assert_eq!(cds.type_url, type_url::CLUSTER);
    assert_eq!(cds.version_info, "v1");
    assert!(
        cds.nonce.starts_with("v1"),
        "nonce carries the version: {}",
        cds.nonce
    );
    assert!(
        cluster_names(&cds).contains(&cluster_of("echo")),
        "{:?}",
        cluster_names(&cds)
    );
    c.ack(&cds, &[]).await;
    c.quiet().await;

    let eds_names = vec![cluster_of("echo")];
    c.send(type_url::ENDPOINT, &eds_names, "", "").await;
    let eds = c.recv().await;
    assert_eq!(eds.type_url, type_url::ENDPOINT);
    assert_eq!(eds.resources.len(), 1);
    let cla: ClusterLoadAssignment = any::unpack(&eds.resources[0]).unwrap();
    assert_eq!(cla.cluster_name, cluster_of("echo"));
    assert_eq!(endpoint_addresses(&cla), vec!["10.1.0.1:8080".to_string()]);
    c.ack(&eds, &eds_names).await;
    c.quiet().await;

    // NACK: recorded, counted, not answered.
    c.send_req(DiscoveryRequest {
        type_url: type_url::CLUSTER.to_string(),
        response_nonce: cds.nonce.clone(),
        version_info: String::new(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: "cluster rejected".to_string(),
            details: Vec::new(),
        }),
        ..DiscoveryRequest::default()
    })
    .await;
    c.quiet().await;
    let status = h.server.connections();
    assert_eq!(status.len(), 1);
    let conn = &status[0];
    assert!(
        conn.connection_id.starts_with("app.default-"),
        "{}",
        conn.connection_id
    );
    assert!(!conn.delta);
    assert_eq!(
        conn.watches[type_url::CLUSTER].last_error.as_deref(),
        Some("cluster rejected")
    );
    assert_eq!(
        conn.watches[type_url::ENDPOINT].nonce_acked.as_deref(),
        Some(eds.nonce.as_str())
    );
    assert_eq!(conn.watches[type_url::ENDPOINT].names, eds_names);
    assert!(conn.watches[type_url::CLUSTER].wildcard);
    assert_eq!(h.metric("pilot_total_xds_rejects{type=\"cds\"}"), 1.0);

    // A stale nonce with new names: ignored.
    c.send(
        type_url::ENDPOINT,
        &[cluster_of("echo"), cluster_of("other")],
        "not-a-nonce-we-sent",
        "v1",
    )
    .await;
    c.quiet().await;
    assert_eq!(h.metric("pilot_xds_expired_nonce{type=\"eds\"}"), 1.0);
    assert_eq!(h.metric("pilot_xds_pushes{type=\"cds\"}"), 1.0);
    assert_eq!(h.metric("pilot_xds{version=\"1.30.0\"}"), 1.0);

    drop(c);
    eventually("connection closed", || h.server.connection_count() == 0).await;
    assert_eq!(h.metric("pilot_xds{version=\"1.30.0\"}"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_full_and_eds_only_pushes() {
    let h = Harness::start(XdsOptions::default(), &names(&["echo"])).await;
    let mut c = h.sotw("app").await;
    c.send(type_url::CLUSTER, &[], "", "").await;
    let cds = c.recv().await;
    c.ack(&cds, &[]).await;
    let eds_names = vec![cluster_of("echo")];
    c.send(type_url::ENDPOINT, &eds_names, "", "").await;
    let eds = c.recv().await;
    c.ack(&eds, &eds_names).await;
    c.quiet().await;

    // A full push with a new service: CDS first, then EDS, both at the new version.
    h.push_full("v2", &names(&["echo", "extra"]));
    let cds = c.recv().await;
    assert_eq!(cds.type_url, type_url::CLUSTER);
    assert_eq!(cds.version_info, "v2");
    assert!(cluster_names(&cds).contains(&cluster_of("extra")));
    c.ack(&cds, &[]).await;
    let eds = c.recv().await;
    assert_eq!(eds.type_url, type_url::ENDPOINT);
    assert_eq!(eds.version_info, "v2");
    c.ack(&eds, &eds_names).await;
    c.quiet().await;

    // Endpoints of echo change: only EDS is pushed.
    let echo = host("echo");
    h.index.update(
        &echo.clone().into(),
        "default",
        ShardKey::kubernetes(),
        vec![endpoint("10.1.9.9")],
    );
    let mut req = PushRequest::endpoints([("default".to_string(), echo.clone())]);
    req.push = Some(h.push.load_full());
    h.server.push(req);
    let eds = c.recv().await;
    assert_eq!(eds.type_url, type_url::ENDPOINT);
    let cla: ClusterLoadAssignment = any::unpack(&eds.resources[0]).unwrap();
    assert_eq!(endpoint_addresses(&cla), vec!["10.1.9.9:8080".to_string()]);
    c.ack(&eds, &eds_names).await;
    c.quiet().await;

    // Endpoints of a service the proxy does not watch: nothing.
    let mut req = PushRequest::endpoints([("default".to_string(), host("extra"))]);
    req.push = Some(h.push.load_full());
    h.server.push(req);
    c.quiet().await;
    assert!(h.metric("pilot_proxy_convergence_time_count") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_subscribe_push_changes_and_removals() {
    let h = Harness::start(XdsOptions::default(), &names(&["echo"])).await;
    let mut c = h.delta("app").await;

    c.subscribe(type_url::CLUSTER, &[]).await;
    let cds = c.recv().await;
    assert_eq!(cds.type_url, type_url::CLUSTER);
    assert_eq!(cds.system_version_info, "v1");
    let echo = cds
        .resources
        .iter()
        .find(|r| r.name == cluster_of("echo"))
        .expect("echo cluster");
    assert!(!echo.version.is_empty());
    let cluster: Cluster = any::unpack(echo.resource.as_ref().unwrap()).unwrap();
    assert_eq!(cluster.name, cluster_of("echo"));
    c.ack(&cds).await;

    // EDS answers unknown services with an empty assignment, but a name that is not a
    // cluster at all is generated as nothing, so the answer names it as removed.
    c.subscribe(
        type_url::ENDPOINT,
        &[cluster_of("echo"), "not-a-cluster".to_string()],
    )
    .await;
    let eds = c.recv().await;
    assert_eq!(eds.type_url, type_url::ENDPOINT);
    assert_eq!(eds.resources.len(), 1);
    assert_eq!(eds.resources[0].name, cluster_of("echo"));
    assert_eq!(eds.removed_resources, vec!["not-a-cluster".to_string()]);
    c.ack(&eds).await;
    c.quiet().await;

    // Only what changed goes out: the new cluster, not echo's.
    h.push_full("v2", &names(&["echo", "extra"]));
    let cds = c.recv().await;
    assert_eq!(cds.type_url, type_url::CLUSTER);
    assert_eq!(cds.system_version_info, "v2");
    let sent: Vec<&str> = cds.resources.iter().map(|r| r.name.as_str()).collect();
    assert!(sent.contains(&cluster_of("extra").as_str()), "{sent:?}");
    assert!(!sent.contains(&cluster_of("echo").as_str()), "{sent:?}");
    assert!(cds.removed_resources.is_empty());
    c.ack(&cds).await;
    // EDS did not change: nothing to send.
    c.quiet().await;

    // NACK is recorded.
    c.send(DeltaDiscoveryRequest {
        type_url: type_url::CLUSTER.to_string(),
        response_nonce: cds.nonce.clone(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: "bad".to_string(),
            details: Vec::new(),
        }),
        ..DeltaDiscoveryRequest::default()
    })
    .await;
    c.quiet().await;
    let status = h.server.connections();
    assert!(status[0].delta);
    assert_eq!(
        status[0].watches[type_url::CLUSTER].last_error.as_deref(),
        Some("bad")
    );
    assert_eq!(h.metric("pilot_total_xds_rejects{type=\"cds\"}"), 1.0);

    // The service goes away: its cluster is removed.
    h.push_full("v3", &names(&["echo"]));
    let cds = c.recv().await;
    assert_eq!(cds.removed_resources, vec![cluster_of("extra")]);
    assert!(cds.resources.is_empty());
    c.ack(&cds).await;

    // Unsubscribing is not answered, and the name is no longer watched.
    c.send(DeltaDiscoveryRequest {
        type_url: type_url::ENDPOINT.to_string(),
        resource_names_unsubscribe: vec!["not-a-cluster".to_string()],
        ..DeltaDiscoveryRequest::default()
    })
    .await;
    c.quiet().await;
    let status = h.server.connections();
    assert_eq!(
        status[0].watches[type_url::ENDPOINT].names,
        vec![cluster_of("echo")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_rejected_until_ready_and_without_node() {
    let index = Arc::new(EndpointIndex::new());
    let push = Arc::new(ArcSwap::new(context("v1", &[], &index)));
    let server = XdsServer::new(push, Arc::new(Metrics::new()), XdsOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server.service())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = ChannelEndpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AggregatedDiscoveryServiceClient::new(channel);

    let (_tx, rx) = mpsc::channel::<DiscoveryRequest>(1);
    let err = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(
        err.message(),
        "server is not ready to serve discovery information"
    );
    assert!(!server.is_ready());

    server.set_ready();
    let (tx, rx) = mpsc::channel(1);
    tx.send(DiscoveryRequest {
        type_url: type_url::CLUSTER.to_string(),
        ..DiscoveryRequest::default()
    })
    .await
    .unwrap();
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let err = tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "missing node information");
    assert_eq!(server.connection_count(), 0);
}

/// A proxy that never reads its stream holds at most one push slot, only until the send
/// timeout, and never delays the pushes of others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_proxy_does_not_block_pushes_to_others() {
    let send_timeout = Duration::from_secs(2);
    let services: Vec<String> = (0..400).map(|i| format!("svc-{i}")).collect();
    let options = XdsOptions {
        push_throttle: 2,
        connection_queue: 1,
        send_timeout,
    };
    let h = Harness::start(options, &services).await;

    // Small HTTP/2 windows so the unread responses back up quickly.
    let stuck_channel = ChannelEndpoint::from_shared(format!("http://{}", h.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut stuck = Sotw::open(stuck_channel, "stuck").await;
    stuck.send(type_url::CLUSTER, &[], "", "").await;

    let mut live = h.sotw("live").await;
    live.send(type_url::CLUSTER, &[], "", "").await;
    let cds = live.recv().await;
    assert!(cds.resources.len() >= 400);
    live.ack(&cds, &[]).await;
    eventually("both connected", || h.server.connection_count() == 2).await;

    for round in 2..=7 {
        let version = format!("v{round}");
        let started = tokio::time::Instant::now();
        h.push_full(&version, &services);
        let cds = live.recv().await;
        assert_eq!(cds.version_info, version);
        assert!(
            started.elapsed() < send_timeout,
            "push {round} to the live proxy waited {:?}",
            started.elapsed()
        );
        live.ack(&cds, &[]).await;
    }

    eventually("stuck proxy timed out", || {
        h.metric("pilot_xds_write_timeout") >= 1.0 && h.server.connection_count() == 1
    })
    .await;
    let remaining = h.server.connections();
    assert!(remaining[0].connection_id.starts_with("live.default-"));

    // The live proxy still gets pushes afterwards.
    h.push_full("v8", &services);
    assert_eq!(live.recv().await.version_info, "v8");
}
