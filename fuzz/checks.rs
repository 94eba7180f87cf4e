// The body of every fuzz target, shared by `fuzz/fuzz_targets/*.rs` and by the stable
// seed replay `frame/tests/fuzz_seeds.rs`, which both `include!` this file inside a
// module. Each function takes the fuzzer's bytes, must not panic on any input, and
// asserts properties that hold whatever the input is.

use std::time::{Duration, Instant};

use ringwire_frame::handshake::{
    parse_request, parse_response, ClientRequest, HandshakeError, HandshakeLimits,
};
use ringwire_frame::deflate::{accept_answer, accept_offer};
use ringwire_frame::handshake::extension_elements;
use ringwire_frame::{
    Config, Connection, DeflateConfig, DeflateParams, Event, FixedMask, FrameHeader, Message,
    OpCode, ProtocolError, RecvBuffer, Role, MAX_HEADER_LEN,
};

/// A target's check: panics if a property fails for this input.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (the folder of its seeds) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("frame_header", frame_header),
    ("handshake_request", handshake_request),
    ("handshake_response", handshake_response),
    ("connection_server", connection_server),
    ("connection_client", connection_client),
    ("deflate_offer", deflate_offer),
    ("connection_deflate", connection_deflate),
];

/// `FrameHeader::decode` on arbitrary bytes: incomplete is `Ok(None)` at every prefix,
/// and a decoded header encodes (minimally) to bytes that decode to the same header.
pub fn frame_header(data: &[u8]) {
    match FrameHeader::decode(data) {
        Ok(Some((h, n))) => {
            assert!(n >= 2 && n <= data.len() && n <= MAX_HEADER_LEN, "consumed {n}");
            assert!(n >= h.encoded_len(), "decoded form is shorter than the minimal one");
            assert!(h.rsv <= 7 && h.payload_len >> 63 == 0);
            // STYLE 7: every strict prefix of a header is incomplete, not an error.
            for i in 0..n {
                assert_eq!(FrameHeader::decode(&data[..i]), Ok(None), "prefix {i} of {n}");
            }
            let mut v = Vec::new();
            h.encode(&mut v);
            assert_eq!(v.len(), h.encoded_len());
            assert_eq!(FrameHeader::decode(&v), Ok(Some((h, v.len()))), "re-encode {v:02x?}");
            let mut buf = [0u8; MAX_HEADER_LEN];
            assert_eq!(h.encode_into(&mut buf), Some(v.len()));
            assert_eq!(&buf[..v.len()], &v[..]);
            assert_eq!(h.encode_into(&mut buf[..v.len() - 1]), None);
        }
        Ok(None) => assert!(data.len() < MAX_HEADER_LEN, "{} bytes are enough", data.len()),
        Err(e) => {
            // The header alone can only break §5.2's rule on the 64-bit length.
            assert_eq!(e, ProtocolError::InvalidLength);
            assert!(data.len() >= 10 && data[1] & 0x7f == 127 && data[2] & 0x80 != 0);
        }
    }
}

/// `parse_request` with the default limits: bounded, consistent, and an accepted request
/// gets a 101, a refused one a complete error response.
pub fn handshake_request(data: &[u8]) {
    let limits = HandshakeLimits::default();
    match parse_request(data, &limits) {
        Ok(Some((req, n))) => {
            assert!(n <= data.len() && n <= limits.max_header_bytes, "consumed {n}");
            // The head alone parses the same: bytes after it are not looked at.
            let again = parse_request(&data[..n], &limits);
            assert_eq!(again, Ok(Some((req.clone(), n))));
            let mut out = Vec::new();
            req.accept(None, &[], &mut out).expect("accepting a parsed request");
            assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(out.ends_with(b"\r\n\r\n"));
            if let Some(p) = req.protocols.first() {
                let mut out = Vec::new();
                // A protocol read from the request may still hold bytes that cannot be
                // written back (e.g. CR); then accept must refuse, not inject headers.
                match req.accept(Some(p), &[], &mut out) {
                    Ok(()) => assert_eq!(out.windows(4).filter(|w| w == b"\r\n\r\n").count(), 1),
                    Err(e) => assert_eq!(e, HandshakeError::InvalidHeader),
                }
            }
        }
        Ok(None) => assert!(data.len() <= limits.max_header_bytes),
        Err(e) => {
            assert!((400..600).contains(&e.status()), "status {}", e.status());
            let mut out = Vec::new();
            e.write_response(&mut out);
            assert!(out.starts_with(b"HTTP/1.1 4") || out.starts_with(b"HTTP/1.1 5"));
        }
    }
}

