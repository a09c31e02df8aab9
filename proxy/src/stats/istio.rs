//! Istio's standard metrics (`istio_requests_total`, `istio_request_duration_milliseconds`,
//! ...), labelled as Istio's stats filter labels them: the reporting side's own labels
//! come from the node metadata, the peer's from the upstream endpoint's `istio`
//! metadata (client side) or the connection (server side), with `unknown` where nothing
//! is known.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{Counter, Histogram, Store};

/// Istio's custom stat namespace: Prometheus prints these stats without `envoy_`.
pub const NAMESPACE: &str = "istiocustom";
pub const REQUESTS_TOTAL: &str = "istiocustom.istio_requests_total";
pub const REQUEST_DURATION: &str = "istiocustom.istio_request_duration_milliseconds";
pub const REQUEST_BYTES: &str = "istiocustom.istio_request_bytes";
pub const RESPONSE_BYTES: &str = "istiocustom.istio_response_bytes";
pub const BUILD: &str = "istiocustom.istio_build";
pub const TCP_OPENED: &str = "istiocustom.istio_tcp_connections_opened_total";
pub const TCP_CLOSED: &str = "istiocustom.istio_tcp_connections_closed_total";
pub const TCP_SENT: &str = "istiocustom.istio_tcp_sent_bytes_total";
pub const TCP_RECEIVED: &str = "istiocustom.istio_tcp_received_bytes_total";

const UNKNOWN: &str = "unknown";
const LATEST: &str = "latest";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reporter {
    /// The client sidecar (outbound).
    Source,
    /// The server sidecar (inbound).
    Destination,
}

impl Reporter {
    fn label(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    Http,
    Grpc,
    Tcp,
}

impl RequestProtocol {
    fn label(self) -> &'static str {
        match self {
            RequestProtocol::Http => "http",
            RequestProtocol::Grpc => "grpc",
            RequestProtocol::Tcp => "tcp",
        }
    }
}

/// `connection_security_policy`: known on the server side only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityPolicy {
    MutualTls,
    None,
    Unknown,
}

impl SecurityPolicy {
    fn label(self) -> &'static str {
        match self {
            SecurityPolicy::MutualTls => "mutual_tls",
            SecurityPolicy::None => "none",
            SecurityPolicy::Unknown => UNKNOWN,
        }
    }
}

/// What is known about one side of a request. Empty means unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerLabels {
    pub workload: String,
    pub namespace: String,
    /// SPIFFE identity, e.g. `spiffe://cluster.local/ns/default/sa/bookinfo-productpage`.
    pub principal: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster: String,
}

fn str_field<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl PeerLabels {
    /// The proxy's own labels from its node metadata (`WORKLOAD_NAME`, `NAMESPACE`,
    /// `CLUSTER_ID`, `LABELS`), with the canonical service and revision falling back
    /// as Istio's injector derives them.
    pub fn from_node_metadata(metadata: &serde_json::Map<String, Value>) -> PeerLabels {
        let empty = serde_json::Map::new();
        let labels = metadata
            .get("LABELS")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let label = |keys: &[&str]| {
            keys.iter()
                .map(|k| str_field(labels, k))
                .find(|v| !v.is_empty())
                .map(str::to_string)
        };
        let workload = str_field(metadata, "WORKLOAD_NAME").to_string();
        PeerLabels {
            canonical_service: label(&[
                "service.istio.io/canonical-name",
                "app.kubernetes.io/name",
                "app",
            ])
            .unwrap_or_else(|| workload.clone()),
            canonical_revision: label(&[
                "service.istio.io/canonical-revision",
                "app.kubernetes.io/version",
                "version",
            ])
            .unwrap_or_else(|| LATEST.to_string()),
            app: str_field(labels, "app").to_string(),
            version: str_field(labels, "version").to_string(),
            namespace: str_field(metadata, "NAMESPACE").to_string(),
            cluster: str_field(metadata, "CLUSTER_ID").to_string(),
            principal: String::new(),
            workload,
        }
    }

    /// Istio's compact endpoint identity `<workload>;<namespace>;<canonical name>;
    /// <canonical revision>;<cluster>`; it carries no app or version.
    pub fn from_workload_string(s: &str) -> Option<PeerLabels> {
        let parts: Vec<&str> = s.split(';').collect();
        if parts.len() < 5 {
            return None;
        }
        Some(PeerLabels {
            workload: parts[0].to_string(),
            namespace: parts[1].to_string(),
            canonical_service: parts[2].to_string(),
            canonical_revision: parts[3].to_string(),
            cluster: parts[4].to_string(),
            ..PeerLabels::default()
        })
    }

    /// From an upstream endpoint's `filter_metadata` (`istio.workload`).
    pub fn from_endpoint_metadata(metadata: &BTreeMap<String, Value>) -> Option<PeerLabels> {
        let workload = metadata.get("istio")?.get("workload")?.as_str()?;
        PeerLabels::from_workload_string(workload)
    }
}

