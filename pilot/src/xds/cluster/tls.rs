//! `trafficPolicy.tls` and `proxyProtocol` → the cluster's transport socket.
//!
//! Istio serves every certificate through SDS (`sds-grpc`, the agent's socket), which a
//! plain Envoy does not have. So only what works without SDS is emitted: SIMPLE and
//! MUTUAL with certificate files, referenced inline as files. ISTIO_MUTUAL, auto mTLS
//! and `credentialName` need SDS and are left out (the cluster stays plaintext).

use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::core::v3::data_source::Specifier;
use strait_proto::envoy::config::core::v3::proxy_protocol_config::Version;
use strait_proto::envoy::config::core::v3::transport_socket::ConfigType;
use strait_proto::envoy::config::core::v3::{
    DataSource, ProxyProtocolConfig, TransportSocket, UpstreamHttpProtocolOptions,
};
use strait_proto::envoy::extensions::transport_sockets::proxy_protocol::v3::ProxyProtocolUpstreamTransport;
use strait_proto::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use strait_proto::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use strait_proto::envoy::extensions::transport_sockets::tls::v3::tls_parameters::TlsProtocol;
use strait_proto::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, TlsCertificate, TlsParameters,
    UpstreamTlsContext,
};
use strait_proto::envoy::r#type::matcher::v3::StringMatcher;
use strait_proto::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use strait_proto::istio::{ClientTlsMode, ClientTlsSettings, ProxyProtocol, ProxyProtocolVersion};
use strait_proto::xds::any;

use super::{ClusterDraft, metadata, protocol};

pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
/// Istio's name for the plain socket it wraps in the PROXY protocol one.
pub const RAW_BUFFER_SOCKET: &str = "raw_buffer";
pub const PROXY_PROTOCOL_SOCKET: &str = "envoy.transport_sockets.upstream_proxy_protocol";

/// Where Istio's `caCertificates: system` points on Debian-family images.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What decides the TLS of a cluster besides the settings themselves.
#[derive(Clone, Copy, Debug)]
pub struct TlsInput<'a> {
    /// Service accounts of ServiceEntry hosts, the default SANs for their TLS.
    pub external_service_accounts: &'a [String],
}

/// Sets the transport socket and the SIMPLE/MUTUAL cluster metadata.
pub fn apply(draft: &mut ClusterDraft, settings: Option<&ClientTlsSettings>, input: &TlsInput<'_>) {
    let Some(settings) = settings else {
        return;
    };
    let mutual = match settings.mode {
        ClientTlsMode::Simple => false,
        ClientTlsMode::Mutual => true,
        ClientTlsMode::Disable | ClientTlsMode::IstioMutual => return,
    };
    metadata::set_alpn_override_off(&mut draft.cluster.metadata);
    if !settings.credential_name.is_empty() {
        // Sidecars ignore credentialName unless the rule selects workloads (Istio keeps
        // secrets from every sidecar a rule reaches); otherwise it needs SDS.
        return;
    }
    let Some(context) = upstream_context(draft, settings, input, mutual) else {
        return;
    };
    draft.cluster.transport_socket = Some(TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(any::pack(&context))),
    });
}

fn upstream_context(
    draft: &mut ClusterDraft,
    settings: &ClientTlsSettings,
    input: &TlsInput<'_>,
    mutual: bool,
) -> Option<UpstreamTlsContext> {
    let mut common = CommonTlsContext {
        tls_params: Some(tls_params()),
        ..Default::default()
    };
    if mutual {
        // Istio drops the whole TLS context when the files are missing.
        if settings.client_certificate.is_empty() || settings.private_key.is_empty() {
            return None;
        }
        common.tls_certificates = vec![TlsCertificate {
            certificate_chain: Some(file(&settings.client_certificate)),
            private_key: Some(file(&settings.private_key)),
            ..Default::default()
        }];
    }
    set_auto_sni_and_san(draft, settings);
    let sans: &[String] = if settings.subject_alt_names.is_empty() {
        input.external_service_accounts
    } else {
        &settings.subject_alt_names
    };
    common.validation_context_type = Some(ValidationContextType::ValidationContext(
        validation_context(settings, sans),
    ));
    if protocol::is_http2(draft) {
        common.alpn_protocols = vec!["h2".to_string()];
    }
    Some(UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: settings.sni.clone(),
        ..Default::default()
    })
}

/// TLS 1.2 to 1.3. (Istio also applies the mesh's `tlsDefaults` curves and ciphers,
/// which the modelled MeshConfig does not carry yet.)
fn tls_params() -> TlsParameters {
    TlsParameters {
        tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
        tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
        ..Default::default()
    }
}

/// Skipping verification leaves an empty validation context, as Istio does.
fn validation_context(
    settings: &ClientTlsSettings,
    sans: &[String],
) -> CertificateValidationContext {
    if settings.insecure_skip_verify == Some(true) {
        return CertificateValidationContext::default();
    }
    let ca = if settings.ca_certificates.is_empty() || settings.ca_certificates == "system" {
        SYSTEM_CA_BUNDLE
    } else {
        settings.ca_certificates.as_str()
    };
    #[allow(deprecated)]
    CertificateValidationContext {
        trusted_ca: Some(file(ca)),
        // Istio still uses this (deprecated) field: it matches SANs of any type.
        match_subject_alt_names: sans.iter().map(|s| exact(s)).collect(),
        crl: (!settings.ca_crl.is_empty()).then(|| file(&settings.ca_crl)),
        ..Default::default()
    }
}

