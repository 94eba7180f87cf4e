#![allow(missing_docs)]
//! No file descriptor outlives an engine, on either backend: after hundreds of normal
//! and aborted connections, sends cut off by a reset, connects racing the shutdown, and
//! the shutdown itself, `/proc/self/fd` holds exactly what it held before.
//!
//! The count covers the whole process, so this file holds only these tests, and they
//! take turns (a lock) instead of running in parallel.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ringwire::BackendChoice;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn no_fd_leak(backend: BackendChoice) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = open_fds();
    let (server, rx) = start_probe(builder(backend).handshake_timeout(Duration::from_millis(300)));
    let addr = server.local_addr();

    // 500 complete lives: upgrade, echo, close handshake.
    for i in 0..500 {
        let mut c = RawClient::open(addr);
        c.echo(&format!("cycle {i}"));
        c.close_handshake(1000);
    }
    // Aborted ones.
    for i in 0..40 {
        match i % 4 {
            // Connect and vanish before saying anything.
            0 => drop(connect(addr)),
            // Vanish in the middle of the handshake.
            1 => connect(addr).write_all(b"GET / HTTP/1.1\r\nHost").unwrap(),
            // Upgrade, then drop the TCP connection without a close frame.
            2 => drop(RawClient::open(addr)),
            // Make the server send a lot, then reset while its send is in flight.
            _ => {
                let mut c = RawClient::open(addr);
                c.send(true, OP_TEXT, b"flood:64:65536");
                let _ = c.read_frame();
                drop(c);
            }
        }
    }
    // A handshake nobody finishes: the server's timeout closes it.
    let mut stalled = connect(addr);
    stalled.write_all(b"GET / HT").unwrap();
    read_to_end_within(&mut stalled, PATIENCE);
    drop(stalled);
    assert!(
        wait_until(PATIENCE, || server.stats().connections == 0),
        "connections left: {}",
        server.stats().connections
    );

    // Connects racing the shutdown: accepted sockets that arrive after it began must be
    // closed too.
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                    let _ = s.write_all(upgrade_request("/race").as_bytes());
                }
                n += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    server.shutdown().expect("clean shutdown");
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
    drop(rx);

    let after = open_fds();
    assert_eq!(after, before, "file descriptors leaked: {before} before, {after} after");
}

/// Clients through three server restarts: they reconnect each time, and once the
/// engines are gone the process holds exactly the descriptors it held before.
fn clients_leak_nothing(backend: BackendChoice) {
    use ringwire::client::{ClientConfig, ClientState};
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = open_fds();
    let (server, rx) = start_probe(builder(backend));
    let addr = server.local_addr();
    let client_engine = ringwire::Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .start(|_| ringwire::Echo)
        .unwrap()
        .guarded();
    let mut cfg = ClientConfig::default();
    cfg.retry.backoff.initial = Duration::from_millis(20);
    cfg.retry.backoff.max = Duration::from_millis(100);
    let n = 20;
    let clients = client_engine.connect_many(&format!("ws://{addr}/"), n, cfg).unwrap();
    let all_up = |cs: &[ringwire::client::ClientHandle]| {
        wait_until(PATIENCE, || cs.iter().all(|c| c.state() == ClientState::Connected))
    };
    assert!(all_up(&clients));
    let mut server = server;
    for _ in 0..3 {
        server.shutdown().unwrap();
        let mut cfg = builder(backend).current().clone();
        cfg.listen = vec![addr];
        let (next, next_rx) = start_probe(builder(backend).config(cfg));
        drop(next_rx);
        server = next;
        assert!(all_up(&clients), "every client reconnected");
    }
    assert_eq!(
        client_engine.stats().connections,
        n as u64,
        "one record per client, not per attempt"
    );
    client_engine.shutdown().unwrap();
    server.shutdown().unwrap();
    // The handles keep their engines' wake-up eventfds (as `ConnHandle`s in the
    // probe's channel keep the server's) until they are dropped.
    drop(clients);
    drop(rx);
    let after = open_fds();
    assert_eq!(after, before, "file descriptors leaked: {before} before, {after} after");
}

/// With io_uring, outgoing sockets become direct descriptors too: a hundred clients
/// leave the process's descriptor table as it was (the server here uses direct
/// descriptors as well).
#[test]
fn outgoing_sockets_are_direct_descriptors_on_io_uring() {
    use ringwire::client::{ClientConfig, ClientState};
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (server, _rx) = start_probe(builder(BackendChoice::IoUring));
    let engine = ringwire::Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(BackendChoice::IoUring)
        .start(|_| ringwire::Echo)
        .unwrap()
        .guarded();
    let before = open_fds();
    let url = format!("ws://{}/", server.local_addr());
    let clients = engine.connect_many(&url, 100, ClientConfig::default()).unwrap();
    assert!(wait_until(PATIENCE, || clients.iter().all(|c| c.state() == ClientState::Connected)));
    let after = open_fds();
    assert_eq!(after, before, "descriptors {before} -> {after} for 100 clients");
    engine.shutdown().unwrap();
    server.shutdown().unwrap();
}

both_backends! {
    no_fd_leak => no_fd_leak_io_uring, no_fd_leak_epoll;
    clients_leak_nothing => clients_leak_nothing_io_uring, clients_leak_nothing_epoll;
}
