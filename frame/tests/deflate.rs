#![allow(missing_docs)]
//! permessage-deflate on connections (RFC 7692): every parameter combination both ways,
//! cross-checked against an independent DEFLATE implementation (miniz_oxide), fragments,
//! the RSV1 rules, bombs, and what an idle connection keeps in each mode.

use std::time::Instant;

use bytes::BytesMut;
use ringwire_frame::{
    encode_frame_rsv, CloseCode, Config, Connection, DeflateConfig, DeflateParams, Event,
    FrameHeader, Message, OpCode,
};

fn json(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"type\":\"quote\",\"symbol\":\"ETH-EUR\",\"bid\":{}.{},\"ask\":{}.{}}}\n",
                2000 + i % 31,
                i % 100,
                2001 + i % 31,
                (i * 7) % 100
            )
        })
        .collect()
}

/// No context takeover either way (what a shared-mode server answers).
const NO_TAKEOVER: DeflateParams = DeflateParams {
    server_no_context_takeover: true,
    client_no_context_takeover: true,
    server_max_window_bits: 15,
    client_max_window_bits: 15,
};

fn pair(cfg: &DeflateConfig, params: DeflateParams) -> (Connection, Connection) {
    pair_with(Config::default().deflate(Some(cfg.clone())), params)
}

fn pair_with(config: Config, params: DeflateParams) -> (Connection, Connection) {
    let now = Instant::now();
    let mut server = Connection::server(config.clone(), now);
    let mut client = Connection::client_seeded(config, 0x5eed, now);
    server.set_deflate(params);
    client.set_deflate(params);
    (server, client)
}

/// Moves what `from` has to send into `to` and returns the wire bytes.
fn flow(from: &mut Connection, to: &mut Connection) -> Vec<u8> {
    let mut wire = Vec::new();
    from.poll_transmit_into(&mut wire);
    to.handle_bytes(Instant::now(), &wire);
    wire
}

