//! Durable sends from a server to the clients it accepted (a gateway's side,
//! `Server::send_durable`, `WorkerCtx::send_durable_to`), on both backends: a server of
//! four workers sends to four streams while their clients connect, go away and come back
//! (on whichever worker), and while the server itself restarts; each client's
//! application sees each of its messages once, in order, and the server's outbox ends
//! empty.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, GuardExt, Guarded};
use ringwire::client::{ClientHandle, ClientState};
use ringwire::frame::Message;
use ringwire::outbox::{Delivery, OutboxSettings, ReceiptSettings};
use ringwire::{BackendChoice, Ctx, Engine, Handler, WorkerCtx};

const STREAMS: [u64; 4] = [11, 12, 13, 14];

/// The gateway: sends what the test asks at each wake, and counts acknowledgements.
#[derive(Default)]
struct Gate {
    acked: Mutex<usize>,
    unacked: Mutex<Vec<usize>>,
}

struct Gateway(Arc<Gate>);

impl Handler for Gateway {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
        let i = w.worker();
        let mut u = self.0.unacked.lock().unwrap();
        if u.len() <= i {
            u.resize(i + 1, 0);
        }
        u[i] = w.outbox_unacked();
    }
    fn on_stream_acked(&mut self, _: &mut WorkerCtx<'_>, _: u64, _: u128, count: usize) {
        *self.0.acked.lock().unwrap() += count;
    }
}

fn gateway(addr: &str, backend: BackendChoice, dir: &std::path::Path, gate: &Arc<Gate>) -> Guarded {
    gateway_with(addr, backend, dir, gate, 65_536)
}

fn gateway_with(
    addr: &str,
    backend: BackendChoice,
    dir: &std::path::Path,
    gate: &Arc<Gate>,
    command_queue: usize,
) -> Guarded {
    let g = gate.clone();
    Engine::builder()
        .listen(addr.parse().unwrap())
        .command_queue(command_queue)
        .workers(4)
        .pin_cpus(false)
        .backend(backend)
        .shutdown_timeout(Duration::from_millis(200))
        .outbox(Some(OutboxSettings::new(dir.join("outbox"))))
        .receipts(Some(ReceiptSettings::new(dir.join("receipts"))))
        .start(move |_| Gateway(g.clone()))
        .expect("the gateway starts")
        .guarded()
}

/// What a client's application saw: (stream, delivery, text).
type Seen = Arc<Mutex<Vec<(u64, Option<Delivery>, String)>>>;

struct Receiver(Seen, u64);

impl Handler for Receiver {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let text = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        self.0.lock().unwrap().push((self.1, cx.delivery(), text));
    }
}

/// One client engine per stream (its own filter table), all connected to `addr`.
fn clients(
    addr: std::net::SocketAddr,
    backend: BackendChoice,
    dir: &std::path::Path,
    seen: &Seen,
) -> Vec<(Guarded, ClientHandle)> {
    STREAMS
        .iter()
        .map(|&stream| {
            let s = seen.clone();
            let engine = Engine::builder()
                .workers(1)
                .pin_cpus(false)
                .backend(backend)
                .receipts(Some(ReceiptSettings::new(dir.join(format!("client-{stream}")))))
                .start(move |_| Receiver(s.clone(), stream))
                .expect("a client engine starts")
                .guarded();
            let cfg = common::durable_client_config(stream);
            let h = engine.connect(&format!("ws://{addr}/"), cfg).expect("dial");
            (engine, h)
        })
        .collect()
}

fn send(gw: &Guarded, range: std::ops::RangeInclusive<u32>) {
    for n in range {
        for &s in &STREAMS {
            gw.send_durable(s, Message::text(format!("{s}:{n}"))).expect("queued");
        }
    }
}

/// Every stream's messages 1..=n arrived, each once and in order, with deliveries.
fn complete(seen: &Seen, n: u32) -> bool {
    let seen = seen.lock().unwrap();
    STREAMS.iter().all(|&s| {
        let texts: Vec<&str> =
            seen.iter().filter(|e| e.0 == s && e.1.is_some()).map(|e| e.2.as_str()).collect();
        texts.len() == n as usize
    })
}

fn check(seen: &Seen, n: u32) {
    let seen = seen.lock().unwrap();
    for &s in &STREAMS {
        let mine: Vec<&(u64, Option<Delivery>, String)> =
            seen.iter().filter(|e| e.0 == s).collect();
        let texts: Vec<String> = mine.iter().map(|e| e.2.clone()).collect();
        let want: Vec<String> = (1..=n).map(|i| format!("{s}:{i}")).collect();
        assert_eq!(texts, want, "stream {s}: each once, in order");
        let ids: Vec<u128> = mine.iter().map(|e| e.1.expect("a delivery").id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "stream {s}: ids grow");
        assert!(mine.iter().all(|e| e.1.unwrap().stream == s));
    }
}