/// The destination service of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceLabels {
    /// `destination_service`, e.g. `reviews.default.svc.cluster.local`.
    pub host: String,
    /// `destination_service_name`, e.g. `reviews`.
    pub name: String,
}

/// Clusters Istio names the destination service after.
const SPECIAL_CLUSTERS: &[&str] = &[
    "BlackHoleCluster",
    "PassthroughCluster",
    "InboundPassthroughCluster",
    "InboundPassthroughClusterIpv4",
    "InboundPassthroughClusterIpv6",
];

impl ServiceLabels {
    /// Istio's rule: the request's authority, replaced by the first service in the
    /// cluster's `istio.services` metadata; the catch-all routes and passthrough
    /// clusters name themselves.
    pub fn resolve(
        authority: Option<&str>,
        route_name: Option<&str>,
        cluster_name: Option<&str>,
        cluster_istio_metadata: Option<&Value>,
    ) -> ServiceLabels {
        let mut host = authority.unwrap_or_default().to_string();
        let mut name = host.clone();
        match route_name {
            Some("block_all") => name = "BlackHoleCluster".to_string(),
            Some("allow_any") => name = "PassthroughCluster".to_string(),
            _ => match cluster_name {
                Some(c) if SPECIAL_CLUSTERS.contains(&c) => name = c.to_string(),
                _ => {
                    let service = cluster_istio_metadata
                        .and_then(|m| m.get("services"))
                        .and_then(Value::as_array)
                        .and_then(|s| s.first());
                    if let Some(service) = service {
                        if let Some(h) = service.get("host").and_then(Value::as_str) {
                            host = h.to_string();
                        }
                        name = match service.get("name").and_then(Value::as_str) {
                            Some(n) => n.to_string(),
                            None => host.split('.').next().unwrap_or_default().to_string(),
                        };
                    }
                }
            },
        }
        ServiceLabels { host, name }
    }
}

/// One finished request as Istio's stats filter sees it.
#[derive(Clone, Debug)]
pub struct IstioRequest<'a> {
    pub reporter: Reporter,
    pub source: &'a PeerLabels,
    pub destination: &'a PeerLabels,
    pub service: &'a ServiceLabels,
    pub protocol: RequestProtocol,
    /// 0 when no response was sent.
    pub status: u16,
    pub grpc_status: Option<i32>,
    /// Envoy's short response flags, `-` when none.
    pub flags: &'a str,
    pub security: SecurityPolicy,
    pub duration: Duration,
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
}

fn or<'a>(v: &'a str, fallback: &'a str) -> &'a str {
    if v.is_empty() { fallback } else { v }
}

