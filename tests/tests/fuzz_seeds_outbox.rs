//! Replays the committed seeds of the outbox's fuzz target (`fuzz/seeds/outbox_scan/*`)
//! through its checks (`fuzz/checks_outbox.rs`), on stable, as ordinary tests; the
//! protocol core's targets replay in `frame/tests/fuzz_seeds.rs`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ringwire::outbox::format::{encode_record, Kind, RecordMeta, SegmentHeader, FLAG_TEXT};

mod checks {
    include!("../../fuzz/checks_outbox.rs");
}

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target)
}

#[test]
fn outbox_seeds_pass_their_checks() {
    let mut total = 0;
    for (target, check) in checks::OUTBOX_TARGETS {
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(seeds_dir(target))
            .unwrap_or_else(|e| panic!("seed folder of {target}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 3, "{target}: too few seeds");
        for seed in seeds {
            let data = std::fs::read(&seed).unwrap();
            let r = catch_unwind(AssertUnwindSafe(|| check(&data)));
            assert!(r.is_ok(), "{}", seed.display());
            total += 1;
        }
    }
    eprintln!("outbox fuzz seeds: {total} replayed, all pass");
}

/// A segment image: a header for `seq`, then `records`, then zeros up to `size`.
fn image(seq: u64, size: usize, records: &[(Kind, u64, &[u8])]) -> Vec<u8> {
    let mut img = vec![0u8; size];
    let h = SegmentHeader { seq, created_ns: 1, size: size as u32, worker: 0, floor: 0 };
    img[..64].copy_from_slice(&h.encode());
    let mut off = 64;
    let mut rec = Vec::new();
    for (i, (kind, stream, payload)) in records.iter().enumerate() {
        let meta = RecordMeta {
            kind: *kind,
            flags: FLAG_TEXT,
            stream: *stream,
            id: 1000 + i as u128,
            appended_ns: 5,
        };
        encode_record(seq, &meta, payload, &mut rec);
        img[off..off + rec.len()].copy_from_slice(&rec);
        off = (off + rec.len()).div_ceil(8) * 8;
    }
    img
}

/// The seeds, rewritten by `RINGWIRE_WRITE_SEEDS=1 cargo test -p ringwire-tests --test
/// fuzz_seeds_outbox write_seeds -- --ignored`: valid segments, a sealed one, a torn
/// tail, a recycled file's leftovers, a bad header.
#[test]
#[ignore = "writes the committed seeds"]
fn write_seeds() {
    if std::env::var_os("RINGWIRE_WRITE_SEEDS").is_none() {
        return;
    }
    let dir = seeds_dir("outbox_scan");
    std::fs::create_dir_all(&dir).unwrap();
    let msg = |s: u64, p: &'static [u8]| (Kind::Message, s, p);
    let two = image(3, 1024, &[msg(1, b"hello"), msg(2, b"")]);
    let sealed = image(4, 1024, &[msg(1, b"a"), (Kind::Seal, 5, &b""[..]), msg(1, b"after")]);
    let mut torn = image(3, 1024, &[msg(1, b"whole"), msg(1, b"torn record")]);
    torn[64 + 64 + 40] ^= 0xff;
    let mut recycled = image(3, 1024, &[msg(1, b"old life")]);
    recycled[..64].copy_from_slice(
        &SegmentHeader { seq: 9, created_ns: 2, size: 1024, worker: 0, floor: 0 }.encode(),
    );
    let mut bad_header = two.clone();
    bad_header[20] ^= 1;
    let mut huge_len = two.clone();
    huge_len[64..68].copy_from_slice(&u32::MAX.to_le_bytes());
    for (name, data) in [
        ("two-records", two),
        ("sealed", sealed),
        ("torn-tail", torn),
        ("recycled-leftovers", recycled),
        ("bad-header", bad_header),
        ("huge-length", huge_len),
    ] {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

/// The receipts seeds (written by `fuzz/gen_seeds.py`, an encoder apart from the
/// engine's) read as the format says: the newer half by its number, a torn half
/// ignored, one stream's two slots giving the larger mark.
#[test]
fn receipts_seeds_read_as_the_format_says() {
    use ringwire::outbox::{read_receipts, Receipt};
    let read = |name: &str| {
        let data = std::fs::read(seeds_dir("outbox_receipts").join(name)).unwrap();
        read_receipts(&data)
    };
    let r = |stream, hwm, in_doubt| Receipt { stream, hwm, in_doubt };
    assert_eq!(read("two-streams").unwrap(), [r(7, 12, true), r(8, 1 << 100, false)]);
    assert_eq!(read("torn-newest-half").unwrap(), [r(7, 9, false)]);
    assert_eq!(read("one-stream-in-two-slots").unwrap(), [r(5, 41, false)]);
    assert_eq!(read("wrapped-numbering").unwrap(), [r(3, 9, false)]);
    assert!(read("bad-header-crc").unwrap_err().contains("checksum"));
    assert!(read("slot-count-too-large").is_err());
}
