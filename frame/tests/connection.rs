//! The `Connection` state machine driven with a virtual clock: close handshake, timers,
//! heartbeats, RTT, limits, send rules. (Frame-level conformance lives in conformance.rs.)

#[allow(dead_code)]
mod checks {
    include!("../../fuzz/checks.rs");
}

use std::time::{Duration, Instant};

use bytes::Bytes;
use checks::TestBuffer;
use ringwire_frame::{
    encode_frame, encode_shared, CloseCause, CloseCode, Closed, Config, Connection, Event,
    FixedMask, FrameHeader, Message, OpCode, ProtocolError, SendError, PING_PAYLOAD_LEN,
};

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

fn client(config: Config, now: Instant) -> Connection {
    Connection::client(config, Box::new(FixedMask(KEY)), now)
}

/// A masked client frame, as a server receives it.
fn cframe(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(&mut v, op, fin, payload, Some(KEY));
    v
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Decodes what a connection transmitted into (opcode, unmasked payload) frames.
fn sent_frames(c: &mut Connection) -> Vec<(OpCode, Vec<u8>)> {
    let mut wire = Vec::new();
    c.poll_transmit_into(&mut wire);
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let (h, n) = FrameHeader::decode(&wire[at..]).unwrap().expect("whole frames only");
        at += n;
        let len = h.payload_len as usize;
        let mut p = wire[at..at + len].to_vec();
        if let Some(k) = h.mask {
            ringwire_frame::mask::apply_mask(&mut p, k);
        }
        at += len;
        out.push((h.opcode, p));
    }
    out
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

fn closed(code: CloseCode, reason: &str, cause: CloseCause) -> Event {
    Event::Closed(Closed { code, reason: reason.into(), cause })
}

#[test]
fn peer_initiated_close_is_echoed_and_reported_once() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    s.handle_bytes(t0, &cframe(OpCode::Close, true, &close_payload(4001, "bye")));
    assert_eq!(events(&mut s), [closed(CloseCode(4001), "bye", CloseCause::Peer)]);
    assert!(s.is_closed());
    assert_eq!(sent_frames(&mut s), [(OpCode::Close, 4001u16.to_be_bytes().to_vec())]);
    // Input after the close is ignored, sends are refused.
    s.handle_bytes(t0, &cframe(OpCode::Text, true, b"late"));
    assert!(events(&mut s).is_empty());
    assert_eq!(s.send_text("x"), Err(SendError::Closed));
    assert_eq!(s.poll_transmit(), None);
}

#[test]
fn empty_close_is_answered_with_empty_close() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    s.handle_bytes(t0, &cframe(OpCode::Close, true, &[]));
    assert_eq!(events(&mut s), [closed(CloseCode::NO_STATUS, "", CloseCause::Peer)]);
    assert_eq!(sent_frames(&mut s), [(OpCode::Close, vec![])]);
}

#[test]
fn local_close_waits_for_the_peer_and_keeps_receiving() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    s.close(t0, CloseCode::NORMAL, "done").unwrap();
    assert!(s.is_closing());
    assert_eq!(sent_frames(&mut s), [(OpCode::Close, close_payload(1000, "done"))]);
    assert_eq!(s.send_binary(b"x"), Err(SendError::Closed));
    assert_eq!(s.close(t0, CloseCode::NORMAL, ""), Err(SendError::Closed));
    // §7.1.2: data may still arrive until the peer's close.
    s.handle_bytes(t0, &cframe(OpCode::Binary, true, b"in flight"));
    s.handle_bytes(t0, &cframe(OpCode::Close, true, &close_payload(1000, "")));
    assert_eq!(
        events(&mut s),
        [
            Event::Message(Message::binary(Bytes::from_static(b"in flight"))),
            closed(CloseCode::NORMAL, "", CloseCause::Local)
        ]
    );
    // No second close frame goes out.
    assert!(sent_frames(&mut s).is_empty());
}

#[test]
fn close_timeout_ends_a_silent_peer() {
    let t0 = Instant::now();
    let config = Config::default().close_timeout(Duration::from_secs(2));
    let mut s = Connection::server(config, t0);
    s.close(t0, CloseCode::GOING_AWAY, "").unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    s.handle_timeout(t0 + Duration::from_millis(1999));
    assert!(events(&mut s).is_empty());
    s.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(events(&mut s), [closed(CloseCode::ABNORMAL, "", CloseCause::CloseTimeout)]);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn invalid_close_codes_are_refused_locally() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
        assert_eq!(s.close(t0, CloseCode(code), ""), Err(SendError::InvalidCloseCode(code)));
    }
    assert_eq!(
        s.close(t0, CloseCode::NORMAL, &"x".repeat(124)),
        Err(SendError::ReasonTooLong(124))
    );
    assert!(!s.is_closing());
}

