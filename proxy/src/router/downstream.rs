//! What the HTTP connection manager does to a request's headers before routing
//! (Envoy's `mutateRequestHeaders`): hop-by-hop clean-up, `x-forwarded-for` /
//! `x-forwarded-proto`, whether the request is internal, stripping internal-only
//! `x-envoy-*` headers from external requests, and `x-request-id`.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use rand::Rng;

use crate::config::listener::HttpConnectionManager;

use super::headers::names;

/// Which peer addresses count as internal.
#[derive(Clone, Debug, Default)]
pub enum InternalAddresses {
    /// Envoy's historical default: RFC 1918, loopback and IPv6 unique-local addresses.
    #[default]
    Private,
    /// `internal_address_config` with explicit CIDR ranges (empty: nothing is internal).
    Cidrs(Vec<IpNet>),
}

impl InternalAddresses {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            InternalAddresses::Private => match ip {
                IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
                IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
            },
            InternalAddresses::Cidrs(nets) => nets.iter().any(|n| n.contains(&ip)),
        }
    }
}

/// The HCM settings that shape request headers.
#[derive(Clone, Debug)]
pub struct DownstreamConfig {
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u32,
    pub generate_request_id: bool,
    pub preserve_external_request_id: bool,
    pub internal_addresses: InternalAddresses,
    /// Appended to `x-forwarded-for` instead of a loopback peer (Envoy's local address).
    pub local_address: Option<IpAddr>,
}

impl DownstreamConfig {
    pub fn from_hcm(hcm: &HttpConnectionManager) -> DownstreamConfig {
        DownstreamConfig {
            use_remote_address: hcm.use_remote_address,
            xff_num_trusted_hops: hcm.xff_num_trusted_hops,
            generate_request_id: hcm.generate_request_id,
            preserve_external_request_id: hcm.preserve_external_request_id,
            internal_addresses: InternalAddresses::default(),
            local_address: None,
        }
    }
}

/// The downstream connection a request arrived on.
#[derive(Clone, Copy, Debug)]
pub struct DownstreamConnection {
    pub remote: SocketAddr,
    pub tls: bool,
}

/// What header mutation found out about the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downstream {
    /// The request comes from inside the trusted network (`x-envoy-internal: true`).
    pub internal: bool,
    /// An external request at the edge (`use_remote_address` and not internal).
    pub edge: bool,
    /// The client address for logging and `x-envoy-external-address`.
    pub remote_address: IpAddr,
}

/// Headers only trusted from internal requests; removed from any other request before the
/// router sees it. The first three go only for edge requests.
const EDGE_ONLY_INTERNAL: [&str; 3] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
];
const INTERNAL_ONLY: [&str; 14] = [
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
];

/// Envoy's `getLastAddressFromXFF`: the address `skip` entries from the end of
/// `x-forwarded-for`, and whether it was the only entry (with nothing skipped).
pub fn last_xff_address(headers: &HeaderMap, skip: u32) -> (Option<IpAddr>, bool) {
    let Some(xff) = headers
        .get(&names::X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    else {
        return (None, false);
    };
    let entries: Vec<&str> = xff.split(',').collect();
    let Some(index) = entries.len().checked_sub(1 + skip as usize) else {
        return (None, false);
    };
    let addr = entries[index].trim().parse::<IpAddr>().ok();
    (addr, addr.is_some() && entries.len() == 1 && skip == 0)
}

/// Remove the port from a `Host` when it is numeric (`strip_any_host_port`); returns the
/// authority to use for routing and upstream.
pub fn strip_any_host_port(authority: &str) -> &str {
    match super::vhost::port_start(authority) {
        Some(i) if authority[i + 1..].parse::<u16>().is_ok() => &authority[..i],
        _ => authority,
    }
}

/// A random (version 4) UUID in its canonical text form.
pub fn uuid_v4(rng: &mut impl Rng) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut text = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    text
}

/// A generated `x-request-id`. Shared rather than copied when the request's headers
/// are cloned for each upstream attempt.
fn request_id_value(rng: &mut impl Rng) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(uuid_v4(rng))).ok()
}

/// Which kinds of header a request carries that the HCM may have to remove. One pass
/// over the names: most requests carry neither kind, and then no removal (each a
/// hash and a probe) needs to be tried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemovableHeaders {
    pub envoy: bool,
    pub hop_by_hop: bool,
}

impl RemovableHeaders {
    pub fn scan(headers: &HeaderMap) -> RemovableHeaders {
        let mut found = RemovableHeaders::default();
        for name in headers.keys() {
            let name = name.as_str();
            if name.starts_with("x-envoy-") {
                found.envoy = true;
            } else if matches!(
                name,
                "connection" | "upgrade" | "keep-alive" | "proxy-connection" | "transfer-encoding"
            ) {
                found.hop_by_hop = true;
            }
        }
        found
    }
}

