//! TLS settings: client side (`ClientTLSSettings`, DestinationRule) and server side
//! (`ServerTLSSettings`, Gateway and Sidecar ingress).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::is_default;

/// TLS settings for connections to an upstream service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientTlsSettings {
    /// Indicates whether connections to this port should be secured using TLS.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: ClientTlsMode,
    /// REQUIRED if mode is `MUTUAL`: path to the client certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_certificate: String,
    /// REQUIRED if mode is `MUTUAL`: path to the client private key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    /// Path to the CA certificates used to verify the server certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    /// Name of the secret that holds the TLS certs for the client.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    /// Alternate names to verify the subject identity in the certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// SNI string to present to the server during TLS handshake.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// Skip verifying the server certificate's CA signature and SAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub insecure_skip_verify: Option<bool>,
    /// Path to the certificate revocation list used to verify the server certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
}

/// Upstream TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    /// Plain text.
    #[default]
    Disable,
    /// TLS to the upstream.
    Simple,
    /// Mutual TLS with user-provided certificates.
    Mutual,
    /// Mutual TLS with Istio's workload certificates.
    IstioMutual,
}

/// TLS settings of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerTlsSettings {
    /// Send a 301 redirect for all http connections, asking the clients to use HTTPS.
    #[serde(default, skip_serializing_if = "is_default")]
    pub https_redirect: bool,
    /// Indicates whether connections to this port should be secured using TLS.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: ServerTlsMode,
    /// Path to the server certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    /// Path to the server private key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    /// Path to the CA certificates used to verify client certificates.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    /// Path to the certificate revocation list used to verify client certificates.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
    /// Name of the secret that holds the TLS certs including the CA certificates.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    /// Name of the secret holding only the CA certificate for client verification.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert_credential_name: String,
    /// Names of secrets holding several server certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_names: Vec<String>,
    /// Several server certificates given as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_certificates: Vec<TlsCertificate>,
    /// Alternate names to verify the subject identity in the client certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Base64-encoded SHA-256 hashes of the SPKIs of authorized client certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_spki: Vec<String>,
    /// Hex-encoded SHA-256 hashes of the authorized client certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS protocol version.
    #[serde(default, skip_serializing_if = "is_default")]
    pub min_protocol_version: TlsProtocol,
    /// Maximum TLS protocol version.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_protocol_version: TlsProtocol,
    /// If specified, only support the specified cipher list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
}

/// A server certificate and key given as files.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsCertificate {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
}

/// Listener TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Forward the connection using SNI, without terminating TLS.
    #[default]
    Passthrough,
    /// Standard TLS termination.
    Simple,
    /// Mutual TLS requiring a client certificate.
    Mutual,
    /// SNI-based forwarding to `outbound_` clusters without a VirtualService.
    AutoPassthrough,
    /// Mutual TLS with Istio's workload certificates.
    IstioMutual,
    /// Mutual TLS where the client certificate is optional.
    OptionalMutual,
}

/// TLS protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum TlsProtocol {
    /// The proxy's default.
    #[default]
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    /// TLS 1.0.
    #[serde(rename = "TLSV1_0")]
    TlsV1_0,
    /// TLS 1.1.
    #[serde(rename = "TLSV1_1")]
    TlsV1_1,
    /// TLS 1.2.
    #[serde(rename = "TLSV1_2")]
    TlsV1_2,
    /// TLS 1.3.
    #[serde(rename = "TLSV1_3")]
    TlsV1_3,
}
