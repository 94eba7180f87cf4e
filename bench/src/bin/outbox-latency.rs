//! The outbox's append and acknowledgement latency without syncs (`Durability::Os`):
//! each of N appends of S bytes, and each acknowledgement, timed alone; prints their
//! p50, p99, p99.9 and largest, after a warm-up of the same length.
//!
//! ```text
//! outbox-latency [--records N] [--size S] [--live L]
//! ```
//!
//! `--live L` keeps L messages unacknowledged (each is acknowledged L appends later), so
//! segments fill and are recycled as in a steady stream. The outbox lives in the system's
//! temporary directory.

use std::time::Instant;

use ringwire::outbox::{Durability, Outbox, OutboxConfig};
use ringwire_bench::arg;

fn pct(v: &mut [u32], p: f64) -> u32 {
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = arg(&args, &["--records"], 1_000_000);
    let size: usize = arg(&args, &["--size"], 64);
    let live: u128 = arg(&args, &["--live"], 1000);
    let dir = std::env::temp_dir().join(format!("rw-outbox-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = OutboxConfig::default();
    cfg.durability = Durability::Os;
    let mut ob = Outbox::open(&dir, cfg).expect("outbox");
    let payload = vec![0x5au8; size];
    let mut id = 0u128;
    let mut step = |ob: &mut Outbox, times: Option<(&mut Vec<u32>, &mut Vec<u32>)>| {
        id += 1;
        let t0 = Instant::now();
        ob.append(id as u64 & 15, id, false, &payload).expect("append");
        let t1 = Instant::now();
        if id > live {
            assert!(ob.ack(id - live));
        }
        let t2 = Instant::now();
        if let Some((a, k)) = times {
            a.push((t1 - t0).as_nanos() as u32);
            k.push((t2 - t1).as_nanos() as u32);
        }
    };
    for _ in 0..n {
        step(&mut ob, None);
    }
    let (mut appends, mut acks) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let started = Instant::now();
    for _ in 0..n {
        step(&mut ob, Some((&mut appends, &mut acks)));
    }
    let wall = started.elapsed();
    let show = |name: &str, v: &mut Vec<u32>| {
        let (p50, p99, p999) = (pct(v, 0.50), pct(v, 0.99), pct(v, 0.999));
        let max = v.iter().max().copied().unwrap_or(0);
        println!("{name:<6} p50 {p50} ns, p99 {p99} ns, p99.9 {p999} ns, max {max} ns");
    };
    println!(
        "outbox Os: {n} appends of {size} B after {n} warm-up ({live} live), {:.0} ns per append+ack over the run, {} segment files",
        wall.as_nanos() as f64 / n as f64,
        ob.segment_files()
    );
    show("append", &mut appends);
    show("ack", &mut acks);
    drop(ob);
    let _ = std::fs::remove_dir_all(&dir);
}