fn set_str(headers: &mut HeaderMap, name: http::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn append_xff(headers: &mut HeaderMap, ip: IpAddr) {
    let joined = match headers
        .get(&names::X_FORWARDED_FOR)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    {
        Some(existing) if !existing.is_empty() => format!("{existing},{ip}"),
        _ => ip.to_string(),
    };
    set_str(headers, names::X_FORWARDED_FOR, &joined);
}

/// Mutate a downstream request's headers as the HCM does before routing. `upgrade`: the
/// request is an upgrade (its `connection`/`upgrade` headers are kept).
pub fn mutate_request_headers(
    headers: &mut HeaderMap,
    cfg: &DownstreamConfig,
    conn: &DownstreamConnection,
    upgrade: bool,
    rng: &mut impl Rng,
) -> Downstream {
    let removable = RemovableHeaders::scan(headers);
    if removable.hop_by_hop {
        if !upgrade {
            headers.remove(http::header::CONNECTION);
            headers.remove(http::header::UPGRADE);
        }
        for hop in ["keep-alive", "proxy-connection", "transfer-encoding"] {
            headers.remove(hop);
        }
    }
    if removable.envoy {
        headers.remove(names::X_ENVOY_INTERNAL);
    }

    let peer = conn.remote.ip();
    let proto = HeaderValue::from_static(if conn.tls { "https" } else { "http" });
    let mut final_remote = None;
    let trusted_checks;
    if cfg.use_remote_address {
        trusted_checks = !headers.contains_key(&names::X_FORWARDED_FOR);
        if cfg.xff_num_trusted_hops > 0 {
            final_remote = last_xff_address(headers, cfg.xff_num_trusted_hops - 1).0;
        }
        if final_remote.is_none() {
            final_remote = Some(peer);
        }
        let appended = match cfg.local_address {
            Some(local) if peer.is_loopback() => local,
            _ => peer,
        };
        append_xff(headers, appended);
        if cfg.xff_num_trusted_hops == 0 || !headers.contains_key(&names::X_FORWARDED_PROTO) {
            headers.insert(names::X_FORWARDED_PROTO, proto.clone());
        }
    } else {
        // The default original-IP detection: the last XFF entry.
        let (addr, single) = last_xff_address(headers, cfg.xff_num_trusted_hops);
        final_remote = addr;
        trusted_checks = single;
    }
    if !headers.contains_key(&names::X_FORWARDED_PROTO) {
        headers.insert(names::X_FORWARDED_PROTO, proto);
    }

    let internal =
        trusted_checks && final_remote.is_some_and(|a| cfg.internal_addresses.contains(a));
    let remote_address = final_remote.unwrap_or(peer);
    let edge = !internal && cfg.use_remote_address;

    if internal {
        headers.insert(names::X_ENVOY_INTERNAL, HeaderValue::from_static("true"));
    } else {
        if edge && removable.envoy {
            for h in EDGE_ONLY_INTERNAL {
                headers.remove(h);
            }
        }
        if removable.envoy {
            for h in INTERNAL_ONLY {
                headers.remove(h);
            }
        }
    }
    if edge {
        set_str(
            headers,
            names::X_ENVOY_EXTERNAL_ADDRESS,
            &remote_address.to_string(),
        );
    }

    if cfg.generate_request_id {
        let force = !cfg.preserve_external_request_id && edge;
        if (force || !headers.contains_key(&names::X_REQUEST_ID))
            && let Some(id) = request_id_value(rng)
        {
            headers.insert(names::X_REQUEST_ID, id);
        }
    }

    Downstream {
        internal,
        edge,
        remote_address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn sidecar() -> DownstreamConfig {
        DownstreamConfig {
            use_remote_address: false,
            xff_num_trusted_hops: 0,
            generate_request_id: true,
            preserve_external_request_id: false,
            internal_addresses: InternalAddresses::Private,
            local_address: None,
        }
    }

    fn gateway() -> DownstreamConfig {
        DownstreamConfig {
            use_remote_address: true,
            ..sidecar()
        }
    }

    fn conn(addr: &str) -> DownstreamConnection {
        DownstreamConnection {
            remote: addr.parse().unwrap(),
            tls: false,
        }
    }

    fn get<'h>(h: &'h HeaderMap, n: &str) -> Option<&'h str> {
        h.get(n).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn request_id_is_generated_when_absent_and_kept_when_present() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut h = HeaderMap::new();
        mutate_request_headers(&mut h, &sidecar(), &conn("10.1.0.5:4000"), false, &mut rng);
        let id = get(&h, "x-request-id").unwrap().to_string();
        assert_eq!(id.len(), 36);
        let dashes: Vec<usize> = id.match_indices('-').map(|(i, _)| i).collect();
        assert_eq!(dashes, [8, 13, 18, 23], "{id}");
        assert!(
            id.bytes()
                .all(|b| b == b'-' || b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        assert_eq!(&id[14..15], "4", "version 4: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );

        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        mutate_request_headers(&mut h, &sidecar(), &conn("10.1.0.5:4000"), false, &mut rng);
        assert_eq!(get(&h, "x-request-id"), Some("abc"));

        // An edge request gets a fresh one unless told to preserve it.
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        mutate_request_headers(
            &mut h,
            &gateway(),
            &conn("203.0.113.9:4000"),
            false,
            &mut rng,
        );
        assert_ne!(get(&h, "x-request-id"), Some("abc"));

        let mut no_gen = sidecar();
        no_gen.generate_request_id = false;
        let mut h = HeaderMap::new();
        mutate_request_headers(&mut h, &no_gen, &conn("10.1.0.5:4000"), false, &mut rng);
        assert!(!h.contains_key("x-request-id"));
    }

    #[test]
    fn use_remote_address_appends_the_peer_to_xff() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let d = mutate_request_headers(
            &mut h,
            &gateway(),
            &conn("203.0.113.9:4000"),
            false,
            &mut rng,
        );
        assert_eq!(get(&h, "x-forwarded-for"), Some("198.51.100.1,203.0.113.9"));
        // Untrusted hop: its x-forwarded-proto is replaced by the connection's.
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"));
        assert!(d.edge && !d.internal);
        assert_eq!(get(&h, "x-envoy-external-address"), Some("203.0.113.9"));
    }

    #[test]
    fn internal_peers_at_the_edge_are_internal() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut h = HeaderMap::new();
        h.insert("x-envoy-retry-on", HeaderValue::from_static("5xx"));
        let d = mutate_request_headers(&mut h, &gateway(), &conn("10.0.0.7:4000"), false, &mut rng);
        assert!(d.internal && !d.edge);
        assert_eq!(get(&h, "x-forwarded-for"), Some("10.0.0.7"));
        assert_eq!(get(&h, "x-envoy-internal"), Some("true"));
        assert_eq!(
            get(&h, "x-envoy-retry-on"),
            Some("5xx"),
            "honoured from internal peers"
        );
    }

    #[test]
    fn sidecar_keeps_xff_and_strips_envoy_controls_from_external_requests() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut h = HeaderMap::new();
        h.insert("x-envoy-retry-on", HeaderValue::from_static("5xx"));
        h.insert(
            "x-envoy-upstream-rq-timeout-ms",
            HeaderValue::from_static("100"),
        );
        h.insert(
            "x-envoy-decorator-operation",
            HeaderValue::from_static("op"),
        );
        let d =
            mutate_request_headers(&mut h, &sidecar(), &conn("127.0.0.6:4000"), false, &mut rng);
        assert!(!d.internal && !d.edge);
        assert!(!h.contains_key("x-forwarded-for"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"));
        assert!(!h.contains_key("x-envoy-retry-on"));
        assert!(!h.contains_key("x-envoy-upstream-rq-timeout-ms"));
        assert_eq!(
            get(&h, "x-envoy-decorator-operation"),
            Some("op"),
            "only edge strips it"
        );

        // With a single internal XFF entry the request is internal and keeps them.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.2.3"));
        h.insert("x-envoy-retry-on", HeaderValue::from_static("5xx"));
        let d =
            mutate_request_headers(&mut h, &sidecar(), &conn("127.0.0.6:4000"), false, &mut rng);
        assert!(d.internal);
        assert_eq!(get(&h, "x-envoy-retry-on"), Some("5xx"));
        assert_eq!(d.remote_address, "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn hop_by_hop_headers_go_unless_upgrading() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        let mut up = h.clone();
        mutate_request_headers(&mut h, &sidecar(), &conn("10.0.0.1:1"), false, &mut rng);
        assert!(!h.contains_key("connection") && !h.contains_key("upgrade"));
        assert!(!h.contains_key("keep-alive"));
        mutate_request_headers(&mut up, &sidecar(), &conn("10.0.0.1:1"), true, &mut rng);
        assert!(up.contains_key("connection") && up.contains_key("upgrade"));
    }

    #[test]
    fn xff_parsing_and_host_ports() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2"),
        );
        assert_eq!(
            last_xff_address(&h, 0),
            (Some("2.2.2.2".parse().unwrap()), false)
        );
        assert_eq!(
            last_xff_address(&h, 1),
            (Some("1.1.1.1".parse().unwrap()), false)
        );
        assert_eq!(last_xff_address(&h, 2), (None, false));
        assert_eq!(strip_any_host_port("reviews:9080"), "reviews");
        assert_eq!(strip_any_host_port("[::1]:80"), "[::1]");
        assert_eq!(strip_any_host_port("reviews:abc"), "reviews:abc");
        assert_eq!(strip_any_host_port("reviews"), "reviews");
    }
}
