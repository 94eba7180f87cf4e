#![allow(missing_docs)]
//! After a large message goes through and the connection is idle again, the memory that
//! carried it is freed: the thread's spare buffers (kept for the next busy connection)
//! must not hold on to a large allocation through the small rest of it. Counted with
//! dhat's global allocator, so this file holds one test only.

use std::time::Instant;

use bytes::BytesMut;
use ringwire_frame::{encode_frame, Config, Connection, Event, FixedMask, Message, OpCode};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn live_bytes() -> usize {
    dhat::HeapStats::get().curr_bytes
}

const BIG: usize = 4 << 20;

#[test]
fn large_messages_leave_nothing_large_behind() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let now = Instant::now();

    // Receiving: a 4 MiB masked frame in 64 KiB reads, delivered, dropped.
    let mut wire = BytesMut::new();
    encode_frame(&mut wire, OpCode::Binary, true, &vec![7u8; BIG], Some([1, 2, 3, 4]));
    let mut server = Connection::server(Config::default(), now);
    let base = live_bytes();
    for piece in wire.chunks(64 * 1024) {
        server.handle_bytes(now, piece);
    }
    let Some(Event::Message(Message::Binary(m))) = server.poll_event() else {
        panic!("the message")
    };
    assert_eq!(m.len(), BIG);
    drop(m);
    assert!(server.poll_transmit().is_none());
    assert!(!server.has_buffers(), "idle again");
    let held = live_bytes().saturating_sub(base);
    assert!(held < BIG / 8, "{held} bytes still held after a received 4 MiB message");
    drop(wire);

    // Sending: a client's 4 MiB message is masked into the connection's output buffer,
    // with the inline generator (its buffers go when idle) and with a caller's source
    // (kept in its buffers, which stay, emptied).
    let seeded = Connection::client_seeded(Config::default(), 42, now);
    let custom = Connection::client(Config::default(), Box::new(FixedMask([9, 8, 7, 6])), now);
    for (mut client, freed) in [(seeded, true), (custom, false)] {
        let base = live_bytes();
        client.send(Message::Binary(vec![5u8; BIG].into())).unwrap();
        let mut sent = 0;
        while let Some(chunk) = client.poll_transmit() {
            sent += chunk.len();
        }
        assert!(sent > BIG);
        assert_eq!(client.has_buffers(), !freed, "idle again");
        let held = live_bytes().saturating_sub(base);
        assert!(held < BIG / 8, "{held} bytes still held after a sent 4 MiB message");
    }
}
