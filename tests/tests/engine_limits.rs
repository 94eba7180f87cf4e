#![allow(missing_docs)]
//! Resource limits, on both backends: the per-worker connection cap, the origin check,
//! a full command queue, and receive pools and rings far too small for the load (the
//! engine must slow down, not lose or corrupt data).

mod common;

use std::time::Duration;

use common::*;
use futures_util::future::join_all;
use ringwire::frame::Message;
use ringwire::{BackendChoice, Echo, SendError};

fn connection_cap_per_worker(backend: BackendChoice) {
    const CAP: usize = 3;
    let server = builder(backend)
        .max_connections_per_worker(CAP)
        .start(|_| Echo)
        .expect("engine starts")
        .guarded();
    let addr = server.local_addr();
    // Connect until refusals come back; the accepted ones never exceed 2 x CAP.
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        let mut s = connect(addr);
        std::io::Write::write_all(&mut s, upgrade_request("/").as_bytes()).unwrap();
        match read_head(&mut s) {
            Ok(head) if head.starts_with("HTTP/1.1 101") => open.push(RawClient { s }),
            Ok(head) => panic!("unexpected answer: {head}"),
            Err(_) => refused += 1,
        }
    }
    assert!(
        open.len() <= 2 * CAP,
        "{} connections open past a cap of {CAP} per worker",
        open.len()
    );
    assert!(refused > 0);
    assert!(open.len() >= CAP, "only {} accepted", open.len());
    assert_eq!(server.stats().rejected, refused);
    assert!(server.stats().connections <= 2 * CAP as u64);
    for c in &mut open {
        c.echo("under the cap");
    }
    // Room frees up when connections end.
    for mut c in open.drain(..) {
        c.send_close(1000);
        c.expect_close();
        c.expect_eof();
    }
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    let mut again = RawClient::open(addr);
    again.echo("room again");
    again.send_close(1000);
    again.expect_close();
    server.shutdown().unwrap();
}

