//! The acknowledgement on the wire between a ringwire client with an outbox and a
//! ringwire server with a duplicate filter (`EngineConfig::receipts`), on both backends:
//! the outbox drains with no acknowledgement from the application, the server's
//! application sees each durable message once with its id (`Ctx::delivery`) and plain
//! messages as before, copies resent after a server restart are dropped, and a second
//! connection of a stream makes the first one close.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, GuardExt, Guarded};
use ringwire::client::{Cause, ClientHandle, ClientState, StateChange};
use ringwire::frame::Message;
use ringwire::outbox::{Delivery, OutboxSettings, ReceiptSettings, CLOSE_REPLACED};
use ringwire::{BackendChoice, Ctx, Engine, Handler, WorkerCtx};

/// What the server's application saw: durable messages with their delivery, plain ones
/// without.
type Seen = Arc<Mutex<Vec<(Option<Delivery>, String)>>>;

struct Server(Seen);

impl Handler for Server {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let text = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        self.0.lock().unwrap().push((cx.delivery(), text));
    }
}

fn server(addr: &str, backend: BackendChoice, dir: &std::path::Path, seen: &Seen) -> Guarded {
    let s = seen.clone();
    Engine::builder()
        .listen(addr.parse().unwrap())
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .shutdown_timeout(Duration::from_millis(200))
        .receipts(Some(ReceiptSettings::new(dir.join("receipts"))))
        .start(move |_| Server(s.clone()))
        .expect("the server starts")
        .guarded()
}

#[derive(Default)]
struct Shared {
    /// Durable messages to send at the next wake, then plain ones.
    durable: Mutex<Vec<String>>,
    plain: Mutex<Vec<String>>,
    /// `on_acked` calls: (upto, count).
    acks: Mutex<Vec<(u128, usize)>>,
    /// Ids `send_durable` returned.
    ids: Mutex<Vec<u128>>,
    unacked: AtomicUsize,
    /// State changes, with their causes.
    changes: Mutex<Vec<StateChange>>,
    client: Mutex<Option<ringwire::ConnId>>,
}

struct Client(Arc<Shared>);

impl Handler for Client {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
        let id = *self.0.client.lock().unwrap();
        if let Some(mut cx) = id.and_then(|id| w.conn(id)) {
            for m in self.0.durable.lock().unwrap().drain(..) {
                let a = cx.send_durable(Message::text(m)).expect("stored");
                self.0.ids.lock().unwrap().push(a.id);
            }
            for m in self.0.plain.lock().unwrap().drain(..) {
                cx.send(Message::text(m)).expect("sent");
            }
        }
        self.0.unacked.store(w.outbox_unacked(), Relaxed);
    }
    fn on_acked(&mut self, _: &mut Ctx<'_>, upto: u128, count: usize) {
        self.0.acks.lock().unwrap().push((upto, count));
    }
    fn on_state(&mut self, _: &mut Ctx<'_>, change: &StateChange) {
        self.0.changes.lock().unwrap().push(change.clone());
    }
}

fn client(
    addr: std::net::SocketAddr,
    backend: BackendChoice,
    dir: &std::path::Path,
    stream: u64,
) -> (Guarded, ClientHandle, Arc<Shared>) {
    let shared = Arc::new(Shared::default());
    let sh = shared.clone();
    let engine = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .outbox(Some(OutboxSettings::new(dir)))
        .start(move |_| Client(sh.clone()))
        .expect("the client engine starts")
        .guarded();
    let cfg = common::durable_client_config(stream);
    let h = engine.connect(&format!("ws://{addr}/"), cfg).expect("dial");
    assert!(wait_until(Duration::from_secs(5), || h.id().is_some()));
    *shared.client.lock().unwrap() = h.id();
    (engine, h, shared)
}

fn drained(engine: &Guarded, shared: &Shared) -> bool {
    wait_until(Duration::from_secs(10), || {
        engine.wake_all();
        std::thread::sleep(Duration::from_millis(5));
        shared.durable.lock().unwrap().is_empty() && shared.unacked.load(Relaxed) == 0
    })
}

