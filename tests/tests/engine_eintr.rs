#![allow(missing_docs)]
//! Starting an engine must not disturb the thread that started it: a blocking read on
//! that thread afterwards must not fail with `EINTR` out of nowhere.
//!
//! Both backends run it; only io_uring could show the fault: tearing down a ring sends
//! task work to the threads that used it, so `Engine::start` probes io_uring on a
//! short-lived thread of its own.

mod common;

use std::io::{ErrorKind, Read};
use std::time::Duration;

use common::*;
use ringwire::{BackendChoice, Echo};

fn no_spurious_eintr_on_the_starting_thread(backend: BackendChoice) {
    let mut interrupted = 0;
    for _ in 0..10 {
        let server = builder(backend).start(|_| Echo).expect("engine starts").guarded();
        // A connection the server will not answer (no request sent): reading blocks
        // until the timeout, unless a signal-like notification interrupts it.
        let mut s = connect(server.local_addr());
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Err(e) if e.kind() == ErrorKind::Interrupted => interrupted += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("unexpected read result {other:?}"),
        }
        drop(s);
        server.shutdown().unwrap();
    }
    assert_eq!(interrupted, 0, "blocking reads on the thread that started the engine got EINTR");
}

#[test]
fn no_spurious_eintr_on_the_starting_thread_io_uring() {
    no_spurious_eintr_on_the_starting_thread(BackendChoice::IoUring);
}

#[test]
fn no_spurious_eintr_on_the_starting_thread_epoll() {
    no_spurious_eintr_on_the_starting_thread(BackendChoice::Epoll);
}
