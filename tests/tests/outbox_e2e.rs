//! Durable delivery end to end through SIGKILL of both sides: a client process sends
//! messages `1..=N` durably (`Ctx::send_durable`, the outbox under `Durability::Os`) to
//! a server process with a duplicate filter (`EngineConfig::receipts`) whose
//! application appends each durable message it is handed to a file. The test kills the
//! server twice and the client once, at points spread over the run, restarting each on
//! the same directories. At the end the server application must have recorded every
//! message exactly once, in order.
//!
//! What each side's application does is what a real one must: the client resumes after
//! its last accepted message (read from a progress file written after each accepted send
//! and from the outbox's unacknowledged messages); the server, for a message flagged
//! `redelivered` (it was being handled when the previous process died), checks its own
//! record before acting on it again.
//!
//! `RINGWIRE_E2E_MESSAGES` sets N (default 100,000).

mod common;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwire::client::{ClientState, StateChange};
use ringwire::frame::Message;
use ringwire::outbox::{DurableError, Outbox, OutboxConfig, OutboxSettings, ReceiptSettings};
use ringwire::{Ctx, Engine, Handler, WorkerCtx};

const ROLE_ENV: &str = "RINGWIRE_E2E_ROLE";
/// Messages the client keeps unacknowledged at most.
const WINDOW: u64 = 2_000;
const STREAM: u64 = 42;

// ---- the server process ----------------------------------------------------------------

/// Appends `id n` for each durable message, once.
struct Recorder {
    file: File,
    /// The last id recorded (from the file at start).
    last: u128,
}

impl Handler for Recorder {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let Some(d) = cx.delivery() else { return };
        if d.redelivered && d.id <= self.last {
            return; // handled before the crash: the record says so
        }
        let line = format!("{} {}\n", d.id, String::from_utf8_lossy(msg.as_bytes()));
        // One write(2): a SIGKILL lands before or after it, not inside.
        self.file.write_all(line.as_bytes()).expect("record");
        self.last = d.id;
    }
}

fn records(path: &Path) -> Vec<(u128, u64)> {
    let Ok(f) = File::open(path) else { return Vec::new() };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            let (id, n) = l.split_once(' ')?;
            Some((id.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

fn server_process(dir: &Path, port: u16) {
    let log = dir.join("received.log");
    let last = records(&log).last().map_or(0, |r| r.0);
    let file = OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let slot = std::sync::Mutex::new(Some(Recorder { file, last }));
    let _engine = Engine::builder()
        .listen(([127, 0, 0, 1], port).into())
        .workers(1)
        .pin_cpus(false)
        .receipts(Some(ReceiptSettings::new(dir.join("receipts"))))
        .start(move |_| slot.lock().unwrap().take().expect("one worker"))
        .expect("the server starts");
    println!("ready");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1)); // until killed
    }
}

// ---- the client process ----------------------------------------------------------------

/// A sender's progress: the next number, what is acknowledged, the numbers of the
/// ids sent and not acknowledged, and the progress file (the last number accepted).
struct Sent {
    next: u64,
    total: u64,
    /// Every message up to this one is acknowledged.
    acked: u64,
    numbers: HashMap<u128, u64>,
    progress: File,
    done: Arc<AtomicBool>,
}

impl Sent {
    /// Where a sender (re)starts: after the last number accepted, from the progress
    /// file written after each accepted send and from the outbox's unacknowledged
    /// messages (a crash between the append and the progress write leaves the number in
    /// the outbox, which the engine resends).
    fn resume(outbox: &Path, progress: &Path, total: u64) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(progress)
            .unwrap();
        let mut b = [0u8; 8];
        let accepted = match file.read_at(&mut b, 0) {
            Ok(8) => u64::from_le_bytes(b),
            _ => 0,
        };
        let mut numbers = HashMap::new();
        let ob = Outbox::open(outbox.join("w0"), OutboxConfig::default()).expect("recovery");
        for m in ob.all_unacked() {
            let n: u64 = String::from_utf8_lossy(&m.payload).parse().expect("a number");
            numbers.insert(m.id, n);
        }
        assert!(ob.dead_letters().is_empty(), "a message was given up");
        let last = accepted.max(numbers.values().copied().max().unwrap_or(0));
        let acked = numbers.values().copied().min().map_or(last, |m| m - 1);
        let done = Arc::new(AtomicBool::new(acked >= total));
        Self { next: last + 1, total, acked, numbers, progress: file, done }
    }

    /// Whether the next number may go (within the window, not past the end).
    fn more(&self) -> bool {
        self.next <= self.total && self.next <= self.acked + WINDOW
    }

    /// The next number was accepted as `id`.
    fn accepted(&mut self, id: u128) {
        self.numbers.insert(id, self.next);
        self.progress.write_all_at(&self.next.to_le_bytes(), 0).expect("progress");
        self.next += 1;
    }

    /// Everything up to `upto` is acknowledged.
    fn acked(&mut self, upto: u128) {
        if let Some(n) = self.numbers.get(&upto).copied() {
            self.acked = self.acked.max(n);
            self.numbers.retain(|_, m| *m > n);
        }
        if self.acked >= self.total {
            self.done.store(true, Relaxed);
        }
    }
}

