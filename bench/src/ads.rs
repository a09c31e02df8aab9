//! A minimal state-of-the-world ADS client that asks for config the way Envoy does:
//! CDS (wildcard), then EDS for every EDS cluster, then LDS (wildcard) once clusters are
//! warm, then RDS for every route name the listeners reference. Every response is ACKed.
//! It records when the full config has arrived, bytes per type, and — for convergence —
//! the weight of one subset in the latest routes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use prost::Message;
use strait_proto::envoy::config::cluster::v3::{
    Cluster, cluster::ClusterDiscoveryType, cluster::DiscoveryType,
};
use strait_proto::envoy::config::core::v3::Node;
use strait_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use strait_proto::envoy::config::listener::v3::{FilterChain, Listener, filter};
use strait_proto::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use strait_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use strait_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use strait_proto::google::protobuf::{ListValue, Struct, Value, value::Kind};
use strait_proto::xds::type_url;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

/// The four types of a sidecar's config, in the order Envoy fetches them.
pub const TYPES: [(&str, &str); 4] = [
    ("cds", type_url::CLUSTER),
    ("eds", type_url::ENDPOINT),
    ("lds", type_url::LISTENER),
    ("rds", type_url::ROUTE),
];

pub fn short_name(url: &str) -> &'static str {
    TYPES
        .iter()
        .find(|(_, u)| *u == url)
        .map(|(s, _)| *s)
        .unwrap_or("other")
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeStats {
    pub responses: u64,
    /// Encoded DiscoveryResponse bytes (what crossed the wire, before gRPC framing).
    pub bytes: u64,
    /// Resources in the latest response.
    pub resources: u64,
}

/// The subset weight a client watches in RDS to detect that an edit arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightWatch {
    /// Envoy cluster name of the weighted destination, e.g. `outbound|8080|v1|host`.
    pub cluster: String,
    /// Latest weight seen for that cluster and when the response carrying it arrived.
    pub seen: Option<(u32, Instant)>,
}

#[derive(Clone, Debug, Default)]
pub struct ClientState {
    pub first_request_at: Option<Instant>,
    pub complete_at: Option<Instant>,
    /// Per type, everything received until the full config was complete.
    pub initial: BTreeMap<&'static str, TypeStats>,
    /// Per type, everything received on the stream.
    pub total: BTreeMap<&'static str, TypeStats>,
    pub eds_requested: BTreeSet<String>,
    pub eds_have: BTreeSet<String>,
    pub rds_requested: BTreeSet<String>,
    pub rds_have: BTreeSet<String>,
    pub got_cds: bool,
    pub got_lds: bool,
    pub watch: Option<WeightWatch>,
    /// Until the config is complete: (type, time since the first request, resources)
    /// of each response, to show where the time goes.
    pub timeline: Vec<(&'static str, Duration, u64)>,
    /// Set when the stream ends or fails.
    pub closed: Option<String>,
}

impl ClientState {
    fn is_complete(&self) -> bool {
        self.got_cds
            && self.got_lds
            && self.eds_requested.is_subset(&self.eds_have)
            && self.rds_requested.is_subset(&self.rds_have)
    }

    /// Time from the first request to the full config.
    pub fn time_to_full_config(&self) -> Option<Duration> {
        Some(self.complete_at?.duration_since(self.first_request_at?))
    }
}

pub struct AdsClient {
    state: watch::Receiver<ClientState>,
    task: JoinHandle<()>,
}

impl Drop for AdsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Istio's sidecar node ID for a pod `name.namespace` with address `ip`.
pub fn sidecar_node_id(ip: &str, name: &str, namespace: &str) -> String {
    format!("sidecar~{ip}~{name}.{namespace}~{namespace}.svc.cluster.local")
}

/// Node metadata an istio-agent would send, reduced to what routing depends on.
pub fn sidecar_metadata(ip: &str, name: &str, namespace: &str) -> serde_json::Value {
    serde_json::json!({
        "NAME": name,
        "NAMESPACE": namespace,
        "INSTANCE_IPS": ip,
        "ISTIO_VERSION": "1.30.0",
        "CLUSTER_ID": "Kubernetes",
        "INTERCEPTION_MODE": "REDIRECT",
        "LABELS": {"app": "bench-client", "version": "v1"},
    })
}

impl AdsClient {
    /// Connects and sends the first CDS request. `watch_cluster` names a weighted
    /// destination to follow in RDS.
    pub async fn start(
        addr: SocketAddr,
        node_id: String,
        metadata: serde_json::Value,
        watch_cluster: Option<String>,
    ) -> anyhow::Result<AdsClient> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connecting to ADS at {addr}"))?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);

