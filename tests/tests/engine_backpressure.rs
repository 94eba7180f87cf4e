#![allow(missing_docs)]
//! Slow consumers, on both backends: a client that stops reading while the server pushes
//! 64 KiB messages at it, under each `Backpressure` policy, with a normal client beside.
//!
//! The slow client's receive buffer is pinned small (`SO_RCVBUF`, which also stops the
//! kernel's autotuning), so the server's socket buffer fills after a few MiB and the
//! engine's own queue (`max_queued_bytes` = 1 MiB) has to take the rest.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::*;
use ringwire::frame::Message;
use ringwire::{BackendChoice, Backpressure, ConnId, Server};

const MSG: usize = 64 * 1024;
const MAX_QUEUED: usize = 1 << 20;
/// Enough to fill any loopback socket buffers many times over (4 MiB send buffer max
/// here) if the policy never triggered.
const MAX_PUBLISHES: u64 = 3_000;

fn start(backend: BackendChoice, policy: Backpressure) -> (Guarded, Receiver<Seen>) {
    start_with(builder(backend), policy)
}

fn start_with(b: ringwire::EngineBuilder, policy: Backpressure) -> (Guarded, Receiver<Seen>) {
    start_probe(b.max_queued_bytes(MAX_QUEUED).low_watermark(MAX_QUEUED / 2).backpressure(policy))
}

/// A slow client (see `slow_client`) and a normal one, both open; the slow one's id.
fn slow_and_good(
    server: &Guarded,
    rx: &Receiver<Seen>,
) -> (tokio::runtime::Runtime, Ws, Ws, ConnId) {
    let addr = server.local_addr();
    let rt = runtime();
    let (slow, good) = rt.block_on(async { (slow_client(addr).await, ws_connect(addr).await) });
    let slow_id: ConnId = expect_seen(rx, "the slow client", |s| match s {
        Seen::Open(h, path) if path == "/slow" => Some(h.id()),
        _ => None,
    });
    (rt, slow, good, slow_id)
}

/// A client with a small receive buffer, subscribed to topic "flood".
async fn slow_client(addr: SocketAddr) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = sock.connect(addr).await.expect("connect");
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/slow"), tcp).await.expect("upgrade");
    ws.send(TMsg::text("sub:flood")).await.unwrap();
    assert_eq!(ws_data(&mut ws).await, TMsg::text("ok"));
    ws
}

/// A numbered 64 KiB message.
fn numbered(seq: u64) -> Message {
    let mut m = vec![0x5A; MSG];
    m[..8].copy_from_slice(&seq.to_be_bytes());
    Message::binary(m)
}

fn seq_of(m: &TMsg) -> u64 {
    let TMsg::Binary(b) = m else { panic!("expected a flood message, got {m:?}") };
    assert_eq!(b.len(), MSG);
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

/// Publishes numbered messages, pacing them so the engine flushes between them, until
/// `done` holds (then `extra` more) or the bound is reached. Returns how many went out.
fn flood(server: &Guarded, extra: u64, done: impl Fn(&Server) -> bool) -> u64 {
    let publisher = server.publisher();
    let mut seq = 0;
    let mut after = None;
    while seq < MAX_PUBLISHES {
        assert_eq!(publisher.publish("flood", &numbered(seq)), 2);
        seq += 1;
        std::thread::sleep(Duration::from_micros(500));
        match after {
            None if done(server) => after = Some(seq + extra),
            Some(end) if seq >= end => break,
            _ => {}
        }
    }
    assert!(
        after.is_some(),
        "{MAX_PUBLISHES} x 64 KiB to a stalled client never triggered backpressure: {:?}",
        server.stats()
    );
    seq
}

/// Reads flood messages until the server has been quiet for a while; returns their
/// sequence numbers and whatever ended the reading (`None`: quiet).
async fn drain(ws: &mut Ws) -> (Vec<u64>, Option<TMsg>) {
    let mut seqs = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Err(_) => return (seqs, None),
            Ok(Some(Ok(m @ TMsg::Binary(_)))) => seqs.push(seq_of(&m)),
            Ok(Some(Ok(m))) => return (seqs, Some(m)),
            Ok(Some(Err(e))) => panic!("slow client read error: {e}"),
            Ok(None) => panic!("stream ended without a close frame"),
        }
    }
}

fn strictly_increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

fn policy_close(backend: BackendChoice) {
    let (server, rx) = start(backend, Backpressure::Close);
    let (rt, mut slow, mut good, slow_id) = slow_and_good(&server, &rx);
    let published = flood(&server, 0, |s| s.stats().slow_closes >= 1);
    rt.block_on(async {
        ws_echo(&mut good, "the good client is unaffected").await;
        // Resuming: everything queued before the close arrives in order, none dropped,
        // then the close frame with 1008 (policy violation).
        let (seqs, end) = drain(&mut slow).await;
        assert!(
            !seqs.is_empty() && (seqs.len() as u64) < published,
            "{} of {published}",
            seqs.len()
        );
        assert_eq!(
            seqs,
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "Close must not drop messages"
        );
        match end {
            Some(TMsg::Close(Some(f))) => assert_eq!(u16::from(f.code), 1008),
            other => panic!("expected close 1008 after the queued messages, got {other:?}"),
        }
        ws_expect_end(&mut slow).await;
    });
    let closed = expect_closed(&rx, slow_id);
    assert_eq!(closed.code.0, 1008);
    let stats = server.stats();
    assert_eq!(stats.slow_closes, 1, "{stats:?}");
    assert_eq!(stats.drops, 0, "{stats:?}");
    assert_eq!(stats.closes_with(1008), 1, "{stats:?}");

    rt.block_on(async {
        ws_echo(&mut good, "still unaffected").await;
        ws_close(&mut good).await;
    });
    server.shutdown().unwrap();
}