impl IstioRequest<'_> {
    /// The standard labels, in the order Istio's stats filter adds them.
    pub fn labels(&self) -> Vec<(&'static str, String)> {
        let (own, peer) = match self.reporter {
            Reporter::Source => (self.source, self.destination),
            Reporter::Destination => (self.destination, self.source),
        };
        let peer_ns = or(&peer.namespace, UNKNOWN);
        let svc = self.service;
        let mut l: Vec<(&'static str, String)> = Vec::with_capacity(25);
        l.push(("reporter", self.reporter.label().into()));
        match self.reporter {
            Reporter::Source => {
                l.push(("source_workload", own.workload.clone()));
                l.push(("source_canonical_service", own.canonical_service.clone()));
                l.push(("source_canonical_revision", own.canonical_revision.clone()));
                l.push(("source_workload_namespace", own.namespace.clone()));
                l.push(("source_principal", or(&own.principal, UNKNOWN).into()));
                l.push(("source_app", own.app.clone()));
                l.push(("source_version", own.version.clone()));
                l.push(("source_cluster", own.cluster.clone()));
                l.push(("destination_workload", or(&peer.workload, UNKNOWN).into()));
                l.push(("destination_workload_namespace", peer_ns.into()));
                l.push(("destination_principal", or(&peer.principal, UNKNOWN).into()));
                l.push(("destination_app", or(&peer.app, UNKNOWN).into()));
                l.push(("destination_version", or(&peer.version, UNKNOWN).into()));
                l.push(("destination_service", or(&svc.host, UNKNOWN).into()));
                l.push((
                    "destination_canonical_service",
                    or(&peer.canonical_service, UNKNOWN).into(),
                ));
                l.push((
                    "destination_canonical_revision",
                    or(&peer.canonical_revision, LATEST).into(),
                ));
                l.push(("destination_service_name", or(&svc.name, UNKNOWN).into()));
                l.push(("destination_service_namespace", peer_ns.into()));
                l.push(("destination_cluster", or(&peer.cluster, UNKNOWN).into()));
            }
            Reporter::Destination => {
                l.push(("source_workload", or(&peer.workload, UNKNOWN).into()));
                l.push((
                    "source_canonical_service",
                    or(&peer.canonical_service, UNKNOWN).into(),
                ));
                l.push((
                    "source_canonical_revision",
                    or(&peer.canonical_revision, LATEST).into(),
                ));
                l.push(("source_workload_namespace", peer_ns.into()));
                l.push(("source_principal", or(&peer.principal, UNKNOWN).into()));
                l.push(("source_app", or(&peer.app, UNKNOWN).into()));
                l.push(("source_version", or(&peer.version, UNKNOWN).into()));
                l.push(("source_cluster", or(&peer.cluster, UNKNOWN).into()));
                l.push(("destination_workload", own.workload.clone()));
                l.push(("destination_workload_namespace", own.namespace.clone()));
                l.push(("destination_principal", or(&own.principal, UNKNOWN).into()));
                l.push(("destination_app", own.app.clone()));
                l.push(("destination_version", own.version.clone()));
                l.push((
                    "destination_service",
                    or(&svc.host, &own.canonical_service).into(),
                ));
                l.push((
                    "destination_canonical_service",
                    own.canonical_service.clone(),
                ));
                l.push((
                    "destination_canonical_revision",
                    own.canonical_revision.clone(),
                ));
                l.push((
                    "destination_service_name",
                    or(&svc.name, &own.canonical_service).into(),
                ));
                l.push(("destination_service_namespace", own.namespace.clone()));
                l.push(("destination_cluster", own.cluster.clone()));
            }
        }
        l.push(("request_protocol", self.protocol.label().into()));
        // TCP metrics carry no response code (Istio adds none for connections).
        if self.protocol != RequestProtocol::Tcp {
            l.push(("response_code", self.status.to_string()));
            let grpc = match (self.protocol, self.grpc_status) {
                (RequestProtocol::Grpc, Some(s)) => s.to_string(),
                _ => String::new(),
            };
            l.push(("grpc_response_status", grpc));
        }
        l.push(("response_flags", or(self.flags, "-").into()));
        l.push(("connection_security_policy", self.security.label().into()));
        l
    }
}

/// Records Istio's standard request metrics into a store.
#[derive(Debug)]
pub struct IstioRecorder {
    store: Arc<Store>,
}