#[test]
fn keepalive_ping_then_pong_timeout() {
    let t0 = Instant::now();
    let config = Config::default()
        .ping_interval(Some(Duration::from_secs(10)))
        .pong_timeout(Duration::from_secs(3));
    let mut s = Connection::server(config, t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    let t1 = t0 + Duration::from_secs(10);
    s.handle_timeout(t1);
    let sent = sent_frames(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, OpCode::Ping);
    assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_secs(3)));
    // Silent peer: detected at ping interval + pong timeout.
    s.handle_timeout(t1 + Duration::from_secs(3));
    assert_eq!(events(&mut s), [closed(CloseCode::ABNORMAL, "", CloseCause::HeartbeatTimeout)]);
}

#[test]
fn any_inbound_traffic_counts_as_life() {
    let t0 = Instant::now();
    let config = Config::default()
        .ping_interval(Some(Duration::from_secs(10)))
        .pong_timeout(Duration::from_secs(3));
    let mut s = Connection::server(config, t0);
    let t1 = t0 + Duration::from_secs(10);
    s.handle_timeout(t1);
    assert_eq!(sent_frames(&mut s).len(), 1);
    // A data message (not a pong) arrives before the pong timeout: the peer is alive and
    // the next ping is due one interval after it.
    let t2 = t1 + Duration::from_secs(1);
    s.handle_bytes(t2, &cframe(OpCode::Text, true, b"hi"));
    assert_eq!(s.poll_timeout(), Some(t2 + Duration::from_secs(10)));
    s.handle_timeout(t1 + Duration::from_secs(3));
    assert!(!s.is_closed());
    assert_eq!(events(&mut s).len(), 1);
    // Even half a frame header counts.
    let t3 = t2 + Duration::from_secs(9);
    s.handle_bytes(t3, &[0x81]);
    assert_eq!(s.poll_timeout(), Some(t3 + Duration::from_secs(10)));
}

#[test]
fn pong_reports_rtt_of_tracked_ping() {
    let t0 = Instant::now();
    let mut c = client(Config::default(), t0);
    let seq = c.send_ping(t0).unwrap();
    let sent = sent_frames(&mut c);
    let [(OpCode::Ping, payload)] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(payload.len(), PING_PAYLOAD_LEN);
    assert_eq!(payload[..4], seq.to_be_bytes());
    // The server answers (unmasked, as a server does).
    let mut pong = Vec::new();
    encode_frame(&mut pong, OpCode::Pong, true, payload, None);
    c.handle_bytes(t0 + Duration::from_micros(250), &pong);
    match events(&mut c).as_slice() {
        [Event::Pong(p)] => assert_eq!(p.rtt, Some(Duration::from_micros(250))),
        other => panic!("{other:?}"),
    }
    // The same pong again is unsolicited now: no RTT.
    c.handle_bytes(t0 + Duration::from_millis(1), &pong);
    match events(&mut c).as_slice() {
        [Event::Pong(p)] => assert_eq!(p.rtt, None),
        other => panic!("{other:?}"),
    }
}

/// The pong for `payload`, as a server sends it.
fn pong_frame(payload: &[u8]) -> Vec<u8> {
    let mut pong = Vec::new();
    encode_frame(&mut pong, OpCode::Pong, true, payload, None);
    pong
}

/// Feeds the pong for `payload` and returns the RTT it reported.
fn pong_rtt(c: &mut Connection, now: Instant, payload: &[u8]) -> Option<Duration> {
    c.handle_bytes(now, &pong_frame(payload));
    match events(c).as_slice() {
        [Event::Pong(p)] => p.rtt,
        other => panic!("{other:?}"),
    }
}

