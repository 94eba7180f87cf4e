//! Client connections over real sockets on loopback, on both backends: dialling a
//! ringwire server, echo, the application's close, reconnecting after a refused
//! connect and after a server restart, and hostile or failing servers (a 403, a wrong
//! accept key, a server that never answers the upgrade, a 503 with Retry-After).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::client::{client_engine, expect_msg, expect_state, Client, ClientProbe};
use common::{accept_101 as accept, builder, raw_server, start_probe, GuardExt, PATIENCE};
use ringwire::client::{Backoff, Cause, ClientConfig, ClientState, RetryPolicy, StateChange};
use ringwire::frame::{CloseCode, Message};
use ringwire::{BackendChoice, Ctx, Engine, Handler, SendError};

/// Quick retries for tests: 20 ms x 2 up to 100 ms.
fn quick() -> ClientConfig {
    let mut c = ClientConfig::default();
    c.retry = RetryPolicy {
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            ..Backoff::default()
        },
        ..RetryPolicy::default()
    };
    c
}

fn echo_and_close(backend: BackendChoice) {
    let (server, _srx) = start_probe(builder(backend));
    let (engine, rx) = client_engine(backend);
    let url = format!("ws://{}/feed?x=1", server.local_addr());
    let client = engine.connect(&url, ClientConfig::default()).unwrap();
    let (c, _) = expect_state(&rx, ClientState::Connecting);
    assert_eq!((c.from, c.cause), (ClientState::Disconnected, Cause::Requested));
    let (c, _) = expect_state(&rx, ClientState::Connected);
    assert_eq!(c.cause, Cause::Upgraded);
    assert_eq!(client.state(), ClientState::Connected);
    client.send_text("hello").unwrap();
    assert_eq!(expect_msg(&rx), Message::text("hello".to_owned()));
    client.send(Message::binary(vec![7u8; 100_000])).unwrap();
    assert_eq!(expect_msg(&rx), Message::binary(vec![7u8; 100_000]));
    client.close(CloseCode::NORMAL, "bye").unwrap();
    let (c, _) = expect_state(&rx, ClientState::Closed);
    assert_eq!(c.cause, Cause::AppClose);
    assert!(common::wait_until(PATIENCE, || engine.stats().connections == 0));
    assert!(common::wait_until(PATIENCE, || server.stats().connections == 0));
    assert_eq!(client.send_text("late"), Err(SendError::Closed));
    assert_eq!(client.state(), ClientState::Closed);
    engine.shutdown().unwrap();
    server.shutdown().unwrap();
}

/// A port with nothing listening on it (bound, then released).
fn dead_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn refused_then_server_appears(backend: BackendChoice) {
    let addr = dead_port();
    let (engine, rx) = client_engine(backend);
    let client = engine.connect(&format!("ws://{addr}/"), quick()).unwrap();
    let (c, _) = expect_state(&rx, ClientState::Reconnecting);
    assert_eq!(c.cause, Cause::ConnectFailed { errno: 111 }, "ECONNREFUSED");
    // It keeps trying; then a server appears on the port.
    let _ = expect_state(&rx, ClientState::Reconnecting);
    let (server, _srx) = start_probe(builder(backend).config({
        let mut c = builder(backend).current().clone();
        c.listen = vec![addr];
        c
    }));
    let _ = expect_state(&rx, ClientState::Connected);
    client.send_text("after").unwrap();
    assert_eq!(expect_msg(&rx), Message::text("after".to_owned()));
    engine.shutdown().unwrap();
    server.shutdown().unwrap();
}

fn server_restart_reconnects(backend: BackendChoice) {
    let (server, _srx) = start_probe(builder(backend));
    let addr = server.local_addr();
    let (engine, rx) = client_engine(backend);
    let client = engine.connect(&format!("ws://{addr}/"), quick()).unwrap();
    let (_, _) = expect_state(&rx, ClientState::Connected);
    let id = client.id().expect("taken up by its worker");
    let mut server = server;
    for round in 0..3 {
        server.shutdown().unwrap();
        let (c, before) = expect_state(&rx, ClientState::Reconnecting);
        assert_eq!(c.cause, Cause::Closed { code: 1001 }, "the server's shutdown close");
        let closed = |e: &Client| matches!(e, Client::Closed(c) if c.code == CloseCode::GOING_AWAY);
        assert!(before.iter().any(closed), "on_close before the state change: {before:?}");
        let mut cfg = builder(backend).current().clone();
        cfg.listen = vec![addr];
        server = start_probe(builder(backend).config(cfg)).0;
        let (c, _) = expect_state(&rx, ClientState::Connected);
        assert_eq!(c.from, ClientState::Connecting);
        assert_eq!(client.id(), Some(id), "the same connection id across reconnects");
        // Messages after the reconnect arrive, in order.
        for i in 0..50 {
            client.send_text(&format!("{round}:{i}")).unwrap();
        }
        for i in 0..50 {
            assert_eq!(expect_msg(&rx), Message::text(format!("{round}:{i}")));
        }
        assert_eq!(engine.stats().connections, 1, "one record, not one per attempt");
    }
    engine.shutdown().unwrap();
    assert_eq!(client.state(), ClientState::Closed);
    server.shutdown().unwrap();
}

