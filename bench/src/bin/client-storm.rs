//! The reconnect storm: N clients of ringwire's client side connected to a ringwire
//! server; the server goes away for a while and comes back on the same port. Prints how
//! long until 50/95/99/100% of the clients were connected again (from the server's
//! return), the most connections the server accepted in any one second, and the share
//! of clients that came back.
//!
//! ```text
//! client-storm [--clients N] [--down SECS] [--rate PER_S] [--burst B] [--workers W]
//!              [--server-workers W]
//! ```
//!
//! Both sides live in this process (the server is an engine of its own, stopped and
//! started again); pin it with `taskset` as the other benchmarks pin theirs. `--rate`
//! and `--burst` set the clients' per-target connect cap (`ClientConfig::connect_rate`,
//! default 1,000/s with bursts of 100); the backoff is the default (1 s x 2, full
//! jitter, capped at 30 s).

use ringwire_bench::arg;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringwire::client::{ClientConfig, ClientState, ConnectRate, StateChange};
use ringwire::frame::Message;
use ringwire::{Ctx, Echo, Engine, Handler, Server};

/// Records when each client (re)connected.
struct Times(Arc<Mutex<Vec<Instant>>>, Arc<AtomicU64>);

impl Handler for Times {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    fn on_state(&mut self, _: &mut Ctx<'_>, c: &StateChange) {
        match c.to {
            // The instant is read here, on the worker, when it happened.
            ClientState::Connected => self.0.lock().unwrap().push(Instant::now()),
            ClientState::Reconnecting => {
                self.1.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }
}

fn server(addr: SocketAddr, workers: usize) -> Server {
    Engine::builder()
        .listen(addr)
        .workers(workers)
        .pin_cpus(false)
        .shutdown_timeout(Duration::from_millis(200))
        .start(|_| Echo)
        .expect("server starts")
}

/// Samples `accepted` every 50 ms until `stop`; the most accepts in any 1 s window.
fn peak_rate(s: &Server, until: impl Fn() -> bool) -> u64 {
    let mut samples = std::collections::VecDeque::new();
    let mut peak = 0;
    while !until() {
        let now = Instant::now();
        let n = s.stats().accepted;
        samples.push_back((now, n));
        while samples.front().is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1))
        {
            samples.pop_front();
        }
        if let Some((_, first)) = samples.front() {
            peak = peak.max(n - first);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    peak
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = arg(&args, &["--clients"], 10_000);
    let down: f64 = arg(&args, &["--down"], 2.0);
    let rate: u32 = arg(&args, &["--rate"], ConnectRate::default().per_second);
    let burst: u32 = arg(&args, &["--burst"], ConnectRate::default().burst);
    let workers: usize = arg(&args, &["--workers"], 1);
    let server_workers: usize = arg(&args, &["--server-workers"], 1);

    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let first = server(addr, server_workers);
    let addr = first.local_addr();
    let times = Arc::new(Mutex::new(Vec::with_capacity(2 * n)));
    let lost = Arc::new(AtomicU64::new(0));
    let (t, l) = (times.clone(), lost.clone());
    let engine = Engine::builder()
        .workers(workers)
        .pin_cpus(false)
        .start(move |_| Times(t.clone(), l.clone()))
        .expect("client engine starts");
    let mut cfg = ClientConfig::default();
    cfg.connect_rate = Some(ConnectRate { per_second: rate, burst });
    cfg.ping_interval = None;
    let clients = engine.connect_many(&format!("ws://{addr}/"), n, cfg).expect("dial");
    let connected = || clients.iter().filter(|c| c.state() == ClientState::Connected).count();
    let end = Instant::now() + Duration::from_secs(300);
    while connected() < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(connected(), n, "every client connected at first");
    times.lock().unwrap().clear();

    let t_down = Instant::now();
    first.shutdown().expect("server stops");
    std::thread::sleep(Duration::from_secs_f64(down));
    let second = server(addr, server_workers);
    let t_up = Instant::now();
    let deadline = t_up + Duration::from_secs(300);
    let peak = peak_rate(&second, || connected() >= n || Instant::now() > deadline);
    let mut back: Vec<Duration> =
        times.lock().unwrap().iter().map(|t| t.saturating_duration_since(t_up)).collect();
    back.sort();
    let q = |p: f64| back.get(((p * n as f64).ceil() as usize).max(1) - 1).copied();
    let show = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "clients {n}, server down {:.2} s, connect cap {rate}/s burst {burst}: \
         reconnected {}/{n} ({:.2}%), after the server's return p50 {} p95 {} p99 {} all {}; \
         server's peak accepts in 1 s: {peak}; losses seen: {}",
        t_up.duration_since(t_down).as_secs_f64(),
        back.len().min(n),
        100.0 * back.len().min(n) as f64 / n as f64,
        show(q(0.50)),
        show(q(0.95)),
        show(q(0.99)),
        show(q(1.0)),
        lost.load(Relaxed),
    );
    for c in &clients {
        let _ = c.close(ringwire::frame::CloseCode::NORMAL, "");
    }
    let _ = engine.shutdown();
    let _ = second.shutdown();
}
