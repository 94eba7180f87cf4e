//! The client side of the upgrade: write the request, validate the server's 101.

use base64::Engine as _;

use super::{
    accept_key, extension_elements, extension_name, has_token, head_len, valid_header,
    HandshakeError, HandshakeLimits,
};

/// A client's upgrade request (RFC 6455 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    host: String,
    path: String,
    key: String,
    protocols: Vec<String>,
    extensions: Vec<String>,
    headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// A request for `path` on `host` (with port if not the default), using `key_bytes`
    /// as the nonce. §4.1: the nonce MUST be randomly selected for each connection; this
    /// crate reads no randomness, so the caller supplies 16 random bytes.
    pub fn new(host: impl Into<String>, path: impl Into<String>, key_bytes: [u8; 16]) -> Self {
        Self {
            host: host.into(),
            path: path.into(),
            key: base64::engine::general_purpose::STANDARD.encode(key_bytes),
            protocols: Vec::new(),
            extensions: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Offers an extension (RFC 6455 §9.1): an element of `Sec-WebSocket-Extensions`,
    /// its name and parameters, e.g. `permessage-deflate; client_max_window_bits`. The
    /// server's 101 may accept offered extensions only ([`ResponseHead::extensions`]).
    pub fn extension(mut self, offer: impl Into<String>) -> Self {
        self.extensions.push(offer.into());
        self
    }

    /// Offers a subprotocol (in order of preference).
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocols.push(p.into());
        self
    }

    /// Adds a header (e.g. `Origin`, `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `Sec-WebSocket-Key` this request sends.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends the request to `out`. Fails if a header or the path would break HTTP.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), HandshakeError> {
        let path_ok = !self.path.is_empty() && self.path.bytes().all(|b| b.is_ascii_graphic());
        let protocols_ok = self.protocols.iter().all(|p| valid_header("p", p) && !p.contains(','));
        let extensions_ok = self.extensions.iter().all(|e| {
            valid_header("e", e)
                && extension_elements(e.as_bytes()).is_some_and(|el| el.len() == 1)
                && !extension_name(e).is_empty()
        });
        if !path_ok
            || !valid_header("Host", &self.host)
            || !protocols_ok
            || !extensions_ok
            || !self.headers.iter().all(|(n, v)| valid_header(n, v))
        {
            return Err(HandshakeError::InvalidHeader);
        }
        let mut s = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host, self.key
        );
        if !self.protocols.is_empty() {
            s.push_str("Sec-WebSocket-Protocol: ");
            s.push_str(&self.protocols.join(", "));
            s.push_str("\r\n");
        }
        if !self.extensions.is_empty() {
            s.push_str("Sec-WebSocket-Extensions: ");
            s.push_str(&self.extensions.join(", "));
            s.push_str("\r\n");
        }
        for (n, v) in &self.headers {
            s.push_str(n);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        out.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A server's accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The extensions the server accepted (elements of its `Sec-WebSocket-Extensions`,
    /// each with its parameters), in its order; each one offered.
    pub extensions: Vec<String>,
    /// Every header, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Parses and validates the server's answer to `req` (RFC 6455 §4.1, "the client MUST
/// validate the server's response").
///
/// `Ok(None)` while incomplete; otherwise the response and the bytes it took (frames may
/// follow in the same read).
pub fn parse_response(
    buf: &[u8],
    req: &ClientRequest,
    limits: &HandshakeLimits,
) -> Result<Option<(Response, usize)>, HandshakeError> {
    let mut headers = Vec::new();
    let Some(head) = parse(buf, req, limits, Some(&mut headers))? else { return Ok(None) };
    Ok(Some((Response { protocol: head.protocol, extensions: head.extensions, headers }, head.len)))
}

/// What [`check_response`] found in a valid 101.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The extensions the server accepted, as in [`Response::extensions`].
    pub extensions: Vec<String>,
    /// The bytes the head took (frames may follow in the same read).
    pub len: usize,
}

/// As [`parse_response`], without copying the headers: the same checks (RFC 6455 §4.1)
/// for a client that needs only the verdict and the subprotocol. Allocates nothing
/// unless a subprotocol is chosen (with the default header limits).
pub fn check_response(
    buf: &[u8],
    req: &ClientRequest,
    limits: &HandshakeLimits,
) -> Result<Option<ResponseHead>, HandshakeError> {
    parse(buf, req, limits, None)
}

