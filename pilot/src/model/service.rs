//! Services and their ports as the mesh sees them, whichever registry they come from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// A fully qualified service name, e.g. `reviews.default.svc.cluster.local`.
pub type Hostname = Arc<str>;

/// Application protocol of a service port, decided from its name or `appProtocol`
/// the way Istio does (inventory §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Udp,
    Mongo,
    Mysql,
    Redis,
    /// No protocol could be decided: Istio sniffs such ports.
    Unsupported,
}

impl Protocol {
    /// Parses a protocol name as Istio does for port-name prefixes and `appProtocol`.
    pub fn parse(name: &str) -> Protocol {
        match name.to_ascii_lowercase().as_str() {
            "http" | "http1" | "kubernetes.io/ws" => Protocol::Http,
            "http2" | "kubernetes.io/h2c" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "https" | "kubernetes.io/wss" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "mongo" => Protocol::Mongo,
            "mysql" => Protocol::Mysql,
            "redis" => Protocol::Redis,
            _ => Protocol::Unsupported,
        }
    }

    /// Decides a Kubernetes service port's protocol: UDP wins, then `appProtocol`,
    /// then the port name (`grpc-web*`, or the part before the first `-`), then the
    /// well-known TCP ports.
    pub fn from_kube_port(
        name: Option<&str>,
        app_protocol: Option<&str>,
        transport: Option<&str>,
        port: u16,
    ) -> Protocol {
        if transport.is_some_and(|t| t.eq_ignore_ascii_case("udp")) {
            return Protocol::Udp;
        }
        if let Some(app) = app_protocol {
            let p = Protocol::parse(app);
            if p != Protocol::Unsupported {
                return p;
            }
        }
        if let Some(name) = name {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("grpc-web") {
                return Protocol::GrpcWeb;
            }
            let prefix = lower.split('-').next().unwrap_or_default();
            let p = Protocol::parse(prefix);
            if p != Protocol::Unsupported {
                return p;
            }
        }
        match port {
            25 | 53 | 3306 | 27017 => Protocol::Tcp,
            _ => Protocol::Unsupported,
        }
    }

    /// True for protocols routed by the HTTP connection manager.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// True for protocols that need HTTP/2 to the upstream.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }

    /// True for protocols carried as opaque TCP (including TLS, matched by SNI).
    pub fn is_tcp(self) -> bool {
        !self.is_http() && self != Protocol::Udp && self != Protocol::Unsupported
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-Web",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Mongo => "Mongo",
            Protocol::Mysql => "MySQL",
            Protocol::Redis => "Redis",
            Protocol::Unsupported => "UnsupportedProtocol",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One port of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// The workload port traffic for this service port lands on, when it is a number.
    /// Kubernetes named target ports resolve per endpoint, so they are `None` here.
    pub target_port: Option<u16>,
}

/// How the proxy finds the endpoints of a service (Istio's `Resolution`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The proxy balances over endpoints pushed by EDS.
    ClientSideLb,
    /// Endpoints are DNS names the proxy resolves (STRICT_DNS).
    DnsLb,
    /// One DNS name resolved round-robin (LOGICAL_DNS).
    DnsRoundRobinLb,
    /// The proxy forwards to the original destination (headless services).
    Passthrough,
    /// A name for another service (ExternalName); no cluster of its own.
    Alias,
}

/// Where a service is visible (`exportTo`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Visibility {
    /// `*`: every namespace.
    #[default]
    Public,
    /// `.`: only the service's own namespace.
    Private,
    /// `~`: nowhere.
    None,
    /// A list of namespaces.
    Namespaces(Vec<String>),
}

impl Visibility {
    /// Parses an `exportTo` list; an empty list means the given default.
    pub fn from_export_to(list: &[String], default: Visibility) -> Visibility {
        if list.is_empty() {
            return default;
        }
        if list.iter().any(|e| e == "*") {
            return Visibility::Public;
        }
        if list.iter().all(|e| e == "~") {
            return Visibility::None;
        }
        if list.len() == 1 && list[0] == "." {
            return Visibility::Private;
        }
        Visibility::Namespaces(list.iter().filter(|e| *e != "~").cloned().collect())
    }