        let (tx, rx) = mpsc::channel::<DiscoveryRequest>(64);
        let node = Node {
            id: node_id,
            cluster: "bench-client.default".to_string(),
            metadata: Some(json_to_struct(&metadata)),
            ..Default::default()
        };
        // gRPC servers may hold the response headers until the first message, so the
        // first request is queued before the call is awaited.
        tx.send(DiscoveryRequest {
            node: Some(node),
            type_url: type_url::CLUSTER.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|_| anyhow!("request channel closed"))?;
        let first_request_at = Instant::now();
        let response = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .context("opening the ADS stream")?;
        let inbound = response.into_inner();

        let initial = ClientState {
            first_request_at: Some(first_request_at),
            watch: watch_cluster.map(|cluster| WeightWatch {
                cluster,
                seen: None,
            }),
            ..Default::default()
        };
        let (state_tx, state_rx) = watch::channel(initial);
        let task = tokio::spawn(async move {
            let reason = match run(inbound, tx, &state_tx).await {
                Ok(()) => "stream ended".to_string(),
                Err(e) => format!("{e:#}"),
            };
            state_tx.send_modify(|s| s.closed = Some(reason));
        });
        Ok(AdsClient {
            state: state_rx,
            task,
        })
    }

    pub fn snapshot(&self) -> ClientState {
        self.state.borrow().clone()
    }

    /// Waits until CDS, EDS, LDS and RDS have all arrived.
    pub async fn wait_complete(&mut self, timeout: Duration) -> anyhow::Result<ClientState> {
        self.wait_for(timeout, "the full config", |s| s.complete_at.is_some())
            .await
    }

    /// Waits until RDS carries `weight` for the watched cluster; returns when that
    /// response arrived.
    pub async fn wait_weight(&mut self, weight: u32, timeout: Duration) -> anyhow::Result<Instant> {
        let state = self
            .wait_for(timeout, "the edited route", |s| {
                s.watch
                    .as_ref()
                    .and_then(|w| w.seen)
                    .is_some_and(|(w, _)| w == weight)
            })
            .await?;
        state
            .watch
            .and_then(|w| w.seen)
            .map(|(_, at)| at)
            .context("watch vanished")
    }

    async fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&ClientState) -> bool,
    ) -> anyhow::Result<ClientState> {
        let waited = tokio::time::timeout(
            timeout,
            self.state.wait_for(|s| pred(s) || s.closed.is_some()),
        )
        .await
        .map(|r| r.map(|state| state.clone()));
        let state = match waited {
            Ok(Ok(state)) => state,
            Ok(Err(_)) => bail!("client task ended while waiting for {what}"),
            Err(_) => {
                let s = self.snapshot();
                bail!(
                    "timed out after {timeout:?} waiting for {what} (cds={} lds={} eds {}/{} rds {}/{})",
                    s.got_cds,
                    s.got_lds,
                    s.eds_have.intersection(&s.eds_requested).count(),
                    s.eds_requested.len(),
                    s.rds_have.intersection(&s.rds_requested).count(),
                    s.rds_requested.len()
                )
            }
        };
        if !pred(&state) {
            bail!(
                "ADS stream closed while waiting for {what}: {}",
                state.closed.as_deref().unwrap_or("?")
            );
        }
        Ok(state)
    }
}

#[derive(Default)]
struct Ack {
    version: String,
    nonce: String,
}

