#![allow(missing_docs)]
//! permessage-deflate through the engine, both backends, both sides: ringwire clients
//! with shared and with dedicated (context takeover) compression and a client without
//! the extension, all subscribed to one topic, on a server with shared compression
//! (`serve --deflate`) and on one that keeps a context per connection. Every subscriber
//! gets every publish, intact and in order; with the shared server the deflate ones get
//! it compressed once per window (the server's bytes out show it), the other as it was;
//! echoes go both ways compressed; a client that did not agree the extension and sets
//! RSV1 is closed with 1002; a server without deflate answers no offer.

mod common;

use std::io::Write as _;
use std::sync::mpsc::Receiver;

use common::client::{expect_msg, expect_state, Client, ClientProbe};
use common::*;
use ringwire::client::{ClientConfig, ClientState};
use ringwire::frame::{Config as FrameConfig, DeflateConfig, Message};
use ringwire::{BackendChoice, Engine};

fn client_engine(
    backend: BackendChoice,
    deflate: Option<DeflateConfig>,
) -> (Guarded, Receiver<Client>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .frame(FrameConfig::default().deflate(deflate))
        .start(move |_| ClientProbe(tx.clone()))
        .expect("a client-only engine starts")
        .guarded();
    (engine, rx)
}

/// A counter once it stopped moving (the engine's counters reach the snapshot a moment
/// after the bytes reach the peer).
fn settled(read: impl Fn() -> u64) -> u64 {
    let mut last = read();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// About 4 KiB of market-data JSON, numbered.
fn quote(i: usize) -> String {
    let mut s = format!("[{i}");
    for k in 0..40 {
        s.push_str(&format!(
            ",{{\"symbol\":\"BTC-EUR\",\"bid\":{}.{},\"ask\":{}.{},\"venue\":\"x\"}}",
            41_000 + k,
            i % 100,
            41_001 + k,
            (i * 3) % 100
        ));
    }
    s.push(']');
    s
}

fn deflate_fan_out_and_echo(backend: BackendChoice) {
    fan_out_and_echo(backend, DeflateConfig::default());
    fan_out_and_echo(backend, DeflateConfig::default().context_takeover(true));
}

fn fan_out_and_echo(backend: BackendChoice, server_deflate: DeflateConfig) {
    let takeover = server_deflate.context_takeover;
    let frame = FrameConfig::default().deflate(Some(server_deflate));
    let (server, _seen) = start_probe(builder(backend).frame(frame));
    let url = format!("ws://{}/", server.local_addr());
    let (shared_engine, shared_rx) = client_engine(backend, Some(DeflateConfig::default()));
    let dedicated = DeflateConfig::default().context_takeover(true).window_bits(11);
    let (dedicated_engine, dedicated_rx) = client_engine(backend, Some(dedicated));
    let shared = shared_engine.connect(&url, ClientConfig::default()).unwrap();
    let own = dedicated_engine.connect(&url, ClientConfig::default()).unwrap();
    for (c, rx) in [(&shared, &shared_rx), (&own, &dedicated_rx)] {
        expect_state(rx, ClientState::Connected);
        c.send_text("sub:quotes").unwrap();
        assert_eq!(expect_msg(rx), Message::text("ok"));
    }
    let mut plain = RawClient::open(server.local_addr());
    plain.send(true, OP_TEXT, b"sub:quotes");
    assert_eq!(plain.expect_data().payload, b"ok");

    let before = server.stats().bytes_out;
    let publisher = server.publisher();
    let mut raw = 0;
    for i in 0..20 {
        let q = quote(i);
        raw += q.len();
        publisher.publish("quotes", &Message::text(q));
    }
    for i in 0..20 {
        let want = Message::text(quote(i));
        assert_eq!(expect_msg(&shared_rx), want, "shared, publish {i}");
        assert_eq!(expect_msg(&dedicated_rx), want, "dedicated, publish {i}");
        let f = plain.expect_data();
        assert_eq!(f.payload, quote(i).as_bytes(), "uncompressed to the client without it");
    }
    let out = (settled(|| server.stats().bytes_out) - before) as usize;
    if takeover {
        // The server keeps a context for the connection that let it (the dedicated
        // client), which fan-out does not share: that one gets the frame as it is (an
        // uncompressed message leaves a context alone), as does the plain client; the
        // shared client asked for no server context and gets the compressed copy.
        assert!(out > 2 * raw && out < 2 * raw + raw / 2, "{out} bytes out for 3 x {raw} raw");
    } else {
        // The plain client takes `raw` bytes and some headers; the others a copy
        // compressed once per window (15 and 11 here) for all such subscribers.
        assert!(out > raw && out < raw + raw / 2, "{out} bytes out for {raw} raw x 3");
    }

    // Echoes both ways: the clients compress, the server inflates and compresses again.
    for (c, rx) in [(&shared, &shared_rx), (&own, &dedicated_rx)] {
        let in_before = server.stats().bytes_in;
        for i in 0..5 {
            c.send(Message::text(quote(100 + i))).unwrap();
            assert_eq!(expect_msg(rx), Message::text(quote(100 + i)));
        }
        let took = (settled(|| server.stats().bytes_in) - in_before) as usize;
        assert!(took < 5 * quote(100).len() / 3, "{took} bytes in for 5 compressible messages");
    }
    drop((shared, own, plain));
    server.shutdown().unwrap();
}

/// RSV1 from a client that did not agree permessage-deflate (the server offers it, the
/// client did not ask): 1002. And a server without deflate configured answers no offer.
fn rsv1_without_agreement_is_refused(backend: BackendChoice) {
    let frame = FrameConfig::default().deflate(Some(DeflateConfig::default()));
    let (server, _seen) = start_probe(builder(backend).frame(frame));
    let mut c = RawClient::open(server.local_addr());
    // A compressed-looking text frame: FIN, RSV1, text; masked, 2 bytes.
    c.s.write_all(&[0xc1, 0x82, 0, 0, 0, 0, 0xf2, 0x00]).unwrap();
    let f = c.read_frame().unwrap();
    assert_eq!((f.opcode, f.close_code()), (OP_CLOSE, 1002));
    server.shutdown().unwrap();

    let (plain, _seen) = start_probe(builder(backend));
    let (engine, rx) = client_engine(backend, Some(DeflateConfig::default()));
    let url = format!("ws://{}/", plain.local_addr());
    let c = engine.connect(&url, ClientConfig::default()).unwrap();
    expect_state(&rx, ClientState::Connected);
    c.send(Message::text(quote(1))).unwrap();
    assert_eq!(expect_msg(&rx), Message::text(quote(1)), "uncompressed both ways");
    let took = settled(|| plain.stats().bytes_in) as usize;
    assert!(took > quote(1).len(), "{took} bytes in: not compressed, not agreed");
    drop(c);
    plain.shutdown().unwrap();
}

both_backends! {
    deflate_fan_out_and_echo =>
        deflate_fan_out_and_echo_io_uring, deflate_fan_out_and_echo_epoll;
    rsv1_without_agreement_is_refused =>
        rsv1_without_agreement_is_refused_io_uring, rsv1_without_agreement_is_refused_epoll;
}