/// Without an explicit SNI Envoy takes it from the request's host, and then checks the
/// certificate against that name unless SANs were given.
fn set_auto_sni_and_san(draft: &mut ClusterDraft, settings: &ClientTlsSettings) {
    let auto_sni = settings.sni.is_empty();
    let auto_san = auto_sni
        && settings.subject_alt_names.is_empty()
        && settings.insecure_skip_verify != Some(true);
    if !auto_sni && !auto_san {
        return;
    }
    let options = draft
        .http_mut()
        .upstream_http_protocol_options
        .get_or_insert_with(UpstreamHttpProtocolOptions::default);
    options.auto_sni |= auto_sni;
    options.auto_san_validation |= auto_san;
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

fn exact(s: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(s.to_string())),
        ..Default::default()
    }
}

pub fn raw_buffer() -> TransportSocket {
    TransportSocket {
        name: RAW_BUFFER_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(any::pack(&RawBuffer {}))),
    }
}

/// `proxyProtocol`: wraps the transport socket (plain TCP when there is none) so that a
/// PROXY header precedes the upstream bytes.
pub fn apply_proxy_protocol(cluster: &mut Cluster, proxy_protocol: Option<&ProxyProtocol>) {
    let Some(pp) = proxy_protocol else {
        return;
    };
    let version = match pp.version {
        ProxyProtocolVersion::V1 => Version::V1,
        ProxyProtocolVersion::V2 => Version::V2,
    };
    let wrap = |inner: TransportSocket| TransportSocket {
        name: PROXY_PROTOCOL_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(any::pack(
            &ProxyProtocolUpstreamTransport {
                config: Some(ProxyProtocolConfig {
                    version: version as i32,
                    ..Default::default()
                }),
                transport_socket: Some(inner),
                ..Default::default()
            },
        ))),
    };
    if cluster.transport_socket_matches.is_empty() {
        let inner = cluster.transport_socket.take().unwrap_or_else(raw_buffer);
        cluster.transport_socket = Some(wrap(inner));
        return;
    }
    for m in &mut cluster.transport_socket_matches {
        if let Some(inner) = m.transport_socket.take() {
            m.transport_socket = Some(wrap(inner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> TlsInput<'static> {
        TlsInput {
            external_service_accounts: &[],
        }
    }

    fn context(c: &Cluster) -> UpstreamTlsContext {
        let ts = c.transport_socket.as_ref().unwrap();
        assert_eq!(ts.name, TLS_SOCKET);
        let Some(ConfigType::TypedConfig(a)) = &ts.config_type else {
            panic!("no typed config");
        };
        any::unpack(a).unwrap()
    }

    #[test]
    fn simple_tls_uses_files_and_auto_sni() {
        let mut d = ClusterDraft::default();
        let settings = ClientTlsSettings {
            mode: ClientTlsMode::Simple,
            ca_certificates: "/etc/certs/ca.pem".into(),
            ..Default::default()
        };
        apply(&mut d, Some(&settings), &input());
        let ctx = context(&d.cluster);
        let common = ctx.common_tls_context.unwrap();
        let Some(ValidationContextType::ValidationContext(v)) = common.validation_context_type
        else {
            panic!("no validation context");
        };
        assert_eq!(
            v.trusted_ca.unwrap().specifier,
            Some(Specifier::Filename("/etc/certs/ca.pem".into()))
        );
        let up = d.http.unwrap().upstream_http_protocol_options.unwrap();
        assert!(up.auto_sni && up.auto_san_validation);
    }

    #[test]
    fn mutual_without_files_and_istio_mutual_stay_plaintext() {
        let mut d = ClusterDraft::default();
        let mutual = ClientTlsSettings {
            mode: ClientTlsMode::Mutual,
            ..Default::default()
        };
        apply(&mut d, Some(&mutual), &input());
        assert!(d.cluster.transport_socket.is_none());
        let istio = ClientTlsSettings {
            mode: ClientTlsMode::IstioMutual,
            ..Default::default()
        };
        let mut d = ClusterDraft::default();
        apply(&mut d, Some(&istio), &input());
        assert!(d.cluster.transport_socket.is_none());
        assert!(d.cluster.metadata.is_none());
    }

    #[test]
    fn proxy_protocol_wraps_raw_buffer() {
        let mut c = Cluster::default();
        apply_proxy_protocol(
            &mut c,
            Some(&ProxyProtocol {
                version: ProxyProtocolVersion::V2,
            }),
        );
        let ts = c.transport_socket.unwrap();
        assert_eq!(ts.name, PROXY_PROTOCOL_SOCKET);
        let Some(ConfigType::TypedConfig(a)) = ts.config_type else {
            panic!("no typed config");
        };
        let pp: ProxyProtocolUpstreamTransport = any::unpack(&a).unwrap();
        assert_eq!(pp.config.unwrap().version, Version::V2 as i32);
        assert_eq!(pp.transport_socket.unwrap().name, RAW_BUFFER_SOCKET);
    }
}
