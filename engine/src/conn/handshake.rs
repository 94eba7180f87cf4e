//! The HTTP/1.1 upgrade of a server connection: request bytes are gathered (bounded by
//! the header limits) until `httparse` sees a whole request.

use bytes::Bytes;
use ringwire_frame::handshake::{self, HandshakeError, HandshakeLimits, Request};

use super::{Conn, Phase};

/// What the bytes received so far make of the upgrade.
pub(crate) enum HandshakeStep {
    /// Not a whole request yet.
    Incomplete,
    /// The request is invalid (or too large): answer with the error's response.
    Failed(HandshakeError),
    /// A whole request; `rest` is what the client sent after it (its first frames).
    Done(Box<Request>, Bytes),
}

impl Conn {
    /// Feeds received bytes to the upgrade. The common case, a request that arrives in
    /// one read, is parsed where it landed without being copied.
    pub(crate) fn handle_handshake(
        &mut self,
        data: &[u8],
        limits: &HandshakeLimits,
    ) -> HandshakeStep {
        let Phase::Handshake { buf, .. } = &mut self.phase else {
            return HandshakeStep::Incomplete;
        };
        let parsed = if buf.is_empty() {
            handshake::parse_request(data, limits)
        } else {
            buf.extend_from_slice(data);
            handshake::parse_request(buf, limits)
        };
        match parsed {
            Ok(None) => {
                // The header limit bounds `buf`: a request that does not fit fails above.
                if buf.is_empty() {
                    buf.extend_from_slice(data);
                }
                HandshakeStep::Incomplete
            }
            Err(e) => HandshakeStep::Failed(e),
            Ok(Some((req, used))) => {
                let rest = if buf.is_empty() { &data[used..] } else { &buf[used..] };
                HandshakeStep::Done(Box::new(req), Bytes::copy_from_slice(rest))
            }
        }
    }
}

/// The HTTP answer to a failed upgrade.
pub(crate) fn reject_response(err: &HandshakeError) -> Bytes {
    let mut resp = Vec::new();
    err.write_response(&mut resp);
    Bytes::from(resp)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const REQ: &[u8] = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn a_request_split_at_every_byte_completes_once_with_the_rest() {
        let limits = HandshakeLimits::default();
        let mut input = REQ.to_vec();
        input.extend_from_slice(b"\x81\x80tail");
        for cut in 1..REQ.len() {
            let mut c = Conn::new(Instant::now());
            assert!(matches!(
                c.handle_handshake(&input[..cut], &limits),
                HandshakeStep::Incomplete
            ));
            match c.handle_handshake(&input[cut..], &limits) {
                HandshakeStep::Done(req, rest) => {
                    assert_eq!(req.path, "/chat");
                    assert_eq!(&rest[..], b"\x81\x80tail");
                }
                _ => panic!("cut at {cut}: not done"),
            }
        }
    }

    #[test]
    fn garbage_fails_with_a_response() {
        let mut c = Conn::new(Instant::now());
        match c.handle_handshake(b"POST / HTTP/1.1\r\n\r\n", &HandshakeLimits::default()) {
            HandshakeStep::Failed(e) => {
                assert!(reject_response(&e).starts_with(b"HTTP/1.1 4"));
            }
            _ => panic!("not refused"),
        }
    }
}