/// The client request the `handshake_response` target answers: RFC 6455 §1.3's nonce.
pub fn fixed_client_request() -> ClientRequest {
    ClientRequest::new("server.example.com", "/chat", *b"the sample nonce").protocol("chat")
}

/// `parse_response` against a fixed request: bounded and consistent.
pub fn handshake_response(data: &[u8]) {
    let req = fixed_client_request();
    let limits = HandshakeLimits::default();
    match parse_response(data, &req, &limits) {
        Ok(Some((resp, n))) => {
            assert!(n <= data.len() && n <= limits.max_header_bytes, "consumed {n}");
            assert!(resp.protocol.is_none() || resp.protocol.as_deref() == Some("chat"));
            assert_eq!(parse_response(&data[..n], &req, &limits), Ok(Some((resp, n))));
        }
        Ok(None) => assert!(data.len() <= limits.max_header_bytes),
        Err(_) => {}
    }
}

/// A server connection fed arbitrary bytes.
pub fn connection_server(data: &[u8]) {
    connection(Role::Server, data, None);
}

/// A client connection fed arbitrary bytes.
pub fn connection_client(data: &[u8]) {
    connection(Role::Client, data, None);
}

/// A `Sec-WebSocket-Extensions` value from a client, answered by a server in each mode:
/// no panic, and an answer that a client reads back as the same parameters.
pub fn deflate_offer(data: &[u8]) {
    let Some(offers) = extension_elements(data) else { return };
    let client = DeflateConfig::default().context_takeover(true);
    for server in [
        DeflateConfig::default(),
        DeflateConfig::default().context_takeover(true),
        DeflateConfig::default().context_takeover(true).window_bits(10),
    ] {
        if let Some((params, answer)) = accept_offer(&offers, &server) {
            assert!(answer.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{answer:?}");
            for w in [params.server_max_window_bits, params.client_max_window_bits] {
                assert!((8..=15).contains(&w), "{params:?}");
            }
            assert_eq!(accept_answer(&[&answer], &client), Ok(Some(params)), "{answer}");
        }
    }
}

/// A server connection with permessage-deflate agreed, fed arbitrary bytes (compressed
/// messages among them); the first byte picks the parameters. The same checks as
/// `connection_server`, with RSV1 allowed on the data frames it sends.
pub fn connection_deflate(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let params = DeflateParams {
        server_no_context_takeover: pick & 1 != 0,
        client_no_context_takeover: pick & 2 != 0,
        server_max_window_bits: 8 + (pick >> 2 & 7),
        client_max_window_bits: 15,
    };
    connection(Role::Server, rest, Some((params, pick & 0x20 != 0)));
}

/// The mask key the client connection uses.
const KEY: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];

/// Tracks what a connection reported, asserting the event rules on the way.
#[derive(Default)]
struct Seen {
    closed: bool,
    wire: Vec<u8>,
    /// Messages echoed (each is one data frame: no fragmentation is configured).
    echoed: usize,
}