fn forbidden_is_permanent(backend: BackendChoice) {
    let (addr, accepts) =
        raw_server(|_| Some(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".into()));
    let (engine, rx) = client_engine(backend);
    let client = engine.connect(&format!("ws://{addr}/"), quick()).unwrap();
    let (c, before) = expect_state(&rx, ClientState::Closed);
    assert_eq!(c.cause, Cause::HandshakeStatus { status: 403, retry_after: None });
    let retried = |e: &Client| matches!(e, Client::State(c) if c.to == ClientState::Reconnecting);
    assert!(!before.iter().any(retried), "{before:?}");
    assert_eq!(client.state(), ClientState::Closed);
    assert!(accepts.recv_timeout(PATIENCE).is_ok());
    assert!(accepts.recv_timeout(Duration::from_millis(300)).is_err(), "no second attempt");
    assert!(common::wait_until(PATIENCE, || engine.stats().connections == 0));
    engine.shutdown().unwrap();
}

fn wrong_accept_key_is_refused(backend: BackendChoice) {
    let (addr, _accepts) = raw_server(|_| {
        Some(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
                .into(),
        )
    });
    let (engine, rx) = client_engine(backend);
    engine.connect(&format!("ws://{addr}/"), quick()).unwrap();
    let (c, _) = expect_state(&rx, ClientState::Closed);
    assert!(matches!(&c.cause, Cause::HandshakeInvalid(e) if e.contains("Accept")), "{c:?}");
    engine.shutdown().unwrap();
}

fn silent_server_times_out(backend: BackendChoice) {
    let (addr, accepts) = raw_server(|_| None);
    let (engine, rx) = client_engine(backend);
    let mut cfg = quick();
    cfg.handshake_timeout = Duration::from_millis(200);
    cfg.retry.backoff.max_attempts = Some(2);
    engine.connect(&format!("ws://{addr}/"), cfg).unwrap();
    let (c, _) = expect_state(&rx, ClientState::Reconnecting);
    assert_eq!(c.cause, Cause::HandshakeTimeout);
    let (c, _) = expect_state(&rx, ClientState::Closed);
    let gave_up = Cause::GaveUp { attempts: 2, last: Box::new(Cause::HandshakeTimeout) };
    assert_eq!(c.cause, gave_up);
    assert_eq!(accepts.try_iter().count(), 2, "two attempts, then it gave up");
    engine.shutdown().unwrap();
}

fn retry_after_is_honoured(backend: BackendChoice) {
    let (addr, accepts) = raw_server(|_| {
        Some(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
                .into(),
        )
    });
    let (engine, rx) = client_engine(backend);
    engine.connect(&format!("ws://{addr}/"), quick()).unwrap();
    let (c, _) = expect_state(&rx, ClientState::Reconnecting);
    assert_eq!(
        c.cause,
        Cause::HandshakeStatus { status: 503, retry_after: Some(Duration::from_secs(1)) }
    );
    let first = accepts.recv_timeout(PATIENCE).unwrap();
    let second = accepts.recv_timeout(PATIENCE).unwrap();
    assert!(
        second - first >= Duration::from_millis(900),
        "retried after {:?}, before the server's Retry-After of 1 s",
        second - first
    );
    engine.shutdown().unwrap();
}

fn silent_peer_is_lost_by_the_heartbeat(backend: BackendChoice) {
    // Upgrades, then neither reads nor writes: a peer that vanished without a FIN.
    let (addr, _accepts) = raw_server(|req| Some(accept(req).into()));
    let (engine, rx) = client_engine(backend);
    let mut cfg = quick();
    cfg.ping_interval = Some(Duration::from_millis(200));
    cfg.pong_timeout = Duration::from_millis(300);
    let client = engine.connect(&format!("ws://{addr}/"), cfg).unwrap();
    let _ = expect_state(&rx, ClientState::Connected);
    let up = Instant::now();
    let (c, _) = expect_state(&rx, ClientState::Reconnecting);
    let took = up.elapsed();
    assert_eq!(c.cause, Cause::HeartbeatLost);
    client.close(CloseCode::NORMAL, "done").unwrap();
    let _ = expect_state(&rx, ClientState::Closed);
    // Lower bound only here (the wall clock of a loaded machine says little about the
    // upper one); the exact bound is checked under virtual time in the engine's tests.
    // (The test hears of the connect a little after the worker set its timers.)
    assert!(took >= Duration::from_millis(450), "lost after {took:?}, before 200 + 300 ms");
    engine.shutdown().unwrap();
}

fn peer_that_stops_reading_is_lost_at_the_user_timeout(backend: BackendChoice) {
    // Upgrades, then never reads again: our sends fill its window and ours, and the
    // kernel gives up on the unacknowledged data after TCP_USER_TIMEOUT (Linux applies
    // it to zero-window probes too).
    let (addr, _accepts) = raw_server(|req| Some(accept(req).into()));
    let (tx, rx) = channel();
    let engine = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .max_queued_bytes(256 << 20)
        .start(move |_| ClientProbe(tx.clone()))
        .unwrap()
        .guarded();
    let mut cfg = quick();
    cfg.ping_interval = None;
    cfg.tcp_user_timeout = Some(Duration::from_millis(500));
    let client = engine.connect(&format!("ws://{addr}/"), cfg).unwrap();
    let _ = expect_state(&rx, ClientState::Connected);
    let chunk = bytes::Bytes::from(vec![0u8; 1 << 20]);
    for _ in 0..64 {
        client.send(Message::binary(chunk.clone())).unwrap();
    }
    let (c, _) = expect_state(&rx, ClientState::Reconnecting);
    assert_eq!(c.cause, Cause::Io { errno: 110 }, "ETIMEDOUT");
    client.close(CloseCode::NORMAL, "done").unwrap();
    engine.shutdown().unwrap();
}

fn source_address_is_chosen(backend: BackendChoice) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (engine, _rx) = client_engine(backend);
    let mut cfg = quick();
    cfg.bind = Some("127.0.0.2:0".parse().unwrap());
    let _client = engine.connect(&format!("ws://{addr}/"), cfg).unwrap();
    l.set_nonblocking(false).unwrap();
    let (_s, peer) = l.accept().unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.2", "the client's source address");
    engine.shutdown().unwrap();
}

fn a_host_name_target_connects_and_reconnects(backend: BackendChoice) {
    // `localhost` may name ::1 first, where nothing listens: the attempts go round the
    // addresses the name has, and its lookup is repeated after each loss.
    let (server, _srx) = start_probe(builder(backend));
    let addr = server.local_addr();
    let (engine, rx) = client_engine(backend);
    let client = engine.connect(&format!("ws://localhost:{}/", addr.port()), quick()).unwrap();
    let _ = expect_state(&rx, ClientState::Connected);
    server.shutdown().unwrap();
    let _ = expect_state(&rx, ClientState::Reconnecting);
    let mut cfg = builder(backend).current().clone();
    cfg.listen = vec![addr];
    let (server, _srx) = start_probe(builder(backend).config(cfg));
    let _ = expect_state(&rx, ClientState::Connected);
    client.send_text("by name").unwrap();
    assert_eq!(expect_msg(&rx), Message::text("by name".to_owned()));
    engine.shutdown().unwrap();
    server.shutdown().unwrap();
}

both_backends! {
    a_host_name_target_connects_and_reconnects => host_name_io_uring, host_name_epoll;
    source_address_is_chosen => source_address_is_chosen_io_uring, source_address_is_chosen_epoll;
    peer_that_stops_reading_is_lost_at_the_user_timeout => peer_that_stops_reading_is_lost_at_the_user_timeout_io_uring, peer_that_stops_reading_is_lost_at_the_user_timeout_epoll;
    silent_peer_is_lost_by_the_heartbeat => silent_peer_is_lost_by_the_heartbeat_io_uring, silent_peer_is_lost_by_the_heartbeat_epoll;
    echo_and_close => echo_and_close_io_uring, echo_and_close_epoll;
    refused_then_server_appears => refused_then_server_appears_io_uring, refused_then_server_appears_epoll;
    server_restart_reconnects => server_restart_reconnects_io_uring, server_restart_reconnects_epoll;
    forbidden_is_permanent => forbidden_is_permanent_io_uring, forbidden_is_permanent_epoll;
    wrong_accept_key_is_refused => wrong_accept_key_is_refused_io_uring, wrong_accept_key_is_refused_epoll;
    silent_server_times_out => silent_server_times_out_io_uring, silent_server_times_out_epoll;
    retry_after_is_honoured => retry_after_is_honoured_io_uring, retry_after_is_honoured_epoll;
}

fn shutdown_ends_clients_in_every_phase(backend: BackendChoice) {
    // Connected, in their upgrade (a server that never answers), and waiting to retry
    // (a port nothing listens on): the engine's shutdown ends them all, promptly.
    let (server, _srx) = start_probe(builder(backend));
    let (silent, _accepts) = raw_server(|_| None);
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (engine, rx) = client_engine(backend);
    let mut cfg = quick();
    cfg.retry.backoff.initial = Duration::from_secs(30);
    cfg.retry.backoff.max = Duration::from_secs(30);
    let up = engine.connect(&format!("ws://{}/", server.local_addr()), cfg.clone()).unwrap();
    let hanging = engine.connect(&format!("ws://{silent}/"), cfg.clone()).unwrap();
    let waiting = engine.connect(&format!("ws://{dead}/"), cfg).unwrap();
    assert!(common::wait_until(PATIENCE, || up.state() == ClientState::Connected
        && waiting.state() == ClientState::Reconnecting));
    assert_eq!(hanging.state(), ClientState::Connecting);
    let t = Instant::now();
    engine.shutdown().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "shutdown took {:?}", t.elapsed());
    for h in [&up, &hanging, &waiting] {
        assert_eq!(h.state(), ClientState::Closed);
    }
    let mut causes = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Client::State(c) = e {
            if c.to == ClientState::Closed {
                causes.push(c.cause);
            }
        }
    }
    assert_eq!(causes, vec![Cause::Shutdown; 3], "each told why");
    server.shutdown().unwrap();
}

