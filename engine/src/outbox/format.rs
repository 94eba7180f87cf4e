//! The outbox log's byte format (docs/outbox-format.md): segment headers and records,
//! written into byte buffers and parsed back. Pure: no files, no clock; the parser
//! takes any bytes and never panics on them (fuzzed: `fuzz/fuzz_targets/outbox_scan.rs`).

/// The segment header's magic bytes.
pub const MAGIC: [u8; 8] = *b"RWOBXLOG";
/// The format's version.
pub const VERSION: u16 = 1;
/// Bytes of the segment header; records start here.
pub const SEGMENT_HEADER: usize = 64;
/// Bytes of a record's header; the payload follows.
pub const RECORD_HEADER: usize = 56;
/// Records start at multiples of this.
pub const ALIGN: usize = 8;

/// Offsets of a record's fields.
pub(crate) mod field {
    pub(crate) const LEN: usize = 0;
    pub(crate) const CRC: usize = 4;
    /// Mutable: the record's state ([`super::State`]).
    pub(crate) const STATE: usize = 8;
    /// Mutable: sends so far (u16).
    pub(crate) const ATTEMPTS: usize = 10;
    pub(crate) const KIND: usize = 16;
    pub(crate) const FLAGS: usize = 17;
    pub(crate) const STREAM: usize = 24;
    pub(crate) const ID: usize = 32;
    pub(crate) const APPENDED: usize = 48;
}

/// A record's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A message for the peer.
    Message = 1,
    /// The segment's last record; its `stream` field names the next segment's `seq`.
    Seal = 2,
}

/// A message record's state, stored in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not acknowledged yet.
    Live = 0,
    /// Acknowledged by the peer.
    Acked = 1,
    /// Given up after too many sends; the application may read it.
    Dead = 2,
    /// A dead letter the application took.
    Taken = 3,
}

impl State {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Live,
            1 => Self::Acked,
            2 => Self::Dead,
            3 => Self::Taken,
            _ => return None,
        })
    }
}

/// Bit of `flags`: the payload is text.
pub const FLAG_TEXT: u8 = 1;

/// The next multiple of [`ALIGN`] at or after `n`.
pub fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// A segment's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's sequence number in its log.
    pub seq: u64,
    /// When it was (re)used, Unix nanoseconds.
    pub created_ns: u64,
    /// The file's size.
    pub size: u32,
    /// The worker whose log it is.
    pub worker: u16,
    /// The largest message id the log had issued or taken when the segment was (re)used:
    /// ids issued after a recovery start above it, even once every record that held a
    /// larger one is recycled (0 in files written before this field).
    pub floor: u128,
}

impl SegmentHeader {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER] {
        let mut b = [0u8; SEGMENT_HEADER];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(SEGMENT_HEADER as u16).to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ns.to_le_bytes());
        b[32..36].copy_from_slice(&self.size.to_le_bytes());
        b[36..38].copy_from_slice(&self.worker.to_le_bytes());
        b[40..56].copy_from_slice(&self.floor.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The header in `b`, if it is one (magic, version, length and CRC all right).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..SEGMENT_HEADER)?;
        if b[0..8] != MAGIC
            || u16_at(b, 8)? != VERSION
            || usize::from(u16_at(b, 10)?) != SEGMENT_HEADER
            || crc32c::crc32c(&b[..60]) != u32_at(b, 60)?
        {
            return None;
        }
        Some(Self {
            seq: u64_at(b, 16)?,
            created_ns: u64_at(b, 24)?,
            size: u32_at(b, 32)?,
            worker: u16_at(b, 36)?,
            floor: u128_at(b, 40)?,
        })
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn u128_at(b: &[u8], at: usize) -> Option<u128> {
    Some(u128::from_le_bytes(b.get(at..at + 16)?.try_into().ok()?))
}

/// What a record says, apart from its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Its kind.
    pub kind: Kind,
    /// `flags` ([`FLAG_TEXT`]).
    pub flags: u8,
    /// The application's stream id (a seal: the next segment's `seq`).
    pub stream: u64,
    /// The message id.
    pub id: u128,
    /// When it was appended, Unix nanoseconds.
    pub appended_ns: u64,
}

