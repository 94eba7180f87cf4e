#![allow(missing_docs)]
//! A worker echoing one message at a time, on one connection or on 64 at once, allocates
//! nothing per message once warm, on both backends: the protocol buffers come from the
//! per-thread spares, the sends' and completions' vectors keep their memory from one
//! turn to the next. (At one message in flight every message is a turn or two of the
//! loop, so a vector made per turn is an allocation per message: the epoll backend had
//! two until 2026-12-08.) With 64 connections the bound leaves room for the spares of a
//! turn that finds more of them busy at once than any before (a CI run counted 217
//! allocations over 2,560 echoes after 5 rounds of warming, where runs here, with both
//! cores loaded or not, count none: growth of that kind, by all appearances).
//!
//! Counted with dhat's global allocator over the whole process, so this file holds one
//! test, and its client allocates nothing per message either (a plain socket, frames
//! made up front).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ringwire::{BackendChoice, Echo, Engine};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn allocs() -> u64 {
    dhat::HeapStats::get().total_blocks
}

/// A masked binary frame of 32 bytes (as a client sends it) and its echo (as the server
/// sends it, unmasked).
fn frames() -> ([u8; 38], [u8; 34]) {
    let payload: [u8; 32] = std::array::from_fn(|i| i as u8);
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut req = [0u8; 38];
    req[0] = 0x82;
    req[1] = 0x80 | 32;
    req[2..6].copy_from_slice(&key);
    for (i, b) in payload.iter().enumerate() {
        req[6 + i] = b ^ key[i % 4];
    }
    let mut reply = [0u8; 34];
    reply[0] = 0x82;
    reply[1] = 32;
    reply[2..].copy_from_slice(&payload);
    (req, reply)
}

fn upgrade(stream: &mut TcpStream) {
    let host = stream.peer_addr().unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
}

/// Allocations of the whole process over `n` echoes, one in flight.
fn echoes(stream: &mut TcpStream, n: usize) -> u64 {
    let (req, reply) = frames();
    let mut got = [0u8; 34];
    let before = allocs();
    for _ in 0..n {
        stream.write_all(&req).unwrap();
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, reply);
    }
    allocs() - before
}

/// Allocations of the whole process over `n` rounds of one echo on every connection.
fn rounds(conns: &mut [TcpStream], n: usize) -> u64 {
    let (req, reply) = frames();
    let mut got = [0u8; 34];
    let before = allocs();
    for _ in 0..n {
        for s in conns.iter_mut() {
            s.write_all(&req).unwrap();
        }
        for s in conns.iter_mut() {
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, reply);
        }
    }
    allocs() - before
}

fn check(backend: BackendChoice) {
    let server = Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .start(|_| Echo)
        .expect("engine starts");
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_nodelay(true).unwrap();
    upgrade(&mut stream);
    let cold = echoes(&mut stream, 200);
    const N: usize = 2000;
    let warm = echoes(&mut stream, N);
    // Whatever runs on a timer (the worker's once-a-second chores) may allocate a few
    // times; one allocation per message would be 2,000.
    assert!(
        warm < (N / 20) as u64,
        "{backend:?}: {warm} allocations over {N} echoes once warm (the first 200: {cold})"
    );
    // Many connections busy in the same turns: a round writes to each, then reads each.
    let mut many: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(server.local_addr()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_nodelay(true).unwrap();
            upgrade(&mut s);
            s
        })
        .collect();
    rounds(&mut many, 10);
    const ROUNDS: usize = 100;
    let warm = rounds(&mut many, ROUNDS);
    let n = ROUNDS * many.len();
    // How many connections are busy in one of the worker's turns depends on when it
    // wakes: a round that finds more at once than any before adds spare buffers for
    // them (a box, its queues, an output chunk: a few allocations each), once. One
    // allocation per message or per turn would be thousands.
    let growth = many.len() as u64 * 6;
    assert!(
        warm < growth + (n / 50) as u64,
        "{backend:?}: {warm} allocations over {n} echoes on 64 connections once warm"
    );
    drop((stream, many));
    server.shutdown().unwrap();
}

#[test]
fn one_message_in_flight_allocates_nothing_per_message() {
    let _profiler = dhat::Profiler::builder().testing().build();
    check(BackendChoice::Epoll);
    check(BackendChoice::IoUring);
}
