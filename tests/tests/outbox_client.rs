//! Durable sends of a client through server restarts and a restart of the client's own
//! engine, on both backends: a server application that answers `m <id>` with
//! `ack <id>`, a client application that acknowledges what the server confirms
//! (`Ctx::ack_durable`). Every message reaches a server at least once, the first arrivals
//! are in send order, and the outbox ends empty.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, GuardExt, Guarded};
use ringwire::client::{Backoff, ClientConfig, ClientHandle, ClientState};
use ringwire::frame::Message;
use ringwire::outbox::OutboxSettings;
use ringwire::{BackendChoice, ConnId, Ctx, Engine, Handler, WorkerCtx};

/// Records each `m <id>` and answers `ack <id>`.
struct AckServer(Arc<Mutex<Vec<u128>>>);

impl Handler for AckServer {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let text = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        let id = text.strip_prefix("m ").and_then(|s| s.split(' ').next()?.parse::<u128>().ok());
        if let Some(id) = id {
            self.0.lock().unwrap().push(id);
            let _ = cx.send_text(&format!("ack {id}"));
        }
    }
}

/// What the test shares with the client's handler.
#[derive(Default)]
struct Shared {
    /// Ids to send durably at the next wake.
    queue: Mutex<VecDeque<u128>>,
    /// The client, once dialled.
    client: Mutex<Option<ConnId>>,
    /// The outbox's unacknowledged count as of the last wake.
    unacked: AtomicUsize,
    /// Sends refused.
    refused: AtomicUsize,
    /// Bytes of padding after `m <id>`.
    pad: AtomicUsize,
    /// Durable sends of the handle refused on the worker.
    handle_refused: Mutex<Vec<(Option<u128>, ringwire::outbox::DurableError)>>,
}

struct AckClient(Arc<Shared>);

impl Handler for AckClient {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let text = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        if let Some(id) = text.strip_prefix("ack ").and_then(|s| s.parse::<u128>().ok()) {
            cx.ack_durable(id);
        }
    }
    fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
        let client = *self.0.client.lock().unwrap();
        if let Some(mut cx) = client.and_then(|id| w.conn(id)) {
            let ids: Vec<u128> = self.0.queue.lock().unwrap().drain(..).collect();
            let pad = "p".repeat(self.0.pad.load(Relaxed));
            for id in ids {
                if cx.send_durable_as(id, Message::text(format!("m {id} {pad}"))).is_err() {
                    self.0.refused.fetch_add(1, Relaxed);
                }
            }
        }
        self.0.unacked.store(w.outbox_unacked(), Relaxed);
    }
    fn on_durable_refused(
        &mut self,
        _: &mut Ctx<'_>,
        id: Option<u128>,
        error: &ringwire::outbox::DurableError,
    ) {
        self.0.handle_refused.lock().unwrap().push((id, error.clone()));
    }
}

fn server(addr: SocketAddr, backend: BackendChoice, seen: &Arc<Mutex<Vec<u128>>>) -> Guarded {
    let s = seen.clone();
    Engine::builder()
        .listen(addr)
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .shutdown_timeout(Duration::from_millis(200))
        .start(move |_| AckServer(s.clone()))
        .expect("the server starts")
        .guarded()
}

/// A client engine with its outbox in `dir`, one client to `addr` on stream 42.
fn client(
    addr: SocketAddr,
    backend: BackendChoice,
    dir: &std::path::Path,
) -> (Guarded, ClientHandle, Arc<Shared>) {
    let shared = Arc::new(Shared::default());
    let sh = shared.clone();
    let engine = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .outbox(Some(OutboxSettings::new(dir)))
        .start(move |_| AckClient(sh.clone()))
        .expect("the client engine starts")
        .guarded();
    let mut cfg = ClientConfig::default();
    cfg.ping_interval = None;
    cfg.connect_rate = None;
    cfg.outbox_stream = Some(42);
    cfg.retry.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        ..Backoff::default()
    };
    let h = engine.connect(&format!("ws://{addr}/"), cfg).expect("dial");
    assert!(wait_until(Duration::from_secs(5), || h.id().is_some()));
    *shared.client.lock().unwrap() = h.id();
    (engine, h, shared)
}

