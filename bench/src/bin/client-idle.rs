//! Memory per idle client connection on ringwire's client side: N clients (with their
//! default heartbeats) dialled from one engine to a server given by URL, the process's
//! RSS measured before and after, and after a hold (heartbeats included).
//!
//! ```text
//! client-idle URL [--clients N] [--baseline B] [--hold SECS] [--workers W] [--sources S]
//!                 [--ping-secs P] [--batch B] [--baseline-batch B] [--insecure]
//! ```
//!
//! `--baseline B` clients are opened first and the memory baseline taken after them (so
//! the engine's first-use allocations do not count); then N more. `--sources S` spreads
//! the clients over 127.0.0.1..=127.0.0.S as source addresses (one source address
//! reaches one server ip:port about 28k times). `--batch B` dials B at a time, each
//! batch once the last is up (a fleet that grows gradually; the default dials all at
//! once); `--baseline-batch B` dials the baseline B at a time instead (so that the N
//! dialled at once cannot reuse memory the baseline's handshakes freed). `--insecure` dials a `wss://` URL without checking the server's certificate
//! (a test certificate). Prints one line of figures.
//! `--smaps PREFIX` copies `/proc/self/smaps` to `PREFIX.before` and `PREFIX.after`
//! around the N (`bench/smaps-diff.py PREFIX N` splits the growth by mapping).
//! `--exit-at-once` leaves without freeing anything, for `heaptrack`'s view of what the
//! idle clients hold (`heaptrack_print -f FILE` lists it as leaked).

use ringwire_bench::arg;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwire::client::{ClientConfig, ClientState, StateChange};
use ringwire::frame::Message;
use ringwire::{Ctx, Engine, Handler};

struct Count(Arc<AtomicU64>, Arc<AtomicU64>);

impl Handler for Count {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    fn on_state(&mut self, _: &mut Ctx<'_>, c: &StateChange) {
        match c.to {
            ClientState::Connected => self.0.fetch_add(1, Relaxed),
            ClientState::Reconnecting | ClientState::Closed => self.1.fetch_add(1, Relaxed),
            _ => 0,
        };
    }
}

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first().filter(|a| !a.starts_with("--")).cloned() else {
        eprintln!("usage: client-idle URL [--clients N] [--baseline B] [--hold SECS] [--workers W] [--sources S] [--ping-secs P] [--batch B]");
        std::process::exit(2);
    };
    let n: u64 = arg(&args, &["--clients"], 10_000);
    let baseline: u64 = arg(&args, &["--baseline"], 1_000);
    let hold: u64 = arg(&args, &["--hold"], 5);
    let workers: usize = arg(&args, &["--workers"], 1);
    let sources: u8 = arg(&args, &["--sources"], 1);
    let ping: u64 = arg(&args, &["--ping-secs"], 20);
    let batch: u64 = arg(&args, &["--batch"], u64::MAX).max(1);
    // The baseline's own batch size (default `--batch`): `--baseline-batch 500` with no
    // `--batch` dials the N all at once after a baseline that left no handshake memory.
    let baseline_batch: u64 = arg(&args, &["--baseline-batch"], batch).max(1);
    // wss:// to a server whose certificate is not checked (a test certificate).
    let insecure = args.iter().any(|a| a == "--insecure");
    let (up, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (u, l) = (up.clone(), lost.clone());
    let engine = Engine::builder()
        .workers(workers)
        .start(move |_| Count(u.clone(), l.clone()))
        .expect("engine starts");
    let mut handles = Vec::new();
    // Per source address, one `connect_many`: the clients share one copy of the target
    // and configuration, as a fleet of clients to one upstream would.
    let wait_up = |target: u64| {
        let end = Instant::now() + Duration::from_secs(120);
        while up.load(Relaxed) < target && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let dial = |count: u64, batch: u64, handles: &mut Vec<_>| {
        let s = u64::from(sources.max(1));
        let mut left = count;
        while left > 0 {
            let step = left.min(batch);
            for src in 1..=s {
                let share = step / s + u64::from(src <= step % s);
                let mut cfg = ClientConfig::default();
                cfg.ping_interval = (ping > 0).then(|| Duration::from_secs(ping));
                cfg.connect_rate = None;
                cfg.bind = Some(format!("127.0.0.{src}:0").parse().unwrap());
                if insecure {
                    cfg.tls = Some(ringwire::tls::TlsClientConfig::insecure());
                }
                handles.extend(engine.connect_many(&url, share as usize, cfg).expect("dial"));
            }
            left -= step;
            if left > 0 {
                wait_up(up.load(Relaxed) + step);
            }
        }
    };
    dial(baseline, baseline_batch, &mut handles);
    wait_up(baseline);
    std::thread::sleep(Duration::from_millis(500));
    let before = rss();
    let smaps = args.iter().position(|a| a == "--smaps").and_then(|i| args.get(i + 1)).cloned();
    if let Some(p) = &smaps {
        let _ = std::fs::copy("/proc/self/smaps", format!("{p}.before"));
    }
    let t0 = Instant::now();
    dial(n, batch, &mut handles);
    wait_up(baseline + n);
    let setup = t0.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss();
    if let Some(p) = &smaps {
        let _ = std::fs::copy("/proc/self/smaps", format!("{p}.after"));
    }
    std::thread::sleep(Duration::from_secs(hold));
    let held = rss();
    let connected = up.load(Relaxed);
    let per = |b: u64| (b.saturating_sub(before)) as f64 / n as f64;
    println!(
        "clients {n} (+{baseline} baseline), connected {connected}, lost {}, setup {:.2} s ({:.0}/s), \
         rss {:.1} -> {:.1} MiB, {:.0} B per client, {:.0} B after {hold} s held (heartbeat {ping} s)",
        lost.load(Relaxed),
        setup.as_secs_f64(),
        n as f64 / setup.as_secs_f64(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per(after),
        per(held)
    );
    if args.iter().any(|a| a == "--exit-at-once") {
        // Leave with everything still allocated (for a heap profiler's "leaked" view of
        // what the idle clients hold).
        std::process::exit(0);
    }
    drop(handles);
    let _ = engine.shutdown();
}
