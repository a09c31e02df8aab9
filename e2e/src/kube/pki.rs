//! Certificates and keys for one control plane, made with the `openssl` CLI
//! (no crypto crate to compile for the tests): a CA, the apiserver's serving
//! certificate, an admin client certificate and the service-account key pair.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Ten years: a kept test directory stays usable with `scripts/kube-env`.
const DAYS: &str = "3650";

/// Names the in-cluster clients use for the apiserver, besides its IP.
const SERVICE_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// Paths of the generated files, all PEM.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// `CN=strait-admin, O=system:masters`: RBAC lets it do anything.
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// PKCS#8 private key: the apiserver signs service-account tokens with it,
    /// kube-controller-manager signs legacy token secrets.
    pub sa_key: PathBuf,
    /// Its public half, which the apiserver verifies tokens with.
    pub sa_pub: PathBuf,
}

impl Pki {
    /// Writes everything into `dir` (created if missing). The serving
    /// certificate is valid for `ip`, the service names of `kubernetes.default`
    /// and `service_ip` (the first address of the service range).
    pub fn generate(dir: &Path, ip: Ipv4Addr, service_ip: Ipv4Addr) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        };
        openssl(
            Command::new("openssl")
                .args(new_key_and_cert(
                    &pki.ca_key,
                    &pki.ca_cert,
                    "/CN=strait-e2e-ca",
                ))
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        )?;

        let mut sans = vec![format!("IP:{ip}"), format!("IP:{service_ip}")];
        sans.extend(SERVICE_NAMES.iter().map(|n| format!("DNS:{n}")));
        openssl(
            Command::new("openssl")
                .args(new_key_and_cert(
                    &pki.serving_key,
                    &pki.serving_cert,
                    "/CN=kube-apiserver",
                ))
                .args(signed_by(&pki))
                .args(["-addext", &format!("subjectAltName={}", sans.join(","))])
                .args(["-addext", "extendedKeyUsage=serverAuth"]),
        )?;

        openssl(
            Command::new("openssl")
                .args(new_key_and_cert(
                    &pki.admin_key,
                    &pki.admin_cert,
                    "/O=system:masters/CN=strait-admin",
                ))
                .args(signed_by(&pki))
                .args(["-addext", "extendedKeyUsage=clientAuth"]),
        )?;

        openssl(
            Command::new("openssl")
                .args(["genpkey", "-algorithm", "EC"])
                .args(["-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
                .arg(&pki.sa_key),
        )?;
        // The apiserver's --service-account-key-file does not read PKCS#8 EC
        // private keys, only public keys (or SEC1/RSA private keys).
        openssl(
            Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&pki.sa_key)
                .arg("-out")
                .arg(&pki.sa_pub),
        )?;
        Ok(pki)
    }
}

/// `openssl req -x509` arguments for a fresh P-256 key and a self-signed
/// certificate (made CA-signed by [`signed_by`]).
fn new_key_and_cert(key: &Path, cert: &Path, subject: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["req", "-x509", "-newkey", "ec", "-pkeyopt"]
        .into_iter()
        .chain(["ec_paramgen_curve:P-256", "-nodes", "-days", DAYS])
        .chain(["-subj", subject])
        .map(OsString::from)
        .collect();
    args.extend(["-keyout".into(), key.into(), "-out".into(), cert.into()]);
    args
}

fn signed_by(pki: &Pki) -> Vec<OsString> {
    vec![
        "-CA".into(),
        pki.ca_cert.clone().into(),
        "-CAkey".into(),
        pki.ca_key.clone().into(),
        "-addext".into(),
        "basicConstraints=critical,CA:FALSE".into(),
        "-addext".into(),
        "keyUsage=critical,digitalSignature,keyEncipherment".into(),
    ]
}

fn openssl(cmd: &mut Command) -> Result<()> {
    let output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A kubeconfig with one cluster, user and context, all named `strait-e2e`,
/// authenticating with the admin client certificate. Paths are absolute, so
/// the file works from any directory.
pub fn kubeconfig(server: &str, pki: &Pki) -> Result<String> {
    let quote = |p: &Path| -> Result<String> {
        let s = p
            .to_str()
            .with_context(|| format!("{} is not UTF-8", p.display()))?;
        // A JSON string is a valid YAML scalar, whatever the path contains.
        Ok(serde_json::to_string(s)?)
    };
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- name: strait-e2e
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: strait-admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: strait-e2e
  context:
    cluster: strait-e2e
    user: strait-admin
current-context: strait-e2e
",
        server = serde_json::to_string(server)?,
        ca = quote(&pki.ca_cert)?,
        cert = quote(&pki.admin_cert)?,
        key = quote(&pki.admin_key)?,
    ))
}