both_backends! {
    shutdown_ends_clients_in_every_phase => shutdown_ends_clients_io_uring, shutdown_ends_clients_epoll;
}

/// A handler that dials from inside a callback (`Ctx::connect`): its engine's first
/// client, once connected, dials a second one to the same server.
struct Relay {
    tx: std::sync::mpsc::Sender<(ringwire::ConnId, StateChange)>,
    url: String,
    dialled: bool,
    /// The dial of a host name was refused with `NeedsLookup`.
    refused_name: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Handler for Relay {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    fn on_state(&mut self, cx: &mut Ctx<'_>, change: &StateChange) {
        let _ = self.tx.send((cx.id(), change.clone()));
        if change.to == ClientState::Connected && !self.dialled {
            self.dialled = true;
            let _ = cx.connect(&self.url, ClientConfig::default());
            let named = cx.connect("ws://localhost:1/", ClientConfig::default());
            let refused = matches!(named, Err(ringwire::client::ConnectError::NeedsLookup(_)));
            self.refused_name.store(refused, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn a_handler_dials(backend: BackendChoice) {
    let (server, _srx) = start_probe(builder(backend));
    let url = format!("ws://{}/", server.local_addr());
    let (tx, rx) = channel();
    let u = url.clone();
    let refused_name = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = refused_name.clone();
    let engine = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .start(move |_| Relay {
            tx: tx.clone(),
            url: u.clone(),
            dialled: false,
            refused_name: refused.clone(),
        })
        .unwrap()
        .guarded();
    let first = engine.connect(&url, ClientConfig::default()).unwrap();
    let mut connected = Vec::new();
    let end = Instant::now() + PATIENCE;
    while connected.len() < 2 && Instant::now() < end {
        if let Ok((id, c)) = rx.recv_timeout(Duration::from_millis(100)) {
            if c.to == ClientState::Connected {
                connected.push(id);
            }
        }
    }
    assert_eq!(connected.len(), 2, "the first client and the one its handler dialled");
    assert_eq!(connected[0], first.id().unwrap());
    assert_ne!(connected[1], connected[0]);
    assert_eq!(engine.stats().clients_connected, 2);
    assert!(refused_name.load(std::sync::atomic::Ordering::SeqCst), "a host name is refused");
    engine.shutdown().unwrap();
    server.shutdown().unwrap();
}

both_backends! {
    a_handler_dials => a_handler_dials_io_uring, a_handler_dials_epoll;
}
