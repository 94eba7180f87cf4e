//! Interop between ringwire's sans-IO `Connection` and tungstenite 0.26, both roles.
//!
//! No sockets: the two ends talk through an in-memory duplex ([`End`]) whose reads return
//! `WouldBlock` when nothing is buffered, so every step is driven by hand and the tests are
//! deterministic. "rw" is ringwire, "ts" is tungstenite.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use std::io::{self, Write};

use ringwire_frame::{
    encode_shared, CloseCause, CloseCode, Config, Connection, Event, Message, OpCode, Role,
    SendError, XorShiftMask,
};
use ringwire_tests::duplex::{duplex, End};
use tungstenite::error::Error as TsError;
use tungstenite::protocol::frame::coding::{CloseCode as TsCloseCode, Data, OpCode as TsOpCode};
use tungstenite::protocol::frame::{CloseFrame as TsCloseFrame, Frame};
use tungstenite::protocol::{Role as TsRole, WebSocket, WebSocketConfig};
use tungstenite::Message as TsMessage;

// ---- the pair under test --------------------------------------------------------------

/// A ringwire connection of `rw_role` wired to a tungstenite socket of the other role.
struct Pair {
    rw: Connection,
    rw_end: End,
    ts: WebSocket<End>,
    now: Instant,
    /// Largest piece ringwire is fed at once.
    rw_chunk: usize,
    /// tungstenite reported `ConnectionClosed` (it ended the connection cleanly).
    ts_closed: bool,
}

impl Pair {
    fn new(rw_role: Role, config: Config) -> Self {
        Self::with_chunks(rw_role, config, usize::MAX, usize::MAX)
    }

    /// `ts_chunk`: most bytes one tungstenite read gets; `rw_chunk`: most bytes fed to
    /// ringwire per `handle_bytes`.
    fn with_chunks(rw_role: Role, config: Config, ts_chunk: usize, rw_chunk: usize) -> Self {
        let now = Instant::now();
        let (rw_end, ts_end) = duplex(ts_chunk);
        let ts_config = WebSocketConfig::default().max_message_size(Some(64 << 20));
        let (rw, ts_role) = match rw_role {
            Role::Server => (Connection::server(config, now), TsRole::Client),
            Role::Client => (
                Connection::client(config, Box::new(XorShiftMask::new(0x5eed)), now),
                TsRole::Server,
            ),
        };
        let ts = WebSocket::from_raw_socket(ts_end, ts_role, Some(ts_config));
        Self { rw, rw_end, ts, now, rw_chunk, ts_closed: false }
    }

    /// Moves everything ringwire wants to send onto the wire; returns the byte count.
    fn rw_flush(&mut self) -> usize {
        let mut out = Vec::new();
        let n = self.rw.poll_transmit_into(&mut out);
        self.rw_end.write_all(&out).unwrap();
        n
    }

    /// Feeds everything tungstenite wrote to ringwire and returns ringwire's events.
    fn rw_receive(&mut self) -> Vec<Event> {
        let bytes = self.rw_end.take_all();
        for piece in bytes.chunks(self.rw_chunk.max(1)) {
            self.now += Duration::from_millis(1);
            self.rw.handle_bytes(self.now, piece);
        }
        std::iter::from_fn(|| self.rw.poll_event()).collect()
    }