    /// Whether an object of `own_namespace` with this visibility can be seen from `from`.
    pub fn visible_from(&self, own_namespace: &str, from: &str) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::Private => own_namespace == from,
            Visibility::None => false,
            Visibility::Namespaces(list) => list
                .iter()
                .any(|ns| ns == from || (ns == "." && own_namespace == from)),
        }
    }
}

/// Which registry a service or endpoint came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Provider {
    Kubernetes,
    External,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Kubernetes => "Kubernetes",
            Provider::External => "External",
        }
    }
}

/// A service of the mesh: a Kubernetes Service or a ServiceEntry host.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub hostname: Hostname,
    /// Name and namespace of the object that declared it.
    pub name: String,
    pub namespace: String,
    /// Cluster VIPs; empty for headless services and ServiceEntries without addresses.
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub resolution: Resolution,
    pub mesh_external: bool,
    pub visibility: Visibility,
    pub labels: BTreeMap<String, String>,
    pub provider: Provider,
    /// The target of an ExternalName service.
    pub external_name: Option<String>,
    /// For ordering conflicts the way Istio does: older wins.
    pub creation_time: Option<String>,
    pub service_accounts: Vec<String>,
}

impl Service {
    pub fn port_by_number(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    pub fn port_by_name(&self, name: &str) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The VIP used to name TCP listeners (`<VIP>_<port>`), if any.
    pub fn primary_address(&self) -> Option<IpAddr> {
        self.addresses.first().copied()
    }

    pub fn is_headless(&self) -> bool {
        self.resolution == Resolution::Passthrough
    }
}

/// `outbound|<port>|<subset>|<host>`: the name of an outbound cluster.
pub fn outbound_cluster_name(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// `inbound|<port>||`: the name of an inbound cluster.
pub fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

/// The parts of an outbound cluster name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterKey<'a> {
    pub direction: &'a str,
    pub port: u16,
    pub subset: &'a str,
    pub host: &'a str,
}

/// Splits `outbound|80|v1|reviews.default.svc.cluster.local` into its parts.
pub fn parse_cluster_name(name: &str) -> Option<ClusterKey<'_>> {
    let mut parts = name.splitn(4, '|');
    let direction = parts.next()?;
    let port = parts.next()?.parse().ok()?;
    let subset = parts.next()?;
    let host = parts.next()?;
    Some(ClusterKey {
        direction,
        port,
        subset,
        host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_from_port_name_and_app_protocol() {
        assert_eq!(
            Protocol::from_kube_port(Some("http-web"), None, None, 80),
            Protocol::Http
        );
        assert_eq!(
            Protocol::from_kube_port(Some("grpc-web-x"), None, None, 80),
            Protocol::GrpcWeb
        );
        assert_eq!(
            Protocol::from_kube_port(Some("web"), Some("kubernetes.io/h2c"), None, 80),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::from_kube_port(Some("http"), None, Some("UDP"), 53),
            Protocol::Udp
        );
        assert_eq!(
            Protocol::from_kube_port(Some("db"), None, None, 3306),
            Protocol::Tcp
        );
        assert_eq!(
            Protocol::from_kube_port(None, None, None, 8080),
            Protocol::Unsupported
        );
    }

    #[test]
    fn visibility_rules() {
        let private = Visibility::from_export_to(&[".".into()], Visibility::Public);
        assert!(private.visible_from("a", "a"));
        assert!(!private.visible_from("a", "b"));
        let list = Visibility::from_export_to(&["b".into(), ".".into()], Visibility::Public);
        assert!(list.visible_from("a", "a"));
        assert!(list.visible_from("a", "b"));
        assert!(!list.visible_from("a", "c"));
        assert_eq!(
            Visibility::from_export_to(&[], Visibility::Private),
            Visibility::Private
        );
    }

    #[test]
    fn cluster_names_roundtrip() {
        let name = outbound_cluster_name(9080, "v1", "reviews.default.svc.cluster.local");
        assert_eq!(name, "outbound|9080|v1|reviews.default.svc.cluster.local");
        let key = parse_cluster_name(&name).unwrap();
        assert_eq!(key.port, 9080);
        assert_eq!(key.subset, "v1");
        assert_eq!(key.host, "reviews.default.svc.cluster.local");
        assert_eq!(inbound_cluster_name(8080), "inbound|8080||");
    }
}
