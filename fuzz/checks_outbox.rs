// The body of the outbox's fuzz target, shared by `fuzz/fuzz_targets/outbox_scan.rs` and
// by the stable seed replay `tests/tests/fuzz_seeds_outbox.rs`, which both `include!`
// this file inside a module. (The protocol core's targets are in `checks.rs`; this one
// needs the engine crate.)

use ringwire::outbox::format::{self, SEGMENT_HEADER};

/// A target's check: panics if a property fails for this input.
pub type Check = fn(&[u8]);

/// The outbox's fuzz targets: name (the folder of its seeds) and check.
pub const OUTBOX_TARGETS: &[(&str, Check)] = &[("outbox_scan", outbox_scan)];

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