fn tmp(name: &str, backend: BackendChoice) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rw-wire-{name}-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn acknowledged_on_the_wire(backend: BackendChoice) {
    let dir = tmp("ack", backend);
    let seen: Seen = Arc::default();
    let srv = server("127.0.0.1:0", backend, &dir, &seen);
    let addr = srv.local_addr();
    let (engine, h, shared) = client(addr, backend, &dir.join("outbox"), 7);
    assert!(wait_until(Duration::from_secs(5), || h.state() == ClientState::Connected));

    shared.durable.lock().unwrap().extend((1..=500).map(|n| format!("d{n}")));
    shared.plain.lock().unwrap().extend(["p1".to_string(), "p2".to_string()]);
    engine.wake_all();
    assert!(drained(&engine, &shared), "the server's acknowledgements did not drain the outbox");

    // The server's application: each durable message once, in order, with its id; the
    // plain ones after them, without.
    let got = seen.lock().unwrap().clone();
    let ids = shared.ids.lock().unwrap().clone();
    assert_eq!(got.len(), 502);
    for (i, (d, text)) in got[..500].iter().enumerate() {
        let d = d.expect("a durable message has its delivery");
        assert_eq!((d.stream, d.id, d.redelivered), (7, ids[i], false));
        assert_eq!(text, &format!("d{}", i + 1));
    }
    assert_eq!(got[500], (None, "p1".to_string()));
    assert_eq!(got[501], (None, "p2".to_string()));
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "the outbox's ids grow");
    // Acknowledgements are cumulative and fewer than the messages (one per batch).
    let acks = shared.acks.lock().unwrap().clone();
    assert_eq!(acks.iter().map(|a| a.1).sum::<usize>(), 500);
    assert_eq!(acks.last().unwrap().0, *ids.last().unwrap());
    assert!(acks.windows(2).all(|w| w[0].0 <= w[1].0));
    let (cs, ss) = (engine.stats(), srv.stats());
    assert_eq!(cs.outbox_acked, 500, "{cs:?}");
    assert_eq!(ss.receipts_delivered, 500, "{ss:?}");
    assert_eq!(ss.receipts_duplicates, 0);

    // The server goes; messages stored meanwhile arrive once it is back (on the same
    // table), and nothing is handed to the application twice.
    srv.shutdown().unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.state() != ClientState::Connected));
    shared.durable.lock().unwrap().extend((501..=600).map(|n| format!("d{n}")));
    engine.wake_all();
    let srv = server(&addr.to_string(), backend, &dir, &seen);
    assert!(drained(&engine, &shared));
    let texts: Vec<String> =
        seen.lock().unwrap().iter().filter(|s| s.0.is_some()).map(|s| s.1.clone()).collect();
    assert_eq!(texts, (1..=600).map(|n| format!("d{n}")).collect::<Vec<_>>());
    engine.shutdown().unwrap();
    srv.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second client of the same stream: refused with 503 while the first holds it, and
/// the first is closed with `CLOSE_REPLACED` (the newer connection wins).
fn a_second_connection_of_a_stream_replaces_the_first(backend: BackendChoice) {
    let dir = tmp("busy", backend);
    let seen: Seen = Arc::default();
    let srv = server("127.0.0.1:0", backend, &dir, &seen);
    let addr = srv.local_addr();
    let (e1, h1, s1) = client(addr, backend, &dir.join("ob1"), 9);
    assert!(wait_until(Duration::from_secs(5), || h1.state() == ClientState::Connected));
    let (e2, h2, s2) = client(addr, backend, &dir.join("ob2"), 9);
    assert!(wait_until(Duration::from_secs(5), || {
        s1.changes
            .lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c.cause, Cause::Closed { code, .. } if code == CLOSE_REPLACED.0))
    }));
    // The 503 reaches the second client's engine on its own thread, maybe a little
    // after the first client saw its close.
    assert!(wait_until(Duration::from_secs(5), || {
        s2.changes
            .lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c.cause, Cause::HandshakeStatus { status: 503, .. }))
    }));
    assert!(srv.stats().receipts_refused >= 1);
    // One of them holds the stream at any time; the other keeps being refused.
    assert!(wait_until(Duration::from_secs(5), || h1.state() == ClientState::Connected
        || h2.state() == ClientState::Connected));
    e1.shutdown().unwrap();
    e2.shutdown().unwrap();
    srv.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
    acknowledged_on_the_wire => durable_messages_are_acknowledged_on_the_wire_io_uring,
                                durable_messages_are_acknowledged_on_the_wire_epoll;
    a_second_connection_of_a_stream_replaces_the_first =>
        a_second_connection_of_a_stream_replaces_the_first_io_uring,
        a_second_connection_of_a_stream_replaces_the_first_epoll;
}