/// The CRC of a record: seeded with the segment's `seq`, over `len` and bytes
/// `[16, len)` (the mutable bytes `[8, 16)` are not covered).
fn record_crc(seq: u64, rec: &[u8]) -> u32 {
    let c = crc32c::crc32c(&seq.to_le_bytes());
    let c = crc32c::crc32c_append(c, &rec[..4]);
    crc32c::crc32c_append(c, &rec[16..])
}

/// Writes a whole record (header, payload) for segment `seq` into `out` (cleared
/// first), state live, no attempts. Its length is `RECORD_HEADER + payload.len()`.
pub fn encode_record(seq: u64, meta: &RecordMeta, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let len = RECORD_HEADER + payload.len();
    out.resize(RECORD_HEADER, 0);
    out[field::LEN..field::LEN + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[field::KIND] = meta.kind as u8;
    out[field::FLAGS] = meta.flags;
    out[field::STREAM..field::STREAM + 8].copy_from_slice(&meta.stream.to_le_bytes());
    out[field::ID..field::ID + 16].copy_from_slice(&meta.id.to_le_bytes());
    out[field::APPENDED..field::APPENDED + 8].copy_from_slice(&meta.appended_ns.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = record_crc(seq, out);
    out[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A valid record found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Its offset in the segment.
    pub offset: usize,
    /// Its length (header and payload).
    pub len: usize,
    /// Its fields.
    pub meta: RecordMeta,
    /// Its state (an unknown value reads as live: the message is sent again rather than
    /// dropped).
    pub state: State,
    /// Its sends so far.
    pub attempts: u16,
}

/// What [`scan`] found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// Its header.
    pub header: SegmentHeader,
    /// Its valid message records, in order.
    pub records: Vec<Scanned>,
    /// Where its valid data ends (the write offset if it is the active segment).
    pub end: usize,
    /// The `seq` its seal names, if it ends with one.
    pub sealed: Option<u64>,
}

/// Parses a segment through `read(offset, buf)`, which fills `buf` with the segment's
/// bytes at `offset` (within `size`). `None` if its header is not valid. Never reads
/// outside `[0, size)` and never panics, whatever the bytes.
pub fn scan(size: usize, mut read: impl FnMut(usize, &mut [u8])) -> Option<SegmentScan> {
    if size < SEGMENT_HEADER {
        return None;
    }
    let mut head = [0u8; SEGMENT_HEADER];
    read(0, &mut head);
    let header = SegmentHeader::decode(&head)?;
    let mut records = Vec::new();
    let mut off = SEGMENT_HEADER;
    let mut buf = Vec::new();
    let mut sealed = None;
    while off + RECORD_HEADER <= size {
        let mut len_bytes = [0u8; 4];
        read(off, &mut len_bytes);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len < RECORD_HEADER || len > size - off {
            break;
        }
        buf.resize(len, 0);
        read(off, &mut buf);
        let Some(crc) = u32_at(&buf, field::CRC) else { break };
        if record_crc(header.seq, &buf) != crc {
            break;
        }
        let (Some(stream), Some(id), Some(appended_ns), Some(attempts)) = (
            u64_at(&buf, field::STREAM),
            u128_at(&buf, field::ID),
            u64_at(&buf, field::APPENDED),
            u16_at(&buf, field::ATTEMPTS),
        ) else {
            break;
        };
        let (flags, state) = (buf[field::FLAGS], State::from_u8(buf[field::STATE]));
        let state = state.unwrap_or(State::Live);
        match buf[field::KIND] {
            1 => {
                let meta = RecordMeta { kind: Kind::Message, flags, stream, id, appended_ns };
                records.push(Scanned { offset: off, len, meta, state, attempts });
            }
            2 => {
                sealed = Some(stream);
                off = align(off + len).min(size);
                break;
            }
            // A valid CRC over an unknown kind: a newer format; stop rather than guess.
            _ => break,
        }
        off = align(off + len).min(size);
    }
    Some(SegmentScan { header, records, end: off, sealed })
}

/// [`scan`] over a segment image in memory (for tools and fuzzing).
pub fn scan_bytes(image: &[u8]) -> Option<SegmentScan> {
    scan(image.len(), |off, buf| {
        let end = (off + buf.len()).min(image.len());
        let n = end.saturating_sub(off);
        buf[..n].copy_from_slice(&image[off..end]);
        buf[n..].fill(0);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(stream: u64, id: u128) -> RecordMeta {
        RecordMeta { kind: Kind::Message, flags: FLAG_TEXT, stream, id, appended_ns: 7 }
    }

    fn image(seq: u64, records: &[(RecordMeta, &[u8])]) -> Vec<u8> {
        let h = SegmentHeader { seq, created_ns: 1, size: 4096, worker: 3, floor: 0 };
        let mut img = vec![0u8; 4096];
        img[..SEGMENT_HEADER].copy_from_slice(&h.encode());
        let mut off = SEGMENT_HEADER;
        let mut rec = Vec::new();
        for (m, p) in records {
            encode_record(seq, m, p, &mut rec);
            img[off..off + rec.len()].copy_from_slice(&rec);
            off = align(off + rec.len());
        }
        img
    }

    #[test]
    fn records_round_trip_and_the_scan_stops_at_the_zeros() {
        let img = image(9, &[(meta(1, 10), b"hello"), (meta(2, 11), b"")]);
        let s = scan_bytes(&img).unwrap();
        assert_eq!(s.header.seq, 9);
        assert_eq!(s.records.len(), 2);
        assert_eq!((s.records[0].meta, s.records[0].len), (meta(1, 10), 61));
        assert_eq!(s.records[1].offset, align(64 + 61));
        assert_eq!(s.end, align(64 + 61) + 56);
        assert_eq!(s.sealed, None);
    }

    #[test]
    fn a_flipped_bit_ends_the_valid_data_at_that_record() {
        let img = image(9, &[(meta(1, 10), b"a"), (meta(1, 11), b"bb"), (meta(1, 12), b"c")]);
        let second = scan_bytes(&img).unwrap().records[1].offset;
        for byte in [0, 4, 16, 24, 32, 48, 56] {
            let mut bad = img.clone();
            bad[second + byte] ^= 0x20;
            let s = scan_bytes(&bad).unwrap();
            assert_eq!((s.records.len(), s.end), (1, second), "byte {byte}");
        }
        // The mutable bytes are not covered: a state change is not a torn record.
        let mut acked = img.clone();
        acked[second + field::STATE] = State::Acked as u8;
        acked[second + field::ATTEMPTS] = 3;
        let s = scan_bytes(&acked).unwrap();
        assert_eq!(s.records.len(), 3);
        assert_eq!((s.records[1].state, s.records[1].attempts), (State::Acked, 3));
    }

    #[test]
    fn a_record_of_an_earlier_use_of_the_segment_does_not_pass() {
        // Segment 9's records under a header that says 10: a recycled file's leftovers.
        let mut img = image(9, &[(meta(1, 10), b"old")]);
        let h = SegmentHeader { seq: 10, created_ns: 1, size: 4096, worker: 3, floor: 0 };
        img[..SEGMENT_HEADER].copy_from_slice(&h.encode());
        let s = scan_bytes(&img).unwrap();
        assert!(s.records.is_empty());
        assert_eq!(s.end, SEGMENT_HEADER);
    }

    #[test]
    fn a_seal_ends_the_segment_and_names_the_next() {
        let seal = RecordMeta { kind: Kind::Seal, flags: 0, stream: 10, id: 0, appended_ns: 0 };
        let img = image(9, &[(meta(1, 1), b"x"), (seal, b""), (meta(1, 2), b"after")]);
        let s = scan_bytes(&img).unwrap();
        assert_eq!((s.records.len(), s.sealed), (1, Some(10)));
    }

    #[test]
    fn bad_headers_and_lengths_are_refused() {
        let img = image(9, &[(meta(1, 1), b"x")]);
        for byte in [0, 8, 10, 16, 33, 60] {
            let mut bad = img.clone();
            bad[byte] ^= 1;
            assert_eq!(scan_bytes(&bad), None, "header byte {byte}");
        }
        assert_eq!(scan_bytes(&img[..40]), None);
        // A length past the end, or under a header, ends the data.
        for len in [1u32, 55, 5000, u32::MAX] {
            let mut bad = img.clone();
            bad[64..68].copy_from_slice(&len.to_le_bytes());
            let s = scan_bytes(&bad).unwrap();
            assert_eq!((s.records.len(), s.end), (0, 64), "len {len}");
        }
    }
}