    /// Reads every message tungstenite can decode from what is on the wire (its reads also
    /// flush the pongs and close replies it queued).
    fn ts_read_all(&mut self) -> Vec<TsMessage> {
        let mut got = Vec::new();
        loop {
            match self.ts.read() {
                Ok(m) => got.push(m),
                Err(TsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(TsError::ConnectionClosed) => {
                    self.ts_closed = true;
                    return got;
                }
                Err(e) => panic!("tungstenite read failed after {got:?}: {e:?}"),
            }
        }
    }

    fn ts_send(&mut self, m: TsMessage) {
        self.ts.send(m).unwrap();
    }
}

/// Runs `f` once with ringwire as server (tungstenite client) and once as client.
fn both_roles(f: impl Fn(Role)) {
    for role in [Role::Server, Role::Client] {
        f(role);
    }
}

/// A text of exactly `len` bytes mixing 1-, 2-, 3- and 4-byte code points.
fn text_of_len(len: usize) -> String {
    let pattern = ['a', 'é', '€', '𝄞', 'Z', 'ж', '✓'];
    let mut s = String::with_capacity(len);
    let mut i = 0;
    while s.len() < len {
        let c = pattern[i % pattern.len()];
        if s.len() + c.len_utf8() <= len {
            s.push(c);
        } else {
            s.push('.');
        }
        i += 1;
    }
    assert_eq!(s.len(), len);
    s
}

fn binary_of_len(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 70_001, 1 << 20];

/// A message as both libraries see it: (is_text, payload).
fn rw_msg(e: &Event) -> (bool, Vec<u8>) {
    match e {
        Event::Message(m) => (m.is_text(), m.as_bytes().to_vec()),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn ts_msg(m: &TsMessage) -> (bool, Vec<u8>) {
    match m {
        TsMessage::Text(t) => (true, t.as_bytes().to_vec()),
        TsMessage::Binary(b) => (false, b.to_vec()),
        other => panic!("expected a data message, got {other:?}"),
    }
}

/// `got` and `want` are the same (is-text, payload) messages in the same order; a
/// mismatch names the message instead of dumping megabytes of payload.
fn assert_same_messages(role: Role, got: &[(bool, Vec<u8>)], want: &[(bool, Vec<u8>)]) {
    assert_eq!(got.len(), want.len(), "{role:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g == w, "{role:?}: message {i} differs (len {} vs {})", g.1.len(), w.1.len());
    }
}

fn closed(e: &Event) -> (CloseCode, String, CloseCause) {
    match e {
        Event::Closed(c) => (c.code, c.reason.clone(), c.cause.clone()),
        other => panic!("expected Closed, got {other:?}"),
    }
}

// ---- ringwire -> tungstenite ----------------------------------------------------------

#[test]
fn rw_data_sizes_decode_in_tungstenite() {
    both_roles(|role| {
        let mut p = Pair::new(role, Config::default());
        let mut want = Vec::new();
        for (i, &len) in SIZES.iter().enumerate() {
            let text = text_of_len(len);
            let bin = binary_of_len(len, i as u8);
            // Both the copying and the owned (zero-copy for a large server payload) paths.
            p.rw.send_text(&text).unwrap();
            p.rw.send(Message::text(text.clone())).unwrap();
            p.rw.send_binary(&bin).unwrap();
            p.rw.send(Message::binary(bin.clone())).unwrap();
            want.push((true, text.clone().into_bytes()));
            want.push((true, text.into_bytes()));
            want.push((false, bin.clone()));
            want.push((false, bin));
        }
        assert!(p.rw_flush() > 0);
        let got: Vec<_> = p.ts_read_all().iter().map(ts_msg).collect();
        assert_same_messages(role, &got, &want);
    });
}

#[test]
fn rw_data_reaches_tungstenite_in_small_reads() {
    // tungstenite reads at most 7 bytes at a time: every header and payload is split.
    both_roles(|role| {
        let mut p = Pair::with_chunks(role, Config::default(), 7, usize::MAX);
        for len in [0, 5, 125, 126, 3000] {
            p.rw.send_text(&text_of_len(len)).unwrap();
            p.rw.send_binary(&binary_of_len(len, 3)).unwrap();
        }
        p.rw_flush();
        let got: Vec<_> = p.ts_read_all().iter().map(ts_msg).collect();
        let want: Vec<_> = [0, 5, 125, 126, 3000]
            .iter()
            .flat_map(|&l| [(true, text_of_len(l).into_bytes()), (false, binary_of_len(l, 3))])
            .collect();
        assert_eq!(got, want, "{role:?}");
    });
}

#[test]
fn rw_fragmented_messages_decode_in_tungstenite() {
    both_roles(|role| {
        for frag in [1usize, 2, 3, 125, 126, 4096] {
            let config = Config::default().fragment_size(Some(frag));
            let mut p = Pair::new(role, config);
            let mut want = Vec::new();
            for len in [0usize, 1, frag, frag + 1, 3 * frag + 2, 10_000] {
                // Text fragments split code points: only the whole message must be UTF-8.
                let text = text_of_len(len);
                p.rw.send_text(&text).unwrap();
                want.push((true, text.into_bytes()));
                let bin = binary_of_len(len, frag as u8);
                p.rw.send(Message::binary(bin.clone())).unwrap();
                want.push((false, bin));
            }
            // The wire really is fragmented: a 10 000-byte text starts with a non-final frame.
            p.rw.send_text(&text_of_len(10_000)).unwrap();
            want.push((true, text_of_len(10_000).into_bytes()));
            p.rw_flush();
            let got: Vec<_> = p.ts_read_all().iter().map(ts_msg).collect();
            assert_eq!(got, want, "{role:?} fragment {frag}");
        }
        // The first frame of a fragmented message has FIN clear and the Text opcode; the
        // next is a continuation.
        let mut p = Pair::new(role, Config::default().fragment_size(Some(4)));
        p.rw.send_text("abcdefgh").unwrap();
        p.rw_flush();
        let wire = p.rw_end.pending_out();
        let mask_len = if role == Role::Client { 4 } else { 0 };
        assert_eq!(wire[0], 0x01, "{role:?}: first fragment header");
        assert_eq!(wire[2 + mask_len + 4], 0x80, "{role:?}: final continuation header");
        assert_eq!(ts_msg(&p.ts_read_all()[0]), (true, b"abcdefgh".to_vec()));
    });
}

#[test]
fn rw_ping_reaches_tungstenite_and_its_pong_comes_back() {
    both_roles(|role| {
        let mut p = Pair::new(role, Config::default());
        p.rw.send_ping_payload(b"are you there").unwrap();
        p.rw_flush();
        let got = p.ts_read_all();
        assert_eq!(got, [TsMessage::Ping(Bytes::from_static(b"are you there"))], "{role:?}");
        // tungstenite queued the pong; it goes out on its next flush.
        p.ts.flush().unwrap();
        let ev = p.rw_receive();
        match &ev[..] {
            [Event::Pong(pong)] => {
                assert_eq!(&pong.payload[..], b"are you there");
                assert_eq!(pong.rtt, None);
            }
            other => panic!("{role:?}: expected one pong, got {other:?}"),
        }

        // A tracked ping reports its round-trip time on the virtual clock.
        let seq = p.rw.send_ping(p.now).unwrap();
        p.rw_flush();
        let got = p.ts_read_all();
        let [TsMessage::Ping(payload)] = got.as_slice() else { panic!("{role:?}: {got:?}") };
        assert_eq!(payload[..4], seq.to_be_bytes(), "sequence number, then send time");
        let payload = payload.clone();
        p.ts.flush().unwrap();
        let ev = p.rw_receive();
        match &ev[..] {
            [Event::Pong(pong)] => {
                assert_eq!(pong.payload, payload);
                assert_eq!(pong.rtt, Some(Duration::from_millis(1)));
            }
            other => panic!("{role:?}: expected one pong, got {other:?}"),
        }

        // An unsolicited pong and an empty ping.
        p.rw.send_pong(b"heartbeat").unwrap();
        p.rw.send_ping_payload(b"").unwrap();
        p.rw_flush();
        assert_eq!(
            p.ts_read_all(),
            [TsMessage::Pong(Bytes::from_static(b"heartbeat")), TsMessage::Ping(Bytes::new())]
        );
    });
}

#[test]
fn rw_initiates_close_and_tungstenite_echoes() {
    both_roles(|role| {
        for (code, reason) in [(1000u16, "bye"), (1001, ""), (3000, "é€𝄞"), (4999, "x")] {
            let mut p = Pair::new(role, Config::default());
            p.rw.send_text("last words").unwrap();
            p.rw.close(p.now, CloseCode(code), reason).unwrap();
            assert!(p.rw.is_closing());
            assert_eq!(p.rw.send_text("too late"), Err(SendError::Closed));
            p.rw_flush();

            let got = p.ts_read_all();
            assert_eq!(ts_msg(&got[0]), (true, b"last words".to_vec()));
            let want = TsCloseFrame { code: TsCloseCode::from(code), reason: reason.into() };
            assert_eq!(got[1..], [TsMessage::Close(Some(want))], "{role:?} {code}");

            // tungstenite has answered; a tungstenite server then ends the connection.
            assert_eq!(p.ts_closed, role == Role::Client, "{role:?}");
            let ev = p.rw_receive();
            assert_eq!(ev.len(), 1, "{role:?}: {ev:?}");
            // tungstenite echoes code and reason.
            assert_eq!(closed(&ev[0]), (CloseCode(code), reason.to_owned(), CloseCause::Local));
            assert!(p.rw.is_closed());
            assert!(!p.rw.has_transmit(), "nothing follows the close handshake");

            // The server closes TCP first (RFC 6455 §7.1.1); a tungstenite client then
            // reports the clean end.
            if role == Role::Server {
                p.rw_end.hang_up();
                assert!(matches!(p.ts.read(), Err(TsError::ConnectionClosed)), "{role:?}");
            } else {
                assert!(matches!(p.ts.read(), Err(TsError::AlreadyClosed)));
            }
        }
    });
}

#[test]
fn tungstenite_initiates_close_and_rw_echoes() {
    both_roles(|role| {
        let cases: [(Option<(u16, &str)>, CloseCode); 4] = [
            (Some((1000, "done")), CloseCode::NORMAL),
            (Some((1008, "")), CloseCode::POLICY),
            (Some((4000, "ünïcode")), CloseCode(4000)),
            (None, CloseCode::NO_STATUS),
        ];
        for (frame, want_code) in cases {
            let mut p = Pair::new(role, Config::default());
            let ts_frame = frame.map(|(c, r)| TsCloseFrame { code: c.into(), reason: r.into() });
            p.ts.send(TsMessage::binary(vec![1, 2, 3])).unwrap();
            p.ts.close(ts_frame.clone()).unwrap();
            let ev = p.rw_receive();
            assert_eq!(rw_msg(&ev[0]), (false, vec![1, 2, 3]));
            let want_reason = frame.map_or("", |f| f.1).to_owned();
            assert_eq!(closed(&ev[1]), (want_code, want_reason, CloseCause::Peer), "{role:?}");
            assert_eq!(ev.len(), 2);
            assert!(p.rw.is_closed());
            assert_eq!(p.rw.send_text("after close"), Err(SendError::Closed));

            // ringwire echoes the code (RFC 6455 §5.5.1), with no reason.
            p.rw_flush();
            let echo = ts_frame.map(|f| TsCloseFrame { code: f.code, reason: "".into() });
            match (role, p.ts.read()) {
                (_, Ok(TsMessage::Close(got))) => assert_eq!(got, echo, "{role:?}"),
                (_, other) => panic!("{role:?}: expected the echoed close, got {other:?}"),
            }
            // The tungstenite server now ends the connection; a client waits for the FIN.
            match role {
                Role::Client => assert!(matches!(p.ts.read(), Err(TsError::ConnectionClosed))),
                Role::Server => {
                    assert!(
                        matches!(p.ts.read(), Err(TsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock)
                    );
                    p.rw_end.hang_up();
                    assert!(matches!(p.ts.read(), Err(TsError::ConnectionClosed)));
                }
            }
        }
    });
}

#[test]
fn simultaneous_close() {
    both_roles(|role| {
        let mut p = Pair::new(role, Config::default());
        p.rw.close(p.now, CloseCode::NORMAL, "rw").unwrap();
        p.ts.close(Some(TsCloseFrame { code: TsCloseCode::Away, reason: "ts".into() })).unwrap();
        p.rw_flush();
        let ev = p.rw_receive();
        // Each side sees the other's close as the answer to its own.
        assert_eq!(closed(&ev[0]), (CloseCode::GOING_AWAY, "ts".to_owned(), CloseCause::Local));
        let got = p.ts.read();
        let want = TsCloseFrame { code: TsCloseCode::Normal, reason: "rw".into() };
        assert!(matches!(&got, Ok(TsMessage::Close(Some(f))) if *f == want), "{role:?}: {got:?}");
        assert!(!p.rw.has_transmit());
    });
}

// ---- tungstenite -> ringwire ----------------------------------------------------------

#[test]
fn tungstenite_data_sizes_decode_in_rw() {
    both_roles(|role| {
        let mut p = Pair::new(role, Config::default());
        let mut want = Vec::new();
        for (i, &len) in SIZES.iter().enumerate() {
            let text = text_of_len(len);
            let bin = binary_of_len(len, i as u8);
            p.ts_send(TsMessage::text(text.clone()));
            p.ts_send(TsMessage::binary(bin.clone()));
            want.push((true, text.into_bytes()));
            want.push((false, bin));
        }
        let got: Vec<_> = p.rw_receive().iter().map(rw_msg).collect();
        assert_same_messages(role, &got, &want);
    });
}

#[test]
fn tungstenite_data_fed_to_rw_in_small_pieces() {
    both_roles(|role| {
        for rw_chunk in [1usize, 2, 3, 13, 1000] {
            let mut p = Pair::with_chunks(role, Config::default(), usize::MAX, rw_chunk);
            let lens = [0usize, 7, 125, 126, 700, 65536];
            for &len in &lens {
                p.ts_send(TsMessage::text(text_of_len(len)));
                p.ts_send(TsMessage::binary(binary_of_len(len, 9)));
            }
            let got: Vec<_> = p.rw_receive().iter().map(rw_msg).collect();
            let want: Vec<_> = lens
                .iter()
                .flat_map(|&l| [(true, text_of_len(l).into_bytes()), (false, binary_of_len(l, 9))])
                .collect();
            assert_eq!(got, want, "{role:?} chunk {rw_chunk}");
        }
    });
}

#[test]
fn tungstenite_fragments_with_interleaved_ping_decode_in_rw() {
    both_roles(|role| {
        let mut p = Pair::new(role, Config::default());
        let text = text_of_len(1000);
        // Split at byte offsets that cut code points in half.
        let bytes = text.as_bytes();
        let cuts = [0usize, 1, 2, 333, 334, 999, 1000];
        for (i, w) in cuts.windows(2).enumerate() {
            let op =
                if i == 0 { TsOpCode::Data(Data::Text) } else { TsOpCode::Data(Data::Continue) };
            let fin = i == cuts.len() - 2;
            let part = Bytes::copy_from_slice(&bytes[w[0]..w[1]]);
            p.ts.write(TsMessage::Frame(Frame::message(part, op, fin))).unwrap();
            if i == 2 {
                // RFC 6455 §5.4: control frames may be injected between fragments.
                p.ts.write(TsMessage::Ping(Bytes::from_static(b"mid-message"))).unwrap();
            }
        }
        // A fragmented binary message too, with an empty middle fragment.
        for (op, fin, data) in [
            (Data::Binary, false, &b"ab"[..]),
            (Data::Continue, false, &b""[..]),
            (Data::Continue, true, &b"cd"[..]),
        ] {
            p.ts.write(TsMessage::Frame(Frame::message(data.to_vec(), TsOpCode::Data(op), fin)))
                .unwrap();
        }
        p.ts.flush().unwrap();

        let ev = p.rw_receive();
        assert_eq!(ev.len(), 3, "{role:?}: {ev:?}");
        assert_eq!(ev[0], Event::Ping(Bytes::from_static(b"mid-message")));
        assert_eq!(rw_msg(&ev[1]), (true, text.into_bytes()));
        assert_eq!(rw_msg(&ev[2]), (false, b"abcd".to_vec()));
        // ringwire's auto-pong answers the ping and tungstenite sees it.
        p.rw_flush();
        assert_eq!(p.ts_read_all(), [TsMessage::Pong(Bytes::from_static(b"mid-message"))]);
    });
}

#[test]
fn tungstenite_ping_gets_rw_auto_pong() {
    both_roles(|role| {
        let mut p = Pair::new(role, Config::default());
        let payload = Bytes::from(vec![0xabu8; 125]);
        p.ts_send(TsMessage::Ping(payload.clone()));
        let ev = p.rw_receive();
        assert_eq!(ev, [Event::Ping(payload.clone())], "{role:?}");
        assert!(p.rw.has_transmit());
        p.rw_flush();
        assert_eq!(p.ts_read_all(), [TsMessage::Pong(payload)]);

        // An unsolicited tungstenite pong is reported, not answered.
        p.ts_send(TsMessage::Pong(Bytes::from_static(b"unsolicited")));
        let ev = p.rw_receive();
        match &ev[..] {
            [Event::Pong(pong)] => assert_eq!(&pong.payload[..], b"unsolicited"),
            other => panic!("{role:?}: {other:?}"),
        }
        assert!(!p.rw.has_transmit());

        // With auto_pong off, the ping is reported and nothing is sent.
        let mut p = Pair::new(role, Config::default().auto_pong(false));
        p.ts_send(TsMessage::Ping(Bytes::from_static(b"quiet")));
        assert_eq!(p.rw_receive(), [Event::Ping(Bytes::from_static(b"quiet"))]);
        assert!(!p.rw.has_transmit());
    });
}

#[test]
fn tungstenite_ping_between_rw_messages_is_answered_in_order() {
    // The pong goes out on a frame boundary even while ringwire has data queued.
    both_roles(|role| {
        let mut p = Pair::new(role, Config::default());
        p.rw.send(Message::binary(binary_of_len(5000, 1))).unwrap();
        p.ts_send(TsMessage::Ping(Bytes::from_static(b"p1")));
        assert_eq!(p.rw_receive(), [Event::Ping(Bytes::from_static(b"p1"))]);
        p.rw.send(Message::binary(binary_of_len(6000, 2))).unwrap();
        p.rw_flush();
        let got = p.ts_read_all();
        assert_eq!(got.len(), 3, "{role:?}: {got:?}");
        assert!(got.contains(&TsMessage::Pong(Bytes::from_static(b"p1"))));
        let data: Vec<_> = got.iter().filter(|m| m.is_binary()).map(ts_msg).collect();
        assert_eq!(data, [(false, binary_of_len(5000, 1)), (false, binary_of_len(6000, 2))]);
    });
}

// ---- fan-out frames -------------------------------------------------------------------

#[test]
fn shared_frames_decode_in_tungstenite_client() {
    let text = encode_shared(OpCode::Text, "broadcast ✓".as_bytes());
    let big = binary_of_len(70_000, 5);
    let bin = encode_shared(OpCode::Binary, &big);
    let mut clients: Vec<Pair> =
        (0..3).map(|_| Pair::new(Role::Server, Config::default())).collect();
    for p in &mut clients {
        p.rw.send_text("before").unwrap();
        p.rw.send_shared_frame(text.clone()).unwrap();
        p.rw.send_shared_frame(bin.clone()).unwrap();
        p.rw.send_text("after").unwrap();
        p.rw_flush();
        let got: Vec<_> = p.ts_read_all().iter().map(ts_msg).collect();
        assert_eq!(
            got,
            [
                (true, b"before".to_vec()),
                (true, "broadcast ✓".as_bytes().to_vec()),
                (false, big.clone()),
                (true, b"after".to_vec()),
            ]
        );
    }
    // A client may not send a shared (unmasked) frame.
    let mut p = Pair::new(Role::Client, Config::default());
    assert_eq!(p.rw.send_shared_frame(text), Err(SendError::ClientSharedFrame));
}

// ---- both directions at once ----------------------------------------------------------

#[test]
fn echo_conversation() {
    // Each side echoes the other's messages back for a few rounds.
    both_roles(|role| {
        let mut p = Pair::with_chunks(role, Config::default().fragment_size(Some(100)), 50, 33);
        for round in 0..5usize {
            let text = text_of_len(round * 97);
            p.ts_send(TsMessage::text(text.clone()));
            let ev = p.rw_receive();
            assert_eq!(
                ev.iter().map(rw_msg).collect::<Vec<_>>(),
                [(true, text.clone().into_bytes())]
            );
            let Event::Message(m) = ev.into_iter().next().unwrap() else { unreachable!() };
            p.rw.send(m).unwrap();
            p.rw_flush();
            let got = p.ts_read_all();
            assert_eq!(got, [TsMessage::text(text)], "{role:?} round {round}");
        }
    });
}

// ---- ringwire failing bad tungstenite input -------------------------------------------

#[test]
fn rw_fails_bad_frames_from_tungstenite_with_the_mapped_code() {
    use ringwire_frame::ProtocolError as PE;
    both_roles(|role| {
        let data = |bytes: &[u8], op: Data, fin: bool| {
            Frame::message(bytes.to_vec(), TsOpCode::Data(op), fin)
        };
        let mut rsv = data(b"x", Data::Binary, true);
        rsv.header_mut().rsv1 = true;
        let cases: Vec<(&str, Frame, Config, PE, u16)> = vec![
            // RFC 6455 §8.1: invalid UTF-8 in a text message -> 1007.
            (
                "bad utf8",
                data(&[b'a', 0xff], Data::Text, true),
                Config::default(),
                PE::InvalidUtf8,
                1007,
            ),
            // §5.2: RSV1 without an extension -> 1002.
            ("rsv1", rsv, Config::default(), PE::ReservedBits(0b100), 1002),
            // §5.4: a continuation with nothing to continue -> 1002.
            (
                "stray continuation",
                data(b"x", Data::Continue, true),
                Config::default(),
                PE::UnexpectedContinuation,
                1002,
            ),
            // §5.5: a control frame over 125 bytes -> 1002.
            (
                "long ping",
                Frame::ping(vec![0u8; 126]),
                Config::default(),
                PE::ControlFrameTooLong(126),
                1002,
            ),
            // A message over our limit -> 1009 (§7.4.1).
            (
                "too big",
                data(&[0u8; 101], Data::Binary, true),
                Config::default().max_message_size(100),
                PE::MessageTooLarge { size: 101, max: 100 },
                1009,
            ),
        ];
        for (name, frame, config, err, code) in cases {
            let mut p = Pair::new(role, config);
            p.ts.write(TsMessage::Frame(frame)).unwrap();
            p.ts.flush().unwrap();
            let ev = p.rw_receive();
            assert_eq!(ev.len(), 1, "{role:?} {name}: {ev:?}");
            let reason = err.reason();
            assert_eq!(
                closed(&ev[0]),
                (CloseCode(code), String::new(), CloseCause::Error(err)),
                "{role:?} {name}"
            );
            p.rw_flush();
            // The close frame names the broken rule.
            let want = TsCloseFrame { code: code.into(), reason: reason.into() };
            assert_eq!(p.ts_read_all(), [TsMessage::Close(Some(want))], "{role:?} {name}");
        }

        // §7.4.1: 1005 must not appear in a close frame; ringwire answers 1002.
        let mut p = Pair::new(role, Config::default());
        p.ts.close(Some(TsCloseFrame { code: TsCloseCode::Status, reason: "".into() })).unwrap();
        let ev = p.rw_receive();
        assert_eq!(
            closed(&ev[0]),
            (
                CloseCode::PROTOCOL_ERROR,
                String::new(),
                CloseCause::Error(PE::InvalidCloseCode(1005))
            )
        );
        p.rw_flush();
        let got = p.ts.read();
        let reason = PE::InvalidCloseCode(1005).reason();
        let want = TsCloseFrame { code: TsCloseCode::Protocol, reason: reason.into() };
        assert!(matches!(&got, Ok(TsMessage::Close(Some(f))) if *f == want), "{role:?}: {got:?}");
    });
}

#[test]
fn rw_close_argument_limits() {
    both_roles(|role| {
        let mut p = Pair::new(role, Config::default());
        // §5.5: a control payload is at most 125 bytes, so a reason at most 123.
        let long = text_of_len(124);
        assert_eq!(p.rw.close(p.now, CloseCode::NORMAL, &long), Err(SendError::ReasonTooLong(124)));
        // §7.4.1: 1005 and 1006 are never sent.
        assert_eq!(
            p.rw.close(p.now, CloseCode::NO_STATUS, ""),
            Err(SendError::InvalidCloseCode(1005))
        );
        assert_eq!(
            p.rw.close(p.now, CloseCode::ABNORMAL, ""),
            Err(SendError::InvalidCloseCode(1006))
        );
        assert!(!p.rw.is_closing());
        let reason = text_of_len(123);
        p.rw.close(p.now, CloseCode::NORMAL, &reason).unwrap();
        p.rw_flush();
        let want = TsCloseFrame { code: TsCloseCode::Normal, reason: reason.into() };
        assert_eq!(p.ts_read_all(), [TsMessage::Close(Some(want))], "{role:?}");
    });
}