async fn run(
    mut inbound: tonic::Streaming<DiscoveryResponse>,
    tx: mpsc::Sender<DiscoveryRequest>,
    state: &watch::Sender<ClientState>,
) -> anyhow::Result<()> {
    let mut acks: BTreeMap<&'static str, Ack> = BTreeMap::new();
    let mut lds_requested = false;
    let send = |req: DiscoveryRequest| {
        let tx = tx.clone();
        async move {
            tx.send(req)
                .await
                .map_err(|_| anyhow!("request stream closed"))
        }
    };
    let request = |url: &str, names: &BTreeSet<String>, ack: Option<&Ack>| DiscoveryRequest {
        type_url: url.to_string(),
        resource_names: names.iter().cloned().collect(),
        version_info: ack.map(|a| a.version.clone()).unwrap_or_default(),
        response_nonce: ack.map(|a| a.nonce.clone()).unwrap_or_default(),
        ..Default::default()
    };

    while let Some(resp) = inbound.message().await.context("receiving")? {
        let received_at = Instant::now();
        let kind = short_name(&resp.type_url);
        let bytes = u64::try_from(resp.encoded_len()).unwrap_or(u64::MAX);
        let resources = u64::try_from(resp.resources.len()).unwrap_or(u64::MAX);
        acks.insert(
            kind,
            Ack {
                version: resp.version_info.clone(),
                nonce: resp.nonce.clone(),
            },
        );

        let mut followups = Vec::new();
        let mut snapshot = state.borrow().clone();
        if snapshot.complete_at.is_none()
            && let Some(first) = snapshot.first_request_at
        {
            snapshot
                .timeline
                .push((kind, received_at.duration_since(first), resources));
        }
        for stats in [&mut snapshot.total].into_iter().chain(
            snapshot
                .complete_at
                .is_none()
                .then_some(&mut snapshot.initial),
        ) {
            let entry = stats.entry(kind).or_default();
            entry.responses += 1;
            entry.bytes += bytes;
            entry.resources = resources;
        }
        match kind {
            "cds" => {
                snapshot.got_cds = true;
                let names = eds_cluster_names(&resp)?;
                followups.push(request(
                    type_url::CLUSTER,
                    &BTreeSet::new(),
                    acks.get("cds"),
                ));
                if names != snapshot.eds_requested {
                    snapshot.eds_requested = names;
                    followups.push(request(
                        type_url::ENDPOINT,
                        &snapshot.eds_requested,
                        acks.get("eds"),
                    ));
                }
                if snapshot.eds_requested.is_empty() && !lds_requested {
                    lds_requested = true;
                    followups.push(request(type_url::LISTENER, &BTreeSet::new(), None));
                }
            }
            "eds" => {
                snapshot.eds_have = names_of(&resp);
                followups.push(request(
                    type_url::ENDPOINT,
                    &snapshot.eds_requested,
                    acks.get("eds"),
                ));
                // Envoy asks for listeners once the clusters are warm.
                if !lds_requested {
                    lds_requested = true;
                    followups.push(request(type_url::LISTENER, &BTreeSet::new(), None));
                }
            }
            "lds" => {
                snapshot.got_lds = true;
                let names = route_names(&resp)?;
                followups.push(request(
                    type_url::LISTENER,
                    &BTreeSet::new(),
                    acks.get("lds"),
                ));
                if names != snapshot.rds_requested {
                    snapshot.rds_requested = names;
                    followups.push(request(
                        type_url::ROUTE,
                        &snapshot.rds_requested,
                        acks.get("rds"),
                    ));
                }
            }
            "rds" => {
                snapshot.rds_have = names_of(&resp);
                if let Some(watch) = snapshot.watch.as_mut()
                    && let Some(weight) = find_weight(&resp, &watch.cluster)?
                    && watch.seen.map(|(w, _)| w) != Some(weight)
                {
                    watch.seen = Some((weight, received_at));
                }
                followups.push(request(
                    type_url::ROUTE,
                    &snapshot.rds_requested,
                    acks.get("rds"),
                ));
            }
            _ => {}
        }
        if snapshot.complete_at.is_none() && snapshot.is_complete() {
            snapshot.complete_at = Some(received_at);
        }
        state.send_replace(snapshot);
        for req in followups {
            send(req).await?;
        }
    }
    Ok(())
}

/// Resource names in a response, read from each resource's own name field.
fn names_of(resp: &DiscoveryResponse) -> BTreeSet<String> {
    resp.resources
        .iter()
        .filter_map(|any| match short_name(&resp.type_url) {
            "eds" => ClusterLoadAssignment::decode(any.value.as_slice())
                .ok()
                .map(|c| c.cluster_name),
            "rds" => RouteConfiguration::decode(any.value.as_slice())
                .ok()
                .map(|r| r.name),
            _ => None,
        })
        .collect()
}

fn eds_cluster_names(resp: &DiscoveryResponse) -> anyhow::Result<BTreeSet<String>> {
    eds_cluster_names_in(resp.resources.iter().map(|a| a.value.as_slice()))
}

/// Names of the clusters among encoded `Cluster`s that take endpoints from EDS.
pub fn eds_cluster_names_in<'a>(
    clusters: impl IntoIterator<Item = &'a [u8]>,
) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for bytes in clusters {
        let cluster = Cluster::decode(bytes).context("decoding a Cluster")?;
        if cluster.cluster_discovery_type
            == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
        {
            out.insert(cluster.name);
        }
    }
    Ok(out)
}

fn route_names(resp: &DiscoveryResponse) -> anyhow::Result<BTreeSet<String>> {
    route_names_in(resp.resources.iter().map(|a| a.value.as_slice()))
}

/// Route configuration names that encoded `Listener`s' HTTP connection managers load
/// over RDS.
pub fn route_names_in<'a>(
    listeners: impl IntoIterator<Item = &'a [u8]>,
) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for bytes in listeners {
        let listener = Listener::decode(bytes).context("decoding a Listener")?;
        let chains: Vec<&FilterChain> = listener
            .filter_chains
            .iter()
            .chain(listener.default_filter_chain.as_ref())
            .collect();
        for chain in chains {
            for f in &chain.filters {
                let Some(filter::ConfigType::TypedConfig(cfg)) = &f.config_type else {
                    continue;
                };
                if !cfg.type_url.ends_with(".HttpConnectionManager") {
                    continue;
                }
                let hcm = HttpConnectionManager::decode(cfg.value.as_slice())
                    .context("decoding an HCM")?;
                if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
                    out.insert(rds.route_config_name);
                }
            }
        }
    }
    Ok(out)
}