struct Pump(Sent);

impl Pump {
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        while self.0.more() {
            match cx.send_durable(Message::text(self.0.next.to_string())) {
                Ok(a) => self.0.accepted(a.id),
                Err(DurableError::Backpressure) => break,
                Err(e) => panic!("send_durable: {e}"),
            }
        }
    }
}

impl Handler for Pump {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    fn on_state(&mut self, cx: &mut Ctx<'_>, change: &StateChange) {
        if change.to == ClientState::Connected {
            self.pump(cx);
        }
    }
    fn on_writable(&mut self, cx: &mut Ctx<'_>) {
        self.pump(cx);
    }
    fn on_acked(&mut self, cx: &mut Ctx<'_>, upto: u128, _: usize) {
        self.0.acked(upto);
        self.pump(cx);
    }
}

fn client_process(dir: &Path, port: u16, total: u64) {
    let outbox = dir.join("outbox");
    let sent = Sent::resume(&outbox, &dir.join("progress"), total);
    let done = sent.done.clone();
    let pump = Pump(sent);
    let slot = std::sync::Mutex::new(Some(pump));
    let engine = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .outbox(Some(OutboxSettings::new(&outbox)))
        .start(move |_| slot.lock().unwrap().take().expect("one worker"))
        .expect("the client starts");
    let cfg = common::durable_client_config(STREAM);
    engine.connect(&format!("ws://127.0.0.1:{port}/"), cfg).expect("dial");
    println!("ready");
    std::io::stdout().flush().unwrap();
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("done");
    std::io::stdout().flush().unwrap();
    engine.shutdown().unwrap();
}

// ---- the gateway's processes ----------------------------------------------------------

/// The gateway's sender: keeps at most `WINDOW` messages unacknowledged.
struct GatewayPump(Sent);

impl GatewayPump {
    fn pump(&mut self, w: &mut WorkerCtx<'_>) {
        while self.0.more() {
            match w.send_durable_to(STREAM, Message::text(self.0.next.to_string())) {
                Ok(Some(a)) => self.0.accepted(a.id),
                Ok(None) => panic!("one worker: it is the stream's home"),
                Err(e) => panic!("send_durable_to: {e}"),
            }
        }
    }
}

impl Handler for GatewayPump {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
        self.pump(w);
    }
    fn on_stream_acked(&mut self, w: &mut WorkerCtx<'_>, _: u64, upto: u128, _: usize) {
        self.0.acked(upto);
        self.pump(w);
    }
}

fn gateway_process(dir: &Path, port: u16, total: u64) {
    let outbox = dir.join("outbox");
    let sent = Sent::resume(&outbox, &dir.join("progress"), total);
    let done = sent.done.clone();
    let pump = GatewayPump(sent);
    let slot = std::sync::Mutex::new(Some(pump));
    let engine = Engine::builder()
        .listen(([127, 0, 0, 1], port).into())
        .workers(1)
        .pin_cpus(false)
        .outbox(Some(OutboxSettings::new(&outbox)))
        .receipts(Some(ReceiptSettings::new(dir.join("receipts"))))
        .start(move |_| slot.lock().unwrap().take().expect("one worker"))
        .expect("the gateway starts");
    println!("ready");
    std::io::stdout().flush().unwrap();
    engine.wake_all();
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("done");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1)); // until killed
    }
}

