#![allow(missing_docs)]
//! Out of file descriptors: accepting pauses instead of spinning, and resumes.
//!
//! This binary holds one test on purpose: it lowers the process's RLIMIT_NOFILE, which
//! would disturb any test running beside it. Both backends run one after the other.

mod common;

use std::os::fd::OwnedFd;
use std::time::Duration;

use common::*;
use ringwire::{BackendChoice, Echo};
use rustix::net::{connect, socket, AddressFamily, SocketType};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Makes 30 client sockets, then lowers RLIMIT_NOFILE to leave `room` more descriptors.
/// Returns the sockets (unconnected: connecting needs no new descriptor) and the saved
/// limit.
fn sockets_under_a_tight_limit(room: u64) -> (Vec<OwnedFd>, Rlimit) {
    let socks: Vec<OwnedFd> =
        (0..30).map(|_| socket(AddressFamily::INET, SocketType::STREAM, None).unwrap()).collect();
    let saved = getrlimit(Resource::Nofile);
    let limit = open_fds() as u64 + room;
    setrlimit(Resource::Nofile, Rlimit { current: Some(limit), maximum: saved.maximum }).unwrap();
    (socks, saved)
}

fn connect_all(socks: &[OwnedFd], addr: std::net::SocketAddr) {
    for s in socks {
        connect(s, &addr).unwrap();
    }
}

fn paused_accepts_do_not_spin(backend: BackendChoice) {
    // The limit is lowered before the server starts: io_uring reads it when an accept is
    // armed. Room for the server's own descriptors (listener, eventfd, ring or epoll, a
    // short-lived probe ring) and about five connections.
    let (clients, saved) = sockets_under_a_tight_limit(12);
    // Plain descriptors, so that connections count against the process's limit.
    let server = builder(backend)
        .workers(1)
        .direct_descriptors(false)
        .shutdown_timeout(Duration::from_millis(300))
        .start(|_| Echo)
        .unwrap();
    let addr = server.local_addr();
    connect_all(&clients, addr);
    // Let the server run into the limit for half a second.
    std::thread::sleep(Duration::from_millis(500));
    let errors = server.stats().accept_errors;
    let accepted = server.stats().accepted;
    setrlimit(Resource::Nofile, saved).unwrap();
    assert!(accepted < 30, "{backend:?}: the server accepted all {accepted}: no EMFILE");
    // A spinning accept loop fails hundreds of thousands of times in half a second; a
    // paused one once per pause (100 ms).
    assert!((1..200).contains(&errors), "{errors} accept errors in 0.5 s");

    // With descriptors back, the queued connections are accepted and new ones work.
    drop(clients);
    let mut c = RawClient::open(addr);
    c.echo("after EMFILE");
    server.shutdown().unwrap();
}

/// io_uring direct descriptors live in the ring's table, not the process's: under the
/// same lowered limit every connection is accepted.
fn direct_descriptors_do_not_use_process_fds() {
    let server = builder(BackendChoice::IoUring)
        .workers(1)
        .shutdown_timeout(Duration::from_millis(300))
        .start(|_| Echo)
        .unwrap();
    assert!(server.backend().features.contains(&"direct descriptors"), "{:?}", server.backend());
    let addr = server.local_addr();
    let (clients, saved) = sockets_under_a_tight_limit(5);
    connect_all(&clients, addr);
    let all = wait_until(PATIENCE, || server.stats().accepted == 30);
    let errors = server.stats().accept_errors;
    setrlimit(Resource::Nofile, saved).unwrap();
    assert!(all, "accepted {} of 30", server.stats().accepted);
    assert_eq!(errors, 0);
    drop(clients);
    let mut c = RawClient::open(addr);
    c.echo("direct");
    server.shutdown().unwrap();
}

#[test]
fn out_of_descriptors() {
    paused_accepts_do_not_spin(BackendChoice::IoUring);
    paused_accepts_do_not_spin(BackendChoice::Epoll);
    direct_descriptors_do_not_use_process_fds();
}