#[test]
fn late_pongs_still_report_rtt_and_forged_ones_none() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let mut c = client(Config::default(), t0);
    // Three pings 1 ms apart; the peer answers the first only after the third is out.
    let mut payloads = Vec::new();
    for i in 0..3 {
        c.send_ping(t0 + ms(i)).unwrap();
        payloads.push(sent_frames(&mut c).remove(0).1);
    }
    let t = t0 + ms(10);
    assert_eq!(pong_rtt(&mut c, t, &payloads[0]), Some(ms(10)));
    // The third's pong before the second's: measured, and the second is then older than
    // the last ping measured.
    assert_eq!(pong_rtt(&mut c, t + ms(1), &payloads[2]), Some(ms(9)));
    assert_eq!(pong_rtt(&mut c, t + ms(2), &payloads[1]), None);
    assert_eq!(pong_rtt(&mut c, t + ms(2), &payloads[2]), None, "measured already");
    // Forged: a sequence number not sent yet, a send time in the future, a short payload.
    c.send_ping(t + ms(3)).unwrap();
    let real = sent_frames(&mut c).remove(0).1;
    let mut ahead = real.clone();
    ahead[..4].copy_from_slice(&5u32.to_be_bytes());
    assert_eq!(pong_rtt(&mut c, t + ms(4), &ahead), None);
    let mut future = real.clone();
    future[4..].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(pong_rtt(&mut c, t + ms(4), &future), None);
    assert_eq!(pong_rtt(&mut c, t + ms(4), &real[..8]), None);
    // None of them counted: the real pong is still measured.
    assert_eq!(pong_rtt(&mut c, t + ms(5), &real), Some(ms(2)));
}

#[test]
#[cfg_attr(miri, ignore = "1,000 pings: 20 s under Miri; other tests take the same paths")]
fn ping_flood_gets_pongs_for_the_latest_32() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    let mut input = Vec::new();
    for i in 0..1000u32 {
        input.extend(cframe(OpCode::Ping, true, &i.to_be_bytes()));
    }
    s.handle_bytes(t0, &input);
    assert_eq!(events(&mut s).len(), 1000);
    let want: Vec<(OpCode, Vec<u8>)> =
        (968..1000u32).map(|i| (OpCode::Pong, i.to_be_bytes().to_vec())).collect();
    assert_eq!(sent_frames(&mut s), want);
}

#[test]
fn auto_pong_can_be_switched_off() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default().auto_pong(false), t0);
    s.handle_bytes(t0, &cframe(OpCode::Ping, true, b"p"));
    assert_eq!(events(&mut s), [Event::Ping(Bytes::from_static(b"p"))]);
    assert!(sent_frames(&mut s).is_empty());
    s.send_pong(b"p").unwrap();
    assert_eq!(sent_frames(&mut s), [(OpCode::Pong, b"p".to_vec())]);
}

#[test]
fn owed_pong_goes_out_before_the_close() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    s.handle_bytes(t0, &cframe(OpCode::Ping, true, b"p"));
    s.close(t0, CloseCode::NORMAL, "").unwrap();
    let ops: Vec<OpCode> = sent_frames(&mut s).into_iter().map(|f| f.0).collect();
    assert_eq!(ops, [OpCode::Pong, OpCode::Close]);
}

#[test]
fn pong_never_lands_inside_a_zero_copy_frame() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    let big = Bytes::from(vec![7u8; 4096]);
    s.send(Message::Binary(big.clone())).unwrap();
    // Take the header chunk only, then a ping arrives.
    let first = s.poll_transmit().unwrap();
    s.handle_bytes(t0, &cframe(OpCode::Ping, true, b"x"));
    let mut wire = first.to_vec();
    s.poll_transmit_into(&mut wire);
    let mut at = 0;
    let mut ops = Vec::new();
    while at < wire.len() {
        let (h, n) = FrameHeader::decode(&wire[at..]).unwrap().unwrap();
        at += n + h.payload_len as usize;
        ops.push((h.opcode, h.payload_len));
    }
    assert_eq!(ops, [(OpCode::Binary, 4096), (OpCode::Pong, 1)]);
}

#[test]
fn idle_timeout_starts_a_going_away_close() {
    let t0 = Instant::now();
    let mut s =
        Connection::server(Config::default().idle_timeout(Some(Duration::from_secs(30))), t0);
    s.handle_timeout(t0 + Duration::from_secs(30));
    assert!(s.is_closing());
    assert_eq!(sent_frames(&mut s), [(OpCode::Close, close_payload(1001, "idle timeout"))]);
}

#[test]
fn frame_and_message_limits_close_with_1009() {
    let t0 = Instant::now();
    let config = Config::default().max_frame_size(100).max_message_size(150);
    let mut s = Connection::server(config.clone(), t0);
    // Only the header of an oversized frame is needed to refuse it.
    let f = cframe(OpCode::Binary, true, &[0u8; 101]);
    s.handle_bytes(t0, &f[..8]);
    let ev = events(&mut s);
    assert!(matches!(
        ev.as_slice(),
        [Event::Closed(Closed {
            code: CloseCode::TOO_BIG,
            cause: CloseCause::Error(ProtocolError::FrameTooLarge { size: 101, max: 100 }),
            ..
        })]
    ));
    assert_eq!(sent_frames(&mut s), [(OpCode::Close, close_payload(1009, "frame too big"))]);

    let mut s = Connection::server(config, t0);
    let mut input = cframe(OpCode::Binary, false, &[1u8; 100]);
    input.extend(cframe(OpCode::Continuation, false, &[2u8; 50]));
    input.extend(cframe(OpCode::Continuation, true, &[3u8; 1]));
    s.handle_bytes(t0, &input);
    let ev = events(&mut s);
    assert!(matches!(
        ev.as_slice(),
        [Event::Closed(Closed {
            code: CloseCode::TOO_BIG,
            cause: CloseCause::Error(ProtocolError::MessageTooLarge { size: 151, max: 150 }),
            ..
        })]
    ));
}