/// The gateway's client: records what it is handed, once (as the server does above).
fn receiver_client_process(dir: &Path, port: u16) {
    let log = dir.join("received.log");
    let last = records(&log).last().map_or(0, |r| r.0);
    let file = OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let slot = std::sync::Mutex::new(Some(Recorder { file, last }));
    let engine = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .receipts(Some(ReceiptSettings::new(dir.join("client-receipts"))))
        .start(move |_| slot.lock().unwrap().take().expect("one worker"))
        .expect("the client starts");
    let cfg = common::durable_client_config(STREAM);
    engine.connect(&format!("ws://127.0.0.1:{port}/"), cfg).expect("dial");
    println!("ready");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1)); // until killed
    }
}

// ---- the test --------------------------------------------------------------------------

/// A child process, killed when dropped (a failed assertion leaves none behind).
struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(test: &str, role: &str, dir: &Path, port: u16, total: u64) -> Proc {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env(ROLE_ENV, format!("{role},{},{port},{total}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().unwrap();
    let child = Proc(Some(child));
    let mut out = BufReader::new(stdout);
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "{role} ended before it was ready");
    }
    // The rest of its output ("done") is read through a thread.
    let flag = dir.join(format!("{role}.done"));
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if l.trim() == "done" {
                let _ = File::create(&flag);
            }
        }
    });
    child
}

fn kill(child: Proc) {
    drop(child); // SIGKILL, and waited for
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs a child's role if this process is one.
fn child_role() -> bool {
    let Ok(args) = std::env::var(ROLE_ENV) else { return false };
    let p: Vec<&str> = args.split(',').collect();
    let (dir, port, total) = (PathBuf::from(p[1]), p[2].parse().unwrap(), p[3].parse().unwrap());
    match p[0] {
        "server" => server_process(&dir, port),
        "client" => client_process(&dir, port, total),
        "gwserver" => gateway_process(&dir, port, total),
        _ => receiver_client_process(&dir, port),
    }
    true
}

/// The parent's part: the two processes on `dir`, the server killed at 20% and 75% of
/// the run and the client at 50% (each restarted), until the sender says it is done;
/// then the receiver's record must hold 1..=N once each, in order.
fn run(test: &str, server_role: &str, client_role: &str, sender: &str) {
    let total: u64 =
        std::env::var("RINGWIRE_E2E_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir =
        std::env::temp_dir().join(format!("rw-outbox-e2e-{}-{server_role}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let log = dir.join("received.log");
    let received = || records(&log).len() as u64;
    let deadline = Instant::now() + Duration::from_secs(240);
    let wait_for = |n: u64| {
        while received() < n {
            assert!(Instant::now() < deadline, "stuck at {} of {total}", received());
            std::thread::sleep(Duration::from_millis(2));
        }
    };

    let mut server = spawn(test, server_role, &dir, port, total);
    let mut client = spawn(test, client_role, &dir, port, total);
    for (at, who) in [(20, "server"), (50, "client"), (75, "server")] {
        wait_for(total * at / 100);
        if who == "server" {
            kill(server);
            std::thread::sleep(Duration::from_millis(150));
            server = spawn(test, server_role, &dir, port, total);
        } else {
            kill(client);
            client = spawn(test, client_role, &dir, port, total);
        }
    }
    let flag = dir.join(format!("{sender}.done"));
    while !flag.exists() {
        assert!(Instant::now() < deadline, "the sender did not finish: {} received", received());
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(client);
    kill(server);

    let recs = records(&log);
    let numbers: Vec<u64> = recs.iter().map(|r| r.1).collect();
    let expected: Vec<u64> = (1..=total).collect();
    if numbers != expected {
        let dup = numbers.windows(2).position(|w| w[1] != w[0] + 1);
        panic!(
            "{} records for {total} messages; first break in the sequence after record {:?}: {:?}",
            numbers.len(),
            dup,
            dup.map(|i| &numbers[i.saturating_sub(2)..(i + 3).min(numbers.len())])
        );
    }
    assert!(recs.windows(2).all(|w| w[0].0 < w[1].0), "ids grow along the stream");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_message_arrives_once_in_order_through_kills_of_both_sides() {
    if !child_role() {
        let test = "every_message_arrives_once_in_order_through_kills_of_both_sides";
        run(test, "server", "client", "client");
    }
}

/// The other way: a gateway (the server process) sends durably to its client's stream
/// (`WorkerCtx::send_durable_to`), the client's application records.
#[test]
fn every_message_of_a_gateway_arrives_once_in_order_through_kills_of_both_sides() {
    if !child_role() {
        let test = "every_message_of_a_gateway_arrives_once_in_order_through_kills_of_both_sides";
        run(test, "gwserver", "gwclient", "gwserver");
    }
}
