//! The HTTP/1.1 upgrade (RFC 6455 §4), both sides, without I/O.
//!
//! Server: [`parse_request`] reads a request from the bytes received so far
//! (`Ok(None)` while incomplete), [`Request::accept`] writes the 101 response, and a
//! [`HandshakeError`] writes the 4xx answer with [`HandshakeError::write_response`].
//!
//! Client: [`ClientRequest`] writes the request, [`parse_response`] validates the 101
//! ([`check_response`]: the same checks without a copy of the headers).
//!
//! Both sides bound what the peer controls: total header bytes and header count
//! ([`HandshakeLimits`]). A handshake timeout (slowloris) needs a clock, so it is the
//! engine's.

mod client;
mod server;

use base64::Engine as _;
use sha1::{Digest, Sha1};

pub use client::{check_response, parse_response, ClientRequest, Response, ResponseHead};
// `extension_elements` and `extension_name` are defined below.
pub use server::{parse_request, Request};

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 §1.3, §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Limits on what the peer sends during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// Most bytes of request or response head (request line and headers). Default 8 KiB.
    /// Stops a peer from making us buffer an endless header section.
    pub max_header_bytes: usize,
    /// Most header lines. Default 64. Stops header floods that cost parse time.
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self { max_header_bytes: 8 * 1024, max_headers: 64 }
    }
}

impl HandshakeLimits {
    /// Sets [`HandshakeLimits::max_header_bytes`].
    pub fn max_header_bytes(mut self, v: usize) -> Self {
        self.max_header_bytes = v;
        self
    }
    /// Sets [`HandshakeLimits::max_headers`].
    pub fn max_headers(mut self, v: usize) -> Self {
        self.max_headers = v;
        self
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is longer than [`HandshakeLimits::max_header_bytes`].
    #[error("handshake head exceeds {0} bytes")]
    TooLarge(usize),
    /// More header lines than [`HandshakeLimits::max_headers`].
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    /// Not parseable as HTTP/1.x.
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
    /// §4.2.1: the method MUST be GET.
    #[error("method is not GET")]
    MethodNotGet,
    /// §4.2.1: HTTP/1.1 or higher.
    #[error("HTTP version is not 1.1")]
    NotHttp11,
    /// §4.2.1: a `Host` header is required.
    #[error("missing Host header")]
    MissingHost,
    /// §4.2.1: `Upgrade` must contain the token `websocket`.
    #[error("missing `Upgrade: websocket`")]
    NotWebSocketUpgrade,
    /// §4.2.1: `Connection` must contain the token `Upgrade`.
    #[error("missing `Connection: upgrade`")]
    NotConnectionUpgrade,
    /// §4.2.2: only version 13 is supported; answered with 426 and the version we speak.
    #[error("unsupported Sec-WebSocket-Version")]
    UnsupportedVersion,
    /// §4.2.1: the key must be base64 of 16 bytes.
    #[error("Sec-WebSocket-Key is not base64 of 16 bytes")]
    BadKey,
    /// An application-supplied header name or value would break the HTTP framing.
    #[error("invalid header name or value")]
    InvalidHeader,
    /// The server answered with a status other than 101.
    #[error("server answered with status {0}")]
    Status(u16),
    /// §4.1: the server's `Sec-WebSocket-Accept` does not match our key.
    #[error("Sec-WebSocket-Accept does not match")]
    BadAccept,
    /// §4.1: the server chose a subprotocol we did not offer.
    #[error("server chose a subprotocol that was not offered")]
    UnexpectedProtocol,
    /// §4.1: the server named an extension we did not offer, named one twice, or sent
    /// a `Sec-WebSocket-Extensions` value that does not parse.
    #[error("server named an extension that was not offered")]
    UnexpectedExtension,
    /// The application rejected the request (origin check, authentication, ...).
    #[error("rejected with status {0}")]
    Rejected(u16),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge(_) | Self::TooManyHeaders(_) => 431,
            Self::MethodNotGet => 405,
            Self::UnsupportedVersion => 426,
            Self::NotHttp11 => 505,
            Self::Rejected(s) => *s,
            _ => 400,
        }
    }

    /// Appends the complete HTTP response a server sends for this error, then closes.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let status = self.status();
        let reason = match status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            505 => "HTTP Version Not Supported",
            _ => "Error",
        };
        let body = self.to_string();
        out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
        match self {
            // §4.2.2: "include a |Sec-WebSocket-Version| header field indicating the
            // version(s) the server is capable of understanding".
            Self::UnsupportedVersion => {
                out.extend_from_slice(b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n")
            }
            Self::MethodNotGet => out.extend_from_slice(b"Allow: GET\r\n"),
            _ => {}
        }
        out.extend_from_slice(
            format!(
                "Connection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
}

/// Applies the limits to the outcome of an `httparse` parse of `buf`: the length of a
/// complete head, `None` for an incomplete one within the limits, or the error.
fn head_len(
    parsed: Result<httparse::Status<usize>, httparse::Error>,
    buf: &[u8],
    limits: &HandshakeLimits,
    what: &'static str,
) -> Result<Option<usize>, HandshakeError> {
    let too_large = HandshakeError::TooLarge(limits.max_header_bytes);
    match parsed {
        Ok(httparse::Status::Complete(n)) if n > limits.max_header_bytes => Err(too_large),
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf.len() > limits.max_header_bytes => Err(too_large),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            Err(HandshakeError::TooManyHeaders(limits.max_headers))
        }
        Err(_) => Err(HandshakeError::Malformed(what)),
    }
}

/// Whether a comma-separated header value holds `token`, ignoring ASCII case.
fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The elements of a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1, the list syntax of
/// RFC 9110 §5.6.1): split at commas outside quoted strings, trimmed, empty ones
/// skipped. `None` if a quoted string is not closed or the value is not UTF-8.
pub fn extension_elements(value: &[u8]) -> Option<Vec<&str>> {
    let value = std::str::from_utf8(value).ok()?;
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    out.push(value[start..].trim());
    out.retain(|e| !e.is_empty());
    Some(out)
}

/// An extension element's name: the token before its first `;`, trimmed.
pub fn extension_name(element: &str) -> &str {
    element.split(';').next().unwrap_or("").trim()
}

/// Whether a header name or value is safe to write (no CR, LF or NUL; names are tokens).
fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && value.bytes().all(|b| b != b'\r' && b != b'\n' && b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1_3_accept_key() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn tokens() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b"WebSocket", "websocket"));
        assert!(!has_token(b"upgraded", "upgrade"));
    }

    #[test]
    fn error_responses() {
        let mut v = Vec::new();
        HandshakeError::UnsupportedVersion.write_response(&mut v);
        let s = String::from_utf8(v).unwrap();
        assert!(s.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(s.contains("Sec-WebSocket-Version: 13\r\n"));
        let mut v = Vec::new();
        HandshakeError::BadKey.write_response(&mut v);
        assert!(v.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    }
}