fn messages(c: &mut Connection) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(ev) = c.poll_event() {
        match ev {
            Event::Message(m) => out.push(m),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

fn closed_with(c: &mut Connection) -> CloseCode {
    loop {
        match c.poll_event() {
            Some(Event::Closed(cl)) => return cl.code,
            Some(_) => {}
            None => panic!("no close"),
        }
    }
}

/// The frames of `wire` (unmasking client frames): header and payload.
fn frames(wire: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let (h, n) = FrameHeader::decode(&wire[pos..]).unwrap().unwrap();
        pos += n;
        let mut p = wire[pos..pos + h.payload_len as usize].to_vec();
        if let Some(k) = h.mask {
            for (i, b) in p.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        pos += p.len();
        out.push((h, p));
    }
    out
}

/// miniz_oxide's raw inflate of one message's payload (with the tail put back).
fn independent_inflate(z: &[u8]) -> Vec<u8> {
    let mut with_tail = z.to_vec();
    // The flush's tail, then an empty final block (miniz_oxide wants a finished stream).
    with_tail.extend_from_slice(&[0, 0, 0xff, 0xff, 0x03, 0x00]);
    miniz_oxide::inflate::decompress_to_vec(&with_tail).expect("miniz_oxide inflates it")
}

#[test]
fn every_parameter_combination_round_trips_both_ways() {
    let texts: Vec<String> = (1..6).map(|i| json(i * 7)).collect();
    for takeover in [false, true] {
        for snct in [false, true] {
            for cnct in [false, true] {
                for window in 8..=15u8 {
                    let params = DeflateParams {
                        server_no_context_takeover: snct,
                        client_no_context_takeover: cnct,
                        server_max_window_bits: window,
                        client_max_window_bits: window,
                    };
                    let cfg =
                        DeflateConfig::default().context_takeover(takeover).window_bits(window);
                    let (mut server, mut client) = pair(&cfg, params);
                    let what = format!("takeover {takeover} {params:?}");
                    let mut compressed = 0;
                    for t in &texts {
                        client.send_text(t).unwrap();
                        server.send(Message::text(t.clone())).unwrap();
                    }
                    for client_sends in [true, false] {
                        let (from, to) = if client_sends {
                            (&mut client, &mut server)
                        } else {
                            (&mut server, &mut client)
                        };
                        let wire = flow(from, to);
                        let got = messages(to);
                        let got: Vec<&[u8]> = got.iter().map(|m| m.as_bytes()).collect();
                        let texts: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
                        assert_eq!(got, texts, "{what}");
                        // Without takeover each compressed message is a raw DEFLATE
                        // stream of its own: another implementation inflates it.
                        let fresh = if client_sends { cnct } else { snct };
                        for ((h, p), t) in frames(&wire).iter().zip(&texts) {
                            if h.rsv == 0b100 {
                                compressed += 1;
                                if fresh || !takeover {
                                    assert_eq!(independent_inflate(p), *t, "{what}");
                                }
                            } else {
                                assert_eq!(h.rsv, 0);
                                assert_eq!(p, t);
                            }
                        }
                    }
                    if window >= 9 {
                        assert!(compressed >= 8, "{what}: {compressed} compressed");
                    } else {
                        assert_eq!(compressed, 0, "zlib cannot honour a 256-byte window");
                    }
                }
            }
        }
    }
}

#[test]
fn messages_compressed_elsewhere_are_inflated() {
    let params = DeflateParams { client_no_context_takeover: true, ..DeflateParams::default() };
    let (mut server, _) = pair(&DeflateConfig::default(), params);
    let text = json(40);
    for level in [0u8, 1, 6, 10] {
        let z = miniz_oxide::deflate::compress_to_vec(text.as_bytes(), level);
        let mut wire = BytesMut::new();
        encode_frame_rsv(&mut wire, OpCode::Text, 0b100, true, &z, Some([1, 2, 3, 4]));
        server.handle_bytes(Instant::now(), &wire);
        let got = messages(&mut server);
        assert_eq!(got.len(), 1, "level {level}");
        assert!(got[0].is_text(), "level {level}");
        assert_eq!(got[0].as_bytes(), text.as_bytes(), "level {level}");
    }
}

#[test]
fn a_fragmented_compressed_message_has_rsv1_on_its_first_frame_only() {
    let params = NO_TAKEOVER;
    let config = Config::default().deflate(Some(DeflateConfig::default())).fragment_size(Some(20));
    let (mut server, mut client) = pair_with(config, params);
    let text = json(10);
    client.send_text(&text).unwrap();
    let wire = flow(&mut client, &mut server);
    let f = frames(&wire);
    assert!(f.len() > 2, "fragmented: {} frames", f.len());
    assert_eq!((f[0].0.rsv, f[0].0.opcode), (0b100, OpCode::Text));
    assert!(f[1..].iter().all(|(h, _)| h.rsv == 0 && h.opcode == OpCode::Continuation));
    let got = messages(&mut server);
    assert_eq!(got[0].as_bytes(), text.as_bytes());
}

fn server_gets(frames: &[(OpCode, u8, bool, &[u8])], negotiated: bool) -> CloseCode {
    let params = DeflateParams::default();
    let (mut server, _) = pair(&DeflateConfig::default(), params);
    if !negotiated {
        server = Connection::server(Config::default(), Instant::now());
    }
    let mut wire = BytesMut::new();
    for (op, rsv, fin, p) in frames {
        encode_frame_rsv(&mut wire, *op, *rsv, *fin, p, Some([1, 2, 3, 4]));
    }
    server.handle_bytes(Instant::now(), &wire);
    closed_with(&mut server)
}

#[test]
fn rsv1_only_where_rfc_7692_puts_it() {
    let z = miniz_oxide::deflate::compress_to_vec(b"hello hello hello", 6);
    // On a control frame.
    assert_eq!(server_gets(&[(OpCode::Ping, 0b100, true, b"x")], true), CloseCode::PROTOCOL_ERROR);
    // On a continuation.
    let cont =
        [(OpCode::Text, 0b100, false, &z[..2]), (OpCode::Continuation, 0b100, true, &z[2..])];
    assert_eq!(server_gets(&cont, true), CloseCode::PROTOCOL_ERROR);
    // RSV2 or RSV3 even with deflate agreed.
    assert_eq!(server_gets(&[(OpCode::Text, 0b010, true, b"x")], true), CloseCode::PROTOCOL_ERROR);
    // RSV1 without deflate agreed.
    assert_eq!(server_gets(&[(OpCode::Text, 0b100, true, &z)], false), CloseCode::PROTOCOL_ERROR);
    // Not DEFLATE at all.
    assert_eq!(
        server_gets(&[(OpCode::Binary, 0b100, true, &[0xff; 10])], true),
        CloseCode::INVALID_PAYLOAD
    );
    // Compressed text that is not UTF-8 once inflated.
    let bad = miniz_oxide::deflate::compress_to_vec(&[b'a', 0xc3, 0x28, b'b'], 6);
    assert_eq!(server_gets(&[(OpCode::Text, 0b100, true, &bad)], true), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn a_decompression_bomb_closes_with_1009_at_the_limit() {
    let config =
        Config::default().deflate(Some(DeflateConfig::default())).max_message_size(1 << 20);
    let params = DeflateParams { client_no_context_takeover: true, ..DeflateParams::default() };
    let (mut server, _) = pair_with(config, params);
    // 64 MiB of zeros in ~64 KiB: far under every frame and message limit as sent.
    let z = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 64 << 20], 10);
    assert!(z.len() < 100_000, "{}", z.len());
    let mut wire = BytesMut::new();
    encode_frame_rsv(&mut wire, OpCode::Binary, 0b100, true, &z, Some([1, 2, 3, 4]));
    server.handle_bytes(Instant::now(), &wire);
    assert_eq!(closed_with(&mut server), CloseCode::TOO_BIG);
}

#[test]
fn an_idle_connection_keeps_no_compression_state_unless_dedicated() {
    let shared = NO_TAKEOVER;
    let (mut server, mut client) = pair(&DeflateConfig::default(), shared);
    client.send_text(&json(20)).unwrap();
    flow(&mut client, &mut server);
    for m in messages(&mut server) {
        server.send(m).unwrap();
    }
    flow(&mut server, &mut client);
    assert_eq!(messages(&mut client).len(), 1);
    assert_eq!(client.poll_transmit(), None);
    assert!(!server.has_buffers(), "shared mode: nothing held idle (server)");
    assert!(!client.has_buffers(), "shared mode: nothing held idle (client)");
    assert_eq!(server.deflate_params(), Some(shared));

    let dedicated = DeflateConfig::default().context_takeover(true);
    let (mut server, mut client) = pair(&dedicated, DeflateParams::default());
    client.send_text(&json(20)).unwrap();
    flow(&mut client, &mut server);
    assert_eq!(messages(&mut server).len(), 1);
    assert!(server.has_buffers(), "dedicated mode: the contexts stay with the connection");
}
