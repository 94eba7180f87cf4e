//! The outbox's job, append a message then drop it on its acknowledgement, for 64 B and
//! 1 KiB payloads, under each durability policy: ringwire's outbox log against redb (an
//! embedded B-tree database) doing the same job, inserting by id and deleting on the
//! acknowledgement. Both on files in the system's temporary directory.
//!
//! The policies, side by side:
//! - `os`: ringwire `Durability::Os` (no sync; a process crash keeps the record) /
//!   redb commits with `Durability::None` (no fsync).
//! - `batch64`: ringwire `Batch` with a sync every 64 records / redb: 64 inserts per
//!   `Durability::Immediate` transaction.
//! - `always`: a sync per record / a `Durability::Immediate` commit per insert.
//!
//! `floor` is the disk alone for the synced policies: `pwrite` of the payload and an
//! `fdatasync` per record or per 64.
//!
//! Acknowledgements are never synced on either side (ringwire stores the state byte in
//! place; redb deletes in a `Durability::None` transaction): losing one only resends.
// criterion's macros generate undocumented public items; nothing here is a library API.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use redb::{Database, TableDefinition};
use ringwire::outbox::{Durability, Outbox, OutboxConfig};

const TABLE: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("outbox");

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rw-bench-outbox-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn policies() -> [(&'static str, Durability, usize); 3] {
    let batch = Durability::Batch { records: 64, interval: Duration::from_secs(3600) };
    [("os", Durability::Os, 0), ("batch64", batch, 64), ("always", Durability::Always, 1)]
}

fn append_ack(c: &mut Criterion) {
    for size in [64usize, 1024] {
        let mut g = c.benchmark_group(format!("outbox_append_ack/{size}B"));
        g.throughput(Throughput::Elements(1));
        let payload = vec![0x5au8; size];
        for (name, durability, per_sync) in policies() {
            if per_sync == 1 {
                g.sample_size(10).measurement_time(Duration::from_secs(3));
            }
            g.bench_function(BenchmarkId::new("ringwire", name), |b| {
                let d = dir(&format!("rw-{size}-{name}"));
                let mut cfg = OutboxConfig::default();
                cfg.durability = durability;
                let mut ob = Outbox::open(&d, cfg).unwrap();
                let mut id = 0u128;
                b.iter(|| {
                    id += 1;
                    let durable = ob.append(id as u64 & 7, id, false, black_box(&payload)).unwrap();
                    if !durable && per_sync > 0 && id.is_multiple_of(per_sync as u128) {
                        ob.sync().unwrap();
                    }
                    black_box(ob.ack(id));
                });
                drop(ob);
                let _ = std::fs::remove_dir_all(&d);
            });
            g.bench_function(BenchmarkId::new("redb", name), |b| {
                let d = dir(&format!("redb-{size}-{name}"));
                let db = Database::create(d.join("db.redb")).unwrap();
                let (insert_durability, batch) = match per_sync {
                    0 => (redb::Durability::None, 1),
                    n => (redb::Durability::Immediate, n),
                };
                let mut id = 0u128;
                let mut pending: Vec<u128> = Vec::new();
                b.iter(|| {
                    id += 1;
                    pending.push(id);
                    if pending.len() < batch {
                        return;
                    }
                    // The batch's inserts in one transaction with the policy's durability,
                    // then their deletes (the acknowledgements) unsynced.
                    let mut tx = db.begin_write().unwrap();
                    tx.set_durability(insert_durability);
                    {
                        let mut t = tx.open_table(TABLE).unwrap();
                        for &k in &pending {
                            t.insert(k, black_box(payload.as_slice())).unwrap();
                        }
                    }
                    tx.commit().unwrap();
                    let mut tx = db.begin_write().unwrap();
                    tx.set_durability(redb::Durability::None);
                    {
                        let mut t = tx.open_table(TABLE).unwrap();
                        for &k in &pending {
                            black_box(t.remove(k).unwrap().is_some());
                        }
                    }
                    tx.commit().unwrap();
                    pending.clear();
                });
                drop(db);
                let _ = std::fs::remove_dir_all(&d);
            });
        }
        // The disk's own floor for the synced policies: the payload written with
        // `pwrite` at the end of a preallocated file, `fdatasync` per record (always) or
        // per 64 (batch64); no format, no index, no acknowledgement.
        for (name, per_sync) in [("batch64", 64u64), ("always", 1)] {
            if per_sync == 1 {
                g.sample_size(10).measurement_time(Duration::from_secs(3));
            }
            g.bench_function(BenchmarkId::new("floor", name), |b| {
                use std::os::unix::fs::FileExt;
                let d = dir(&format!("floor-{size}-{name}"));
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(d.join("f"))
                    .unwrap();
                let cap = 64u64 << 20;
                f.set_len(cap).unwrap();
                f.sync_all().unwrap();
                let mut n = 0u64;
                b.iter(|| {
                    let off = (n * size as u64) % (cap - size as u64);
                    f.write_all_at(black_box(&payload), off).unwrap();
                    n += 1;
                    if n.is_multiple_of(per_sync) {
                        f.sync_data().unwrap();
                    }
                });
                drop(f);
                let _ = std::fs::remove_dir_all(&d);
            });
        }
        g.finish();
    }
}

criterion_group!(benches, append_ack);
criterion_main!(benches);
