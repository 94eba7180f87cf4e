//! Property tests: header encode/decode, connection round trips in both roles, masking
//! against the scalar reference, and incremental UTF-8 validation against `std`.
//!
//! Case counts are kept moderate so the file runs in a few seconds in debug builds; set
//! `PROPTEST_CASES` to run more.
#![allow(missing_docs)]

#[allow(dead_code)]
mod checks {
    include!("../../fuzz/checks.rs");
}

use std::time::Instant;

use checks::TestBuffer;
use proptest::collection::vec;
use proptest::prelude::*;
use ringwire_frame::mask::{apply_mask_offset, apply_mask_scalar, copy_masked};
use ringwire_frame::utf8::Utf8Validator;
use ringwire_frame::{
    CloseCause, CloseCode, Closed, Config, Connection, Event, FixedMask, FrameHeader, Message,
    OpCode, Pong, ProtocolError, Role, XorShiftMask, MAX_HEADER_LEN,
};

/// `n` cases, unless the `PROPTEST_CASES` environment variable asks for another number
/// (`ProptestConfig::with_cases` would override it).
fn cases(n: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { default.cases } else { n };
    ProptestConfig { cases, ..default }
}

// ---- (a) frame headers ----------------------------------------------------------------

/// Payload lengths spread over the three length encodings (RFC 6455 §5.2), with their
/// boundaries, up to the largest legal 2^63 - 1.
fn payload_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=125,
        126u64..=0xffff,
        0x1_0000u64..=(u64::MAX >> 1),
        prop::sample::select(vec![
            0,
            125,
            126,
            0xffff,
            0x1_0000,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX >> 1,
        ]),
    ]
}

fn frame_header() -> impl Strategy<Value = FrameHeader> {
    (any::<bool>(), 0u8..8, 0u8..16, any::<Option<[u8; 4]>>(), payload_len()).prop_map(
        |(fin, rsv, op, mask, payload_len)| FrameHeader {
            fin,
            rsv,
            opcode: OpCode::from_u8(op),
            mask,
            payload_len,
        },
    )
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn header_encode_decode_round_trip(h in frame_header(), trailer in vec(any::<u8>(), 0..8)) {
        let mut wire = Vec::new();
        h.encode(&mut wire);
        let n = wire.len();
        prop_assert_eq!(n, h.encoded_len());
        prop_assert!(n <= MAX_HEADER_LEN);

        // §5.2: the minimal number of bytes for the length, and the mask bit.
        let len7 = wire[1] & 0x7f;
        let want_len7 = match h.payload_len {
            0..=125 => h.payload_len as u8,
            126..=0xffff => 126,
            _ => 127,
        };
        prop_assert_eq!(len7, want_len7);
        prop_assert_eq!(wire[1] & 0x80 != 0, h.mask.is_some());
        prop_assert_eq!(wire[0] >> 7 == 1, h.fin);

        prop_assert_eq!(FrameHeader::decode(&wire), Ok(Some((h, n))));
        // Bytes after the header (its payload) do not change the result.
        wire.extend_from_slice(&trailer);
        prop_assert_eq!(FrameHeader::decode(&wire), Ok(Some((h, n))));
        // Every strict prefix is incomplete, never an error.
        for i in 0..n {
            prop_assert_eq!(FrameHeader::decode(&wire[..i]), Ok(None), "prefix {}", i);
        }

        // encode_into: exact-size buffer works, a shorter one is refused untouched.
        let mut buf = [0u8; MAX_HEADER_LEN];
        prop_assert_eq!(h.encode_into(&mut buf[..n]), Some(n));
        prop_assert_eq!(&buf[..n], &wire[..n]);
        let mut short = vec![0xaau8; n - 1];
        prop_assert_eq!(h.encode_into(&mut short), None);
        prop_assert!(short.iter().all(|b| *b == 0xaa));
    }

    #[test]
    fn header_decode_of_arbitrary_bytes(bytes in vec(any::<u8>(), 0..16)) {
        // The header length is known from the first two bytes; decode answers exactly
        // by that, and rejects only a 64-bit length with its MSB set (§5.2).
        let need = match bytes.get(1) {
            None => usize::MAX,
            Some(b1) => {
                let ext = match b1 & 0x7f { 126 => 2, 127 => 8, _ => 0 };
                2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
            }
        };
        let got = FrameHeader::decode(&bytes);
        if bytes.len() < need {
            prop_assert_eq!(got, Ok(None));
        } else if bytes[1] & 0x7f == 127 && bytes[2] & 0x80 != 0 {
            prop_assert_eq!(got, Err(ProtocolError::InvalidLength));
        } else {
            let (h, n) = got.unwrap().unwrap();
            prop_assert_eq!(n, need);
            prop_assert_eq!(h.fin, bytes[0] & 0x80 != 0);
            prop_assert_eq!(h.rsv, (bytes[0] >> 4) & 7);
            prop_assert_eq!(h.opcode.as_u8(), bytes[0] & 0x0f);
            // Re-encoding gives the same bytes whenever the input used the minimal form.
            let mut again = Vec::new();
            h.encode(&mut again);
            let minimal = match bytes[1] & 0x7f {
                126 => h.payload_len >= 126,
                127 => h.payload_len > 0xffff,
                _ => true,
            };
            if minimal {
                prop_assert_eq!(&again[..], &bytes[..n]);
            }
        }
    }
}

