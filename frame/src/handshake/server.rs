//! The server side of the upgrade: parse the client's request, answer it.

use base64::Engine as _;

use super::{accept_key, has_token, head_len, valid_header, HandshakeError, HandshakeLimits};

/// A valid WebSocket upgrade request (RFC 6455 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request target (path and query).
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// The `Sec-WebSocket-Key` as sent.
    pub key: String,
    /// The `Origin` header, if any (for the engine's origin check).
    pub origin: Option<String>,
    /// Subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// Every header, in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| &v[..])
    }

    /// The extensions the client offered (RFC 6455 §9.1): the elements of every
    /// `Sec-WebSocket-Extensions` header, in order, each with its parameters. A header
    /// that does not parse is skipped (an offer the server cannot read is an offer it
    /// does not take).
    pub fn extension_offers(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
            .filter_map(|(_, v)| super::extension_elements(v))
            .flatten()
            .collect()
    }

    /// Appends the 101 response accepting this request, with `protocol` (which must be
    /// one the client offered) and extra headers.
    pub fn accept(
        &self,
        protocol: Option<&str>,
        extra_headers: &[(&str, &str)],
        out: &mut Vec<u8>,
    ) -> Result<(), HandshakeError> {
        if let Some(p) = protocol {
            // §4.2.2: the server selects one of the client's values, or none.
            if !self.protocols.iter().any(|o| o == p) {
                return Err(HandshakeError::UnexpectedProtocol);
            }
        }
        if !extra_headers.iter().all(|(n, v)| valid_header(n, v)) {
            return Err(HandshakeError::InvalidHeader);
        }
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        );
        out.extend_from_slice(b"Sec-WebSocket-Accept: ");
        out.extend_from_slice(accept_key(self.key.as_bytes()).as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(p) = protocol {
            out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (n, v) in extra_headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// Parses an upgrade request from the start of `buf`.
///
/// `Ok(None)` while the head is incomplete (and within the limits); otherwise the
/// request and the number of bytes it took. Bytes after it belong to the WebSocket
/// stream (a client may send frames right after its request).
pub fn parse_request(
    buf: &[u8],
    limits: &HandshakeLimits,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let Some(used) = head_len(req.parse(buf), buf, limits, "request head")? else {
        return Ok(None);
    };
    // §4.2.1 1: "An HTTP/1.1 or higher GET request".
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotGet);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::NotHttp11);
    }
    let path = req.path.unwrap_or("/").to_owned();
    let mut host = None;
    let mut upgrade = false;
    let mut connection = false;
    let mut version = None;
    let mut key = None;
    let mut origin = None;
    let mut protocols = Vec::new();
    for h in req.headers.iter() {
        let v = h.value;
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = Some(String::from_utf8_lossy(v).into_owned());
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(v, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(v, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(v.trim_ascii().to_vec());
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(v.trim_ascii().to_vec());
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(String::from_utf8_lossy(v).into_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            for p in v.split(|b| *b == b',') {
                let p = p.trim_ascii();
                if !p.is_empty() {
                    protocols.push(String::from_utf8_lossy(p).into_owned());
                }
            }
        }
    }
    let host = host.ok_or(HandshakeError::MissingHost)?;
    if !upgrade {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !connection {
        return Err(HandshakeError::NotConnectionUpgrade);
    }
    // §4.2.2: a version other than 13 gets 426 with the versions we speak.
    if version.as_deref() != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    // §4.2.1 5: "a base64-encoded value that, when decoded, is 16 bytes in length".
    let key = key.ok_or(HandshakeError::BadKey)?;
    match base64::engine::general_purpose::STANDARD.decode(&key) {
        Ok(k) if k.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    let key = String::from_utf8(key).map_err(|_| HandshakeError::BadKey)?;
    let headers = req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
    Ok(Some((Request { path, host, key, origin, protocols, headers }, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(b: &[u8]) -> Result<Option<(Request, usize)>, HandshakeError> {
        parse_request(b, &HandshakeLimits::default())
    }

    #[test]
    fn rfc_example_request() {
        let (req, n) = parse(RFC_REQUEST).unwrap().unwrap();
        assert_eq!(n, RFC_REQUEST.len());
        assert_eq!(req.path, "/chat");
        assert_eq!(req.host, "server.example.com");
        assert_eq!(req.origin.as_deref(), Some("http://example.com"));
        assert_eq!(req.protocols, ["chat", "superchat"]);
        let mut out = Vec::new();
        req.accept(Some("chat"), &[], &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(s.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(s.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for i in 0..RFC_REQUEST.len() {
            assert_eq!(parse(&RFC_REQUEST[..i]), Ok(None), "prefix {i}");
        }
    }

    #[test]
    fn trailing_frame_bytes_are_left() {
        let mut b = RFC_REQUEST.to_vec();
        b.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let (_, n) = parse(&b).unwrap().unwrap();
        assert_eq!(n, RFC_REQUEST.len());
    }

    fn with(from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(RFC_REQUEST.to_vec()).unwrap().replace(from, to).into_bytes()
    }

    #[test]
    fn rejections() {
        let cases: &[(&str, &str, HandshakeError, u16)] = &[
            ("GET /chat", "POST /chat", HandshakeError::MethodNotGet, 405),
            ("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost", HandshakeError::NotHttp11, 505),
            ("Host: server.example.com\r\n", "", HandshakeError::MissingHost, 400),
            ("Upgrade: websocket", "Upgrade: h2c", HandshakeError::NotWebSocketUpgrade, 400),
            ("Connection: Upgrade", "Connection: close", HandshakeError::NotConnectionUpgrade, 400),
            ("Version: 13", "Version: 8", HandshakeError::UnsupportedVersion, 426),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", HandshakeError::BadKey, 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "!!!", HandshakeError::BadKey, 400),
        ];
        for (from, to, err, status) in cases {
            let got = parse(&with(from, to));
            assert_eq!(got.as_ref().err(), Some(err), "{from} -> {to}");
            assert_eq!(err.status(), *status);
        }
    }

    #[test]
    fn case_insensitive_tokens() {
        let b = with(
            "Upgrade: websocket\r\nConnection: Upgrade",
            "upgrade: WebSocket\r\nconnection: keep-alive, UPGRADE",
        );
        assert!(parse(&b).unwrap().is_some());
    }

    #[test]
    fn limits() {
        let limits = HandshakeLimits::default().max_header_bytes(64);
        assert_eq!(parse_request(&RFC_REQUEST[..70], &limits), Err(HandshakeError::TooLarge(64)));
        assert_eq!(parse_request(&RFC_REQUEST[..60], &limits), Ok(None));
        let limits = HandshakeLimits::default().max_headers(3);
        assert_eq!(parse_request(RFC_REQUEST, &limits), Err(HandshakeError::TooManyHeaders(3)));
    }

    #[test]
    fn header_injection_refused() {
        let (req, _) = parse(RFC_REQUEST).unwrap().unwrap();
        let mut out = Vec::new();
        assert_eq!(
            req.accept(None, &[("X", "a\r\nEvil: 1")], &mut out),
            Err(HandshakeError::InvalidHeader)
        );
        assert_eq!(
            req.accept(Some("other"), &[], &mut out),
            Err(HandshakeError::UnexpectedProtocol)
        );
    }
}