#[test]
fn fail_fast_on_invalid_utf8_inside_a_frame() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    // A 1000-byte text frame whose 3rd byte is invalid: the connection fails after the
    // first 3 payload bytes, without waiting for the rest of the frame.
    let mut payload = vec![b'a'; 1000];
    payload[2] = 0xff;
    let f = cframe(OpCode::Text, true, &payload);
    s.handle_bytes(t0, &f[..8 + 3]);
    // The failure is applied by the next poll_event (events in arrival order).
    assert!(!s.is_closed() && s.close_is_next());
    assert!(matches!(events(&mut s).as_slice(), [Event::Closed(c)] if c.code.0 == 1007));
    assert!(s.is_closed());
    assert_eq!(sent_frames(&mut s), [(OpCode::Close, close_payload(1007, "invalid UTF-8"))]);
}

#[test]
fn server_send_of_large_bytes_is_zero_copy() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    let big = Bytes::from(vec![9u8; 60 * 1024]);
    s.send(Message::Binary(big.clone())).unwrap();
    assert_eq!(s.queued_bytes(), 60 * 1024 + 4);
    let header = s.poll_transmit().unwrap();
    assert_eq!(&header[..], &[0x82, 0x7e, 0xf0, 0x00]);
    let payload = s.poll_transmit().unwrap();
    assert_eq!(payload.as_ptr(), big.as_ptr(), "the payload chunk is the caller's allocation");
    assert_eq!(s.queued_bytes(), 0);
}

#[test]
fn shared_frames_are_server_only_and_uncopied() {
    let t0 = Instant::now();
    let frame = encode_shared(OpCode::Text, b"tick");
    let mut s1 = Connection::server(Config::default(), t0);
    let mut s2 = Connection::server(Config::default(), t0);
    s1.send_shared_frame(frame.clone()).unwrap();
    s2.send_shared_frame(frame.clone()).unwrap();
    assert_eq!(s1.poll_transmit().unwrap().as_ptr(), frame.as_ptr());
    assert_eq!(s2.poll_transmit().unwrap().as_ptr(), frame.as_ptr());
    let mut c = client(Config::default(), t0);
    assert_eq!(c.send_shared_frame(frame), Err(SendError::ClientSharedFrame));
}

#[test]
fn client_masks_with_its_source_and_fragments() {
    let t0 = Instant::now();
    let mut c = client(Config::default().fragment_size(Some(2)), t0);
    c.send_text("Hello").unwrap();
    let mut wire = Vec::new();
    c.poll_transmit_into(&mut wire);
    // Three masked frames: "He", "ll", "o".
    let mut at = 0;
    let mut got = Vec::new();
    while at < wire.len() {
        let (h, n) = FrameHeader::decode(&wire[at..]).unwrap().unwrap();
        assert_eq!(h.mask, Some(KEY));
        at += n + h.payload_len as usize;
        got.push((h.opcode, h.fin));
    }
    assert_eq!(
        got,
        [(OpCode::Text, false), (OpCode::Continuation, false), (OpCode::Continuation, true)]
    );
    // And a server reassembles it.
    let mut s = Connection::server(Config::default(), t0);
    s.handle_bytes(t0, &wire);
    assert_eq!(events(&mut s), [Event::Message(Message::text("Hello"))]);
}

#[test]
fn eof_before_close_is_abnormal() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    s.handle_eof(t0);
    assert_eq!(events(&mut s), [closed(CloseCode::ABNORMAL, "", CloseCause::TransportClosed)]);
    s.handle_eof(t0);
    assert!(events(&mut s).is_empty());
}

