//! The TLS and HTTP inspectors: decide from the first bytes of a connection (peeked, not
//! consumed) whether it is TLS (with SNI and ALPN) or plaintext HTTP/1.x or h2c.

/// Envoy's http_inspector gives up after this many bytes.
pub const MAX_INSPECT_BYTES: usize = 8 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detection<T> {
    /// More bytes are needed to decide.
    NeedMore,
    /// Not this protocol.
    No,
    Yes(T),
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClientHello {
    pub server_name: Option<String>,
    pub alpn: Vec<String>,
}

/// Reads a TLS ClientHello from the start of a stream.
pub fn detect_tls(buf: &[u8]) -> Detection<ClientHello> {
    // Record header: type 22 (handshake), version 3.x, length.
    if buf.is_empty() {
        return Detection::NeedMore;
    }
    if buf[0] != 0x16 {
        return Detection::No;
    }
    if buf.len() < 5 {
        return Detection::NeedMore;
    }
    if buf[1] != 3 {
        return Detection::No;
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    let Some(record) = buf.get(5..5 + record_len) else {
        return if buf.len() >= MAX_INSPECT_BYTES {
            Detection::No
        } else {
            Detection::NeedMore
        };
    };
    match parse_client_hello(record) {
        Some(hello) => Detection::Yes(hello),
        None => Detection::No,
    }
}

/// A cursor over a byte slice that fails softly on truncation.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

fn parse_client_hello(record: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let len = r.u24()?;
    let mut body = Reader(r.take(len)?);
    body.take(2)?; // client_version
    body.take(32)?; // random
    body.vec8()?; // session_id
    body.vec16()?; // cipher_suites
    body.vec8()?; // compression_methods
    let mut hello = ClientHello::default();
    let Some(extensions) = body.vec16() else {
        return Some(hello); // no extensions at all
    };
    let mut exts = Reader(extensions);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        match kind {
            0x0000 => hello.server_name = parse_sni(data),
            0x0010 => hello.alpn = parse_alpn(data).unwrap_or_default(),
            _ => {}
        }
    }
    Some(hello)
}

fn parse_sni(data: &[u8]) -> Option<String> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16()?);
    while !list.0.is_empty() {
        let name_type = list.u8()?;
        let name = list.vec16()?;
        if name_type == 0 {
            return std::str::from_utf8(name).ok().map(str::to_ascii_lowercase);
        }
    }
    None
}

fn parse_alpn(data: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16()?);
    let mut out = Vec::new();
    while !list.0.is_empty() {
        let proto = list.vec8()?;
        out.push(String::from_utf8_lossy(proto).into_owned());
    }
    Some(out)
}

/// The HTTP/2 connection preface a prior-knowledge (h2c) client sends.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Decides `http/1.1`, `http/1.0` or `h2c` from the first request line, as Envoy's
/// http_inspector does.
pub fn detect_http(buf: &[u8]) -> Detection<&'static str> {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if buf.len() >= H2_PREFACE.len() {
            Detection::Yes("h2c")
        } else {
            Detection::NeedMore
        };
    }
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= MAX_INSPECT_BYTES || !looks_like_request_start(buf) {
            return Detection::No;
        }
        return Detection::NeedMore;
    };
    let line = &buf[..line_end];
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Detection::No;
    };
    if method.is_empty()
        || !method
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
        || target.is_empty()
    {
        return Detection::No;
    }
    match version {
        b"HTTP/1.1" => Detection::Yes("http/1.1"),
        b"HTTP/1.0" => Detection::Yes("http/1.0"),
        _ => Detection::No,
    }
}

/// A request line starts with a method token: uppercase letters, then a space.
fn looks_like_request_start(buf: &[u8]) -> bool {
    let token_end = buf.iter().position(|b| *b == b' ').unwrap_or(buf.len());
    token_end > 0
        && buf[..token_end]
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with SNI and ALPN, built by hand.
    fn client_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
        let mut ext = Vec::new();
        let mut sni_list = vec![0u8];
        sni_list.extend((sni.len() as u16).to_be_bytes());
        sni_list.extend(sni.as_bytes());
        let mut sni_ext = (sni_list.len() as u16).to_be_bytes().to_vec();
        sni_ext.extend(sni_list);
        ext.extend(0u16.to_be_bytes());
        ext.extend((sni_ext.len() as u16).to_be_bytes());
        ext.extend(sni_ext);
        let mut alpn_list = Vec::new();
        for p in alpn {
            alpn_list.push(p.len() as u8);
            alpn_list.extend(p.as_bytes());
        }
        let mut alpn_ext = (alpn_list.len() as u16).to_be_bytes().to_vec();
        alpn_ext.extend(alpn_list);
        ext.extend(0x10u16.to_be_bytes());
        ext.extend((alpn_ext.len() as u16).to_be_bytes());
        ext.extend(alpn_ext);

        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend(2u16.to_be_bytes());
        body.extend([0x13, 0x01]);
        body.extend([1, 0]); // compression
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut hs = vec![1];
        let len = body.len();
        hs.extend([(len >> 16) as u8, (len >> 8) as u8, len as u8]);
        hs.extend(body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn reads_sni_and_alpn() {
        let hello = client_hello("Reviews.Default.svc", &["h2", "http/1.1"]);
        assert_eq!(
            detect_tls(&hello),
            Detection::Yes(ClientHello {
                server_name: Some("reviews.default.svc".into()),
                alpn: vec!["h2".into(), "http/1.1".into()],
            })
        );
        assert_eq!(detect_tls(&hello[..20]), Detection::NeedMore);
        assert_eq!(detect_tls(b"GET / HTTP/1.1\r\n"), Detection::No);
        assert_eq!(detect_tls(&[]), Detection::NeedMore);
    }

    #[test]
    fn garbage_after_a_tls_header_is_not_tls() {
        let mut bogus = vec![0x16, 3, 1, 0, 4];
        bogus.extend([9, 9, 9, 9]);
        assert_eq!(detect_tls(&bogus), Detection::No);
    }

    #[test]
    fn http_versions_and_h2c() {
        assert_eq!(
            detect_http(b"GET /x HTTP/1.1\r\nHost: a\r\n"),
            Detection::Yes("http/1.1")
        );
        assert_eq!(
            detect_http(b"POST / HTTP/1.0\r\n"),
            Detection::Yes("http/1.0")
        );
        assert_eq!(detect_http(H2_PREFACE), Detection::Yes("h2c"));
        assert_eq!(detect_http(b"PRI * HTTP/2"), Detection::NeedMore);
        assert_eq!(detect_http(b"GET /x HTTP"), Detection::NeedMore);
        assert_eq!(detect_http(b"\x00\x01binary"), Detection::No);
        assert_eq!(detect_http(b"SSH-2.0-OpenSSH\r\n"), Detection::No);
        assert_eq!(detect_http(b"get / HTTP/1.1\r\n"), Detection::No);
    }
}