// ---- (b) connection round trips -------------------------------------------------------

/// Something the sender does.
#[derive(Debug, Clone)]
enum Op {
    /// A text message; `owned` sends it with `send(Message)` rather than `send_text`.
    Text { s: String, owned: bool },
    /// A binary message; `owned` takes the `send(Message)` path (zero-copy for a large
    /// server payload).
    Binary { b: Vec<u8>, owned: bool },
    /// A ping with this payload.
    Ping(Vec<u8>),
}

/// Deterministic filler for large payloads (generating 70 KB byte by byte through
/// proptest is slow in debug builds and shrinks no better).
fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `s` repeated up to about `max` bytes, cut at a character boundary.
fn repeat_text(s: &str, max: usize) -> String {
    if s.is_empty() {
        return String::new();
    }
    let mut t = s.repeat(max / s.len() + 1);
    let mut cut = max.min(t.len());
    while !t.is_char_boundary(cut) {
        cut -= 1;
    }
    t.truncate(cut);
    t
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<String>(), any::<bool>()).prop_map(|(s, owned)| Op::Text { s, owned }),
        1 => (any::<String>(), 0usize..70_000, any::<bool>())
            .prop_map(|(s, n, owned)| Op::Text { s: repeat_text(&s, n), owned }),
        3 => (vec(any::<u8>(), 0..300), any::<bool>()).prop_map(|(b, owned)| Op::Binary { b, owned }),
        1 => (0usize..70_000, any::<u64>(), any::<bool>())
            .prop_map(|(n, seed, owned)| Op::Binary { b: filler(n, seed), owned }),
        2 => vec(any::<u8>(), 0..=125).prop_map(Op::Ping),
    ]
}

fn fragment_size() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![Just(None), (1usize..=300).prop_map(Some), (1usize..=80_000).prop_map(Some)]
}

/// Sizes of the reads the transport delivers, used in turn.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1usize..=8, 1usize..=2_000, 1usize..=100_000], 1..6)
}

/// How a test feeds received bytes to a connection.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// `handle_bytes` over a borrowed slice.
    Slice,
    /// `handle_buffer` over a [`TestBuffer`] that shares ranges when `share` is set and
    /// declines (so the connection copies) otherwise.
    Buffer { share: bool },
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![Just(Via::Slice), any::<bool>().prop_map(|share| Via::Buffer { share })]
}

