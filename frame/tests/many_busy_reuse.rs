#![allow(missing_docs)]
//! Many connections of one thread busy at once (an engine worker's turn: every connection
//! that received something holds its buffers until its replies are sent) reuse as many
//! spare buffers the next time: the second round allocates nothing per connection. With
//! a fixed 64 spares, every connection past the 64th allocated its buffers afresh each
//! round. Counted with dhat's global allocator, so this file holds one test only.

use std::time::Instant;

use bytes::BytesMut;
use ringwire_frame::{encode_frame, Config, Connection, Event, OpCode};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn allocs() -> u64 {
    dhat::HeapStats::get().total_blocks
}

const CONNS: usize = 300;

/// Every connection receives one small masked frame and echoes it; only then do all of
/// them transmit (and go idle). The allocations that took.
fn round(conns: &mut [Connection], input: &[u8], wire: &mut Vec<u8>) -> u64 {
    let before = allocs();
    let now = Instant::now();
    for c in conns.iter_mut() {
        c.handle_bytes(now, input);
        while let Some(ev) = c.poll_event() {
            if let Event::Message(m) = ev {
                c.send(m).unwrap();
            }
        }
    }
    for c in conns.iter_mut() {
        wire.clear();
        c.poll_transmit_into(wire);
        assert_eq!(wire.len(), 2 + 20, "the echo");
        assert!(!c.has_buffers(), "idle again");
    }
    allocs() - before
}

#[test]
fn connections_busy_together_reuse_as_many_spares() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut input = BytesMut::new();
    encode_frame(&mut input, OpCode::Binary, true, &[7; 20], Some([1, 2, 3, 4]));
    let mut wire = Vec::with_capacity(4096);
    let mut conns: Vec<_> =
        (0..CONNS).map(|_| Connection::server(Config::default(), Instant::now())).collect();
    let cold = round(&mut conns, &input, &mut wire);
    assert!(cold >= CONNS as u64, "the first round allocates each connection's buffers");
    assert_eq!(Connection::spare_buffers().0, CONNS, "all of them kept as spares");
    for _ in 0..3 {
        let warm = round(&mut conns, &input, &mut wire);
        assert!(
            warm < (CONNS / 10) as u64,
            "a later round allocated {warm} times for {CONNS} connections (the first {cold})"
        );
    }
    // Once a release finds them all unused since the one before, they are freed.
    Connection::release_spare_buffers();
    assert_eq!(Connection::release_spare_buffers(), CONNS);
    assert_eq!(Connection::spare_buffers(), (0, 0));
}