impl IstioRecorder {
    /// Registers Istio's stat namespace and publishes `istio_build` for `istio_version`.
    pub fn new(store: Arc<Store>, istio_version: &str) -> IstioRecorder {
        store.register_namespace(NAMESPACE);
        store
            .gauge_with_tags(
                BUILD,
                &[("component", "proxy"), ("tag", or(istio_version, UNKNOWN))],
            )
            .set(1);
        IstioRecorder { store }
    }

    pub fn record(&self, request: &IstioRequest<'_>) {
        self.request_handles(request).record(
            request.duration,
            request.request_bytes,
            request.response_bytes,
        );
    }

    /// The request metrics of one label set, to keep and bump without name lookups.
    pub fn request_handles(&self, request: &IstioRequest<'_>) -> RequestHandles {
        let owned = request.labels();
        let tags: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        RequestHandles {
            requests_total: self.store.counter_with_tags(REQUESTS_TOTAL, &tags),
            duration: self.store.histogram_with_tags(REQUEST_DURATION, &tags),
            request_bytes: self.store.histogram_with_tags(REQUEST_BYTES, &tags),
            response_bytes: self.store.histogram_with_tags(RESPONSE_BYTES, &tags),
        }
    }

    /// The connection metrics of one label set (`request.protocol` is TCP).
    pub fn tcp_handles(&self, connection: &IstioRequest<'_>) -> TcpHandles {
        let owned = connection.labels();
        let tags: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        TcpHandles {
            opened: self.store.counter_with_tags(TCP_OPENED, &tags),
            closed: self.store.counter_with_tags(TCP_CLOSED, &tags),
            sent: self.store.counter_with_tags(TCP_SENT, &tags),
            received: self.store.counter_with_tags(TCP_RECEIVED, &tags),
        }
    }
}

/// `istio_requests_total` and its histograms for one label set.
#[derive(Clone, Debug)]
pub struct RequestHandles {
    pub requests_total: Counter,
    pub duration: Histogram,
    pub request_bytes: Histogram,
    pub response_bytes: Histogram,
}