fn origin_check_refuses_403(backend: BackendChoice) {
    let server = builder(backend)
        .origin_check(|origin| origin == Some("https://good.example"))
        .start(|_| Echo)
        .expect("engine starts")
        .guarded();
    let addr = server.local_addr();
    let with_origin = |o: &str| {
        upgrade_request("/").replace("\r\n\r\n", &format!("\r\nOrigin: {o}\r\n\r\n")).into_bytes()
    };
    let answer = http_exchange(addr, &with_origin("https://evil.example"));
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = http_exchange(addr, upgrade_request("/").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 403"), "no Origin: {answer}");
    let mut s = connect(addr);
    std::io::Write::write_all(&mut s, &with_origin("https://good.example")).unwrap();
    expect_upgraded(&mut s);
    let mut c = RawClient { s };
    c.echo("allowed");
    c.send_close(1000);
    c.expect_close();
    assert_eq!(server.stats().rejected, 2);
    server.shutdown().unwrap();
}

fn full_command_queue(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend).command_queue(8));
    let addr = server.local_addr();
    runtime().block_on(async {
        let (mut ws, handle) = ws_connect_probed(addr, &rx).await;
        // Far more sends than the queue holds, as fast as possible: some are refused with
        // QueueFull, none is lost or duplicated among those accepted.
        let mut accepted = Vec::new();
        for i in 0..2_000u32 {
            match handle.send(Message::text(format!("{i}"))) {
                Ok(()) => accepted.push(i),
                Err(SendError::QueueFull) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(!accepted.is_empty());
        for want in &accepted {
            assert_eq!(ws_data(&mut ws).await, TMsg::text(format!("{want}")));
        }
        // Nothing more than what was accepted.
        ws_echo(&mut ws, "end").await;
        // Publishers skip a worker whose queue is full, but never block.
        let p = server.publisher();
        let mut took = 0;
        for _ in 0..1_000 {
            took += p.publish("none", &Message::text("x"));
        }
        assert!(took > 0);
        ws_close(&mut ws).await;
    });
    server.shutdown().unwrap();
}

fn tiny_rings_and_receive_pools(backend: BackendChoice) {
    const CLIENTS: usize = 64;
    // 8 submission entries and 2 receive buffers of 512 bytes per worker, for 64 clients
    // sending 40 KB messages at once: receives run out of buffers and submissions
    // overflow the ring all the time.
    let server = builder(backend)
        .ring_entries(8)
        .recv_buffers(2)
        .recv_buffer_size(512)
        .start(|_| Echo)
        .expect("engine starts")
        .guarded();
    let addr = server.local_addr();
    runtime().block_on(async {
        let results = join_all((0..CLIENTS).map(|i| async move {
            let mut ws = ws_connect(addr).await;
            for round in 0..5u8 {
                let msg: Vec<u8> = (0..40_000u32).map(|j| (j as u8) ^ (i as u8) ^ round).collect();
                ws.send(TMsg::binary(msg.clone())).await.unwrap();
                let back = tokio::time::timeout(Duration::from_secs(20), ws_data(&mut ws)).await;
                match back {
                    Ok(TMsg::Binary(b)) => {
                        assert!(b[..] == msg[..], "client {i} round {round} corrupted")
                    }
                    Ok(other) => panic!("client {i}: {other:?}"),
                    Err(_) => panic!("client {i} round {round}: no echo"),
                }
            }
            ws_close(&mut ws).await;
        }))
        .await;
        assert_eq!(results.len(), CLIENTS);
    });
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    assert_eq!(server.stats().messages_in, 5 * CLIENTS as u64);
    server.shutdown().unwrap();
}

fn fanout_through_a_tiny_ring(backend: BackendChoice) {
    const SUBSCRIBERS: usize = 300;
    const PUBLISHES: u32 = 20;
    // 8 submission entries (16 completion entries) for 300 subscribers: every publish is
    // 300 sends, so the submission queue fills again and again within one loop turn and
    // completions overflow the completion queue (the kernel keeps them aside until they
    // are reaped). Every subscriber must still get every message, in order.
    let (server, _rx) = start_probe(builder(backend).ring_entries(8));
    let addr = server.local_addr();
    let rt = runtime();
    let mut subs = rt.block_on(join_all((0..SUBSCRIBERS).map(|_| async move {
        let mut ws = ws_connect(addr).await;
        ws.send(TMsg::text("sub:tiny")).await.unwrap();
        assert_eq!(ws_data(&mut ws).await, TMsg::text("ok"));
        ws
    })));
    let publisher = server.publisher();
    for i in 0..PUBLISHES {
        assert_eq!(publisher.publish("tiny", &Message::binary(i.to_be_bytes().to_vec())), 2);
    }
    rt.block_on(join_all(subs.iter_mut().enumerate().map(|(n, ws)| async move {
        for i in 0..PUBLISHES {
            let got = tokio::time::timeout(Duration::from_secs(20), ws_data(ws)).await;
            assert_eq!(
                got.unwrap_or_else(|_| panic!("subscriber {n}: publish {i} never came")),
                TMsg::binary(i.to_be_bytes().to_vec()),
                "subscriber {n}"
            );
        }
    })));
    rt.block_on(join_all(subs.iter_mut().map(ws_close)));
    assert!(wait_until(PATIENCE, || server.stats().connections == 0), "{:?}", server.stats());
    server.shutdown().unwrap();
}

both_backends! {
    fanout_through_a_tiny_ring => fanout_through_a_tiny_ring_io_uring, fanout_through_a_tiny_ring_epoll;
    connection_cap_per_worker => connection_cap_per_worker_io_uring, connection_cap_per_worker_epoll;
    origin_check_refuses_403 => origin_check_refuses_403_io_uring, origin_check_refuses_403_epoll;
    full_command_queue => full_command_queue_io_uring, full_command_queue_epoll;
    tiny_rings_and_receive_pools => tiny_rings_and_receive_pools_io_uring, tiny_rings_and_receive_pools_epoll;
}
