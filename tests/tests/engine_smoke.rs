#![allow(missing_docs)]
//! First light: the engine echoes over real loopback sockets, on both backends.

use std::net::TcpStream;
use std::time::Duration;

use ringwire::{BackendChoice, Echo, Engine};
use tungstenite::Message;

fn echo_roundtrip(backend: BackendChoice) {
    echo_with(backend, None);
}

fn echo_with(backend: BackendChoice, busy_poll: Option<Duration>) {
    let server = Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .pin_cpus(false)
        .backend(backend)
        .busy_poll(busy_poll)
        .start(|_| Echo)
        .expect("engine starts");
    let addr = server.local_addr();
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).expect("upgrade");
    for i in 0..50 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
    }
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let stats = server.stats();
    assert_eq!(stats.messages_in, 51);
    match (backend, busy_poll) {
        // Each round trip leaves the worker spinning while the client answers (well
        // within the spin); some of those answers must be seen by the spin itself.
        (BackendChoice::IoUring, Some(_)) => {
            assert!(stats.busy_poll_hits > 0, "busy polling never saw work arrive")
        }
        _ => assert_eq!(stats.busy_poll_hits, 0),
    }
    server.shutdown().unwrap();
}

#[test]
fn echo_io_uring() {
    echo_roundtrip(BackendChoice::IoUring);
}

#[test]
fn echo_epoll() {
    echo_roundtrip(BackendChoice::Epoll);
}

/// Busy polling: the worker spins before it sleeps and sees the client's next message
/// arrive while spinning (`busy_poll_hits`); everything works the same (the epoll
/// backend ignores the setting).
#[test]
fn echo_busy_poll() {
    echo_with(BackendChoice::IoUring, Some(Duration::from_millis(20)));
    echo_with(BackendChoice::Epoll, Some(Duration::from_millis(20)));
}