#[test]
fn idle_connection_holds_no_buffers_after_a_message() {
    // Not a memory measurement, a behavioural check: after a message is delivered and
    // the output drained, nothing is queued and the traffic buffers are freed.
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    assert!(!s.has_buffers());
    s.handle_bytes(t0, &cframe(OpCode::Binary, true, &[1u8; 3000]));
    assert!(s.has_buffers());
    s.send_binary(&[2u8; 3000]).unwrap();
    assert_eq!(events(&mut s).len(), 1);
    assert_eq!(sent_frames(&mut s).len(), 1);
    assert!(!s.has_transmit());
    assert_eq!(s.queued_bytes(), 0);
    assert!(!s.has_buffers(), "an idle connection holds no buffers");
    // A tracked ping waiting for its pong keeps none either.
    s.send_ping(t0).unwrap();
    assert_eq!(sent_frames(&mut s).len(), 1);
    assert!(!s.has_buffers());
}

#[test]
fn idle_connection_struct_stays_small() {
    // The engine keeps this struct inline in every connection's record; 56 bytes is what
    // the memory-per-connection goal (128 B in all, docs/BENCHMARKS.md) leaves for it.
    let size = std::mem::size_of::<Connection>();
    assert!(size <= 56, "Connection grew to {size} bytes");
}

#[test]
fn timers_before_the_first_connection_still_order_correctly() {
    // Deadlines are offsets from the configuration's epoch, fixed by the first instant a
    // connection of it is given; an instant the caller took before others (its `t0`) must
    // still give exact timers.
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(2));
    let cfg = Config::default().idle_timeout(Some(Duration::from_millis(10)));
    let mut s = Connection::server(cfg, t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(10)));
    s.handle_timeout(t0 + Duration::from_millis(9));
    assert!(events(&mut s).is_empty());
    s.handle_timeout(t0 + Duration::from_millis(10));
    assert!(s.is_closing() || s.is_closed());
}

#[test]
fn huge_timeouts_mean_never_not_a_panic() {
    let t0 = Instant::now();
    let cfg = Config::default()
        .ping_interval(Some(Duration::MAX))
        .idle_timeout(Some(Duration::MAX))
        .pong_timeout(Duration::MAX)
        .close_timeout(Duration::MAX);
    let mut s = Connection::server(cfg, t0);
    let far = s.poll_timeout().expect("timers armed");
    assert!(far > t0 + Duration::from_secs(100 * 365 * 86_400), "{:?}", far - t0);
    s.handle_bytes(t0, &cframe(OpCode::Text, true, b"hi"));
    assert_eq!(events(&mut s).len(), 1);
    s.close(t0, CloseCode::NORMAL, "").unwrap();
    s.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(!s.is_closed(), "a close timeout of Duration::MAX never fires");
}

#[test]
fn whole_data_frames_in_a_buffer_are_unmasked_in_place_and_shared() {
    let now = Instant::now();
    let mut s = Connection::server(Config::default(), now);
    let text = "héllo ".repeat(700);
    let bin: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let mut wire = cframe(OpCode::Text, true, text.as_bytes());
    let text_at = wire.len() - text.len();
    // A fragmented message is never shared: its parts are copied and joined.
    wire.extend(cframe(OpCode::Binary, false, &bin[..100]));
    wire.extend(cframe(OpCode::Continuation, true, &bin[100..]));
    wire.extend(cframe(OpCode::Binary, true, &bin));
    let bin_at = wire.len() - bin.len();
    // The last frame is cut short: its payload is copied as it arrives.
    wire.extend(cframe(OpCode::Binary, true, &bin));
    let cut = wire.len() - 10;
    let mut buf = TestBuffer::new(&wire[..cut], true);
    s.handle_buffer(now, &mut buf);
    buf.check_shared_untouched();
    // The two whole, unfragmented frames, unmasked where they lay.
    let ranges: Vec<_> = buf.shared.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(ranges, [text_at..text_at + text.len(), bin_at..bin_at + bin.len()]);
    assert_eq!(&buf.data[text_at..text_at + text.len()], text.as_bytes());
    let got = events(&mut s);
    assert_eq!(got.len(), 3);
    // The messages are the shared bytes themselves, not copies.
    let Event::Message(Message::Text(t)) = &got[0] else { panic!("{:?}", got[0]) };
    assert_eq!(t.as_str(), text);
    assert_eq!(t.as_bytes().as_ptr(), buf.shared[0].1.as_ptr());
    assert_eq!(got[1], Event::Message(Message::binary(bin.clone())));
    let Event::Message(Message::Binary(b)) = &got[2] else { panic!("{:?}", got[2]) };
    assert_eq!(b.as_ptr(), buf.shared[1].1.as_ptr());
    s.handle_bytes(now, &wire[cut..]);
    assert_eq!(events(&mut s), [Event::Message(Message::binary(bin))]);
}