/// The weight of `cluster` in the first weighted route that names it.
fn find_weight(resp: &DiscoveryResponse, cluster: &str) -> anyhow::Result<Option<u32>> {
    for any in &resp.resources {
        let rc = RouteConfiguration::decode(any.value.as_slice())
            .context("decoding a RouteConfiguration")?;
        for vh in &rc.virtual_hosts {
            for r in &vh.routes {
                let Some(route::Action::Route(action)) = &r.action else {
                    continue;
                };
                let Some(route_action::ClusterSpecifier::WeightedClusters(wc)) =
                    &action.cluster_specifier
                else {
                    continue;
                };
                if let Some(c) = wc.clusters.iter().find(|c| c.name == cluster) {
                    return Ok(Some(c.weight.as_ref().map(|w| w.value).unwrap_or(0)));
                }
            }
        }
    }
    Ok(None)
}

fn json_to_value(v: &serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(_) => Kind::StructValue(json_to_struct(v)),
    };
    Value { kind: Some(kind) }
}

pub fn json_to_struct(v: &serde_json::Value) -> Struct {
    Struct {
        fields: v
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), json_to_value(v)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use strait_proto::envoy::config::route::v3::{
        Route, RouteAction, VirtualHost, WeightedCluster, weighted_cluster,
    };
    use strait_proto::google::protobuf::{Any, UInt32Value};

    use super::*;

    fn any_of<M: Message + prost::Name>(m: &M) -> Any {
        Any {
            type_url: M::type_url(),
            value: m.encode_to_vec(),
        }
    }

    fn routes(weight: u32) -> DiscoveryResponse {
        let rc = RouteConfiguration {
            name: "8080".into(),
            virtual_hosts: vec![VirtualHost {
                name: "a:8080".into(),
                routes: vec![Route {
                    action: Some(route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
                            WeightedCluster {
                                clusters: vec![
                                    weighted_cluster::ClusterWeight {
                                        name: "outbound|8080|v1|a".into(),
                                        weight: Some(UInt32Value { value: weight }),
                                        ..Default::default()
                                    },
                                    weighted_cluster::ClusterWeight {
                                        name: "outbound|8080|v2|a".into(),
                                        weight: Some(UInt32Value {
                                            value: 100 - weight,
                                        }),
                                        ..Default::default()
                                    },
                                ],
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        DiscoveryResponse {
            type_url: type_url::ROUTE.into(),
            resources: vec![any_of(&rc)],
            ..Default::default()
        }
    }

    #[test]
    fn finds_subset_weight_in_routes() {
        let resp = routes(70);
        assert_eq!(find_weight(&resp, "outbound|8080|v1|a").unwrap(), Some(70));
        assert_eq!(find_weight(&resp, "outbound|8080|v2|a").unwrap(), Some(30));
        assert_eq!(find_weight(&resp, "outbound|8080|v1|b").unwrap(), None);
        assert_eq!(names_of(&resp), BTreeSet::from(["8080".to_string()]));
    }

    #[test]
    fn picks_only_eds_clusters() {
        let eds = Cluster {
            name: "outbound|8080||a".into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            ..Default::default()
        };
        let passthrough = Cluster {
            name: "PassthroughCluster".into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            )),
            ..Default::default()
        };
        let resp = DiscoveryResponse {
            type_url: type_url::CLUSTER.into(),
            resources: vec![any_of(&eds), any_of(&passthrough)],
            ..Default::default()
        };
        assert_eq!(
            eds_cluster_names(&resp).unwrap(),
            BTreeSet::from(["outbound|8080||a".to_string()])
        );
    }

    #[test]
    fn metadata_becomes_a_struct() {
        let s = json_to_struct(&sidecar_metadata("10.0.0.1", "bench", "default"));
        assert_eq!(
            s.fields["NAMESPACE"].kind,
            Some(Kind::StringValue("default".into()))
        );
        let Some(Kind::StructValue(labels)) = &s.fields["LABELS"].kind else {
            panic!()
        };
        assert_eq!(
            labels.fields["app"].kind,
            Some(Kind::StringValue("bench-client".into()))
        );
        assert_eq!(
            sidecar_node_id("10.0.0.1", "bench", "default"),
            "sidecar~10.0.0.1~bench.default~default.svc.cluster.local"
        );
    }
}