impl RequestHandles {
    pub fn record(
        &self,
        duration: Duration,
        request_bytes: Option<u64>,
        response_bytes: Option<u64>,
    ) {
        self.requests_total.inc();
        self.duration
            .record(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        if let Some(b) = request_bytes {
            self.request_bytes.record(b);
        }
        if let Some(b) = response_bytes {
            self.response_bytes.record(b);
        }
    }
}

/// Istio's TCP connection metrics for one label set.
#[derive(Clone, Debug)]
pub struct TcpHandles {
    pub opened: Counter,
    pub closed: Counter,
    /// Bytes sent to the downstream peer.
    pub sent: Counter,
    /// Bytes received from the downstream peer.
    pub received: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> serde_json::Map<String, Value> {
        json!({
            "WORKLOAD_NAME": "productpage-v1",
            "NAMESPACE": "default",
            "CLUSTER_ID": "Kubernetes",
            "LABELS": {"app": "productpage", "version": "v1"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn peer_labels_from_node_and_endpoint() {
        let own = PeerLabels::from_node_metadata(&node());
        assert_eq!(own.canonical_service, "productpage");
        assert_eq!(own.canonical_revision, "v1");
        let meta = BTreeMap::from([(
            "istio".to_string(),
            json!({"workload": "reviews-v2;default;reviews;v2;Kubernetes"}),
        )]);
        let peer = PeerLabels::from_endpoint_metadata(&meta).unwrap();
        assert_eq!(peer.workload, "reviews-v2");
        assert_eq!(peer.canonical_revision, "v2");
        assert_eq!(peer.app, "");
        assert!(PeerLabels::from_workload_string("a;b").is_none());
    }

    #[test]
    fn service_labels() {
        let meta = json!({"services": [{"host": "reviews.default.svc.cluster.local", "name": "reviews", "namespace": "default"}]});
        let s = ServiceLabels::resolve(
            Some("reviews:9080"),
            None,
            Some("outbound|9080||reviews"),
            Some(&meta),
        );
        assert_eq!(s.host, "reviews.default.svc.cluster.local");
        assert_eq!(s.name, "reviews");
        let s = ServiceLabels::resolve(Some("example.com"), Some("allow_any"), None, None);
        assert_eq!(
            (s.host.as_str(), s.name.as_str()),
            ("example.com", "PassthroughCluster")
        );
        let s = ServiceLabels::resolve(None, None, Some("BlackHoleCluster"), None);
        assert_eq!(s.name, "BlackHoleCluster");
    }

    #[test]
    fn tcp_labels_have_no_response_code() {
        let own = PeerLabels::from_node_metadata(&node());
        let peer = PeerLabels::default();
        let svc = ServiceLabels::default();
        let conn = IstioRequest {
            reporter: Reporter::Source,
            source: &own,
            destination: &peer,
            service: &svc,
            protocol: RequestProtocol::Tcp,
            status: 0,
            grpc_status: None,
            flags: "UF",
            security: SecurityPolicy::Unknown,
            duration: Duration::ZERO,
            request_bytes: None,
            response_bytes: None,
        };
        let labels = conn.labels();
        assert_eq!(labels.len(), 23);
        assert!(labels.iter().all(|(k, _)| *k != "response_code"));
        assert_eq!(labels[20], ("request_protocol", "tcp".to_string()));
        assert_eq!(labels[21], ("response_flags", "UF".to_string()));
        let store = Arc::new(Store::default());
        let handles = IstioRecorder::new(store.clone(), "").tcp_handles(&conn);
        handles.opened.inc();
        handles.sent.add(10);
        let snap = store.snapshot();
        let sent = snap
            .samples
            .iter()
            .find(|s| s.extracted == TCP_SENT)
            .unwrap();
        assert_eq!(
            sent.value,
            crate::stats::Value::Counter {
                value: 10,
                used: true
            }
        );
    }

    #[test]
    fn client_side_labels_in_istio_order() {
        let own = PeerLabels::from_node_metadata(&node());
        let peer =
            PeerLabels::from_workload_string("reviews-v1;default;reviews;;Kubernetes").unwrap();
        let svc = ServiceLabels {
            host: "reviews.default.svc.cluster.local".into(),
            name: "reviews".into(),
        };
        let req = IstioRequest {
            reporter: Reporter::Source,
            source: &own,
            destination: &peer,
            service: &svc,
            protocol: RequestProtocol::Http,
            status: 200,
            grpc_status: None,
            flags: "",
            security: SecurityPolicy::Unknown,
            duration: Duration::from_millis(12),
            request_bytes: None,
            response_bytes: Some(300),
        };
        let labels = req.labels();
        let names: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
        assert_eq!(names.len(), 25);
        assert_eq!(names[0], "reporter");
        assert_eq!(names[24], "connection_security_policy");
        let get = |k: &str| labels.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("source_workload"), "productpage-v1");
        assert_eq!(get("destination_workload"), "reviews-v1");
        assert_eq!(get("destination_canonical_revision"), "latest");
        assert_eq!(get("destination_app"), "unknown");
        assert_eq!(get("destination_service_namespace"), "default");
        assert_eq!(get("response_flags"), "-");
        assert_eq!(get("grpc_response_status"), "");

        let store = Arc::new(Store::default());
        let recorder = IstioRecorder::new(store.clone(), "1.30.0");
        recorder.record(&req);
        recorder.record(&req);
        let snap = store.snapshot();
        let total = snap
            .samples
            .iter()
            .find(|s| s.extracted == REQUESTS_TOTAL)
            .unwrap();
        assert!(matches!(
            total.value,
            crate::stats::Value::Counter { value: 2, .. }
        ));
        assert!(snap.samples.iter().any(|s| s.extracted == REQUEST_DURATION));
        assert!(snap.samples.iter().any(|s| s.extracted == RESPONSE_BYTES));
        let request_bytes = snap
            .samples
            .iter()
            .find(|s| s.extracted == REQUEST_BYTES)
            .unwrap();
        assert!(
            !request_bytes.value.used(),
            "nothing recorded without a size"
        );
    }
}
