#![allow(missing_docs)]
//! Connections the timers end, on both backends, over real sockets and the real clock: a
//! peer that never answers our close (close timeout), one that answers nothing at all
//! (heartbeat), one that goes quiet (idle timeout), and a peer that keeps answering pings
//! (kept alive). One short case each: the timers' behaviour over long spans (hours of
//! heartbeats, traffic holding off the idle timeout, handshake deadlines) is tested
//! under virtual time in the engine's `worker::sim` tests.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ringwire::frame::{CloseCause, CloseCode, Config as FrameConfig};
use ringwire::BackendChoice;

fn close_timeout_ends_silent_peer(backend: BackendChoice) {
    let (server, rx) = start_probe(
        builder(backend).frame(FrameConfig::default().close_timeout(Duration::from_millis(300))),
    );
    let addr = server.local_addr();
    let mut good = RawClient::open(addr);
    let mut c = RawClient::open(addr);
    let _ = expect_open(&rx);
    let id = expect_open(&rx).id();
    c.send(true, OP_TEXT, b"close:4004");
    assert_eq!(c.expect_close().close_code(), 4004);
    // We never answer: after close_timeout the server gives up and ends TCP.
    let started = Instant::now();
    c.expect_eof();
    expect_closed_with(&rx, id, CloseCode::ABNORMAL, CloseCause::CloseTimeout);
    assert!(started.elapsed() >= Duration::from_millis(150), "gave up before the timeout");
    good.echo("unaffected");
    good.send_close(1000);
    assert_eq!(good.expect_close().close_code(), 1000);
    server.shutdown().unwrap();
}

fn heartbeat_timeout_ends_dead_peer(backend: BackendChoice) {
    let frame = FrameConfig::default()
        .ping_interval(Some(Duration::from_millis(100)))
        .pong_timeout(Duration::from_millis(200));
    let (server, rx) = start_probe(builder(backend).frame(frame));
    let addr = server.local_addr();
    // A live client answers every ping (raw, by hand) for a while, on its own thread.
    let (mut live, live_handle) = RawClient::open_probed(addr, &rx);
    let live_id = live_handle.id();
    let live = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_millis(450);
        let mut pings = 0;
        while Instant::now() < until {
            let f = live.read_frame().expect("a heartbeat ping");
            assert_eq!(f.opcode, OP_PING, "{f:?}");
            live.send(true, OP_PONG, &f.payload);
            pings += 1;
        }
        (live, pings)
    });
    // A dead one reads nothing and answers nothing.
    let dead = RawClient::open(addr);
    let dead_id = expect_seen(&rx, "the dead client's open", |s| match s {
        Seen::Open(h, _) if h.id() != live_id => Some(h.id()),
        _ => None,
    });
    expect_closed_with(&rx, dead_id, CloseCode::ABNORMAL, CloseCause::HeartbeatTimeout);
    let (mut live, pings) = live.join().unwrap();
    assert!(pings >= 2, "only {pings} heartbeat pings in 450 ms at a 100 ms interval");
    let rtt = expect_seen(&rx, "a heartbeat pong", |s| match s {
        Seen::Pong(i, rtt) if i == live_id => Some(rtt),
        _ => None,
    });
    assert!(rtt.is_some(), "a heartbeat pong carries an RTT");
    live.echo("alive");
    live.send_close(1000);
    assert_eq!(live.expect_close().close_code(), 1000);
    drop(dead);
    server.shutdown().unwrap();
}

fn idle_timeout_closes_1001(backend: BackendChoice) {
    let frame = FrameConfig::default().idle_timeout(Some(Duration::from_millis(300)));
    let (server, rx) = start_probe(builder(backend).frame(frame));
    runtime().block_on(async {
        let (mut ws, handle) = ws_connect_probed(server.local_addr(), &rx).await;
        // Traffic keeps it open past the timeout...
        for i in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ws_echo(&mut ws, &format!("busy {i}")).await;
        }
        // ...silence closes it with 1001 (tungstenite answers the close).
        ws_expect_close_then_end(&mut ws, 1001).await;
        expect_closed_with(&rx, handle.id(), CloseCode::GOING_AWAY, CloseCause::Local);
    });
    server.shutdown().unwrap();
}

both_backends! {
    close_timeout_ends_silent_peer => close_timeout_ends_silent_peer_io_uring, close_timeout_ends_silent_peer_epoll;
    heartbeat_timeout_ends_dead_peer => heartbeat_timeout_ends_dead_peer_io_uring, heartbeat_timeout_ends_dead_peer_epoll;
    idle_timeout_closes_1001 => idle_timeout_closes_1001_io_uring, idle_timeout_closes_1001_epoll;
}
