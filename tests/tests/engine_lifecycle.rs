#![allow(missing_docs)]
//! Starting and stopping, on both backends: graceful shutdown closes every client with
//! 1001 and returns in bounded time even when clients do not answer; afterwards nobody
//! can connect; dropping a `Server` shuts it down as well.

mod common;

use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;
use ringwire::{BackendChoice, Echo};

fn graceful_shutdown(backend: BackendChoice) {
    const N: usize = 50;
    let server = builder(backend).start(|_| Echo).expect("engine starts").guarded();
    let addr = server.local_addr();
    let info = server.backend().clone();
    let expected = match backend {
        BackendChoice::Epoll => "epoll",
        _ => "io_uring",
    };
    assert_eq!(info.name, expected, "{info:?}");
    let rt = runtime();
    let mut clients = rt.block_on(join_all((0..N).map(|i| async move {
        let mut ws = ws_connect(addr).await;
        ws_echo(&mut ws, &format!("client {i}")).await;
        ws
    })));
    assert!(wait_until(PATIENCE, || server.stats().connections == N as u64));

    let (done_tx, done_rx) = mpsc::channel();
    let stopper = std::thread::spawn(move || {
        let started = Instant::now();
        let r = server.shutdown();
        let _ = done_tx.send(started.elapsed());
        r
    });
    // Every client gets 1001, answers (tungstenite does) and sees the stream end.
    rt.block_on(join_all(clients.iter_mut().map(|ws| async move {
        ws_expect_close_then_end(ws, 1001).await;
    })));
    let took = done_rx.recv_timeout(Duration::from_secs(10)).expect("shutdown returned");
    stopper.join().unwrap().expect("clean shutdown");
    // The default shutdown_timeout is 3 s; answering clients must not need it all, but
    // only a hang is asserted.
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    drop(clients);
    // The listeners are gone.
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    assert!(refused.is_err(), "connected to a shut-down server");
}

fn shutdown_with_silent_clients(backend: BackendChoice) {
    let server = builder(backend)
        .shutdown_timeout(Duration::from_millis(500))
        .start(|_| Echo)
        .expect("engine starts")
        .guarded();
    let addr = server.local_addr();
    // Upgraded clients that will not answer the close, one with a message half sent,
    // and a connection still in its handshake.
    let mut silent: Vec<RawClient> = (0..5).map(|_| RawClient::open(addr)).collect();
    for c in &mut silent {
        c.echo("about to go quiet");
    }
    silent[0].send(false, OP_TEXT, b"never finished");
    let mut handshaking = connect(addr);
    std::io::Write::write_all(&mut handshaking, b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert!(wait_until(PATIENCE, || server.stats().connections == 6));

    let started = Instant::now();
    server.shutdown().expect("clean shutdown");
    let took = started.elapsed();
    assert!(took < PATIENCE, "shutdown with silent clients took {took:?}");
    for c in &mut silent {
        c.expect_close_then_eof(1001, "a silent client at shutdown");
    }
    let (answer, _) = read_to_end_within(&mut handshaking, PATIENCE);
    assert!(!String::from_utf8_lossy(&answer).contains(" 101 "), "upgraded during shutdown");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

fn drop_shuts_down(backend: BackendChoice) {
    let server = builder(backend).start(|_| Echo).expect("engine starts").guarded();
    let addr = server.local_addr();
    let mut c = RawClient::open(addr);
    c.echo("hi");
    let dropper = std::thread::spawn(move || drop(server));
    assert_eq!(c.expect_close().close_code(), 1001);
    c.send_close(1001);
    c.expect_eof();
    dropper.join().unwrap();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

fn restart_on_same_port(backend: BackendChoice) {
    // A shut-down engine leaves nothing bound: a new one can take the same port at once.
    let server = builder(backend).start(|_| Echo).expect("engine starts").guarded();
    let addr = server.local_addr();
    RawClient::open(addr).echo("first life");
    server.shutdown().unwrap();
    let again = ringwire::Engine::builder()
        .listen(addr)
        .workers(2)
        .pin_cpus(false)
        .backend(backend)
        .start(|_| Echo)
        .expect("restart on the same port")
        .guarded();
    RawClient::open(addr).echo("second life");
    again.shutdown().unwrap();
}

both_backends! {
    graceful_shutdown => graceful_shutdown_io_uring, graceful_shutdown_epoll;
    shutdown_with_silent_clients => shutdown_with_silent_clients_io_uring, shutdown_with_silent_clients_epoll;
    drop_shuts_down => drop_shuts_down_io_uring, drop_shuts_down_epoll;
    restart_on_same_port => restart_on_same_port_io_uring, restart_on_same_port_epoll;
}