/// Feeds `wire` to `conn` in reads of the given sizes (cycled). After each read, drains
/// events into `events` and transmits into `out`. Returns the end offset of each read.
fn deliver(
    conn: &mut Connection,
    now: Instant,
    wire: &[u8],
    sizes: &[usize],
    via: Via,
    events: &mut Vec<Event>,
    out: &mut Vec<u8>,
) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    for &size in sizes.iter().cycle() {
        if pos == wire.len() {
            break;
        }
        let end = (pos + size).min(wire.len());
        match via {
            Via::Slice => conn.handle_bytes(now, &wire[pos..end]),
            Via::Buffer { share } => {
                let mut buf = TestBuffer::new(&wire[pos..end], share);
                conn.handle_buffer(now, &mut buf);
                buf.check_shared_untouched();
            }
        }
        pos = end;
        ends.push(end);
        events.extend(std::iter::from_fn(|| conn.poll_event()));
        let queued = conn.queued_bytes();
        let sent = conn.poll_transmit_into(out);
        // A client's pending pong is under-counted by its 4-byte mask key: see
        // `queued_bytes_counts_a_pending_client_pong`.
        if conn.role() == Role::Server {
            assert_eq!(queued, sent, "queued_bytes before poll_transmit");
        }
        assert!(!conn.has_transmit());
    }
    ends
}

fn round_trip(
    sender_is_client: bool,
    frag: Option<usize>,
    ops: &[Op],
    sizes: &[usize],
    seed: u64,
    via: Via,
) -> Result<(), TestCaseError> {
    let now = Instant::now();
    let sender_config = Config::default().fragment_size(frag);
    let masks = Box::new(XorShiftMask::new(seed));
    let (mut tx, mut rx) = if sender_is_client {
        (Connection::client(sender_config, masks, now), Connection::server(Config::default(), now))
    } else {
        (Connection::server(sender_config, now), Connection::client(Config::default(), masks, now))
    };

    // The sender's wire, and where each ping frame ends in it.
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    let mut pings: Vec<(Vec<u8>, usize)> = Vec::new();
    for op in ops {
        match op {
            Op::Text { s, owned: true } => tx.send(Message::text(s.clone())).unwrap(),
            Op::Text { s, owned: false } => tx.send_text(s).unwrap(),
            Op::Binary { b, owned: true } => tx.send(Message::binary(b.clone())).unwrap(),
            Op::Binary { b, owned: false } => tx.send_binary(b).unwrap(),
            Op::Ping(p) => tx.send_ping_payload(p).unwrap(),
        }
        // Backpressure accounting matches what comes out.
        prop_assert!(tx.has_transmit());
        let queued = tx.queued_bytes();
        prop_assert_eq!(tx.poll_transmit_into(&mut wire), queued);
        prop_assert_eq!(tx.queued_bytes(), 0);
        expected.push(match op {
            Op::Text { s, .. } => Event::Message(Message::text(s.clone())),
            Op::Binary { b, .. } => Event::Message(Message::binary(b.clone())),
            Op::Ping(p) => {
                pings.push((p.clone(), wire.len()));
                Event::Ping(p.clone().into())
            }
        });
    }
    tx.close(now, CloseCode::NORMAL, "done").unwrap();
    tx.poll_transmit_into(&mut wire);
    expected.push(Event::Closed(Closed {
        code: CloseCode::NORMAL,
        reason: "done".into(),
        cause: CloseCause::Peer,
    }));

    let mut events = Vec::new();
    let mut back = Vec::new();
    let ends = deliver(&mut rx, now, &wire, sizes, via, &mut events, &mut back);
    prop_assert_eq!(events.len(), expected.len());
    for (i, (got, want)) in events.iter().zip(&expected).enumerate() {
        prop_assert!(got == want, "event {} of {}: got {:?}", i, expected.len(), short(got));
    }
    prop_assert!(rx.is_closed());

    // Auto-pongs: the receiver flushed after every read, and every ping is answered
    // unless more than 32 completed within one read: then only that read's latest 32
    // (§5.5.3: only the latest needs a pong; the cap bounds a flood).
    let read_of = |end: usize| ends.iter().position(|e| *e >= end).unwrap();
    let answered: Vec<&Vec<u8>> = pings
        .iter()
        .enumerate()
        .filter(|(i, (_, end))| {
            let later_same_read =
                pings[i + 1..].iter().filter(|(_, next)| read_of(*next) == read_of(*end)).count();
            later_same_read < 32
        })
        .map(|(_, (p, _))| p)
        .collect();

    let mut events = Vec::new();
    let mut nothing = Vec::new();
    deliver(&mut tx, now, &back, sizes, via, &mut events, &mut nothing);
    prop_assert!(nothing.is_empty(), "the sender answers nothing after its close");
    let mut want: Vec<Event> = answered
        .into_iter()
        .map(|p| Event::Pong(Pong { payload: p.clone().into(), rtt: None }))
        .collect();
    // The peer echoed our code (§5.5.1).
    want.push(Event::Closed(Closed {
        code: CloseCode::NORMAL,
        reason: String::new(),
        cause: CloseCause::Local,
    }));
    prop_assert_eq!(events, want);
    prop_assert!(tx.is_closed());
    prop_assert!(!tx.has_transmit() && !rx.has_transmit());
    Ok(())
}

