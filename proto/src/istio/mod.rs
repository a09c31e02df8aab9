//! Istio's `networking.istio.io` config kinds (VirtualService, DestinationRule, ServiceEntry,
//! WorkloadEntry, Sidecar) and the modelled part of MeshConfig, as serde types that read the
//! same JSON/YAML Istio does.
//!
//! - Decoding is strict like the CRDs: unknown fields, wrong types and two members of one
//!   protobuf `oneof` are errors naming the JSON path ([`parse_spec`]). MeshConfig is the
//!   exception: it keeps unknown keys aside ([`MeshConfig::ignored_fields`]).
//! - `validate()` on each spec applies Istio's semantic rules ([`FieldError`]).
//! - [`crd_manifests`] renders the CRDs from these types.
//!
//! Field conventions follow proto3: messages, wrappers and durations are `Option`; scalars,
//! strings, lists and maps use their zero value for "unset".

mod base64;
mod common;
mod crd;
mod destination_rule;
mod duration;
mod kind;
mod mesh;
mod oneof;
mod parse;
mod service_entry;
mod sidecar;
mod tls;
mod validate;
mod virtual_service;
mod workload_entry;

pub use common::{
    Destination, HeaderOperations, Headers, Percent, PortSelector, StringMatch,
    WorkloadMatchSelector, WorkloadSelector,
};
pub use crd::{crd, crd_manifests, spec_schema};
pub use destination_rule::{
    ConnectionKeepalive, ConnectionPoolSettings, ConsistentHashLb, DestinationRule,
    H2UpgradePolicy, HashAlgorithm, HashKey, HttpCookie, HttpCookieAttribute, HttpSettings,
    LbPolicy, LoadBalancerSettings, LocalityDistribute, LocalityFailover,
    LocalityLoadBalancerSetting, MagLev, OutlierDetection, PortTrafficPolicy, ProxyProtocol,
    ProxyProtocolVersion, RetryBudget, RingHash, SimpleLb, Subset, TcpKeepalive, TcpSettings,
    TrafficPolicy, TunnelSettings, WarmupConfiguration, ZoneAwareLoadBalancerSetting,
};
pub use duration::{Duration, DurationError};
pub use kind::{GROUP, Kind, STORAGE_VERSION, Spec, VERSIONS};
pub use mesh::{
    AccessLogEncoding, InterceptionMode, MeshConfig, MeshH2UpgradePolicy, MeshOutboundMode,
    MeshOutboundTrafficPolicy, ProxyConfig,
};
pub use parse::{SpecError, parse_spec};
pub use service_entry::{Location, Resolution, ServiceEntry, ServicePort};
pub use sidecar::{
    CaptureMode, IstioEgressListener, IstioIngressListener, OutboundTrafficMode,
    OutboundTrafficPolicy, Sidecar, SidecarPort,
};
pub use tls::{
    ClientTlsMode, ClientTlsSettings, ServerTlsMode, ServerTlsSettings, TlsCertificate, TlsProtocol,
};
pub use validate::{FieldError, Validate};
pub use virtual_service::{
    Abort, AbortError, CorsPolicy, Delay, DelayKind, Delegate, HttpBody, HttpDirectResponse,
    HttpFaultInjection, HttpMatchRequest, HttpMirrorPolicy, HttpRedirect, HttpRetry, HttpRewrite,
    HttpRoute, HttpRouteDestination, L4MatchAttributes, RedirectPort, RedirectPortSelection,
    RegexRewrite, RouteDestination, TcpRoute, TlsMatchAttributes, TlsRoute, UnmatchedPreflights,
    VirtualService,
};
pub use workload_entry::WorkloadEntry;
