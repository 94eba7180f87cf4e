#![allow(missing_docs)]
//! A connection that goes idle and busy again reuses its thread's spare buffers: the
//! second burst allocates less than the first. Counted with dhat's global allocator, so
//! this file holds one test only (other tests' threads would be counted too).

use std::time::Instant;

use bytes::BytesMut;
use ringwire_frame::{encode_frame, Config, Connection, OpCode};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn allocs() -> u64 {
    dhat::HeapStats::get().total_blocks
}

/// Eight masked client frames arrive, are echoed, and the output drains: the
/// allocations that took.
fn burst(c: &mut Connection, input: &[u8], wire: &mut Vec<u8>) -> u64 {
    let before = allocs();
    c.handle_bytes(Instant::now(), input);
    while let Some(ev) = c.poll_event() {
        if let ringwire_frame::Event::Message(m) = ev {
            c.send(m).unwrap();
        }
    }
    wire.clear();
    c.poll_transmit_into(wire);
    assert!(!c.has_buffers(), "idle again after the burst");
    allocs() - before
}

#[test]
fn busy_again_reuses_spare_buffers() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut input = BytesMut::new();
    for i in 0..8u8 {
        encode_frame(&mut input, OpCode::Binary, true, &[i; 40], Some([1, 2, 3, 4]));
    }
    let mut wire = Vec::with_capacity(4096);
    let mut c = Connection::server(Config::default(), Instant::now());
    let cold = burst(&mut c, &input, &mut wire);
    assert_eq!(wire.len(), 8 * (2 + 40));
    let warm = burst(&mut c, &input, &mut wire);
    assert_eq!(wire.len(), 8 * (2 + 40));
    assert!(warm < cold, "the second burst allocated {warm} times, the first {cold}");
    // Another connection of this thread benefits as well.
    let mut d = Connection::server(Config::default(), Instant::now());
    let other = burst(&mut d, &input, &mut wire);
    assert!(other < cold, "a new connection allocated {other} times, the first {cold}");
}
