//! Hostile and broken servers against ringwire's client, on both backends: each gets a
//! clear cause and the RFC's answer, and another client of the same engine, to a good
//! server, goes on undisturbed. (The wrong accept key, the silent server and the 403 are
//! in `client_connect.rs`.)

mod common;

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use common::{accept_101, builder, raw_server, start_probe, GuardExt, PATIENCE};
use ringwire::client::{Cause, ClientConfig, ClientHandle, ClientState, StateChange};
use ringwire::frame::Message;
use ringwire::{BackendChoice, ConnId, Ctx, Engine, Handler, Server};

struct Probe(Sender<(ConnId, StateChange)>);

impl Handler for Probe {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let _ = cx.send(msg); // the good server's echo comes back to it once more
    }
    fn on_state(&mut self, cx: &mut Ctx<'_>, change: &StateChange) {
        let _ = self.0.send((cx.id(), change.clone()));
    }
}

/// The first change of client `h` to `to`.
fn expect(rx: &Receiver<(ConnId, StateChange)>, h: &ClientHandle, to: ClientState) -> Cause {
    let end = Instant::now() + PATIENCE;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok((id, c)) if Some(id) == h.id() && c.to == to => return c.cause,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => panic!("no change to {to}"),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Clients that fail once for good, so each case ends in `Closed` with its cause.
fn once() -> ClientConfig {
    let mut c = ClientConfig::default();
    c.retry.backoff.max_attempts = Some(1);
    c
}

/// The cause a hostile server's answer `answer` leads to; meanwhile a client of the same
/// engine to a good server echoes on.
fn case(backend: BackendChoice, answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> Cause {
    let (good, _srx) = start_probe(builder(backend));
    let (tx, rx) = channel();
    let engine: Server = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .start(move |_| Probe(tx.clone()))
        .unwrap();
    let engine = engine.guarded();
    let fine = engine.connect(&format!("ws://{}/", good.local_addr()), ClientConfig::default());
    let fine = fine.unwrap();
    let _ = expect(&rx, &fine, ClientState::Connected);
    let (addr, _accepts) = raw_server(move |req| Some(answer(req)));
    let bad = engine.connect(&format!("ws://{addr}/"), once()).unwrap();
    let cause = match expect(&rx, &bad, ClientState::Closed) {
        Cause::GaveUp { last, .. } => *last,
        other => other,
    };
    assert_eq!(fine.state(), ClientState::Connected, "the other client is unharmed");
    fine.send_text("still here").unwrap();
    assert!(common::wait_until(PATIENCE, || engine.stats().messages_in >= 1));
    engine.shutdown().unwrap();
    good.shutdown().unwrap();
    cause
}

/// A 101 (with the right key), then `frames`.
fn upgraded_then(frames: Vec<u8>) -> impl Fn(&str) -> Vec<u8> + Send + 'static {
    move |req| {
        let mut out = accept_101(req).into_bytes();
        out.extend_from_slice(&frames);
        out
    }
}

fn hostile(backend: BackendChoice) {
    // §4.1: a subprotocol or an extension the client did not offer fails the handshake.
    let c = case(backend, |req| {
        accept_101(req).replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat\r\n\r\n").into()
    });
    assert!(matches!(&c, Cause::HandshakeInvalid(e) if e.contains("subprotocol")), "{c:?}");
    let c = case(backend, |req| {
        let ext = "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        accept_101(req).replace("\r\n\r\n", ext).into()
    });
    assert!(matches!(&c, Cause::HandshakeInvalid(e) if e.contains("extension")), "{c:?}");
    // An endless header: refused at the header limit, not buffered on.
    let c = case(backend, |_| {
        let mut out = b"HTTP/1.1 101 Switching Protocols\r\nX-Endless: ".to_vec();
        out.resize(out.len() + 256 * 1024, b'a');
        out
    });
    assert!(matches!(&c, Cause::HandshakeInvalid(e) if e.contains("exceeds")), "{c:?}");
    // §5.1: a client MUST close on a masked frame from the server (1002).
    let masked = vec![0x81, 0x85, 1, 2, 3, 4, b'h' ^ 1, b'e' ^ 2, b'l' ^ 3, b'l' ^ 4, b'o' ^ 1];
    assert_eq!(case(backend, upgraded_then(masked)), Cause::Closed { code: 1002 });
    // §5.2: a 64-bit length with its most significant bit set (2^63) is a protocol error.
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
    assert_eq!(case(backend, upgraded_then(huge)), Cause::Closed { code: 1002 });
    // A frame longer than the client accepts (2^40 bytes announced): 1009.
    let mut big = vec![0x82, 127];
    big.extend_from_slice(&(1u64 << 40).to_be_bytes());
    assert_eq!(case(backend, upgraded_then(big)), Cause::Closed { code: 1009 });
}

both_backends! {
    hostile => hostile_servers_io_uring, hostile_servers_epoll;
}