/// Queues `ids` for a durable send and rings the client's worker.
fn send(engine: &Guarded, shared: &Shared, ids: impl IntoIterator<Item = u128>) {
    shared.queue.lock().unwrap().extend(ids);
    engine.wake_all();
}

/// Waits until the client's outbox holds nothing unacknowledged.
fn drained(engine: &Guarded, shared: &Shared) -> bool {
    wait_until(Duration::from_secs(10), || {
        engine.wake_all();
        std::thread::sleep(Duration::from_millis(5));
        shared.queue.lock().unwrap().is_empty() && shared.unacked.load(Relaxed) == 0
    })
}

/// The ids in their first arrival's order.
fn first_arrivals(seen: &[u128]) -> Vec<u128> {
    let mut set = BTreeSet::new();
    seen.iter().copied().filter(|id| set.insert(*id)).collect()
}

/// A fresh outbox directory named `name`, a server, and a client connected to it.
struct Setup {
    dir: std::path::PathBuf,
    seen: Arc<Mutex<Vec<u128>>>,
    first: Guarded,
    addr: SocketAddr,
    engine: Guarded,
    h: ClientHandle,
    shared: Arc<Shared>,
}

fn setup(name: &str, backend: BackendChoice) -> Setup {
    let dir =
        std::env::temp_dir().join(format!("rw-outbox-{name}-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let first = server("127.0.0.1:0".parse().unwrap(), backend, &seen);
    let addr = first.local_addr();
    let (engine, h, shared) = client(addr, backend, &dir);
    assert!(wait_until(Duration::from_secs(5), || h.state() == ClientState::Connected));
    Setup { dir, seen, first, addr, engine, h, shared }
}

fn through_restarts(backend: BackendChoice) {
    let Setup { dir, seen, first, addr, engine, h, shared } = setup("client", backend);

    // Up: 1..=100 go out and are acknowledged.
    send(&engine, &shared, 1..=100);
    assert!(drained(&engine, &shared), "first 100 not all acknowledged");
    // 101..=200 while the server goes away: some are answered, some not.
    send(&engine, &shared, 101..=200);
    first.shutdown().unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.state() != ClientState::Connected));
    // 201..=300 while it is away: stored only.
    send(&engine, &shared, 201..=300);
    assert!(wait_until(Duration::from_secs(5), || shared.queue.lock().unwrap().is_empty()));
    let second = server(addr, backend, &seen);
    assert!(drained(&engine, &shared), "not all acknowledged after the server came back");
    second.shutdown().unwrap();

    // The client's own engine goes down with 301..=350 stored and never sent; a new
    // engine on the same outbox sends them once the server is back.
    assert!(wait_until(Duration::from_secs(5), || h.state() != ClientState::Connected));
    send(&engine, &shared, 301..=350);
    assert!(wait_until(Duration::from_secs(5), || {
        engine.wake_all();
        shared.unacked.load(Relaxed) == 50
    }));
    engine.shutdown().unwrap();
    let third = server(addr, backend, &seen);
    let (engine, h2, shared2) = client(addr, backend, &dir);
    assert!(wait_until(Duration::from_secs(5), || h2.state() == ClientState::Connected));
    assert!(drained(&engine, &shared2), "the new engine did not resend what was stored");
    let stats = engine.stats();
    assert!(stats.outbox_resent >= 50, "{stats:?}");
    assert_eq!(stats.outbox_dead_letters, 0);
    engine.shutdown().unwrap();
    third.shutdown().unwrap();

    let seen = seen.lock().unwrap();
    let firsts = first_arrivals(&seen);
    assert_eq!(firsts, (1..=350).collect::<Vec<u128>>(), "missing or out of order");
    assert_eq!(shared.refused.load(Relaxed) + shared2.refused.load(Relaxed), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// 6,000 messages of 1 KiB stored while the server is away: more than the connection's
/// send limit (4 MiB) at once, so the resend must follow the connection's drain.
fn large_backlog(backend: BackendChoice) {
    let Setup { dir, seen, first, addr, engine, h, shared } = setup("backlog", backend);
    first.shutdown().unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.state() != ClientState::Connected));
    shared.pad.store(1000, Relaxed);
    send(&engine, &shared, 1..=6000);
    assert!(wait_until(Duration::from_secs(5), || {
        engine.wake_all();
        shared.unacked.load(Relaxed) == 6000
    }));
    let second = server(addr, backend, &seen);
    assert!(drained(&engine, &shared), "the backlog was not all acknowledged");
    let stats = engine.stats();
    assert_eq!(stats.slow_closes, 0, "the resend overran the send limit: {stats:?}");
    assert_eq!(stats.messages_out, 6000, "each sent once, no connection lost: {stats:?}");
    engine.shutdown().unwrap();
    second.shutdown().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(first_arrivals(&seen), (1..=6000).collect::<Vec<u128>>());
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
    through_restarts => durable_sends_survive_server_and_client_restarts_io_uring,
                        durable_sends_survive_server_and_client_restarts_epoll;
    large_backlog => a_backlog_larger_than_the_send_limit_is_resent_as_it_drains_io_uring,
                     a_backlog_larger_than_the_send_limit_is_resent_as_it_drains_epoll;
    under_always => under_always_on_durable_reports_when_records_are_synced_io_uring,
                    under_always_on_durable_reports_when_records_are_synced_epoll;
}