/// A short description of an event, for failure messages (payloads can be 70 KB).
fn short(e: &Event) -> String {
    match e {
        Event::Message(m) => {
            format!("{} message of {} bytes", if m.is_text() { "text" } else { "binary" }, m.len())
        }
        other => format!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn client_to_server_round_trip(
        frag in fragment_size(),
        ops in vec(op(), 0..8),
        sizes in chunk_sizes(),
        seed in any::<u64>(),
        via in via(),
    ) {
        round_trip(true, frag, &ops, &sizes, seed, via)?;
    }

    #[test]
    fn server_to_client_round_trip(
        frag in fragment_size(),
        ops in vec(op(), 0..8),
        sizes in chunk_sizes(),
        seed in any::<u64>(),
        via in via(),
    ) {
        round_trip(false, frag, &ops, &sizes, seed, via)?;
    }
}

// ---- (c) masking ----------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn mask_fast_paths_match_scalar(
        data in vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        offset in prop_oneof![0usize..8, 0usize..(1 << 40)],
        align in 0usize..8,
    ) {
        let len = data.len();
        let mut want = data.clone();
        apply_mask_scalar(&mut want, key, offset);

        // In place, starting at an arbitrary alignment.
        let mut backing = vec![0x55u8; align];
        backing.extend_from_slice(&data);
        let next = apply_mask_offset(&mut backing[align..], key, offset);
        prop_assert_eq!(&backing[align..], &want[..]);
        prop_assert!(backing[..align].iter().all(|b| *b == 0x55));
        prop_assert_eq!(next, (offset + len) % 4);

        // Fused copy, to a destination at another alignment.
        let mut dst = vec![0x55u8; (align + 3) % 8 + len];
        let start = dst.len() - len;
        let next = copy_masked(&mut dst[start..], &data, key, offset);
        prop_assert_eq!(&dst[start..], &want[..]);
        prop_assert_eq!(next, (offset + len) % 4);

        // Masking twice is the identity.
        apply_mask_offset(&mut backing[align..], key, offset);
        prop_assert_eq!(&backing[align..], &data[..]);
    }

    #[test]
    fn mask_pieces_chain_like_one_pass(
        data in vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        cuts in vec(0usize..300, 0..6),
    ) {
        let mut want = data.clone();
        apply_mask_scalar(&mut want, key, 0);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        cuts.push(0);
        cuts.push(data.len());
        cuts.sort_unstable();
        let mut got = data.clone();
        let mut copied = vec![0u8; data.len()];
        let (mut off, mut off2) = (0, 0);
        for w in cuts.windows(2) {
            off = apply_mask_offset(&mut got[w[0]..w[1]], key, off);
            off2 = copy_masked(&mut copied[w[0]..w[1]], &data[w[0]..w[1]], key, off2);
        }
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(&copied, &want);
    }

    #[test]
    fn copy_masked_short_destination_writes_the_common_prefix(
        data in vec(any::<u8>(), 1..100),
        key in any::<[u8; 4]>(),
        offset in 0usize..4,
        short_by in 1usize..100,
    ) {
        let n = data.len().saturating_sub(short_by);
        let mut dst = vec![0u8; n];
        let next = copy_masked(&mut dst, &data, key, offset);
        let mut want = data[..n].to_vec();
        apply_mask_scalar(&mut want, key, offset);
        prop_assert_eq!(dst, want);
        prop_assert_eq!(next, (offset + n) % 4);
    }
}