/// Header slots kept on the stack; a larger `max_headers` takes them from the heap.
const STACK_HEADERS: usize = 64;

fn parse(
    buf: &[u8],
    req: &ClientRequest,
    limits: &HandshakeLimits,
    keep: Option<&mut Vec<(String, Vec<u8>)>>,
) -> Result<Option<ResponseHead>, HandshakeError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let headers: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap
    };
    let mut resp = httparse::Response::new(headers);
    let Some(used) = head_len(resp.parse(buf), buf, limits, "response head")? else {
        return Ok(None);
    };
    // §4.1 1: "If the status code received from the server is not 101, the client
    // handles the response per HTTP procedures" — for us, a failed handshake.
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::Status(code));
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut accept = None;
    let mut protocol = None;
    let mut extensions: Vec<String> = Vec::new();
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept = Some(h.value.trim_ascii());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            protocol = Some(String::from_utf8_lossy(h.value.trim_ascii()).into_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            // §4.1 5: only extensions we offered, each once.
            let elements =
                extension_elements(h.value).ok_or(HandshakeError::UnexpectedExtension)?;
            for e in elements {
                let n = extension_name(e);
                let offered =
                    req.extensions.iter().any(|o| extension_name(o).eq_ignore_ascii_case(n));
                let again = extensions.iter().any(|a| extension_name(a).eq_ignore_ascii_case(n));
                if !offered || again {
                    return Err(HandshakeError::UnexpectedExtension);
                }
                extensions.push(e.to_owned());
            }
        }
    }
    if !upgrade {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !connection {
        return Err(HandshakeError::NotConnectionUpgrade);
    }
    if accept != Some(accept_key(req.key.as_bytes()).as_bytes()) {
        return Err(HandshakeError::BadAccept);
    }
    if let Some(p) = &protocol {
        if !req.protocols.iter().any(|o| o == p) {
            return Err(HandshakeError::UnexpectedProtocol);
        }
    }
    if let Some(out) = keep {
        out.extend(resp.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())));
    }
    Ok(Some(ResponseHead { protocol, extensions, len: used }))
}

#[cfg(test)]
mod tests {
    use super::super::{parse_request, HandshakeLimits};
    use super::*;

    // The RFC's sample nonce: base64 of "the sample nonce".
    const NONCE: [u8; 16] = *b"the sample nonce";