#[test]
fn send_durable_is_refused_clearly_without_an_outbox_or_a_stream() {
    use ringwire::outbox::DurableError;
    type Tried = Arc<Mutex<Vec<Result<ringwire::outbox::Accepted, DurableError>>>>;
    struct Try(Tried, Arc<Mutex<Option<ConnId>>>);
    impl Handler for Try {
        fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
        fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
            let id = *self.1.lock().unwrap();
            if let Some(mut cx) = id.and_then(|id| w.conn(id)) {
                self.0.lock().unwrap().push(cx.send_durable_as(1, Message::text("x")));
            }
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let srv = server("127.0.0.1:0".parse().unwrap(), BackendChoice::Auto, &seen);
    let results = Arc::new(Mutex::new(Vec::new()));
    let conn = Arc::new(Mutex::new(None));
    let dir = std::env::temp_dir().join(format!("rw-outbox-nostream-{}", std::process::id()));
    for with_outbox in [false, true] {
        let (r, c) = (results.clone(), conn.clone());
        let mut b = Engine::builder().workers(1).pin_cpus(false);
        if with_outbox {
            b = b.outbox(Some(OutboxSettings::new(&dir)));
        }
        let engine = b.start(move |_| Try(r.clone(), c.clone())).unwrap().guarded();
        let h = engine
            .connect(&format!("ws://{}/", srv.local_addr()), ClientConfig::default())
            .unwrap();
        assert!(wait_until(Duration::from_secs(5), || h.id().is_some()));
        *conn.lock().unwrap() = h.id();
        engine.wake_all();
        assert!(wait_until(Duration::from_secs(5), || results.lock().unwrap().len()
            == usize::from(with_outbox) + 1));
        engine.shutdown().unwrap();
    }
    let r = results.lock().unwrap();
    assert_eq!(r[0], Err(DurableError::NoOutbox));
    assert_eq!(r[1], Err(DurableError::NoStream));
    srv.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // An outbox that cannot be opened stops the engine's start with the reason.
    let s = OutboxSettings::new("/proc/no-such-dir/outbox");
    let err =
        Engine::builder().outbox(Some(s)).start(|_| AckServer(Default::default())).unwrap_err();
    assert!(err.to_string().contains("outbox"), "{err}");
}

/// Counts what `Always` reports durable.
struct Durables(Arc<Mutex<Vec<u64>>>, Arc<Mutex<Option<ConnId>>>, Arc<Mutex<Vec<u64>>>);

impl Handler for Durables {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
        let id = *self.1.lock().unwrap();
        if let Some(mut cx) = id.and_then(|id| w.conn(id)) {
            for n in 0..50u128 {
                let a = cx.send_durable_as(1000 + n, Message::binary(vec![n as u8; 100])).unwrap();
                assert!(!a.durable, "not durable before a sync under Always");
                self.2.lock().unwrap().push(a.position);
            }
        }
    }
    fn on_durable(&mut self, _: &mut WorkerCtx<'_>, upto: u64) {
        self.0.lock().unwrap().push(upto);
    }
}

/// Threads of this process named `name` (a worker's sync thread is named after the
/// worker: `<thread_name>s<worker>`).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