impl Seen {
    /// Drains events (echoing messages, as an echo server does) and transmit.
    fn drain(&mut self, conn: &mut Connection) {
        loop {
            let close_is_next = conn.close_is_next();
            let Some(ev) = conn.poll_event() else { break };
            assert!(!self.closed, "event after Closed: {ev:?}");
            assert!(!close_is_next || matches!(ev, Event::Closed(_)), "{ev:?} after close_is_next");
            match ev {
                Event::Message(m) => {
                    if let Message::Text(t) = &m {
                        assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                    }
                    // Events in arrival order: this harness never closes first, so every
                    // message (also one that came with the peer's close or a bad frame
                    // in the same read) is polled while the connection is open, and its
                    // echo goes out before the close frame (`check_sent`).
                    assert!(!conn.is_closing() && !conn.is_closed(), "message while closing");
                    match conn.send(m) {
                        Ok(()) => self.echoed += 1,
                        Err(e) => panic!("echo refused: {e}"),
                    }
                }
                Event::Ping(p) => assert!(p.len() <= 125),
                Event::Pong(p) => assert!(p.payload.len() <= 125),
                Event::Closed(_) => self.closed = true,
                _ => {}
            }
        }
        assert_eq!(conn.is_closed(), self.closed, "is_closed() vs the Closed event");
        conn.poll_transmit_into(&mut self.wire);
        assert!(!conn.has_transmit() && conn.queued_bytes() == 0);
    }
}

/// A receive buffer that checks the [`RecvBuffer`] contract (used here and, through
/// `include!`, by the frame crate's tests): ranges shared in order
/// without overlap, no bytes asked for before the end of a shared range, and no shared
/// byte changed afterwards. It shares what it is offered when `share` is set (a copy
/// stands in for memory shared with a driver's buffer) and declines otherwise.
pub struct TestBuffer {
    pub data: Vec<u8>,
    share: bool,
    /// What it shared: each range and the bytes handed out for it.
    pub shared: Vec<(std::ops::Range<usize>, ringwire_frame::Bytes)>,
    shared_end: usize,
}

impl TestBuffer {
    pub fn new(data: &[u8], share: bool) -> Self {
        Self { data: data.to_vec(), share, shared: Vec::new(), shared_end: 0 }
    }

    /// Panics if a byte of a shared range changed after it was shared.
    pub fn check_shared_untouched(&self) {
        for (range, bytes) in &self.shared {
            assert_eq!(&self.data[range.clone()], &bytes[..], "a shared range changed");
        }
    }
}

impl RecvBuffer for TestBuffer {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn bytes_from(&mut self, start: usize) -> &mut [u8] {
        assert!(
            start >= self.shared_end,
            "asked for {start}.. after sharing ..{}",
            self.shared_end
        );
        &mut self.data[start..]
    }

    fn share(&mut self, range: std::ops::Range<usize>) -> Option<ringwire_frame::Bytes> {
        assert!(range.start >= self.shared_end && range.end <= self.data.len(), "{range:?}");
        if !self.share {
            return None;
        }
        self.shared_end = range.end;
        let bytes = ringwire_frame::Bytes::copy_from_slice(&self.data[range.clone()]);
        self.shared.push((range, bytes.clone()));
        Some(bytes)
    }
}

/// [`connection_via`] through `handle_bytes` and through `handle_buffer` (whole data
/// frames unmasked in place and shared): both must send exactly the same bytes.
fn connection(role: Role, data: &[u8], deflate: Option<(DeflateParams, bool)>) {
    let copied = connection_via(role, data, false, deflate);
    let shared = connection_via(role, data, true, deflate);
    assert!(copied == shared, "handle_buffer and handle_bytes disagree");
}