#[test]
fn invalid_utf8_in_a_buffer_fails_with_1007_and_shares_nothing() {
    let now = Instant::now();
    let mut s = Connection::server(Config::default(), now);
    let mut payload = vec![b'a'; 3000];
    payload[2000] = 0xff;
    let mut buf = TestBuffer::new(&cframe(OpCode::Text, true, &payload), true);
    s.handle_buffer(now, &mut buf);
    assert!(buf.shared.is_empty());
    let got = events(&mut s);
    assert!(
        matches!(&got[..], [Event::Closed(c)] if c.code == CloseCode::INVALID_PAYLOAD),
        "{got:?}"
    );
}

// ---- events in arrival order: an end that arrives with the input waits for the poll ----

/// `frames` concatenated: one read.
fn one_read(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn echo_of_a_message_before_a_close_goes_out_before_the_close() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    let close = cframe(OpCode::Close, true, &close_payload(1000, "bye"));
    s.handle_bytes(t0, &one_read(&[cframe(OpCode::Text, true, b"hi"), close]));
    // Nothing is applied yet: the message comes first and may be answered.
    assert!(!s.is_closed() && !s.is_closing() && !s.close_is_next());
    let Some(Event::Message(m)) = s.poll_event() else { panic!("no message") };
    assert!(s.close_is_next(), "the close is the next event");
    assert!(!s.is_closed() && !s.is_closing());
    s.send(m).unwrap();
    s.send_binary(b"more").unwrap();
    assert_eq!(events(&mut s), [closed(CloseCode::NORMAL, "bye", CloseCause::Peer)]);
    assert!(s.is_closed() && !s.close_is_next());
    assert_eq!(s.send_text("late"), Err(SendError::Closed));
    assert_eq!(
        sent_frames(&mut s),
        [
            (OpCode::Text, b"hi".to_vec()),
            (OpCode::Binary, b"more".to_vec()),
            (OpCode::Close, 1000u16.to_be_bytes().to_vec())
        ]
    );
}

#[test]
fn echo_of_a_message_before_a_bad_frame_goes_out_before_the_1002() {
    let t0 = Instant::now();
    // A client receiving a masked frame, a server an unmasked one, either a reserved opcode.
    let mut s = Connection::server(Config::default(), t0);
    let mut unmasked = Vec::new();
    encode_frame(&mut unmasked, OpCode::Text, true, b"bad", None);
    let later = cframe(OpCode::Text, true, b"never read");
    s.handle_bytes(t0, &one_read(&[cframe(OpCode::Text, true, b"ok"), unmasked, later]));
    let Some(Event::Message(m)) = s.poll_event() else { panic!("no message") };
    s.send(m).unwrap();
    let ev = events(&mut s);
    assert!(
        matches!(
            &ev[..],
            [Event::Closed(Closed { cause: CloseCause::Error(ProtocolError::UnmaskedFrame), .. })]
        ),
        "{ev:?}"
    );
    let sent = sent_frames(&mut s);
    assert_eq!(sent[0], (OpCode::Text, b"ok".to_vec()));
    assert_eq!(sent[1], (OpCode::Close, close_payload(1002, "unmasked client frame")));
    assert_eq!(sent.len(), 2);
}

#[test]
fn a_close_alone_is_applied_by_the_next_poll() {
    let t0 = Instant::now();
    let mut c = client(Config::default(), t0);
    let mut close = Vec::new();
    encode_frame(&mut close, OpCode::Close, true, &close_payload(1001, ""), None);
    c.handle_bytes(t0, &close);
    assert!(!c.is_closed() && c.close_is_next());
    assert!(!c.has_transmit(), "the answer is queued by poll_event");
    // A later read is not processed (§7.1.7).
    let mut text = Vec::new();
    encode_frame(&mut text, OpCode::Text, true, b"after", None);
    c.handle_bytes(t0, &text);
    assert_eq!(events(&mut c), [closed(CloseCode::GOING_AWAY, "", CloseCause::Peer)]);
    assert_eq!(sent_frames(&mut c), [(OpCode::Close, 1001u16.to_be_bytes().to_vec())]);
    assert!(!c.has_buffers(), "idle again once closed and drained");
}

#[test]
fn eof_while_a_close_waits_reports_the_peers_close() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    let close = cframe(OpCode::Close, true, &close_payload(4000, "app"));
    s.handle_bytes(t0, &one_read(&[cframe(OpCode::Binary, true, b"m"), close]));
    s.handle_eof(t0);
    let Some(Event::Message(m)) = s.poll_event() else { panic!("no message") };
    s.send(m).unwrap();
    assert_eq!(events(&mut s), [closed(CloseCode(4000), "app", CloseCause::Peer)]);
    let ops: Vec<OpCode> = sent_frames(&mut s).into_iter().map(|f| f.0).collect();
    assert_eq!(ops, [OpCode::Binary, OpCode::Close]);
    // The same with a failure: the error is reported, not the end of stream.
    let mut s = Connection::server(Config::default(), t0);
    s.handle_bytes(t0, &cframe(OpCode::Ping, false, b"fragmented ping"));
    s.handle_eof(t0);
    let ev = events(&mut s);
    assert!(
        matches!(
            &ev[..],
            [Event::Closed(Closed {
                cause: CloseCause::Error(ProtocolError::FragmentedControlFrame),
                ..
            })]
        ),
        "{ev:?}"
    );
}