/// Flooding from inside one handler callback: the limit applies there too, and the
/// messages `Ctx::send` accepted before the limit arrive before the 1008 close.
fn handler_flood_then_slow_close(backend: BackendChoice) {
    let (server, rx) = start(backend, Backpressure::Close);
    let addr = server.local_addr();
    let rt = runtime();
    rt.block_on(async {
        let mut good = ws_connect(addr).await;
        let mut c = ws_connect(addr).await;
        c.send(TMsg::text("flood:5000:65536")).await.unwrap();
        let (ok, refused) = expect_seen(&rx, "the flood result", |s| match s {
            Seen::Flooded(_, ok, refused) => Some((ok, refused)),
            _ => None,
        });
        assert_eq!(ok + refused, 5000);
        assert!(ok * MSG <= MAX_QUEUED + MSG, "{ok} messages queued past a 1 MiB limit");
        let mut got = 0;
        let code = loop {
            match ws_next(&mut c).await {
                Some(TMsg::Binary(b)) => {
                    assert_eq!(b.len(), MSG);
                    got += 1;
                }
                Some(TMsg::Close(f)) => break f.map(|f| u16::from(f.code)),
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(code, Some(1008));
        assert_eq!(got, ok, "every message Ctx::send accepted arrives before the close");
        ws_expect_end(&mut c).await;
        ws_echo(&mut good, "unaffected").await;
        ws_close(&mut good).await;
    });
    assert_eq!(server.stats().slow_closes, 1);
    server.shutdown().unwrap();
}
fn policy_drop(backend: BackendChoice, policy: Backpressure) {
    let (server, rx) = start(backend, policy);
    let (rt, mut slow, mut good, slow_id) = slow_and_good(&server, &rx);
    let published = flood(&server, 20, |s| s.stats().drops >= 10);
    rt.block_on(async {
        ws_echo(&mut good, "the good client is unaffected").await;
        let (seqs, end) = drain(&mut slow).await;
        assert!(end.is_none(), "the slow client was closed: {end:?}");
        let drops = server.stats().drops;
        assert!(drops > 0);
        assert!(strictly_increasing(&seqs), "reordered or duplicated: {seqs:?}");
        // Every published message was either delivered once or counted as dropped.
        assert_eq!(
            seqs.len() as u64 + drops,
            published,
            "delivered {} + dropped {drops}",
            seqs.len()
        );
        match policy {
            // The newest are refused: the first messages all arrive.
            Backpressure::DropNewest => assert_eq!(&seqs[..4], &[0, 1, 2, 3]),
            // The oldest queued ones make room: the last message arrives.
            Backpressure::DropOldest => assert_eq!(seqs.last(), Some(&(published - 1))),
            Backpressure::Close => unreachable!(),
        }
        // Still open and usable in both directions.
        ws_echo(&mut slow, "the slow client recovered").await;
        ws_echo(&mut good, "still unaffected").await;
        ws_close(&mut slow).await;
        ws_close(&mut good).await;
    });
    // The handler heard that the slow connection became writable again.
    expect_seen(&rx, "on_writable", |s| match s {
        Seen::Writable(id) if id == slow_id => Some(()),
        _ => None,
    });
    let stats = server.stats();
    assert_eq!(stats.slow_closes, 0, "{stats:?}");
    assert_eq!(stats.closes_with(1008), 0, "{stats:?}");
    server.shutdown().unwrap();
}

fn policy_drop_newest(backend: BackendChoice) {
    policy_drop(backend, Backpressure::DropNewest);
}

fn policy_drop_oldest(backend: BackendChoice) {
    policy_drop(backend, Backpressure::DropOldest);
}

/// A client that never reads again: the 1008 close cannot go out (a send stays blocked on
/// the full socket), so the close timeout must end the connection, which takes cancelling
/// that blocked send as well as the receive. Afterwards the socket is gone and the other
/// client is served as before.
fn stalled_forever_is_cut_off(backend: BackendChoice) {
    let frame = ringwire::frame::Config::default().close_timeout(Duration::from_millis(300));
    let (server, rx) = start_with(builder(backend).frame(frame), Backpressure::Close);
    let (rt, slow, mut good, slow_id) = slow_and_good(&server, &rx);
    flood(&server, 0, |s| s.stats().slow_closes >= 1);
    // `slow` is held, unread, until the end: the server must not wait for it.
    // The peer never answered the close: the handler hears 1006 (abnormal closure).
    let closed = expect_closed(&rx, slow_id);
    assert_eq!(closed.code.0, 1006);
    assert_eq!(server.stats().slow_closes, 1);
    assert!(
        wait_until(Duration::from_secs(10), || server.stats().connections == 1),
        "the stalled connection was not released: {:?}",
        server.stats()
    );
    rt.block_on(async {
        ws_echo(&mut good, "unaffected").await;
        ws_close(&mut good).await;
    });
    drop(slow);
    server.shutdown().unwrap();
}

both_backends! {
    stalled_forever_is_cut_off => stalled_forever_is_cut_off_io_uring, stalled_forever_is_cut_off_epoll;
    handler_flood_then_slow_close => handler_flood_then_slow_close_io_uring, handler_flood_then_slow_close_epoll;
    policy_close => policy_close_io_uring, policy_close_epoll;
    policy_drop_newest => policy_drop_newest_io_uring, policy_drop_newest_epoll;
    policy_drop_oldest => policy_drop_oldest_io_uring, policy_drop_oldest_epoll;
}
