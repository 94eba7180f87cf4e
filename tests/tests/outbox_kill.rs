//! The outbox through SIGKILL: a child process (this test binary, run again as a
//! writer) appends messages to an outbox on real files as fast as it can, printing each
//! id once the outbox says it is durable; the test kills it at a random moment, reopens
//! the outbox, and checks that every id the child reported is there, once, with its
//! payload whole (the CRC passed). Several rounds on the same directory, with
//! acknowledgements in between, so recovery, recycling and appends after recovery all
//! take part.
//!
//! `RINGWIRE_KILL_ROUNDS` sets the rounds (default 6; `bench/outbox-kill.sh` runs many).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringwire::outbox::{Durability, Outbox, OutboxConfig};

const CHILD_ENV: &str = "RINGWIRE_OUTBOX_WRITER";

fn config(durability: Durability) -> OutboxConfig {
    let mut c = OutboxConfig::default();
    c.segment_size = 256 << 10;
    c.max_segments = 256;
    c.max_record = 16 << 10;
    c.durability = durability;
    c
}

fn payload(id: u128) -> Vec<u8> {
    let n = 16 + (id % 2000) as usize;
    (0..n).map(|i| (id as usize).wrapping_mul(31).wrapping_add(i) as u8).collect()
}

fn policy(name: &str) -> Durability {
    match name {
        "os" => Durability::Os,
        "always" => Durability::Always,
        _ => Durability::Batch { records: 32, interval: Duration::from_millis(1) },
    }
}

/// The child: appends ids from `first` on, forever, reporting each once durable.
fn writer(dir: &str, first: u128, pol: &str) {
    let mut ob = Outbox::open(dir, config(policy(pol))).expect("the writer opens the outbox");
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let mut pending = Vec::new();
    let mut id = first;
    loop {
        let durable = ob.append(id as u64 % 7, id, false, &payload(id)).expect("append");
        pending.push(id);
        if !durable && ob.sync_due(Instant::now()) {
            ob.sync().expect("sync");
        }
        if durable || ob.sync_due(Instant::now()) || pending.len() >= 32 {
            if !durable {
                ob.sync().expect("sync");
            }
            for p in pending.drain(..) {
                writeln!(out, "{p}").unwrap();
            }
            out.flush().unwrap();
        }
        id += 1;
    }
}

#[test]
fn every_id_reported_durable_survives_sigkill() {
    if let Ok(args) = std::env::var(CHILD_ENV) {
        let mut parts = args.split(',');
        let (dir, first, pol) =
            (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        writer(dir, first.parse().unwrap(), pol);
        return;
    }
    let rounds: u32 =
        std::env::var("RINGWIRE_KILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let dir = std::env::temp_dir().join(format!("rw-outbox-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut reported: BTreeSet<u128> = BTreeSet::new();
    let mut acked: BTreeSet<u128> = BTreeSet::new();
    let mut next = 1u128;
    let mut seed = std::process::id() as u64 | 1;
    for round in 0..rounds {
        let pol = ["os", "always", "batch"][round as usize % 3];
        let round_first = next;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "every_id_reported_durable_survives_sigkill", "--nocapture"])
            .env(CHILD_ENV, format!("{},{next},{pol}", dir.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the writer starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for the writer to be up, then let it write for 20-120 ms.
        let started = Instant::now();
        loop {
            let l = lines.next().expect("the writer said nothing").unwrap();
            if l == "ready" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the writer never got ready");
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 100));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let mut this_round = 0;
        for l in lines.map_while(Result::ok) {
            if let Ok(id) = l.trim().parse::<u128>() {
                reported.insert(id);
                next = next.max(id + 1);
                this_round += 1;
            }
        }
        // Ids written but not reported may be in the outbox too: the next writer starts
        // well past anything it could have written.
        next += 1_000_000;
        let mut ob = Outbox::open(&dir, config(Durability::Os)).expect("recovery");
        let held = ob.all_unacked();
        let ids: Vec<u128> = held.iter().map(|m| m.id).collect();
        let unique: BTreeSet<u128> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "round {round}: an id twice");
        for m in &held {
            assert_eq!(m.payload, payload(m.id), "round {round}: payload of {} damaged", m.id);
        }
        let missing: Vec<u128> = reported
            .iter()
            .filter(|id| !acked.contains(id) && !unique.contains(id))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "round {round} ({pol}): {} reported ids lost: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert!(this_round > 0, "round {round}: the writer reported nothing");
        eprintln!(
            "round {round} ({pol}): {this_round} reported, {} held, {} files",
            held.len(),
            ob.segment_files()
        );
        // Acknowledge what earlier rounds left and half of this round's, so segments
        // both stay in use across a recovery and get recycled.
        for m in held.iter().filter(|m| m.id < round_first || m.id % 2 == 0) {
            assert!(ob.ack(m.id));
            acked.insert(m.id);
        }
        ob.sync().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