#[test]
fn no_timer_runs_while_a_close_waits() {
    let t0 = Instant::now();
    let config = Config::default()
        .ping_interval(Some(Duration::from_secs(1)))
        .idle_timeout(Some(Duration::from_secs(2)));
    let mut s = Connection::server(config, t0);
    let close = cframe(OpCode::Close, true, &close_payload(1000, ""));
    s.handle_bytes(t0, &one_read(&[cframe(OpCode::Text, true, b"hi"), close]));
    assert_eq!(s.poll_timeout(), None);
    // No keepalive ping, no idle close, however late.
    s.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(!s.has_transmit() && !s.is_closing() && !s.is_closed());
    let ev = events(&mut s);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1], closed(CloseCode::NORMAL, "", CloseCause::Peer));
    assert_eq!(sent_frames(&mut s), [(OpCode::Close, 1000u16.to_be_bytes().to_vec())]);
}

#[test]
fn local_close_while_the_peers_close_waits_is_the_answer() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    let close = cframe(OpCode::Close, true, &close_payload(1001, "going"));
    s.handle_bytes(t0, &one_read(&[cframe(OpCode::Text, true, b"hi"), close]));
    let Some(Event::Message(_)) = s.poll_event() else { panic!("no message") };
    s.close(t0, CloseCode(4001), "app done").unwrap();
    assert!(s.is_closing());
    assert_eq!(s.poll_timeout(), None, "no close timeout: the peer's close is here");
    assert_eq!(s.send_text("x"), Err(SendError::Closed));
    // The peer started the handshake: Peer, with its code and reason.
    assert_eq!(events(&mut s), [closed(CloseCode::GOING_AWAY, "going", CloseCause::Peer)]);
    assert_eq!(sent_frames(&mut s), [(OpCode::Close, close_payload(4001, "app done"))]);
}

#[test]
fn owed_pongs_and_pings_sent_while_a_close_waits_precede_the_close() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    let close = cframe(OpCode::Close, true, &close_payload(1000, ""));
    s.handle_bytes(t0, &one_read(&[cframe(OpCode::Ping, true, b"p"), close]));
    assert_eq!(s.poll_event(), Some(Event::Ping(Bytes::from_static(b"p"))));
    s.send_ping(t0).unwrap();
    assert_eq!(events(&mut s), [closed(CloseCode::NORMAL, "", CloseCause::Peer)]);
    let ops: Vec<OpCode> = sent_frames(&mut s).into_iter().map(|f| f.0).collect();
    assert_eq!(ops, [OpCode::Ping, OpCode::Pong, OpCode::Close]);
}

#[test]
fn a_close_answering_ours_also_waits_behind_earlier_events() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    s.close(t0, CloseCode::NORMAL, "").unwrap();
    sent_frames(&mut s);
    let close = cframe(OpCode::Close, true, &close_payload(1000, ""));
    s.handle_bytes(t0, &one_read(&[cframe(OpCode::Text, true, b"late"), close]));
    assert!(s.is_closing() && !s.is_closed());
    assert_eq!(s.poll_timeout(), None, "the answer is here: no close timeout");
    assert!(matches!(s.poll_event(), Some(Event::Message(_))));
    assert!(s.close_is_next());
    assert_eq!(events(&mut s), [closed(CloseCode::NORMAL, "", CloseCause::Local)]);
    assert!(sent_frames(&mut s).is_empty());
}

// ---- no clock: the caller's instants are the only time the crate sees ----------------

