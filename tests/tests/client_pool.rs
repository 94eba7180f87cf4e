//! `Pool`: members spread over the workers, sends round robin over the connected ones,
//! members that ended for good dialled again, close; over real sockets, both backends.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{builder, expect_seen, start_probe, GuardExt, Seen, PATIENCE};
use ringwire::client::{ClientConfig, ClientState};
use ringwire::frame::{CloseCode, Message};
use ringwire::{BackendChoice, Echo, Engine, SendError};

fn pool(backend: BackendChoice) {
    let (server, srx) = start_probe(builder(backend));
    let addr = server.local_addr();
    let engine =
        Engine::builder().workers(2).pin_cpus(false).backend(backend).start(|_| Echo).unwrap();
    let engine = engine.guarded();
    let mut cfg = ClientConfig::default();
    cfg.retry.backoff.initial = Duration::from_millis(20);
    cfg.retry.backoff.max_attempts = Some(1);
    let pool = engine.pool(&format!("ws://{addr}/pool"), 4, cfg).unwrap();
    assert_eq!(pool.size(), 4);
    assert!(common::wait_until(PATIENCE, || pool.up() == 4), "up: {}", pool.up());
    let workers: Vec<usize> = pool.members().iter().map(|m| m.id().unwrap().worker()).collect();
    assert_eq!(workers.iter().filter(|w| **w == 0).count(), 2, "spread: {workers:?}");

    // Eight messages: two on each member (the server echoes, the client's Echo handler
    // echoes back once more, so count only the first arrival of each).
    for i in 0..8 {
        pool.send_text(&format!("quiet:{i}")).unwrap();
    }
    let mut per_conn: HashMap<_, usize> = HashMap::new();
    for _ in 0..8 {
        let id = expect_seen(&srx, "a pooled message", |s| match s {
            Seen::Msg(id, Message::Text(t)) if t.as_str().starts_with("quiet:") => Some(id),
            _ => None,
        });
        *per_conn.entry(id).or_default() += 1;
    }
    assert_eq!(per_conn.len(), 4, "round robin over the members: {per_conn:?}");
    assert!(per_conn.values().all(|n| *n == 2), "{per_conn:?}");

    // The server goes away: every member gives up (one attempt allowed) and ends.
    server.shutdown().unwrap();
    assert!(common::wait_until(PATIENCE, || pool
        .members()
        .iter()
        .all(|m| m.state() == ClientState::Closed)));
    assert_eq!(pool.send_text("nobody"), Err(SendError::NotConnected));
    // It comes back: the next send dials the ended members again, under the same handles.
    let mut cfg = builder(backend).current().clone();
    cfg.listen = vec![addr];
    let (server, _srx) = start_probe(builder(backend).config(cfg));
    assert!(common::wait_until(PATIENCE, || {
        let _ = pool.send_text("quiet:wake");
        pool.up() == 4
    }));

    pool.close(CloseCode::NORMAL, "done");
    assert!(common::wait_until(PATIENCE, || pool
        .members()
        .iter()
        .all(|m| m.state() == ClientState::Closed)));
    let _ = pool.send_text("after close");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pool.up(), 0, "a closed pool does not dial again");
    engine.shutdown().unwrap();
    server.shutdown().unwrap();
}

both_backends! {
    pool => pool_io_uring, pool_epoll;
}