// ---- (d) UTF-8 ------------------------------------------------------------------------

/// Sequences that break UTF-8 in the ways Autobahn's case 6 probes: overlongs,
/// surrogates, above U+10FFFF, stray continuations, truncations, invalid lead bytes.
const NASTY: &[&[u8]] = &[
    &[0xc0, 0xaf],
    &[0xe0, 0x80, 0xaf],
    &[0xed, 0xa0, 0x80],
    &[0xf4, 0x90, 0x80, 0x80],
    &[0xf8, 0x88, 0x80, 0x80, 0x80],
    &[0x80],
    &[0xbf],
    &[0xfe],
    &[0xff],
    &[0xe2, 0x82],
    &[0xf0, 0x9f, 0x98],
    &[0xc2],
    &[0xef, 0xbf, 0xbf],
    &[0xf4, 0x8f, 0xbf, 0xbf],
];

fn utf8_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Mostly invalid.
        vec(any::<u8>(), 0..64),
        // Valid.
        any::<String>().prop_map(String::into_bytes),
        // Valid, with one byte replaced.
        (any::<String>(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(s, i, b)| {
            let mut v = s.into_bytes();
            if !v.is_empty() {
                let i = i.index(v.len());
                v[i] = b;
            }
            v
        }),
        // Valid, cut at an arbitrary byte (often inside a code point).
        (any::<String>(), any::<prop::sample::Index>()).prop_map(|(s, i)| {
            let mut v = s.into_bytes();
            let cut = i.index(v.len() + 1);
            v.truncate(cut);
            v
        }),
        // Valid text around a nasty sequence.
        (any::<String>(), prop::sample::select(NASTY), any::<String>()).prop_map(|(a, n, b)| {
            let mut v = a.into_bytes();
            v.extend_from_slice(n);
            v.extend_from_slice(b.as_bytes());
            v
        }),
    ]
}