/// Runs a keepalive ping, its pong, a tracked ping and the idle timer on `c`, opened at
/// `t0` with the configuration of `virtual_clock_config`, and checks every deadline and
/// RTT is exact.
fn drive_timers_from(mut c: Connection, t0: Instant) {
    let ns = Duration::from_nanos;
    let s = Duration::from_secs;
    assert_eq!(c.poll_timeout(), Some(t0 + s(10)));
    c.handle_timeout(t0 + s(10) - ns(1));
    assert!(sent_frames(&mut c).is_empty(), "no ping a nanosecond early");
    c.handle_timeout(t0 + s(10));
    let sent = sent_frames(&mut c);
    let [(OpCode::Ping, ping)] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(c.poll_timeout(), Some(t0 + s(13)), "pong timeout");
    assert_eq!(pong_rtt(&mut c, t0 + s(10) + ns(250_001), ping), Some(ns(250_001)));
    // The pong was life: the next ping one interval after it.
    assert_eq!(c.poll_timeout(), Some(t0 + s(20) + ns(250_001)));
    c.send_ping(t0 + s(11)).unwrap();
    let p = sent_frames(&mut c).remove(0).1;
    assert_eq!(pong_rtt(&mut c, t0 + s(11) + ns(1), &p), Some(ns(1)));
}

fn virtual_clock_config() -> Config {
    Config::default()
        .ping_interval(Some(Duration::from_secs(10)))
        .pong_timeout(Duration::from_secs(3))
}

#[test]
fn a_virtual_clock_starting_anywhere_gives_exact_timers_and_rtts() {
    let day = Duration::from_secs(86_400);
    let far = Instant::now() + 1000 * day;
    // Connections sharing one configuration: the first, 1000 days ahead, fixes its epoch;
    // the second starts 500 days before the first, the third a second before the second.
    let config = std::sync::Arc::new(virtual_clock_config());
    for t0 in [far, far - 500 * day, far - 500 * day - Duration::from_secs(1)] {
        let c = Connection::client(config.clone(), Box::new(FixedMask(KEY)), t0);
        drive_timers_from(c, t0);
        let s = Connection::server(config.clone(), t0);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    }
    // A configuration of its own, 1000 days ahead too.
    drive_timers_from(client(virtual_clock_config(), far), far);
    // The epoch is no setting: the shared configuration still equals a fresh one.
    assert_eq!(*config, virtual_clock_config());
}

#[test]
#[cfg_attr(miri, ignore = "reads the crate's sources: file system access Miri isolates")]
fn no_clock_is_read_in_the_crate() {
    // The caller's `now` is the only time the crate may see: no clock read in frame/src
    // outside comments (doc examples) and `#[cfg(test)]` modules (each file's tests come
    // last, house style).
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    files(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
    assert!(all.len() >= 10, "{all:?}");
    for f in all {
        let text = std::fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            for clock in ["Instant::now", "SystemTime", "UNIX_EPOCH"] {
                assert!(!l.contains(clock), "{}:{}: reads a clock: {l}", f.display(), i + 1);
            }
        }
    }
}

#[test]
fn local_close_while_a_failure_waits_goes_out_and_the_error_is_reported() {
    let t0 = Instant::now();
    let mut s = Connection::server(Config::default(), t0);
    let bad = cframe(OpCode::Continuation, true, b"no message to continue");
    s.handle_bytes(t0, &one_read(&[cframe(OpCode::Text, true, b"hi"), bad]));
    let Some(Event::Message(_)) = s.poll_event() else { panic!("no message") };
    assert!(s.close_is_next());
    s.close(t0, CloseCode::NORMAL, "bye").unwrap();
    let ev = events(&mut s);
    assert!(
        matches!(
            &ev[..],
            [Event::Closed(Closed {
                cause: CloseCause::Error(ProtocolError::UnexpectedContinuation),
                ..
            })]
        ),
        "{ev:?}"
    );
    // One close only: ours (§7.1.7 only says SHOULD for the error's code).
    assert_eq!(sent_frames(&mut s), [(OpCode::Close, close_payload(1000, "bye"))]);
}

#[test]
fn a_seeded_client_masks_like_one_given_the_same_generator() {
    // `client_seeded` holds the crate's generator inline; frames, masks and all, are the
    // same as `client` with that generator boxed.
    let now = Instant::now();
    let mut a = Connection::client_seeded(Config::default(), 42, now);
    let mut b =
        Connection::client(Config::default(), Box::new(ringwire_frame::XorShiftMask::new(42)), now);
    let (mut wa, mut wb) = (Vec::new(), Vec::new());
    for c in [&mut a, &mut b] {
        c.send(Message::text("seeded")).unwrap();
        c.close(now, CloseCode::NORMAL, "bye").unwrap();
    }
    a.poll_transmit_into(&mut wa);
    b.poll_transmit_into(&mut wb);
    assert_eq!(wa, wb);
    assert_ne!(wa[1] & 0x80, 0, "client frames are masked (RFC 6455 §5.3)");
    let mut server = Connection::server(Config::default(), now);
    server.handle_bytes(now, &wa);
    assert_eq!(server.poll_event(), Some(Event::Message(Message::text("seeded"))));
}
