//! The log against a model, through crashes: a store in memory that keeps what was
//! synced and, of the pages written since, whichever subset a crash lets through.

use std::collections::{BTreeMap, BTreeSet};

use super::log::Log;
use super::store::{Faults, MemStore};
use super::{Durability, Outbox, OutboxConfig, OutboxError};

fn cfg() -> OutboxConfig {
    OutboxConfig {
        segment_size: 64 << 10,
        max_segments: 8,
        max_record: 8 << 10,
        max_attempts: 3,
        ..OutboxConfig::default()
    }
}

fn payload(id: u128) -> Vec<u8> {
    let n = (id % 700) as usize;
    (0..n).map(|i| (id as usize + i) as u8).collect()
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ids_of(log: &Log<MemStore>, stream: u64) -> Vec<u128> {
    log.unacked(stream).map(|e| e.id).collect()
}

#[test]
fn appends_come_back_in_order_per_stream_and_acks_stay_acked() {
    let store = MemStore::default();
    let mut log = Log::open(store.clone(), cfg(), 1).unwrap();
    for id in 1..=30u128 {
        log.append((id % 3) as u64, id, 0, &payload(id), 1).unwrap();
    }
    assert!(log.ack(4) && log.ack(5) && !log.ack(5) && !log.ack(99));
    assert_eq!(log.attempted(7), Some((1, false)));
    log.sync().unwrap();
    assert_eq!(ids_of(&log, 1), [1, 7, 10, 13, 16, 19, 22, 25, 28]);
    // A crash of the process keeps every page; a power loss right after the sync too.
    for keep in [true, false] {
        let log2 = Log::open(store.crash(|_, _| keep), cfg(), 2).unwrap();
        for s in 0..3 {
            assert_eq!(ids_of(&log2, s), ids_of(&log, s), "stream {s}, keep {keep}");
        }
        let e = log2.unacked(1).find(|e| e.id == 7).copied().unwrap();
        assert_eq!(e.attempts, 1);
        assert_eq!(log2.payload(&e), payload(7));
    }
    assert_eq!(log.append(0, 1, 0, b"again", 3), Err(OutboxError::DuplicateId(1)));
}

#[test]
fn dead_letters_are_kept_until_taken() {
    let store = MemStore::default();
    let mut log = Log::open(store.clone(), cfg(), 1).unwrap();
    log.append(1, 10, 0, b"doomed", 1).unwrap();
    log.append(1, 11, 0, b"fine", 1).unwrap();
    assert_eq!(log.attempted(10), Some((1, false)));
    assert_eq!(log.attempted(10), Some((2, false)));
    assert_eq!(log.attempted(10), Some((3, true)));
    assert_eq!(log.attempted(10), None, "no longer live");
    assert_eq!(ids_of(&log, 1), [11]);
    let dead: Vec<u128> = log.dead_letters().map(|e| e.id).collect();
    assert_eq!(dead, [10]);
    let log2 = Log::open(store.crash(|_, _| true), cfg(), 2).unwrap();
    assert_eq!(log2.dead_letters().map(|e| (e.id, e.attempts)).collect::<Vec<_>>(), [(10, 3)]);
    assert!(log.take_dead(10) && !log.take_dead(10));
    let log3 = Log::open(store.crash(|_, _| true), cfg(), 3).unwrap();
    assert_eq!(log3.counts(), (1, 0));
}

#[test]
fn acknowledged_segments_are_recycled_and_a_full_log_refuses() {
    let store = MemStore::default();
    let mut log = Log::open(store.clone(), cfg(), 1).unwrap();
    let big = vec![7u8; 4000];
    // Each segment (64 KiB) takes 16 such records: 2,000 of them cycle through 125
    // segments' worth while at most 20 are unacknowledged.
    for id in 0..2000u128 {
        log.append(1, id, 0, &big, 1).unwrap();
        if id >= 20 {
            assert!(log.ack(id - 20));
        }
    }
    assert!(log.files() <= 3, "{} files for 20 unacknowledged records", log.files());
    let log2 = Log::open(store.crash(|_, _| true), cfg(), 2).unwrap();
    assert_eq!(ids_of(&log2, 1), (1980..2000).collect::<Vec<u128>>());
    // Without acknowledgements, 8 segments fill up; what was accepted stays.
    let store = MemStore::default();
    let mut log = Log::open(store.clone(), cfg(), 1).unwrap();
    let mut id = 0u128;
    let err = loop {
        match log.append(1, id, 0, &big, 1) {
            Ok(_) => id += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, OutboxError::Full { segments: 8 });
    assert!(id > 100, "{id} records in 8 x 64 KiB");
    assert!(log.ack(0) && log.ack(1));
    assert!(log.append(1, id, 0, &big, 1).is_err(), "one segment is not free yet");
    for k in 2..20 {
        log.ack(k);
    }
    log.append(1, id, 0, &big, 1).expect("the first segment was recycled");
    let log2 = Log::open(store.crash(|_, _| true), cfg(), 2).unwrap();
    assert_eq!(log2.counts().0, id as usize + 1 - 20);
}

#[test]
fn a_failed_sync_stops_appends_and_loses_nothing_accepted() {
    let store = MemStore::default();
    let mut log = Log::open(store.clone(), cfg(), 1).unwrap();
    log.append(1, 1, 0, b"one", 1).unwrap();
    log.sync().unwrap();
    log.append(1, 2, 0, b"two", 1).unwrap();
    store.set_faults(Faults { fail_sync_from: Some(1), ..Faults::default() });
    assert!(matches!(log.sync(), Err(OutboxError::Failed(_))));
    assert!(matches!(log.append(1, 3, 0, b"three", 1), Err(OutboxError::Failed(_))));
    assert!(matches!(log.sync(), Err(OutboxError::Failed(_))));
    let log2 = Log::open(store.crash(|_, _| true), cfg(), 2).unwrap();
    assert_eq!(ids_of(&log2, 1), [1, 2]);
    // A segment that cannot be created refuses the append that needed it, and only it.
    let store = MemStore::default();
    let mut log = Log::open(store.clone(), cfg(), 1).unwrap();
    store.set_faults(Faults { fail_create: true, ..Faults::default() });
    let big = vec![1u8; 8000];
    let mut id = 0;
    let err = loop {
        match log.append(1, id, 0, &big, 1) {
            Ok(_) => id += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, OutboxError::Io(_)), "{err:?}");
    store.set_faults(Faults::default());
    log.append(1, id, 0, &big, 1).expect("space again");
    assert_eq!(log.counts().0, id as usize + 1);
}

/// What the model knows of each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Appended, not known durable.
    Appended,
    /// Appended and covered by a completed sync.
    Durable,
    /// Acknowledged (may come back after a crash: acknowledgements are not synced).
    Acked,
}

/// Random appends, acknowledgements, sends and syncs; a crash at a random point that
/// keeps a random subset of the pages written since the last sync; recovery; again.
/// After each recovery: every durable, unacknowledged message is there with its
/// payload; nothing is there that was never appended; each stream's messages are in
/// append order; and the log goes on working.
#[test]
fn crashes_at_random_points_lose_nothing_durable() {
    for seed in 0..60u64 {
        let mut rng = Rng(seed);
        let mut store = MemStore::default();
        let mut log = Log::open(store.clone(), cfg(), 1).unwrap();
        let mut model: BTreeMap<u128, (u64, Fate)> = BTreeMap::new();
        let mut next_id = 1u128;
        for _round in 0..4 {
            let ops = 50 + rng.below(400);
            for _ in 0..ops {
                match rng.below(10) {
                    0..=5 => {
                        let stream = rng.below(4);
                        let id = next_id;
                        next_id += 1;
                        let len = (rng.below(3000) as usize).min(cfg().max_record);
                        let p: Vec<u8> = (0..len).map(|i| (id as usize ^ i) as u8).collect();
                        match log.append(stream, id, 0, &p, 1) {
                            Ok(_) => {
                                model.insert(id, (stream, Fate::Appended));
                            }
                            Err(OutboxError::Full { .. }) => {}
                            Err(e) => panic!("seed {seed}: {e}"),
                        }
                    }
                    6 | 7 => {
                        let live: Vec<u128> = model
                            .iter()
                            .filter(|(_, (_, f))| *f != Fate::Acked)
                            .map(|(id, _)| *id)
                            .collect();
                        if !live.is_empty() {
                            let id = live[rng.below(live.len() as u64) as usize];
                            if log.ack(id) {
                                model.get_mut(&id).unwrap().1 = Fate::Acked;
                            }
                        }
                    }
                    8 => {
                        log.sync().unwrap();
                        for (_, f) in model.values_mut() {
                            if *f == Fate::Appended {
                                *f = Fate::Durable;
                            }
                        }
                    }
                    _ => {
                        if let Some(&id) = model.keys().next() {
                            let _ = log.attempted(id);
                        }
                    }
                }
            }
            // Crash: each page written since its file's last sync survives or not.
            let keep_all = rng.below(4) == 0;
            let bits = rng.next();
            let crashed = store
                .crash(|f, p| keep_all || (bits.rotate_left((f * 7 + p as u32) % 64) & 1) == 1);
            store = crashed;
            log = Log::open(store.clone(), cfg(), 2).unwrap();
            let got: Vec<(u128, u64)> =
                log.all_unacked().chain(log.dead_letters()).map(|e| (e.id, e.stream)).collect();
            let got_ids: BTreeSet<u128> = got.iter().map(|(id, _)| *id).collect();
            for (id, (stream, fate)) in &model {
                if *fate == Fate::Durable {
                    assert!(
                        got_ids.contains(id),
                        "seed {seed}: durable {id} (stream {stream}) lost"
                    );
                }
                if keep_all && *fate != Fate::Acked {
                    assert!(got_ids.contains(id), "seed {seed}: {id} lost in a process crash");
                }
                if keep_all && *fate == Fate::Acked {
                    assert!(
                        !got_ids.contains(id),
                        "seed {seed}: acked {id} back after a process crash"
                    );
                }
            }
            for (id, stream) in &got {
                let m = model.get(id).unwrap_or_else(|| panic!("seed {seed}: {id} never appended"));
                assert_eq!(m.0, *stream, "seed {seed}: {id} on the wrong stream");
            }
            for s in 0..4 {
                let order: Vec<u128> = log.unacked(s).map(|e| e.id).collect();
                assert!(
                    order.windows(2).all(|w| w[0] < w[1]),
                    "seed {seed}: stream {s} out of order"
                );
            }
            for e in log.all_unacked() {
                let p = log.payload(e);
                assert!(p.iter().enumerate().all(|(i, b)| *b == (e.id as usize ^ i) as u8));
            }
            // The model after recovery: what came back is live (and durable now), what
            // did not is gone.
            model.retain(|id, _| got_ids.contains(id));
            for (_, f) in model.values_mut() {
                *f = Fate::Durable;
            }
        }
    }
}

#[test]
fn the_outbox_on_files_recovers_after_reopen_and_holds_its_lock() {
    let dir = std::env::temp_dir().join(format!("rw-outbox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let c = OutboxConfig { durability: Durability::Always, ..cfg() };
    {
        let mut ob = Outbox::open(&dir, c.clone()).unwrap();
        assert!(!ob.append(5, 1, true, b"hello").unwrap());
        assert!(ob.sync_due(std::time::Instant::now()));
        ob.append(5, 2, false, b"world").unwrap();
        ob.append(6, 3, false, b"other").unwrap();
        ob.sync().unwrap();
        assert!(!ob.sync_due(std::time::Instant::now()));
        assert!(ob.ack(2));
        let second = Outbox::open(&dir, c.clone()).unwrap_err();
        assert!(matches!(second, OutboxError::Io(ref m) if m.contains("locked")), "{second:?}");
    }
    let ob = Outbox::open(&dir, c.clone()).unwrap();
    let got = ob.unacked(5);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].id, got[0].text, got[0].payload.as_slice()), (1, true, &b"hello"[..]));
    assert_eq!(ob.len(), 2);
    drop(ob);
    // Os: durable at once. Batch: due by count.
    let mut ob =
        Outbox::open(&dir, OutboxConfig { durability: Durability::Os, ..c.clone() }).unwrap();
    assert!(ob.append(7, 10, false, b"x").unwrap());
    drop(ob);
    let batch = Durability::Batch { records: 2, interval: std::time::Duration::from_secs(60) };
    let mut ob = Outbox::open(&dir, OutboxConfig { durability: batch, ..c }).unwrap();
    let now = std::time::Instant::now();
    ob.append(7, 11, false, b"y").unwrap();
    assert!(!ob.sync_due(now));
    ob.append(7, 12, false, b"z").unwrap();
    assert!(ob.sync_due(now));
    assert_eq!(ob.unacked(7).iter().map(|m| m.id).collect::<Vec<_>>(), [10, 11, 12]);
    drop(ob);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configurations_are_refused_by_name() {
    let bad = |f: fn(&mut OutboxConfig)| {
        let mut c = OutboxConfig::default();
        f(&mut c);
        match c.validate() {
            Err(OutboxError::Config(m)) => m,
            other => panic!("{other:?}"),
        }
    };
    assert!(bad(|c| c.segment_size = 1000).contains("segment_size"));
    assert!(bad(|c| c.max_record = 64 << 20).contains("max_record"));
    assert!(bad(|c| c.max_attempts = 0).contains("max_attempts"));
    assert!(bad(
        |c| c.durability = Durability::Batch { records: 0, interval: std::time::Duration::ZERO }
    )
    .contains("Batch"));
    OutboxConfig::default().validate().unwrap();
}

#[test]
fn a_record_past_a_torn_one_does_not_come_back_behind_the_next_append() {
    let store = MemStore::default();
    let mut log = Log::open(store.clone(), cfg(), 1).unwrap();
    let p = vec![9u8; 3000];
    log.append(1, 1, 0, &p, 1).unwrap(); // bytes 64..3120: page 0
    log.sync().unwrap();
    log.append(1, 2, 0, &p, 1).unwrap(); // 3120..6176: pages 0 and 1
    log.append(1, 3, 0, &p, 1).unwrap(); // 6176..9232: pages 1 and 2
                                         // Power loss: page 0's new bytes never reached the disk, pages 1 and 2 did. Record
                                         // 2 is torn (its head is gone), record 3 whole behind it.
    let store = store.crash(|_, page| page != 0);
    let mut log = Log::open(store.clone(), cfg(), 2).unwrap();
    assert_eq!(ids_of(&log, 1), [1]);
    // The next append lands where record 2 began, as long as it was: record 3's bytes
    // would follow it, whole, under the same segment seq, unless recovery cleared them.
    log.append(1, 4, 0, &p, 3).unwrap();
    let log = Log::open(store.crash(|_, _| true), cfg(), 4).unwrap();
    assert_eq!(ids_of(&log, 1), [1, 4], "record 3 came back from past the torn tail");
}

#[test]
fn ids_keep_growing_across_recycling_and_reopening() {
    let store = MemStore::default();
    let mut log = Log::open(store.clone(), cfg(), 1).unwrap();
    // A clock far ahead, then one stepped back: ids still grow.
    let first = log.next_id(5_000);
    let second = log.next_id(10);
    assert!(second > first && first == 5_000u128 << 64);
    // Fill several segments, acknowledging all, so every record holding a high id is
    // recycled: only the headers' floor remembers the last id.
    let mut last = second;
    for _ in 0..400 {
        last = log.next_id(10);
        log.append(3, last, 0, &[7u8; 600], 10).unwrap();
        assert_eq!(log.ack_upto(3, last), 1);
    }
    log.sync().unwrap();
    assert!(log.files() >= 2, "the records went through more than one segment");
    let mut again = Log::open(store.crash(|_, _| true), cfg(), 2).unwrap();
    assert_eq!(again.last_id(), last);
    assert!(again.next_id(10) > last, "an id after the reopen is above every earlier one");
}

#[test]
fn a_cumulative_ack_stops_at_the_first_id_above_it() {
    let store = MemStore::default();
    let mut log = Log::open(store, cfg(), 1).unwrap();
    for id in [10u128, 20, 30, 40] {
        log.append(1, id, 0, b"m", 1).unwrap();
    }
    log.append(2, 25, 0, b"other stream", 1).unwrap();
    assert_eq!(log.ack_upto(1, 29), 2);
    assert_eq!(ids_of(&log, 1), [30, 40]);
    assert_eq!(ids_of(&log, 2), [25], "another stream's messages are not touched");
    assert_eq!(log.ack_upto(1, 29), 0, "again: nothing more");
    assert_eq!(log.ack_upto(1, u128::MAX), 2);
    assert!(ids_of(&log, 1).is_empty());
}

/// After a sync failed no sync can succeed: the outbox asks for none, so the worker's
/// loop does not wait for one with a zero timeout and try again every turn (a spin at
/// 100% of a core, an error logged each time).
#[test]
fn a_failed_outbox_asks_for_no_more_syncs() {
    let dir = std::env::temp_dir().join(format!("rw-outbox-failed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for durability in [
        Durability::Always,
        Durability::Batch { records: 1, interval: std::time::Duration::from_millis(5) },
    ] {
        let mut ob = Outbox::open(&dir, OutboxConfig { durability, ..cfg() }).unwrap();
        ob.append(5, 1, true, b"hello").unwrap();
        let (_, upto) = ob.begin_sync().unwrap().expect("a sync to run");
        ob.append(5, 2, true, b"world").unwrap();
        let now = std::time::Instant::now();
        assert!(ob.sync_due(now) && ob.sync_deadline().is_some(), "the second record waits");
        ob.finish_sync(upto, Err("EIO".into()));
        assert!(matches!(ob.begin_sync(), Err(OutboxError::Failed(_))));
        let later = now + std::time::Duration::from_secs(1);
        assert!(!ob.sync_due(later), "{durability:?}: a sync due after the failure");
        assert_eq!(ob.sync_deadline(), None, "{durability:?}");
        assert!(ob.append(5, 3, true, b"refused").is_err(), "appends refused");
        assert_eq!(ob.unacked(5).len(), 2, "what was accepted is kept");
        drop(ob);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