    #[test]
    fn request_round_trips_through_server_parser() {
        let req = ClientRequest::new("example.com:9001", "/chat?x=1", NONCE)
            .protocol("chat")
            .protocol("superchat")
            .header("Origin", "http://example.com");
        assert_eq!(req.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        let mut bytes = Vec::new();
        req.write(&mut bytes).unwrap();
        let limits = HandshakeLimits::default();
        let (sreq, n) = parse_request(&bytes, &limits).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(sreq.path, "/chat?x=1");
        assert_eq!(sreq.protocols, ["chat", "superchat"]);
        let mut resp = Vec::new();
        sreq.accept(Some("superchat"), &[], &mut resp).unwrap();
        for i in 0..resp.len() {
            assert_eq!(parse_response(&resp[..i], &req, &limits), Ok(None));
        }
        let (r, n) = parse_response(&resp, &req, &limits).unwrap().unwrap();
        assert_eq!((r.protocol.as_deref(), n), (Some("superchat"), resp.len()));
    }

    #[test]
    fn response_validation() {
        let req = ClientRequest::new("h", "/", NONCE).protocol("chat");
        let limits = HandshakeLimits::default();
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(parse_response(ok.as_bytes(), &req, &limits).unwrap().is_some());
        let cases = [
            (ok.replace("101 Switching Protocols", "403 Forbidden"), HandshakeError::Status(403)),
            (ok.replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAA"), HandshakeError::BadAccept),
            (ok.replace("Upgrade: websocket\r\n", ""), HandshakeError::NotWebSocketUpgrade),
            (
                ok.replace("Connection: Upgrade", "Connection: close"),
                HandshakeError::NotConnectionUpgrade,
            ),
            (
                ok.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: other\r\n\r\n"),
                HandshakeError::UnexpectedProtocol,
            ),
            (
                ok.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
                HandshakeError::UnexpectedExtension,
            ),
        ];
        for (resp, err) in cases {
            assert_eq!(parse_response(resp.as_bytes(), &req, &limits), Err(err));
        }
    }

    #[test]
    fn check_response_gives_the_same_verdicts_without_the_headers() {
        let req = ClientRequest::new("h", "/", NONCE).protocol("chat");
        let limits = HandshakeLimits::default();
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
        for cut in 0..ok.len() {
            assert_eq!(check_response(&ok.as_bytes()[..cut], &req, &limits), Ok(None));
        }
        let head = check_response(ok.as_bytes(), &req, &limits).unwrap().unwrap();
        let want =
            ResponseHead { protocol: Some("chat".into()), extensions: vec![], len: ok.len() };
        assert_eq!(head, want);
        let bad = ok.replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAA");
        assert_eq!(check_response(bad.as_bytes(), &req, &limits), Err(HandshakeError::BadAccept));
        // More header lines than a stack's worth, with a limit that allows them.
        let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
        let big = ok.replace("\r\n\r\n", &format!("\r\n{many}\r\n"));
        let roomy = HandshakeLimits::default().max_headers(200);
        assert!(check_response(big.as_bytes(), &req, &roomy).unwrap().is_some());
        assert_eq!(
            check_response(big.as_bytes(), &req, &limits),
            Err(HandshakeError::TooManyHeaders(64))
        );
    }

    #[test]
    fn offered_extensions_are_sent_and_only_they_accepted_once_each() {
        let req = ClientRequest::new("h", "/", NONCE)
            .extension("permessage-deflate; client_max_window_bits")
            .extension("x-ringwire-ack; stream=42");
        let mut out = Vec::new();
        req.write(&mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-ringwire-ack; stream=42\r\n"
        ));
        // The server parser sees the same offers.
        let (r, _) =
            super::super::parse_request(&out, &HandshakeLimits::default()).unwrap().unwrap();
        assert_eq!(
            r.extension_offers(),
            ["permessage-deflate; client_max_window_bits", "x-ringwire-ack; stream=42"]
        );
        let limits = HandshakeLimits::default();
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let with = |ext: &str| {
            ok.replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Extensions: {ext}\r\n\r\n"))
        };
        let accepted = |ext: &str| check_response(with(ext).as_bytes(), &req, &limits);
        let head = accepted("X-Ringwire-Ack, permessage-deflate; server_no_context_takeover")
            .unwrap()
            .unwrap();
        assert_eq!(
            head.extensions,
            ["X-Ringwire-Ack", "permessage-deflate; server_no_context_takeover"]
        );
        let (full, _) =
            parse_response(with("x-ringwire-ack").as_bytes(), &req, &limits).unwrap().unwrap();
        assert_eq!(full.extensions, ["x-ringwire-ack"]);
        assert_eq!(
            check_response(ok.as_bytes(), &req, &limits).unwrap().unwrap().extensions,
            Vec::<String>::new()
        );
        for bad in ["other", "x-ringwire-ack, x-ringwire-ack", "permessage-deflate; x=\"open"] {
            assert_eq!(accepted(bad), Err(HandshakeError::UnexpectedExtension), "{bad}");
        }
        // An offer that is not one element (or not a header value) is refused at write.
        for offer in ["a, b", "", "a\r\nX: y"] {
            let r = ClientRequest::new("h", "/", NONCE).extension(offer);
            assert_eq!(r.write(&mut Vec::new()), Err(HandshakeError::InvalidHeader), "{offer:?}");
        }
    }

    #[test]
    fn extension_lists_split_at_commas_outside_quotes() {
        use super::super::{extension_elements, extension_name};
        let e = extension_elements(br#" a; p="x, y" ,, b ;q=1,c"#).unwrap();
        assert_eq!(e, [r#"a; p="x, y""#, "b ;q=1", "c"]);
        assert_eq!(extension_name(e[1]), "b");
        assert_eq!(extension_elements(br#"a; p="\"", b"#).unwrap(), [r#"a; p="\"""#, "b"]);
        assert_eq!(extension_elements(b"a; p=\"x"), None);
        assert_eq!(extension_elements(b"\xff"), None);
        assert_eq!(extension_elements(b" , "), Some(vec![]));
    }

    #[test]
    fn injection_refused() {
        let mut out = Vec::new();
        let bad = ClientRequest::new("h", "/", NONCE).header("X-A", "1\r\nX-B: 2");
        assert_eq!(bad.write(&mut out), Err(HandshakeError::InvalidHeader));
        let bad = ClientRequest::new("h", "/a b", NONCE);
        assert_eq!(bad.write(&mut out), Err(HandshakeError::InvalidHeader));
    }
}
