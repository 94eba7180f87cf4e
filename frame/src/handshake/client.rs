//! The client side of the upgrade: write the request, validate the server's 101.

use base64::Engine as _;

use super::{accept_key, has_token, head_len, valid_header, HandshakeError, HandshakeLimits};

/// A client's upgrade request (RFC 6455 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    host: String,
    path: String,
    key: String,
    protocols: Vec<String>,
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
            headers: Vec::new(),
        }
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
        if !path_ok
            || !valid_header("Host", &self.host)
            || !protocols_ok
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
    Ok(Some((Response { protocol: head.protocol, headers }, head.len)))
}

/// What [`check_response`] found in a valid 101.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
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
            // §4.1 5: we offered none, so any is a failure.
            return Err(HandshakeError::UnexpectedExtension);
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
    Ok(Some(ResponseHead { protocol, len: used }))
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
        assert_eq!(head, ResponseHead { protocol: Some("chat".into()), len: ok.len() });
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
    fn injection_refused() {
        let mut out = Vec::new();
        let bad = ClientRequest::new("h", "/", NONCE).header("X-A", "1\r\nX-B: 2");
        assert_eq!(bad.write(&mut out), Err(HandshakeError::InvalidHeader));
        let bad = ClientRequest::new("h", "/a b", NONCE);
        assert_eq!(bad.write(&mut out), Err(HandshakeError::InvalidHeader));
    }
}
