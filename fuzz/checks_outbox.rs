// The body of the outbox's fuzz target, shared by `fuzz/fuzz_targets/outbox_scan.rs` and
// by the stable seed replay `tests/tests/fuzz_seeds_outbox.rs`, which both `include!`
// this file inside a module. (The protocol core's targets are in `checks.rs`; this one
// needs the engine crate.)

use ringwire::outbox::format::{self, SEGMENT_HEADER};
use ringwire::outbox::{read_receipts, wire};

/// A target's check: panics if a property fails for this input.
pub type Check = fn(&[u8]);

/// The outbox's fuzz targets: name (the folder of its seeds) and check.
pub const OUTBOX_TARGETS: &[(&str, Check)] = &[
    ("outbox_scan", outbox_scan),
    ("outbox_receipts", outbox_receipts),
    ("outbox_wire", outbox_wire),
];

/// `read_receipts` on arbitrary bytes as a receipts table's file: never panics; what it
/// finds fits the image (one entry per stream, no more than the slots there are room for).
pub fn outbox_receipts(data: &[u8]) {
    let Ok(found) = read_receipts(data) else { return };
    assert!(found.len() <= (data.len() - 64) / 64, "more streams than slots");
    let mut streams: Vec<u64> = found.iter().map(|r| r.stream).collect();
    streams.sort_unstable();
    streams.dedup();
    assert_eq!(streams.len(), found.len(), "a stream twice");
}

/// The extension's offer and tag parsers on arbitrary input (an offer comes from the
/// network in a handshake header, tags in Pong payloads): never panic, and what parses
/// writes back to the same value.
pub fn outbox_wire(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some((stream, recv)) = wire::parse_offer(&text) {
        assert_eq!(wire::parse_offer(&wire::offer(stream, recv)), Some((stream, recv)));
    }
    for kind in [wire::TAG_ACK, wire::TAG_DURABLE] {
        if let Some(id) = wire::parse_tag(kind, data) {
            assert_eq!(&wire::tag(kind, id)[..], data);
        }
    }
}

/// `format::scan_bytes` on arbitrary bytes as a segment image: never panics; what it
/// finds lies inside the image, in order, without overlaps, each record at least a
/// header long; the valid data ends inside the image; and the scan of the image cut at
/// that end finds the same records (what lies past the end never changes the result).
pub fn outbox_scan(data: &[u8]) {
    let Some(s) = format::scan_bytes(data) else { return };
    assert!(s.end >= SEGMENT_HEADER && s.end <= data.len(), "end {} of {}", s.end, data.len());
    let mut at = SEGMENT_HEADER;
    for r in &s.records {
        assert!(r.offset >= at, "records overlap or go backwards");
        assert_eq!(r.offset % format::ALIGN, 0, "unaligned record");
        assert!(r.len >= format::RECORD_HEADER && r.offset + r.len <= data.len());
        at = r.offset + r.len;
    }
    assert!(at <= s.end);
    let again = format::scan_bytes(&data[..s.end]).expect("the header is still there");
    assert_eq!(again.records, s.records, "bytes past the valid end changed the records");
}
