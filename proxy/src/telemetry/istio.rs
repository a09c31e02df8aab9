//! Istio's standard metrics for one connection manager or TCP proxy: which side reports
//! (`reporter`), and the metric handles of each label set, resolved once and kept, so a
//! request bumps atomics after one cache lookup instead of building 25 label strings.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::http::ResponseFlags;
use crate::stats::istio::{
    IstioRequest, Reporter, RequestHandles, RequestProtocol, SecurityPolicy, TcpHandles,
};
use crate::stats::{IstioRecorder, PeerLabels, ServiceLabels};

/// Label sets kept per filter before the cache starts over (a bound on what an
/// unusual traffic mix, e.g. many distinct authorities through a passthrough, can hold).
const CACHE_LIMIT: usize = 4096;

/// Everything that varies between the label sets of one filter.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct LabelKey {
    pub service: Arc<ServiceLabels>,
    pub peer: Option<Arc<PeerLabels>>,
    pub protocol: RequestProtocol,
    pub status: u16,
    pub grpc_status: Option<u32>,
    pub flags: ResponseFlags,
}

/// The Istio stats of one filter chain.
#[derive(Debug)]
pub struct IstioSide {
    reporter: Reporter,
    recorder: Arc<IstioRecorder>,
    own: Arc<PeerLabels>,
    unknown: Arc<PeerLabels>,
    requests: RwLock<HashMap<LabelKey, RequestHandles>>,
    connections: RwLock<HashMap<LabelKey, TcpHandles>>,
}

impl IstioSide {
    pub fn new(reporter: Reporter, recorder: Arc<IstioRecorder>, own: Arc<PeerLabels>) -> Self {
        IstioSide {
            reporter,
            recorder,
            own,
            unknown: Arc::default(),
            requests: RwLock::default(),
            connections: RwLock::default(),
        }
    }

    pub fn reporter(&self) -> Reporter {
        self.reporter
    }

    /// Plaintext only for now: the server side knows there was no mTLS, the client side
    /// reports nothing (as Istio's filter does).
    fn security(&self) -> SecurityPolicy {
        match self.reporter {
            Reporter::Source => SecurityPolicy::Unknown,
            Reporter::Destination => SecurityPolicy::None,
        }
    }

    fn request<'a>(&'a self, key: &'a LabelKey, flags: &'a str) -> IstioRequest<'a> {
        let peer = key.peer.as_deref().unwrap_or(&self.unknown);
        let (source, destination) = match self.reporter {
            Reporter::Source => (&*self.own, peer),
            Reporter::Destination => (peer, &*self.own),
        };
        IstioRequest {
            reporter: self.reporter,
            source,
            destination,
            service: &key.service,
            protocol: key.protocol,
            status: key.status,
            grpc_status: key.grpc_status.and_then(|g| i32::try_from(g).ok()),
            flags,
            security: self.security(),
            duration: std::time::Duration::ZERO,
            request_bytes: None,
            response_bytes: None,
        }
    }

    pub fn request_handles(&self, key: LabelKey) -> RequestHandles {
        if let Some(h) = self.requests.read().get(&key) {
            return h.clone();
        }
        let flags = key.flags.to_string();
        let handles = self.recorder.request_handles(&self.request(&key, &flags));
        let mut cache = self.requests.write();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, handles.clone());
        handles
    }

    pub fn tcp_handles(&self, key: LabelKey) -> TcpHandles {
        if let Some(h) = self.connections.read().get(&key) {
            return h.clone();
        }
        let flags = key.flags.to_string();
        let handles = self.recorder.tcp_handles(&self.request(&key, &flags));
        let mut cache = self.connections.write();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, handles.clone());
        handles
    }
}

/// Which side an Istio listener's filter reports as. Pilot names connection managers
/// `outbound_…`/`inbound_…` and inbound TCP proxies after inbound clusters; traffic on
/// `virtualInbound` is always the server side. Listeners of neither kind (the
/// bootstrap's Prometheus and health listeners) report nothing, as Istio puts no stats
/// filter there.
pub fn http_reporter(listener: &str, stat_prefix: &str) -> Option<Reporter> {
    if stat_prefix.starts_with("inbound_") || listener == "virtualInbound" {
        Some(Reporter::Destination)
    } else if stat_prefix.starts_with("outbound_") || listener == "virtualOutbound" {
        Some(Reporter::Source)
    } else {
        None
    }
}

pub fn tcp_reporter(listener: &str, stat_prefix: &str) -> Option<Reporter> {
    if listener == "virtualInbound"
        || stat_prefix.starts_with("inbound|")
        || stat_prefix.starts_with("InboundPassthroughCluster")
    {
        Some(Reporter::Destination)
    } else {
        Some(Reporter::Source)
    }
}

/// Envoy's `httpToGrpcStatus`, for gRPC requests answered without a `grpc-status`.
pub fn grpc_status_of_http(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ResponseFlag;
    use crate::stats::Store;
    use crate::stats::istio::REQUESTS_TOTAL;

    #[test]
    fn handles_are_reused_per_label_set() {
        let store = Arc::new(Store::default());
        let recorder = Arc::new(IstioRecorder::new(store.clone(), "1.30.0"));
        let own = Arc::new(PeerLabels {
            workload: "productpage-v1".into(),
            namespace: "default".into(),
            ..PeerLabels::default()
        });
        let side = IstioSide::new(Reporter::Source, recorder, own);
        let service = Arc::new(ServiceLabels {
            host: "reviews.default.svc.cluster.local".into(),
            name: "reviews".into(),
        });
        let key = |status, flags| LabelKey {
            service: service.clone(),
            peer: None,
            protocol: RequestProtocol::Http,
            status,
            grpc_status: None,
            flags,
        };
        let ok = side.request_handles(key(200, ResponseFlags::default()));
        let again = side.request_handles(key(200, ResponseFlags::default()));
        assert!(ok.requests_total.same_as(&again.requests_total));
        let mut uh = ResponseFlags::default();
        uh.insert(ResponseFlag::NoHealthyUpstream);
        let failed = side.request_handles(key(503, uh));
        assert!(!failed.requests_total.same_as(&ok.requests_total));
        failed.requests_total.inc();
        let snap = store.snapshot();
        let sample = snap
            .samples
            .iter()
            .find(|s| s.extracted == REQUESTS_TOTAL && s.value.used())
            .unwrap();
        let tag = |k: &str| {
            sample
                .tags
                .iter()
                .find(|t| t.name == k)
                .map(|t| t.value.clone())
        };
        assert_eq!(tag("response_flags").as_deref(), Some("UH"));
        assert_eq!(tag("response_code").as_deref(), Some("503"));
        assert_eq!(tag("destination_workload").as_deref(), Some("unknown"));
        assert_eq!(tag("source_workload").as_deref(), Some("productpage-v1"));
    }

    #[test]
    fn reporters_follow_istio_names() {
        assert_eq!(
            http_reporter("0.0.0.0_9080", "outbound_0.0.0.0_9080;"),
            Some(Reporter::Source)
        );
        assert_eq!(
            http_reporter("virtualInbound", "inbound_0.0.0.0_9080;"),
            Some(Reporter::Destination)
        );
        assert_eq!(http_reporter("", "stats"), None);
        assert_eq!(
            tcp_reporter("virtualInbound", "inbound|9999||"),
            Some(Reporter::Destination)
        );
        assert_eq!(
            tcp_reporter("virtualOutbound", "PassthroughCluster"),
            Some(Reporter::Source)
        );
        assert_eq!(grpc_status_of_http(503), 14);
        assert_eq!(grpc_status_of_http(200), 2);
    }
}