/// Whether `b` can still be the start of valid UTF-8.
fn valid_prefix(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn utf8_validator_agrees_with_std_and_fails_fast(
        bytes in utf8_input(),
        sizes in vec(1usize..10, 1..8),
    ) {
        // The first byte after which no continuation can make the text valid.
        let first_bad = match std::str::from_utf8(&bytes) {
            // It lies between `valid_up_to` and the end of the invalid sequence.
            Err(e) => e.error_len().map(|l| {
                let v = e.valid_up_to();
                let i = (v..bytes.len()).find(|&i| !valid_prefix(&bytes[..=i]));
                let i = i.expect("std reported an error that no prefix shows");
                assert!(i <= v + l);
                i
            }),
            Ok(_) => None,
        };

        let mut v = Utf8Validator::new();
        let mut pos = 0;
        let mut failed_in = None;
        for &size in sizes.iter().cycle() {
            if pos == bytes.len() {
                break;
            }
            let end = (pos + size).min(bytes.len());
            // An empty piece never changes anything.
            prop_assert!(v.feed(&[]).is_ok());
            if v.feed(&bytes[pos..end]).is_err() {
                failed_in = Some(pos..end);
                break;
            }
            // Between pieces it knows whether a code point is left open.
            let open = std::str::from_utf8(&bytes[..end]).is_err() && valid_prefix(&bytes[..end]);
            prop_assert_eq!(v.is_incomplete(), open, "after {} bytes", end);
            pos = end;
        }

        match (std::str::from_utf8(&bytes), first_bad) {
            (Ok(_), _) => {
                prop_assert_eq!(failed_in, None);
                prop_assert!(v.finish().is_ok());
            }
            (Err(_), None) => {
                // Truncated inside a code point: only the end of the message can tell.
                prop_assert_eq!(failed_in, None);
                prop_assert!(v.finish().is_err());
            }
            (Err(_), Some(bad)) => {
                // It fails in the piece holding the first bad byte: not before, not after.
                let r = failed_in.clone();
                prop_assert!(
                    r.as_ref().is_some_and(|r| r.contains(&bad)),
                    "first bad byte {} but failed in {:?}", bad, r
                );
            }
        }

        // After reset it validates a fresh message.
        v.reset();
        prop_assert!(v.feed("ok ✓".as_bytes()).is_ok());
        prop_assert!(v.finish().is_ok());
    }
}

// ---- regressions: deviations these properties found, now fixed -----------------------

proptest! {
    #![proptest_config(cases(64))]

    /// `FrameHeader` has a public `u64` length, so a header with a length of 2^63 or more
    /// can be built; RFC 6455 §5.2 says "the most significant bit MUST be 0". Encoding
    /// should refuse it (`None`) rather than write a header its own decoder rejects.
    #[test]
    fn header_never_encodes_what_decode_rejects(len in (1u64 << 63)..=u64::MAX, mask in any::<Option<[u8; 4]>>()) {
        let h = FrameHeader { mask, ..FrameHeader::new(OpCode::Binary, len) };
        let mut buf = [0u8; MAX_HEADER_LEN];
        if let Some(n) = h.encode_into(&mut buf) {
            prop_assert_eq!(FrameHeader::decode(&buf[..n]), Ok(Some((h, n))));
        }
    }

    /// The mask functions take any `usize` offset but compute `offset + len` unchecked,
    /// which panics with overflow in debug builds (wraps correctly in release).
    #[test]
    fn mask_offset_near_usize_max(
        data in vec(any::<u8>(), 1..40),
        key in any::<[u8; 4]>(),
        back in 0usize..40,
    ) {
        let offset = usize::MAX - back;
        let want: Vec<u8> =
            data.iter().enumerate().map(|(i, b)| b ^ key[(offset % 4 + i) % 4]).collect();
        let want_next = (offset % 4 + data.len()) % 4;
        let mut got = data.clone();
        prop_assert_eq!(apply_mask_offset(&mut got, key, offset), want_next);
        prop_assert_eq!(&got, &want);
        let mut dst = vec![0u8; data.len()];
        prop_assert_eq!(copy_masked(&mut dst, &data, key, offset), want_next);
        prop_assert_eq!(&dst, &want);
    }
}

/// `queued_bytes` is documented as "bytes waiting in poll_transmit, for backpressure", but
/// for a pending auto-pong it counts `payload + 2`, forgetting the 4-byte masking key a
/// client adds (connection/mod.rs `queued_bytes`).
#[test]
fn queued_bytes_counts_a_pending_client_pong() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    let mut client = Connection::client(Config::default(), Box::new(FixedMask([1, 2, 3, 4])), now);
    server.send_ping_payload(b"abc").unwrap();
    let mut wire = Vec::new();
    server.poll_transmit_into(&mut wire);
    client.handle_bytes(now, &wire);
    let queued = client.queued_bytes();
    let mut out = Vec::new();
    assert_eq!(client.poll_transmit_into(&mut out), queued);
}
