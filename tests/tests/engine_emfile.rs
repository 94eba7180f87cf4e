#![allow(missing_docs)]
//! Out of file descriptors: accepting pauses instead of spinning, and resumes.
//!
//! This binary holds one test on purpose: it lowers the process's RLIMIT_NOFILE, which
//! would disturb any test running beside it. Both backends run one after the other.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use ringwire::{BackendChoice, Echo};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn paused_accepts_do_not_spin(backend: BackendChoice) {
    let server = builder(backend).workers(1).start(|_| Echo).unwrap();
    let addr = server.local_addr();
    let saved = getrlimit(Resource::Nofile);
    // Room for 30 client sockets and a few server accepts, then EMFILE for the server.
    let limit = open_fds() + 36;
    setrlimit(Resource::Nofile, Rlimit { current: Some(limit), maximum: saved.maximum }).unwrap();
    let mut clients = Vec::new();
    for _ in 0..30 {
        match TcpStream::connect(addr) {
            Ok(c) => clients.push(c),
            Err(_) => break,
        }
    }
    // Let the server run into the limit for half a second.
    std::thread::sleep(Duration::from_millis(500));
    let errors = server.stats().accept_errors;
    let accepted = server.stats().accepted;
    setrlimit(Resource::Nofile, saved).unwrap();
    assert!(clients.len() >= 20, "only {} client sockets", clients.len());
    assert!(accepted < clients.len() as u64, "the server accepted all {accepted}: no EMFILE");
    // A spinning accept loop fails hundreds of thousands of times in half a second; a
    // paused one once per pause (100 ms).
    assert!((1..200).contains(&errors), "{errors} accept errors in 0.5 s");

    // With descriptors back, the queued connections are accepted and new ones work.
    drop(clients);
    let mut c = RawClient::open(addr);
    c.echo("after EMFILE");
    server.shutdown().unwrap();
}

#[test]
fn paused_accepts_do_not_spin_on_both_backends() {
    paused_accepts_do_not_spin(BackendChoice::IoUring);
    paused_accepts_do_not_spin(BackendChoice::Epoll);
}