/// A handle's `store_durable` returns once the worker stored the message, with its id;
/// the server's application gets it with that id; after the client closes, it is
/// refused.
#[test]
fn a_handle_stores_durably_and_learns_the_id() {
    let backend = BackendChoice::Auto;
    let dir = tmp("store", backend);
    let seen: Seen = Arc::default();
    let srv = server("127.0.0.1:0", backend, &dir, &seen);
    let (engine, h, shared) = client(srv.local_addr(), backend, &dir.join("outbox"), 5);
    assert!(wait_until(Duration::from_secs(5), || h.state() == ClientState::Connected));
    let t = Duration::from_secs(5);
    let a = h.store_durable(Message::text("one"), t).expect("stored");
    let b = h.store_durable(Message::text("two"), t).expect("stored");
    assert!(b.id > a.id && a.durable, "{a:?} {b:?}");
    assert!(drained(&engine, &shared));
    let got: Vec<(u128, String)> =
        seen.lock().unwrap().iter().map(|(d, t)| (d.expect("durable").id, t.clone())).collect();
    assert_eq!(got, [(a.id, "one".to_string()), (b.id, "two".to_string())]);
    h.close(ringwire::frame::CloseCode::NORMAL, "").unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.state() == ClientState::Closed));
    assert_eq!(
        h.store_durable(Message::text("late"), t),
        Err(ringwire::outbox::DurableError::Closed)
    );
    engine.shutdown().unwrap();
    srv.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Panics the first time it is handed `boom`; records everything handed to it.
struct Fragile(Seen, Arc<AtomicUsize>);

impl Handler for Fragile {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let text = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        self.0.lock().unwrap().push((cx.delivery(), text.clone()));
        if text == "boom" && self.1.fetch_add(1, Relaxed) == 0 {
            panic!("the application failed on boom (a test)");
        }
    }
}

/// The server's application panics on a durable message: the connection closes (1011),
/// that message is not acknowledged, nothing after it is handed over on that
/// connection, and the client's next connection brings it again, flagged as
/// redelivered, then the rest.
#[test]
fn a_message_the_application_failed_on_comes_again_flagged() {
    let backend = BackendChoice::Auto;
    let dir = tmp("fragile", backend);
    let seen: Seen = Arc::default();
    let (s, panics) = (seen.clone(), Arc::new(AtomicUsize::new(0)));
    let p = panics.clone();
    let srv = Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .pin_cpus(false)
        .receipts(Some(ReceiptSettings::new(dir.join("receipts"))))
        .start(move |_| Fragile(s.clone(), p.clone()))
        .expect("the server starts")
        .guarded();
    let (engine, h, shared) = client(srv.local_addr(), backend, &dir.join("outbox"), 3);
    assert!(wait_until(Duration::from_secs(5), || h.state() == ClientState::Connected));
    shared.durable.lock().unwrap().extend(["a", "boom", "c"].map(String::from));
    engine.wake_all();
    assert!(drained(&engine, &shared), "all acknowledged in the end");
    let got = seen.lock().unwrap().clone();
    let texts: Vec<(&str, bool)> =
        got.iter().map(|(d, t)| (t.as_str(), d.expect("durable").redelivered)).collect();
    assert_eq!(texts, [("a", false), ("boom", false), ("boom", true), ("c", false)]);
    assert_eq!(panics.load(Relaxed), 2);
    assert_eq!(srv.stats().handler_panics, 1);
    engine.shutdown().unwrap();
    srv.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