fn through_comings_and_goings(backend: BackendChoice) {
    let dir = std::env::temp_dir().join(format!("rw-streams-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gate = Arc::new(Gate::default());
    let gw = gateway("127.0.0.1:0", backend, &dir, &gate);
    let addr = gw.local_addr();
    // Stored before any client is there.
    send(&gw, 1..=50);
    let seen: Seen = Arc::default();
    let cs = clients(addr, backend, &dir, &seen);
    assert!(wait_until(Duration::from_secs(10), || complete(&seen, 50)), "first 50");
    send(&gw, 51..=100);
    assert!(wait_until(Duration::from_secs(10), || complete(&seen, 100)), "next 50");
    // The clients' engines go (their filters' tables stay on disk); 101..=150 wait.
    for (e, _) in cs {
        e.shutdown().unwrap();
    }
    send(&gw, 101..=150);
    let cs = clients(addr, backend, &dir, &seen);
    assert!(
        wait_until(Duration::from_secs(10), || complete(&seen, 150)),
        "after the clients came back"
    );
    // The gateway restarts on its directories with 151..=200 stored and not sent.
    for (_, h) in &cs {
        assert!(wait_until(Duration::from_secs(5), || h.state() == ClientState::Connected));
    }
    gw.shutdown().unwrap();
    let gw = gateway(&addr.to_string(), backend, &dir, &gate);
    send(&gw, 151..=200);
    assert!(
        wait_until(Duration::from_secs(10), || complete(&seen, 200)),
        "after the gateway restarted"
    );
    check(&seen, 200);
    assert!(
        wait_until(Duration::from_secs(5), || {
            gw.wake_all();
            std::thread::sleep(Duration::from_millis(5));
            let u = gate.unacked.lock().unwrap();
            u.len() == 4 && u.iter().all(|&n| n == 0)
        }),
        "the gateway's outbox ends empty"
    );
    assert_eq!(*gate.acked.lock().unwrap(), 200 * STREAMS.len());
    for (e, _) in cs {
        e.shutdown().unwrap();
    }
    gw.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Forwarding through full command queues: with 8 commands per worker's queue, a
/// stream's home worker finds the queue of its client's worker full again and again
/// and goes on later (as soon as there is room, not at its next heartbeat); every
/// message still arrives once, in order.
fn through_full_command_queues(backend: BackendChoice) {
    let dir = std::env::temp_dir().join(format!("rw-streams-q-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gate = Arc::new(Gate::default());
    let gw = gateway_with("127.0.0.1:0", backend, &dir, &gate, 8);
    let addr = gw.local_addr();
    let seen: Seen = Arc::default();
    let cs = clients(addr, backend, &dir, &seen);
    for (_, h) in &cs {
        assert!(wait_until(Duration::from_secs(5), || h.state() == ClientState::Connected));
    }
    const N: u32 = 400;
    for n in 1..=N {
        for &s in &STREAMS {
            // The test's own sends meet the same small queues: again until there is room.
            let msg = Message::text(format!("{s}:{n}"));
            assert!(
                wait_until(Duration::from_secs(5), || gw.send_durable(s, msg.clone()).is_ok()),
                "queued"
            );
        }
    }
    assert!(wait_until(Duration::from_secs(20), || complete(&seen, N)), "all delivered");
    check(&seen, N);
    for (e, _) in cs {
        e.shutdown().unwrap();
    }
    gw.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
    through_full_command_queues => durable_forwarding_goes_on_through_full_command_queues_io_uring,
                                   durable_forwarding_goes_on_through_full_command_queues_epoll;
    through_comings_and_goings => a_gateway_delivers_durably_through_clients_and_itself_restarting_io_uring,
                                  a_gateway_delivers_durably_through_clients_and_itself_restarting_epoll;
}

/// A raw client that offers the stream with `recv`, reads the tagged messages, never
/// acknowledges and goes away: after `max_attempts` connections (3 here) the gateway
/// gives the messages up as dead letters, which the application can read.
#[test]
fn messages_a_client_never_acknowledges_become_dead_letters() {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let dir = std::env::temp_dir().join(format!("rw-streams-dead-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dead = Arc::new(AtomicUsize::new(0));
    struct Dead(Arc<AtomicUsize>);
    impl Handler for Dead {
        fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
        fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
            self.0.store(w.dead_letters().len(), Relaxed);
        }
    }
    let mut ob = OutboxSettings::new(dir.join("outbox"));
    ob.config.max_attempts = 3;
    let d = dead.clone();
    let gw = Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .pin_cpus(false)
        .outbox(Some(ob))
        .receipts(Some(ReceiptSettings::new(dir.join("receipts"))))
        .start(move |_| Dead(d.clone()))
        .expect("the gateway starts")
        .guarded();
    for n in 0..5 {
        gw.send_durable(21, Message::text(format!("m{n}"))).unwrap();
    }
    let tags = |s: &mut common::RawClient| {
        // Five tagged messages: a Pong (the tag) before each text.
        let mut texts = Vec::new();
        while texts.len() < 5 {
            let f = s.read_frame().expect("a frame");
            if f.opcode == 0x1 {
                texts.push(String::from_utf8(f.payload).unwrap());
            }
        }
        texts
    };
    for attempt in 1..=3 {
        let mut s = common::connect(gw.local_addr());
        let req = common::upgrade_request("/").replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: x-ringwire-ack; stream=21; recv\r\n\r\n",
        );
        s.write_all(req.as_bytes()).unwrap();
        let head = common::expect_upgraded(&mut s);
        assert!(head.contains("x-ringwire-ack"), "{head}");
        let mut c = common::RawClient { s };
        if attempt < 3 {
            assert_eq!(tags(&mut c), ["m0", "m1", "m2", "m3", "m4"], "attempt {attempt}");
        }
        c.close_handshake(1000);
    }
    assert!(wait_until(Duration::from_secs(5), || {
        gw.wake_all();
        std::thread::sleep(Duration::from_millis(5));
        dead.load(Relaxed) == 5
    }));
    assert_eq!(gw.stats().outbox_dead_letters, 5);
    gw.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
