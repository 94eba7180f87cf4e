#![allow(missing_docs)]
//! Many connections at once, on both backends: 2,000 concurrent clients echoing, and
//! fan-out to 200 subscribers spread over both workers.

mod common;

use std::time::Duration;

use common::*;
use futures_util::future::join_all;
use ringwire::frame::Message;
use ringwire::{BackendChoice, Echo};

const CLIENTS: usize = 2_000;

fn thousands_of_connections(backend: BackendChoice) {
    let server = builder(backend).start(|_| Echo).expect("engine starts").guarded();
    let addr = server.local_addr();
    let rt = runtime();
    // Every client upgrades and echoes, and stays connected.
    let mut clients = rt.block_on(async {
        join_all((0..CLIENTS).map(|i| async move {
            let mut ws = ws_connect(addr).await;
            ws_echo(&mut ws, &format!("client {i}")).await;
            ws
        }))
        .await
    });
    assert!(
        wait_until(PATIENCE, || server.stats().connections == CLIENTS as u64),
        "open connections: {:?}",
        server.stats().connections
    );
    let per_worker: Vec<u64> = server.worker_stats().iter().map(|s| s.connections).collect();
    assert!(per_worker.iter().all(|n| *n > 0), "one worker got nothing: {per_worker:?}");
    // All still alive: a second round of echoes on every connection, concurrently.
    rt.block_on(async {
        join_all(clients.iter_mut().enumerate().map(|(i, ws)| async move {
            ws_echo(ws, &format!("again {i}")).await;
        }))
        .await;
        join_all(clients.iter_mut().map(ws_close)).await;
    });
    drop(clients);
    drop(rt);
    assert!(
        wait_until(Duration::from_secs(10), || server.stats().connections == 0),
        "connections left: {}",
        server.stats().connections
    );
    let stats = server.stats();
    assert_eq!(stats.accepted, CLIENTS as u64);
    assert_eq!(stats.messages_in, 2 * CLIENTS as u64);
    assert_eq!(stats.closes_with(1000), CLIENTS as u64);
    server.shutdown().unwrap();
}

fn fan_out_to_subscribers(backend: BackendChoice) {
    const SUBS: usize = 200;
    let (server, rx) = start_probe(builder(backend));
    let addr = server.local_addr();
    let publisher = server.publisher();
    let rt = runtime();
    let mut subs = rt.block_on(async {
        join_all((0..SUBS).map(|_| async move {
            let mut ws = ws_connect(addr).await;
            ws.send(TMsg::text("sub:t")).await.unwrap();
            assert_eq!(ws_data(&mut ws).await, TMsg::text("ok"));
            ws
        }))
        .await
    });
    let per_worker: Vec<u64> = server.worker_stats().iter().map(|s| s.connections).collect();
    assert!(per_worker.iter().all(|n| *n > 0), "subscribers on one worker only: {per_worker:?}");

    async fn all_get(subs: &mut [Ws], text: &str) {
        join_all(subs.iter_mut().map(|ws| async move {
            assert_eq!(ws_data(ws).await, TMsg::text(text));
        }))
        .await;
    }

    // From the test thread: every subscriber on both workers gets it once (the next
    // message after it is the next publish, not a duplicate).
    assert_eq!(publisher.publish("t", &Message::text("news 1")), 2);
    rt.block_on(all_get(&mut subs, "news 1"));
    // From inside a handler (Ctx::publish): local subscribers at once, the other
    // worker's through its queue; the publisher itself is subscribed too.
    rt.block_on(async {
        subs[0].send(TMsg::text("pub:t:news 2")).await.unwrap();
        all_get(&mut subs, "news 2").await;
    });
    assert_eq!(publisher.publish("t", &Message::binary(vec![3u8; 1000])), 2);
    rt.block_on(async {
        join_all(subs.iter_mut().map(|ws| async move {
            assert_eq!(ws_data(ws).await, TMsg::binary(vec![3u8; 1000]));
        }))
        .await;
    });
    // Another topic reaches nobody; an unsubscribed connection stops getting "t".
    assert_eq!(publisher.publish("nobody", &Message::text("lost")), 2);
    rt.block_on(async {
        subs[1].send(TMsg::text("unsub:t")).await.unwrap();
        assert_eq!(ws_data(&mut subs[1]).await, TMsg::text("ok"));
    });
    assert_eq!(publisher.publish("t", &Message::text("news 4")), 2);
    rt.block_on(async {
        let (first, rest) = subs.split_at_mut(2);
        all_get(&mut first[..1], "news 4").await;
        all_get(rest, "news 4").await;
        // The unsubscribed one sees its echo next, not "lost" nor "news 4".
        ws_echo(&mut first[1], "just an echo").await;
    });
    let stats = server.stats();
    // 200 "ok" + 200 x 3 publishes + 199 + 1 "ok" + 1 echo.
    assert_eq!(stats.messages_out, (SUBS + 3 * SUBS + (SUBS - 1) + 2) as u64, "{stats:?}");
    // Closing subscribers leave the topic: a publish afterwards goes nowhere and harms no one.
    rt.block_on(async {
        join_all(subs.iter_mut().map(ws_close)).await;
    });
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    publisher.publish("t", &Message::text("after all left"));
    rt.block_on(async {
        let mut ws = ws_connect(addr).await;
        ws_echo(&mut ws, "fresh").await;
        ws_close(&mut ws).await;
    });
    drop(rx);
    server.shutdown().unwrap();
}

both_backends! {
    thousands_of_connections => thousands_of_connections_io_uring, thousands_of_connections_epoll;
    fan_out_to_subscribers => fan_out_to_subscribers_io_uring, fan_out_to_subscribers_epoll;
}