/// Feeds `data[1..]` to a connection in reads whose sizes derive from `data[0]`, then
/// runs the timers and ends the transport. Checks: no event after `Closed`, `Closed`
/// exactly once by the end, nothing in or out once closed, and every byte sent is a
/// well-formed frame for the role. Returns what it sent.
fn connection_via(
    role: Role,
    data: &[u8],
    in_place: bool,
    deflate: Option<(DeflateParams, bool)>,
) -> Vec<u8> {
    let Some((&ctl, mut rest)) = data.split_first() else { return Vec::new() };
    let now = Instant::now();
    // Small limits so that short inputs reach the 1009 paths too.
    let mut config = Config::default().max_frame_size(4096).max_message_size(8192);
    if let Some((_, takeover)) = deflate {
        let d = DeflateConfig::default().context_takeover(takeover).min_size(16);
        config = config.deflate(Some(d));
    }
    let mut conn = match role {
        Role::Server => Connection::server(config, now),
        Role::Client => Connection::client(config, Box::new(FixedMask(KEY)), now),
    };
    if let Some((params, _)) = deflate {
        conn.set_deflate(params);
    }
    let mut seen = Seen::default();
    let max = usize::from(ctl) + 1;
    let mut state = u32::from(ctl);
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (state >> 16) as usize % max).min(rest.len());
        let (chunk, r) = rest.split_at(n);
        rest = r;
        let was_closed = seen.closed;
        let before = seen.wire.len();
        if in_place {
            let mut buf = TestBuffer::new(chunk, true);
            conn.handle_buffer(now, &mut buf);
            buf.check_shared_untouched();
        } else {
            conn.handle_bytes(now, chunk);
        }
        seen.drain(&mut conn);
        if was_closed {
            assert_eq!(seen.wire.len(), before, "bytes sent for input after Closed");
        }
    }
    // A close in flight times out; keepalive and idle timers are off by default.
    let later = now + Duration::from_secs(3600);
    let was_closing = conn.is_closing();
    conn.handle_timeout(later);
    seen.drain(&mut conn);
    assert!(!was_closing || seen.closed, "close timeout did not end a closing connection");
    let was_closed = seen.closed;
    let before = seen.wire.len();
    conn.handle_eof(later);
    seen.drain(&mut conn);
    assert!(seen.closed && conn.is_closed(), "not closed after end of stream");
    if was_closed {
        assert_eq!(seen.wire.len(), before);
        conn.handle_bytes(later, &data[..data.len().min(64)]);
        seen.drain(&mut conn);
        assert_eq!(seen.wire.len(), before, "input after Closed produced bytes");
    }
    let data_frames = check_sent(role, &seen.wire, deflate.is_some());
    assert_eq!(data_frames, seen.echoed, "data frames sent vs messages echoed");
    seen.wire
}

/// Everything a connection sent must be whole frames: FIN set, no RSV (but RSV1 on data
/// frames with `deflate`), a known opcode, masked exactly when it is a client, control
/// payloads of at most 125 bytes, and no data frame after a close. Returns the number of
/// data frames.
pub fn check_sent(role: Role, mut wire: &[u8], deflate: bool) -> usize {
    let mut closed = false;
    let mut data = 0;
    while !wire.is_empty() {
        let (h, n) = match FrameHeader::decode(wire) {
            Ok(Some(x)) => x,
            other => panic!("sent bytes are not a frame header: {other:?}"),
        };
        let rsv_ok = h.rsv == 0 || (deflate && h.rsv == 0b100 && !h.opcode.is_control());
        assert!(h.fin && rsv_ok, "{h:?}");
        assert_eq!(h.mask.is_some(), role == Role::Client, "{h:?}");
        assert!(!h.opcode.is_reserved() && h.opcode != OpCode::Continuation, "{h:?}");
        if h.opcode.is_control() {
            assert!(h.payload_len <= 125);
        } else {
            assert!(!closed, "data frame after the close frame");
            data += 1;
        }
        if h.opcode == OpCode::Close {
            assert!(!closed, "two close frames");
            assert!(h.payload_len != 1, "close payload of one byte");
            closed = true;
        }
        let end = usize::try_from(h.payload_len).ok().and_then(|l| n.checked_add(l));
        let end = end.filter(|e| *e <= wire.len()).expect("sent a truncated frame");
        wire = &wire[end..];
    }
    data
}
