#![allow(missing_docs)]
//! Failures that must neither hang nor hide, on both backends: a handler factory that
//! panics while another worker is already up, a handler callback that panics, a
//! shutdown held up by a handler that blocks. (The same cases under virtual time are in
//! the engine's `worker::sim` tests; these run the real threads and sockets.)

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use ringwire::frame::Message;
use ringwire::{BackendChoice, Ctx, Echo, EngineError, Handler};

/// Runs `f` on a thread and waits at most `within` for its answer: a hang fails the test
/// instead of stalling the suite.
fn within<T: Send + 'static>(within: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(within).expect("it hung")
}

fn factory_panic_fails_start(backend: BackendChoice) {
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listen.local_addr().unwrap();
    drop(listen);
    let result = within(PATIENCE, move || {
        builder(backend)
            .listen(addr)
            .start(|i| {
                if i == 1 {
                    // Worker 0 is (or soon is) up and listening when this one fails.
                    std::thread::sleep(Duration::from_millis(50));
                    panic!("no handler for worker {i}");
                }
                Echo
            })
            .map(|_| ())
    });
    match result {
        Err(EngineError::WorkerPanicked { worker: 1, message }) => {
            assert!(message.contains("no handler for worker 1"), "{message}");
        }
        other => panic!("expected worker 1's panic, got {other:?}"),
    }
    // Every thread was joined and every listener closed: nobody accepts any more.
    assert!(std::net::TcpStream::connect(addr).is_err(), "a listener outlived the failed start");
}

/// Panics on "boom", echoes the rest.
struct Fragile;

impl Handler for Fragile {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        if msg.as_bytes() == b"boom" {
            panic!("the handler broke");
        }
        let _ = cx.send(msg);
    }
}

fn handler_panic_closes_1011(backend: BackendChoice) {
    // One worker, so both connections share the worker that sees the panic.
    let server = builder(backend).workers(1).start(|_| Fragile).expect("starts").guarded();
    let addr = server.local_addr();
    let mut victim = RawClient::open(addr);
    let mut bystander = RawClient::open(addr);
    victim.send(true, 0x1, b"boom");
    assert_eq!(victim.expect_close().close_code(), 1011, "the panicking handler's connection");
    victim.send_close(1011); // the close handshake completes, and the server ends TCP
    victim.expect_eof();
    bystander.send(true, 0x1, b"still here");
    assert_eq!(bystander.expect_data().payload, b"still here");
    assert_eq!(server.stats().handler_panics, 1);
    bystander.close_handshake(1000);
    server.shutdown().unwrap();
}

/// Blocks its worker for a while on the first message.
struct Stuck;

impl Handler for Stuck {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {
        std::thread::sleep(Duration::from_secs(6));
    }
}

fn shutdown_gives_up_on_a_stuck_worker(backend: BackendChoice) {
    let server = builder(backend)
        .workers(1)
        .shutdown_timeout(Duration::from_millis(200))
        .frame(ringwire::frame::Config::default().close_timeout(Duration::from_millis(200)))
        .start(|_| Stuck)
        .expect("starts");
    let mut client = RawClient::open(server.local_addr());
    client.send(true, 0x1, b"block");
    std::thread::sleep(Duration::from_millis(100)); // the worker is in the handler now
    let result = within(Duration::from_secs(5), move || server.shutdown());
    match result {
        Err(EngineError::ShutdownTimeout { workers, connections }) => {
            assert_eq!((workers, connections), (vec![0], 1));
        }
        other => panic!("expected a shutdown timeout, got {other:?}"),
    }
}

both_backends! {
    factory_panic_fails_start => factory_panic_fails_start_io_uring, factory_panic_fails_start_epoll;
    handler_panic_closes_1011 => handler_panic_closes_1011_io_uring, handler_panic_closes_1011_epoll;
    shutdown_gives_up_on_a_stuck_worker => shutdown_gives_up_on_a_stuck_worker_io_uring, shutdown_gives_up_on_a_stuck_worker_epoll;
}