fn under_always(backend: BackendChoice) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let srv = server("127.0.0.1:0".parse().unwrap(), backend, &seen);
    let dir =
        std::env::temp_dir().join(format!("rw-outbox-always-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut settings = OutboxSettings::new(&dir);
    settings.config.durability = ringwire::outbox::Durability::Always;
    let reports: Arc<Mutex<Vec<u64>>> = Arc::default();
    let conn: Arc<Mutex<Option<ConnId>>> = Arc::default();
    let positions: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (r, c, p) = (Arc::clone(&reports), Arc::clone(&conn), Arc::clone(&positions));
    let prefix = if backend == BackendChoice::IoUring { "alw-u" } else { "alw-e" };
    let engine = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .thread_name(prefix.to_string())
        .outbox(Some(settings))
        .start(move |_| Durables(r.clone(), c.clone(), p.clone()))
        .unwrap()
        .guarded();
    let mut cfg = ClientConfig::default();
    cfg.outbox_stream = Some(9);
    let h = engine.connect(&format!("ws://{}/", srv.local_addr()), cfg).unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.state() == ClientState::Connected));
    *conn.lock().unwrap() = h.id();
    engine.wake_all();
    let last = || positions.lock().unwrap().last().copied();
    assert!(wait_until(Duration::from_secs(5), || {
        let (done, last) = (reports.lock().unwrap().last().copied(), last());
        matches!((done, last), (Some(d), Some(l)) if d > l)
    }));
    let r = reports.lock().unwrap().clone();
    assert!(r.windows(2).all(|w| w[0] <= w[1]), "durable positions only grow: {r:?}");
    assert_eq!(positions.lock().unwrap().len(), 50);
    // Under io_uring the syncs are operations on the worker's ring: no sync thread;
    // under epoll they run on one.
    let uring = backend == BackendChoice::IoUring;
    assert_eq!(engine.backend().name, if uring { "io_uring" } else { "epoll" });
    assert_eq!(threads_named(&format!("{prefix}s0")), usize::from(!uring));
    engine.shutdown().unwrap();
    srv.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Durable sends from another thread through the client's handle: while connected and
/// while the server is away, all delivered in order; without an outbox, refused on the
/// worker and reported to the handler.
#[test]
fn a_client_handle_sends_durably_from_another_thread() {
    let backend = BackendChoice::Auto;
    let Setup { dir, seen, first, addr, engine, h, shared } = setup("handle", backend);
    for id in 1..=50u128 {
        h.send_durable_as(id, Message::text(format!("m {id}"))).unwrap();
    }
    assert!(drained(&engine, &shared));
    first.shutdown().unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.state() != ClientState::Connected));
    for id in 51..=100u128 {
        h.send_durable_as(id, Message::text(format!("m {id}"))).unwrap();
    }
    let second = server(addr, backend, &seen);
    assert!(drained(&engine, &shared));
    assert_eq!(first_arrivals(&seen.lock().unwrap()), (1..=100).collect::<Vec<u128>>());
    assert!(shared.handle_refused.lock().unwrap().is_empty());
    // An id the outbox still holds, sent again, is refused on the worker, reported to
    // the handler and counted; the first one is delivered.
    second.shutdown().unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.state() != ClientState::Connected));
    h.send_durable_as(200, Message::text("m 200")).unwrap();
    h.send_durable_as(200, Message::text("m 200 again")).unwrap();
    assert!(wait_until(Duration::from_secs(5), || !shared
        .handle_refused
        .lock()
        .unwrap()
        .is_empty()));
    let refused = shared.handle_refused.lock().unwrap().clone();
    assert_eq!(
        refused,
        [(
            Some(200),
            ringwire::outbox::DurableError::Outbox(ringwire::outbox::OutboxError::DuplicateId(200))
        )]
    );
    assert_eq!(engine.stats().outbox_refused, 1);
    let second = server(addr, backend, &seen);
    assert!(drained(&engine, &shared));
    assert_eq!(seen.lock().unwrap().iter().filter(|&&id| id == 200).count(), 1);
    h.close(ringwire::frame::CloseCode::NORMAL, "").unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.state() == ClientState::Closed));
    assert_eq!(h.send_durable_as(102, Message::text("late")), Err(ringwire::SendError::Closed));
    engine.shutdown().unwrap();
    second.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
