#![allow(missing_docs)]
//! io_uring only: a worker whose fixed-file table fills up opens further rings and
//! spreads its connections over them (how one worker gets past RLIMIT_NOFILE, which caps
//! each table). Tables of 8 slots make 40 connections need 5 rings.
//!
//! One test on purpose: it compares `/proc/self/fd` before and after, which tests running
//! beside it would disturb.

mod common;

use std::time::Duration;

use common::*;
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use ringwire::frame::Message;
use ringwire::BackendChoice;

const PER_RING: u32 = 8;
const PING: Duration = Duration::from_millis(50);

async fn subscribed(addr: std::net::SocketAddr) -> Ws {
    let mut ws = ws_connect(addr).await;
    ws.send(TMsg::text("sub:all")).await.unwrap();
    assert_eq!(ws_data(&mut ws).await, TMsg::text("ok"));
    ws
}

/// A table with just over `MULTISHOT_MARGIN` (5,120) free slots: the first accepts take
/// many connections each, the later ones one at a time; none is lost on the way.
fn multishot_then_one_at_a_time(rt: &tokio::runtime::Runtime) {
    let (server, rx) = start_probe(
        builder(BackendChoice::IoUring)
            .workers(1)
            .fixed_files_per_ring(Some(5_120 + 30))
            .max_connections_per_worker(200),
    );
    let addr = server.local_addr();
    let mut clients = rt.block_on(join_all((0..100).map(|_| ws_connect(addr))));
    rt.block_on(join_all(clients.iter_mut().map(|ws| async move {
        ws_echo(ws, "accepted").await;
    })));
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.accept_errors, stats.rings), (100, 0, 1), "{stats:?}");
    rt.block_on(join_all(clients.iter_mut().map(ws_close)));
    server.shutdown().unwrap();
    drop(rx);
}

/// Heartbeats on every ring: 40 connections over 5+ rings, each one's pings answered with
/// an RTT measured. Each client keeps reading for two ping intervals per round, so it
/// answers a ping as soon as it arrives. (A client left unpolled between rounds answers
/// late, after the server's next ping. Until pings carried their send time such a pong
/// reported no RTT, and a connection could fall into that rhythm for good, which made
/// this test fail one run in five; now a late pong is measured too, see
/// `late_pongs_still_report_rtt_and_forged_ones_none` in frame/tests/connection.rs.)
fn heartbeats_on_every_ring(rt: &tokio::runtime::Runtime) {
    let heartbeat = ringwire::frame::Config::default().ping_interval(Some(PING));
    let (server, rx) = start_probe(
        builder(BackendChoice::IoUring)
            .workers(1)
            .fixed_files_per_ring(Some(PER_RING))
            .max_connections_per_worker(100)
            .frame(heartbeat),
    );
    let addr = server.local_addr();
    let mut clients = rt.block_on(join_all((0..40).map(|_| ws_connect(addr))));
    assert!(server.stats().rings >= 5, "{:?}", server.stats());
    for round in 0..4 {
        rt.block_on(join_all(clients.iter_mut().map(|ws| async move {
            ws.send(TMsg::text(format!("round {round}"))).await.unwrap();
            let until = tokio::time::Instant::now() + PING * 2;
            let mut echoed = false;
            loop {
                match tokio::time::timeout_at(until, ws.next()).await {
                    Err(_) => break,
                    Ok(Some(Ok(TMsg::Text(t)))) if t.as_str() == format!("round {round}") => {
                        echoed = true;
                    }
                    Ok(Some(Ok(TMsg::Ping(_) | TMsg::Pong(_)))) => {}
                    other => panic!("round {round}: {other:?}"),
                }
            }
            assert!(echoed, "round {round}: no echo within {:?}", PING * 2);
        })));
    }
    let ponged: std::collections::HashSet<_> = rx
        .try_iter()
        .filter_map(|s| match s {
            Seen::Pong(id, Some(_)) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(ponged.len(), 40, "pongs with an RTT from {} of 40 connections", ponged.len());
    drop(clients);
    server.shutdown().unwrap();
}

#[test]
fn connections_spread_over_rings() {
    let fds_before = open_fds();
    let (server, rx) = start_probe(
        builder(BackendChoice::IoUring)
            .workers(1)
            .fixed_files_per_ring(Some(PER_RING))
            .max_connections_per_worker(100),
    );
    assert!(server.backend().features.contains(&"direct descriptors"), "{:?}", server.backend());
    assert_eq!(server.stats().rings, 1, "further rings open only when needed");
    let addr = server.local_addr();
    let rt = runtime();

    // 40 connections: each table holds 8, so at least 5 rings.
    let mut clients = rt.block_on(join_all((0..40).map(|_| subscribed(addr))));
    let rings = server.stats().rings;
    assert!((5..=6).contains(&rings), "40 connections over {rings} rings of {PER_RING} slots");

    // Every connection works, whichever ring it is on: echo, and fan-out to all.
    rt.block_on(join_all(clients.iter_mut().enumerate().map(|(i, ws)| async move {
        ws_echo(ws, &format!("echo {i}")).await;
    })));
    assert_eq!(server.publisher().publish("all", &Message::text("to every ring")), 1);
    rt.block_on(join_all(clients.iter_mut().map(|ws| async move {
        assert_eq!(ws_data(ws).await, TMsg::text("to every ring"));
    })));

    // Closing frees slots in the rings' tables; new connections reuse them instead of
    // opening more rings.
    let rest = clients.split_off(20);
    rt.block_on(join_all(clients.iter_mut().map(ws_close)));
    assert!(wait_until(PATIENCE, || server.stats().connections == 20), "{:?}", server.stats());
    let mut again = rt.block_on(join_all((0..20).map(|_| subscribed(addr))));
    assert_eq!(server.stats().rings, rings, "freed slots are reused");
    rt.block_on(join_all(again.iter_mut().map(|ws| async move {
        ws_echo(ws, "reused slot").await;
    })));

    // Heartbeat-free idle: everything still closes cleanly, and shutdown releases every
    // ring, eventfd and socket.
    let mut all: Vec<Ws> = rest.into_iter().chain(again).collect();
    rt.block_on(join_all(all.iter_mut().map(ws_close)));
    assert!(wait_until(PATIENCE, || server.stats().connections == 0), "{:?}", server.stats());
    let stats = server.stats();
    assert_eq!(stats.accepted, 60, "{stats:?}");
    assert_eq!(stats.accept_errors, 0, "{stats:?}");
    server.shutdown().unwrap();
    // The probe's events hold connection handles, which keep the worker's wake-up
    // eventfd alive; they go too.
    drop((all, clients, rx));
    multishot_then_one_at_a_time(&rt);
    heartbeats_on_every_ring(&rt);
    drop(rt);
    assert!(
        wait_until(Duration::from_secs(5), || open_fds() == fds_before),
        "descriptors before {fds_before}, after {}",
        open_fds()
    );
}
