//! Messages per second from a client engine to a server engine on loopback, plain or
//! durable: each engine one worker, pinned (the server on CPU 0, the client on CPU 1
//! by default), in one process.
//!
//! ```text
//! durable-throughput [--mode plain|wire] [--messages N] [--size S] [--window W]
//!                    [--durability os|batch|always] [--server-cpu C] [--client-cpu C]
//! ```
//!
//! - `plain`: `Ctx::send`, as fast as the send queue takes them; done when the server's
//!   application has them all.
//! - `wire`: `Ctx::send_durable` through the client's outbox (in the system's temporary
//!   directory) to a server with a duplicate filter that acknowledges on the wire; at most
//!   `W` unacknowledged; done when the last is acknowledged.
//!
//! Prints messages per second and the process's CPU time per message (both workers,
//! plus the sync thread under epoll: all the work the two ends do).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringwire::client::{ClientConfig, ClientState, StateChange};
use ringwire::frame::Message;
use ringwire::outbox::{Durability, DurableError, OutboxSettings, ReceiptSettings};
use ringwire::{Backpressure, Ctx, Engine, Handler};
use ringwire_bench::arg;

struct Count(Arc<AtomicU64>);

impl Handler for Count {
    fn on_message(&mut self, cx: &mut Ctx<'_>, _: Message) {
        let _ = cx.delivery();
        self.0.fetch_add(1, Relaxed);
    }
}

struct Pump {
    durable: bool,
    payload: Message,
    sent: u64,
    total: u64,
    window: u64,
    acked: u64,
    done: Arc<AtomicBool>,
}

impl Pump {
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        while self.sent < self.total {
            if self.durable {
                if self.sent >= self.acked + self.window {
                    break;
                }
                match cx.send_durable(self.payload.clone()) {
                    Ok(_) => {}
                    Err(DurableError::Backpressure) => break,
                    Err(e) => panic!("send_durable: {e}"),
                }
            } else if cx.send(self.payload.clone()).is_err() {
                break; // over the send limit (DropNewest): on_writable resumes
            }
            self.sent += 1;
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
    fn on_acked(&mut self, cx: &mut Ctx<'_>, _: u128, count: usize) {
        self.acked += count as u64;
        if self.acked >= self.total {
            self.done.store(true, Relaxed);
        }
        self.pump(cx);
    }
}

/// CPU time of the whole process so far (user + system), from /proc/self/stat (in
/// clock ticks of 1/100 s on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are the line's fields 14 and 15: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode: String = arg(&args, &["--mode"], "wire".to_string());
    let total: u64 = arg(&args, &["--messages"], 1_000_000);
    let size: usize = arg(&args, &["--size"], 64);
    let window: u64 = arg(&args, &["--window"], 10_000);
    let durability: String = arg(&args, &["--durability"], "os".to_string());
    let server_cpu: usize = arg(&args, &["--server-cpu"], 0);
    let client_cpu: usize = arg(&args, &["--client-cpu"], 1);
    let durable = match mode.as_str() {
        "plain" => false,
        "wire" => true,
        m => panic!("--mode plain|wire, not {m}"),
    };
    let dir = std::env::temp_dir().join(format!("rw-durable-tp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let server = Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .cpus(Some(vec![server_cpu]))
        .receipts(Some(ReceiptSettings::new(dir.join("receipts"))))
        .start(move |_| Count(r.clone()))
        .expect("server");
    let addr = server.local_addrs()[0];

    let mut outbox = OutboxSettings::new(dir.join("outbox"));
    outbox.config.durability = match durability.as_str() {
        "os" => Durability::Os,
        "always" => Durability::Always,
        _ => Durability::Batch { records: 64, interval: Duration::from_millis(2) },
    };
    let done = Arc::new(AtomicBool::new(false));
    let payload = Message::binary(vec![0x5au8; size]);
    let pump = Pump { durable, payload, sent: 0, total, window, acked: 0, done: done.clone() };
    let slot = Mutex::new(Some(pump));
    let client = Engine::builder()
        .workers(1)
        .cpus(Some(vec![client_cpu]))
        .backpressure(Backpressure::DropNewest)
        .outbox(Some(outbox))
        .start(move |_| slot.lock().unwrap().take().expect("one worker"))
        .expect("client");
    let mut cfg = ClientConfig::default();
    cfg.outbox_stream = Some(1);
    cfg.connect_rate = None;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    client.connect(&format!("ws://{addr}/"), cfg).expect("dial");
    loop {
        let finished = if durable { done.load(Relaxed) } else { received.load(Relaxed) >= total };
        if finished {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "stuck at {}", received.load(Relaxed));
        std::thread::sleep(Duration::from_micros(200));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let (cs, ss) = (client.stats(), server.stats());
    println!(
        "mode={mode} durability={durability} messages={total} size={size} window={window}: \
         {:.0} msg/s, {:.2} s, CPU {:.0} ns/msg (both ends), server delivered {} \
         duplicates {}, client acked {}",
        total as f64 / secs,
        secs,
        cpu * 1e9 / total as f64,
        received.load(Relaxed),
        ss.receipts_duplicates,
        cs.outbox_acked,
    );
    client.shutdown().unwrap();
    server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
