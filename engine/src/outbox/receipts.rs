//! The receiving side of the durable outbox: for each stream, the largest message id the
//! application has handled (its high-water mark), kept in a small mapped file that a
//! crash of the process does not lose.
//!
//! A client names a stream (a `u64`) in its WebSocket handshake, and the ids of the
//! durable messages on a stream increase. Before a message goes to the application its
//! id is stored with an "in doubt" mark ([`Checkout::begin`]), and the mark is cleared
//! once the application returns ([`Checkout::done`]). So after a restart an id below the
//! mark, or equal to it and not in doubt, is a duplicate; an id equal to it and in doubt
//! was being handled when the process died, and is delivered again, flagged; an id
//! above it is new ([`Checkout::classify`]).
//!
//! The table is shared by all workers and holds at most `slots` streams. A connection
//! takes its stream with [`Receipts::check_out`] (under a mutex), stores each message's
//! state through its [`Checkout`] with no lock at all (the slot is its alone), and gives
//! the stream back with [`Receipts::check_in`]. A new stream takes a free slot, or else
//! the slot of the stream checked in longest ago, and that stream is forgotten: if it
//! comes back it starts again from a mark of 0, so the messages it had already handled
//! are no longer recognised as duplicates.
//!
//! # The file
//!
//! `<dir>/receipts.map`, with `<dir>/RECEIPTS.LOCK` locked (an exclusive `flock`) for as
//! long as the table is open. A 64-byte header, then `slots` slots of 64 bytes, each made
//! of two 32-byte halves:
//!
//! ```text
//! header, at 0:
//!   0         8       10      12        16                        60      64
//!   | magic   | ver=1 | 0     | slots   | 0 ...                    | crc   |
//!     "RWRCPTS1"  u16           u32                                  CRC32C of [0, 60)
//!
//! slot i, at 64 + 64·i:
//!   0                                   32                                  64
//!   | half A                            | half B                            |
//!
//! a half:
//!   0         8                   24              28      32
//!   | stream  | hwm               | D | seq       | crc   |
//!     u64       u128                u32: bit 31 = D   CRC32C of [0, 28)
//! ```
//!
//! Integers are little-endian. `D` is the in-doubt bit and `seq` (the word's low 31 bits)
//! numbers the slot's writes, wrapping. A half whose CRC does not match, or whose stream,
//! mark and word are all zero, is invalid. A new file is zero-filled and gets its header
//! on first open; a file with a header that does not check out, or made for another
//! number of slots, is refused ([`io::ErrorKind::InvalidData`]), never wiped.
//!
//! # Why a torn write cannot lose a slot's state
//!
//! Each new state of a slot goes to the half that does *not* hold its newest valid state,
//! numbered one more than that state. A kill -9 in the middle of the 32-byte copy can
//! therefore damage only the older half. On open, the newest state of a slot is the valid
//! half whose `seq` is the other's plus one (or the only valid half): either the new state
//! (the copy finished) or the one before it (the copy did not finish, and then the store
//! had not returned, so the message it was about had not gone to the application yet, or
//! the application had already returned from it).
//!
//! What a kill -9 can do, then: the message being handled when it struck (or the one
//! whose "done" store it tore) is delivered once more after the restart, flagged in
//! doubt. It cannot make a handled message look new, nor a new one look handled. The
//! stores reach the file through a shared mapping, whose pages the kernel keeps when the
//! process dies; nothing here is synced (no `fsync`), so a power loss or a crash of the
//! machine may lose recent stores. The promise is against process crashes only.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::sys::mmap::{lock_file, MappedFile};

/// The table's file name in its directory.
const FILE_NAME: &str = "receipts.map";
/// The lock file's name in the table's directory.
const LOCK_NAME: &str = "RECEIPTS.LOCK";
/// The first bytes of the file.
const MAGIC: &[u8; 8] = b"RWRCPTS1";
/// The format's version, in the header.
const VERSION: u16 = 1;
/// The header's size.
const HEADER_LEN: usize = 64;
/// A slot's size: two halves.
const SLOT_LEN: usize = 64;
/// A half's size.
const HALF_LEN: usize = 32;
/// The bits of a half's word that hold its sequence number.
const SEQ_MASK: u32 = 0x7FFF_FFFF;
/// The bit of a half's word that marks its state in doubt.
const DOUBT_BIT: u32 = 1 << 31;

/// One of the two halves of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    /// The first 32 bytes.
    A,
    /// The last 32 bytes.
    B,
}

impl Half {
    /// The other half.
    fn other(self) -> Self {
        match self {
            Half::A => Half::B,
            Half::B => Half::A,
        }
    }

    /// Where this half starts in its slot.
    fn offset(self) -> usize {
        match self {
            Half::A => 0,
            Half::B => HALF_LEN,
        }
    }
}

/// The state one half holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    /// The stream the slot belongs to.
    stream: u64,
    /// The largest id handled (or being handled, if in doubt).
    hwm: u128,
    /// Whether message `hwm` was being handled, its outcome unknown.
    in_doubt: bool,
    /// The number of this write to the slot, 31 bits, wrapping.
    seq: u32,
}

impl State {
    /// How two states compare when their order cannot be told from their numbers: the
    /// larger mark first, and at the same mark the one not in doubt (it came later).
    fn rank(&self) -> (u128, bool) {
        (self.hwm, !self.in_doubt)
    }
}

/// The sequence number after `seq`.
fn next_seq(seq: u32) -> u32 {
    seq.wrapping_add(1) & SEQ_MASK
}

/// The bytes of a half holding `s`.
fn encode(s: &State) -> [u8; HALF_LEN] {
    let mut b = [0u8; HALF_LEN];
    b[0..8].copy_from_slice(&s.stream.to_le_bytes());
    b[8..24].copy_from_slice(&s.hwm.to_le_bytes());
    let word = (s.seq & SEQ_MASK) | if s.in_doubt { DOUBT_BIT } else { 0 };
    b[24..28].copy_from_slice(&word.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The state a half holds, or `None` if it is invalid (a checksum that does not match,
/// or nothing written).
fn decode(b: &[u8; HALF_LEN]) -> Option<State> {
    let mut stream = [0u8; 8];
    stream.copy_from_slice(&b[0..8]);
    let mut hwm = [0u8; 16];
    hwm.copy_from_slice(&b[8..24]);
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[24..28]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[28..32]);
    if crc32c::crc32c(&b[0..28]) != u32::from_le_bytes(crc) {
        return None;
    }
    let (stream, hwm, word) =
        (u64::from_le_bytes(stream), u128::from_le_bytes(hwm), u32::from_le_bytes(word));
    if stream == 0 && hwm == 0 && word == 0 {
        // Never written (the CRC of zeros is not zero, but say it plainly). Stream 0 at
        // mark 0 with its numbering wrapped back to 0 reads as empty too: the same as a
        // stream that is not known, which starts at mark 0.
        return None;
    }
    Some(State { stream, hwm, in_doubt: word & DOUBT_BIT != 0, seq: word & SEQ_MASK })
}

/// The newest of a slot's two decoded halves, and which half it is in; `None` if
/// neither is valid.
fn newest(a: Option<State>, b: Option<State>) -> Option<(Half, State)> {
    match (a, b) {
        (None, None) => None,
        (Some(a), None) => Some((Half::A, a)),
        (None, Some(b)) => Some((Half::B, b)),
        (Some(a), Some(b)) => {
            if b.seq == next_seq(a.seq) {
                Some((Half::B, b))
            } else if a.seq == next_seq(b.seq) {
                Some((Half::A, a))
            } else if b.rank() > a.rank() {
                Some((Half::B, b))
            } else {
                Some((Half::A, a))
            }
        }
    }
}

/// The header of a table of `slots` slots.
fn encode_header(slots: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&slots.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Where slot `slot` starts in the file.
fn slot_offset(slot: u32) -> usize {
    HEADER_LEN + slot as usize * SLOT_LEN
}

/// The size of the file of a table of `slots` slots.
fn file_len(slots: u32) -> io::Result<usize> {
    (slots as usize)
        .checked_mul(SLOT_LEN)
        .and_then(|n| n.checked_add(HEADER_LEN))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many slots"))
}

/// Who holds a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Nobody: the slot holds no stream.
    Free,
    /// Nobody, but it holds a stream, checked in at this tick (its key in the LRU order).
    Idle(u64),
    /// A connection, by its token.
    Owned(u64),
}

/// What the table knows of one slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Its newest state (as of its last check-in, when owned); only `seq` matters when
    /// the slot is free.
    state: State,
    /// The half holding that state; `None` if neither half is valid.
    newest: Option<Half>,
    /// Who holds it.
    owner: Use,
}

impl Slot {
    /// A slot with nothing valid in it.
    fn free() -> Self {
        Slot {
            state: State { stream: 0, hwm: 0, in_doubt: false, seq: 0 },
            newest: None,
            owner: Use::Free,
        }
    }
}

/// The table in memory, behind the mutex.
struct Table {
    /// Every slot, by index.
    slots: Vec<Slot>,
    /// The slot of each known stream.
    by_stream: HashMap<u64, u32>,
    /// The slots holding a stream that nobody owns, by the tick they were checked in at:
    /// the first is the one to evict.
    lru: BTreeMap<u64, u32>,
    /// The slots holding no stream; the last is taken first.
    free: Vec<u32>,
    /// The next check-in tick.
    tick: u64,
    /// How many slots are owned.
    owned: usize,
}

impl Table {
    /// Makes `slot` (which holds a stream) unowned and the most recently checked in.
    fn make_idle(&mut self, slot: u32) {
        let tick = self.tick;
        self.tick += 1;
        self.lru.insert(tick, slot);
        self.slots[slot as usize].owner = Use::Idle(tick);
    }

    /// Forgets the stream in `slot`, an unowned one, and zeroes the slot in `file`.
    fn release(&mut self, file: &MappedFile, slot: u32) {
        let s = self.slots[slot as usize];
        if let Use::Idle(tick) = s.owner {
            self.lru.remove(&tick);
        }
        if self.by_stream.get(&s.state.stream) == Some(&slot) {
            self.by_stream.remove(&s.state.stream);
        }
        file.write(slot_offset(slot), &[0u8; SLOT_LEN]);
        self.slots[slot as usize] = Slot::free();
        self.free.push(slot);
    }
}

/// The engine's table of receipts: per stream, the largest message id handled. Shared by
/// every worker (it is `Sync`); see the module's documentation.
pub(crate) struct Receipts {
    /// The mapped file. Dropped before the lock below.
    file: MappedFile,
    /// The lock on the directory, held while the table is open.
    _lock: File,
    /// Which stream is in which slot, and who holds it.
    table: Mutex<Table>,
}

impl std::fmt::Debug for Receipts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (known, owned) = self.counts();
        f.debug_struct("Receipts").field("known", &known).field("owned", &owned).finish()
    }
}

/// One stream taken by one connection: its state, and the right to store the state of
/// its messages without a lock. It must go back with [`Receipts::check_in`] to the table
/// it came from; one that is dropped instead leaves its stream owned until the table is
/// opened again.
#[derive(Debug)]
#[must_use = "a checkout must be checked in, or its stream stays owned"]
pub(crate) struct Checkout {
    /// Its slot in the table.
    slot: u32,
    /// Its stream.
    stream: u64,
    /// The largest id handled, or being handled if in doubt.
    hwm: u128,
    /// Whether message `hwm` was being handled, its outcome unknown.
    in_doubt: bool,
    /// The sequence number of the newest state in the file.
    seq: u32,
    /// The half holding that state: the next write goes to the other one.
    newest: Half,
}

/// Why a stream could not be checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckoutError {
    /// Another checkout holds the stream, the one with this owner token (a stream is
    /// checked out once at a time, even by the same owner).
    Busy {
        /// The owner that holds it.
        owner: u64,
    },
    /// The stream is not known and every slot is owned: nothing to evict.
    Full,
}

/// What an incoming message id is, for a stream ([`Checkout::classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Above the mark: not handled yet.
    New,
    /// Below the mark, or at it and not in doubt: handled already.
    Duplicate,
    /// At the mark, in doubt: it was being handled when the process may have died, so
    /// it goes to the application again, flagged.
    InDoubt,
}

impl Receipts {
    /// Opens the table in `dir` (created if absent) with room for `slots` streams, and
    /// recovers each slot's newest state. A new file is created zero-filled and given its
    /// header. Refused with [`io::ErrorKind::InvalidData`] if the file's header is not
    /// valid or it was made for another number of slots, with
    /// [`io::ErrorKind::WouldBlock`] if another table holds the directory, and with
    /// [`io::ErrorKind::InvalidInput`] if `slots` is 0.
    pub(crate) fn open(dir: &Path, slots: u32) -> io::Result<Self> {
        if slots == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a receipts table needs at least one slot",
            ));
        }
        let want = file_len(slots)?;
        std::fs::create_dir_all(dir)?;
        let lock = lock_file(&dir.join(LOCK_NAME))?;
        let path = dir.join(FILE_NAME);
        let file = MappedFile::open(&path, want)?;
        check_header(&file, &path, slots, want)?;
        let table = recover(&file, slots);
        Ok(Receipts { file, _lock: lock, table: Mutex::new(table) })
    }

    /// Takes stream `stream` for the connection `owner` (an opaque token, e.g. a
    /// connection id). A stream that is known and unowned is handed out with its last
    /// state; a new one takes a free slot or, if there is none, evicts the unowned stream
    /// checked in longest ago (which forgets its mark: back later, it starts from 0), and
    /// starts at mark 0. `Busy` if the stream is owned already, `Full` if it is new and
    /// every slot is owned.
    pub(crate) fn check_out(&self, stream: u64, owner: u64) -> Result<Checkout, CheckoutError> {
        let mut t = self.lock();
        if let Some(&slot) = t.by_stream.get(&stream) {
            let s = t.slots[slot as usize];
            return match s.owner {
                Use::Owned(o) => Err(CheckoutError::Busy { owner: o }),
                Use::Idle(tick) => {
                    t.lru.remove(&tick);
                    t.slots[slot as usize].owner = Use::Owned(owner);
                    t.owned += 1;
                    Ok(Checkout {
                        slot,
                        stream,
                        hwm: s.state.hwm,
                        in_doubt: s.state.in_doubt,
                        seq: s.state.seq,
                        newest: s.newest.unwrap_or(Half::A),
                    })
                }
                // Not reached: a free slot is in no stream's entry.
                Use::Free => Err(CheckoutError::Full),
            };
        }
        let slot = match t.free.pop() {
            Some(slot) => slot,
            None => {
                let Some((_, slot)) = t.lru.pop_first() else {
                    return Err(CheckoutError::Full);
                };
                let old = t.slots[slot as usize].state.stream;
                t.by_stream.remove(&old);
                slot
            }
        };
        let s = t.slots[slot as usize];
        let (half, seq) = match s.newest {
            Some(h) => (h.other(), next_seq(s.state.seq)),
            None => (Half::A, 1),
        };
        let state = State { stream, hwm: 0, in_doubt: false, seq };
        // The new stream's state first, numbered after the old one's, then the old one
        // gone: a crash in between leaves both, and the numbering picks the new one.
        self.write_half(slot, half, &state);
        self.write_half_bytes(slot, half.other(), &[0u8; HALF_LEN]);
        t.slots[slot as usize] = Slot { state, newest: Some(half), owner: Use::Owned(owner) };
        t.by_stream.insert(stream, slot);
        t.owned += 1;
        Ok(Checkout { slot, stream, hwm: 0, in_doubt: false, seq, newest: half })
    }

    /// Gives the stream of `c` back (its state is in the file already). It becomes
    /// evictable, the last in line: the least recently checked in goes first.
    pub(crate) fn check_in(&self, c: Checkout) {
        let mut t = self.lock();
        let Some(s) = t.slots.get(c.slot as usize).copied() else {
            debug_assert!(false, "a checkout of another table");
            return;
        };
        if s.state.stream != c.stream || !matches!(s.owner, Use::Owned(_)) {
            debug_assert!(false, "a checkout of another table");
            return;
        }
        t.slots[c.slot as usize].state =
            State { stream: c.stream, hwm: c.hwm, in_doubt: c.in_doubt, seq: c.seq };
        t.slots[c.slot as usize].newest = Some(c.newest);
        t.owned -= 1;
        t.make_idle(c.slot);
    }

    /// The number of streams known and the number of them currently owned.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let t = self.lock();
        (t.by_stream.len(), t.owned)
    }

    /// The table, whether or not a thread panicked holding it (it is never left half
    /// changed across a call that can panic).
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `state` in half `half` of slot `slot`.
    fn write_half(&self, slot: u32, half: Half, state: &State) {
        self.write_half_bytes(slot, half, &encode(state));
    }

    /// Copies `bytes` into half `half` of slot `slot`.
    fn write_half_bytes(&self, slot: u32, half: Half, bytes: &[u8; HALF_LEN]) {
        self.file.write(slot_offset(slot) + half.offset(), bytes);
    }
}

impl Checkout {
    /// The stream.
    pub(crate) fn stream(&self) -> u64 {
        self.stream
    }

    /// The largest id handled, or being handled if in doubt; 0 for a new stream.
    #[cfg(test)]
    pub(crate) fn hwm(&self) -> u128 {
        self.hwm
    }

    /// Every id up to this one is handled: the mark, or just below it while message
    /// `hwm` is in doubt (what an acknowledgement may say).
    pub(crate) fn handled(&self) -> u128 {
        if self.in_doubt {
            self.hwm.saturating_sub(1)
        } else {
            self.hwm
        }
    }

    /// What the incoming message `id` is: `Duplicate` if it is below the mark, or at it
    /// and not in doubt; `InDoubt` if it is at the mark and in doubt (it was being handled
    /// at a crash: deliver it, flagged); `New` if it is above. On a new stream (mark 0)
    /// every id but 0 is new: ids start above 0.
    pub(crate) fn classify(&self, id: u128) -> Verdict {
        match id.cmp(&self.hwm) {
            std::cmp::Ordering::Less => Verdict::Duplicate,
            std::cmp::Ordering::Equal if self.in_doubt => Verdict::InDoubt,
            std::cmp::Ordering::Equal => Verdict::Duplicate,
            std::cmp::Ordering::Greater => Verdict::New,
        }
    }

    /// Marks message `id` as about to go to the application: stores (stream, `id`, in
    /// doubt) in `r`'s file, with no lock (the slot is this checkout's alone). `r` must be
    /// the table this checkout came from, and `id` must not be a duplicate
    /// (`classify(id) != Duplicate`).
    pub(crate) fn begin(&mut self, r: &Receipts, id: u128) {
        debug_assert!(self.classify(id) != Verdict::Duplicate, "begin of a duplicate");
        self.store(r, id, true);
    }

    /// Marks the message in doubt as handled (the application returned): stores (stream,
    /// its id, not in doubt). Does nothing if no message is in doubt.
    pub(crate) fn done(&mut self, r: &Receipts) {
        if self.in_doubt {
            self.store(r, self.hwm, false);
        }
    }

    /// Stores a new state in the half not holding the newest one, numbered after it.
    fn store(&mut self, r: &Receipts, hwm: u128, in_doubt: bool) {
        let half = self.newest.other();
        let seq = next_seq(self.seq);
        r.write_half(self.slot, half, &State { stream: self.stream, hwm, in_doubt, seq });
        self.hwm = hwm;
        self.in_doubt = in_doubt;
        self.seq = seq;
        self.newest = half;
    }
}

/// A stream's entry in a receipts table, as [`read_image`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The stream.
    pub stream: u64,
    /// The largest id handled (or being handled, if in doubt).
    pub hwm: u128,
    /// Message `hwm` was being handled when the process ended: it is delivered again,
    /// flagged ([`crate::outbox::Delivery::redelivered`]).
    pub in_doubt: bool,
}

/// Reads the image of a receipts table (`receipts.map`, the whole file) as recovery
/// does, without opening it: the streams it remembers, in slot order. An error says
/// why the image is not a table (the engine refuses such a file at start). For tools
/// that show what a server remembers, and for fuzzing: it never panics.
pub fn read_image(image: &[u8]) -> Result<Vec<Receipt>, String> {
    let head = image.get(..HEADER_LEN).ok_or("too short for a header")?;
    if &head[0..8] != MAGIC {
        return Err("not a receipts table (bad magic)".into());
    }
    let crc = u32::from_le_bytes([head[60], head[61], head[62], head[63]]);
    if crc32c::crc32c(&head[0..60]) != crc {
        return Err("header checksum mismatch".into());
    }
    let version = u16::from_le_bytes([head[8], head[9]]);
    if version != VERSION {
        return Err(format!("format version {version}, this build reads {VERSION}"));
    }
    let slots = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    let want = file_len(slots).map_err(|e| e.to_string())?;
    if image.len() != want {
        return Err(format!("{} bytes, not the {want} of {slots} slots", image.len()));
    }
    let mut found: Vec<State> = Vec::new();
    let mut at: HashMap<u64, usize> = HashMap::new();
    for slot in image[HEADER_LEN..].chunks_exact(SLOT_LEN) {
        let (a, b) = slot.split_at(HALF_LEN);
        let (Ok(a), Ok(b)) = (<&[u8; HALF_LEN]>::try_from(a), <&[u8; HALF_LEN]>::try_from(b))
        else {
            continue;
        };
        let Some((_, state)) = newest(decode(a), decode(b)) else { continue };
        // Two slots of one stream: the larger mark counts, as in recovery.
        match at.get(&state.stream) {
            Some(&i) if found[i].rank() >= state.rank() => {}
            Some(&i) => found[i] = state,
            None => {
                at.insert(state.stream, found.len());
                found.push(state);
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|s| Receipt { stream: s.stream, hwm: s.hwm, in_doubt: s.in_doubt })
        .collect())
}

/// Checks the header of `file`, or writes one into a new (zero-filled) file.
fn check_header(file: &MappedFile, path: &Path, slots: u32, want: usize) -> io::Result<()> {
    let bad = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("receipts table {}: {what}", path.display()),
        )
    };
    let len = file.len();
    if len < HEADER_LEN {
        return Err(bad(format!("{len} bytes, too short for a header")));
    }
    let mut h = [0u8; HEADER_LEN];
    file.read(0, &mut h);
    if h == [0u8; HEADER_LEN] {
        if len != want {
            return Err(bad(format!(
                "no header and {len} bytes, not the {want} of {slots} slots; not formatting it"
            )));
        }
        let mut s = [0u8; SLOT_LEN];
        for slot in 0..slots {
            file.read(slot_offset(slot), &mut s);
            if s != [0u8; SLOT_LEN] {
                return Err(bad(format!(
                    "no header but slot {slot} holds data; not formatting it"
                )));
            }
        }
        file.write(0, &encode_header(slots));
        // Once: after a power loss the header must not be missing under slots written.
        return file.sync();
    }
    if &h[0..8] != MAGIC {
        return Err(bad("not a receipts table (bad magic)".into()));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&h[60..64]);
    if crc32c::crc32c(&h[0..60]) != u32::from_le_bytes(crc) {
        return Err(bad("header checksum mismatch".into()));
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != VERSION {
        return Err(bad(format!("format version {version}, this build reads {VERSION}")));
    }
    let count = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if count != slots {
        return Err(bad(format!("made for {count} slots, configured for {slots}")));
    }
    if len != want {
        return Err(bad(format!("{len} bytes, not the {want} of {slots} slots")));
    }
    Ok(())
}

/// Reads every slot's newest state from `file` (whose header was checked: it holds
/// `slots` slots) into a table where no stream is owned. Of two slots with the same
/// stream, the one with the larger mark stays and the other is zeroed and freed.
fn recover(file: &MappedFile, slots: u32) -> Table {
    let mut t = Table {
        slots: Vec::with_capacity(slots as usize),
        by_stream: HashMap::new(),
        lru: BTreeMap::new(),
        free: Vec::new(),
        tick: 0,
        owned: 0,
    };
    for slot in 0..slots {
        let (mut a, mut b) = ([0u8; HALF_LEN], [0u8; HALF_LEN]);
        file.read(slot_offset(slot), &mut a);
        file.read(slot_offset(slot) + HALF_LEN, &mut b);
        let Some((half, state)) = newest(decode(&a), decode(&b)) else {
            t.slots.push(Slot::free());
            t.free.push(slot);
            continue;
        };
        t.slots.push(Slot { state, newest: Some(half), owner: Use::Free });
        if let Some(&other) = t.by_stream.get(&state.stream) {
            if state.rank() > t.slots[other as usize].state.rank() {
                t.release(file, other);
            } else {
                t.slots[slot as usize] = Slot::free();
                file.write(slot_offset(slot), &[0u8; SLOT_LEN]);
                t.free.push(slot);
                continue;
            }
        }
        t.by_stream.insert(state.stream, slot);
        t.make_idle(slot);
    }
    // The lowest free slot first.
    t.free.sort_unstable_by(|a, b| b.cmp(a));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory of its own under the system's temporary one, removed when dropped.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("rw-receipts-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            TestDir(p)
        }

        fn file(&self) -> PathBuf {
            self.0.join(FILE_NAME)
        }

        /// Changes the file's bytes at `off` with `f` (the table must be closed).
        fn edit(&self, off: usize, f: impl FnOnce(&mut [u8])) {
            let mut bytes = std::fs::read(self.file()).unwrap();
            f(&mut bytes[off..]);
            std::fs::write(self.file(), bytes).unwrap();
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Where the half `h` of `slot` starts in the file.
    fn half_at(slot: u32, h: Half) -> usize {
        slot_offset(slot) + h.offset()
    }

    #[test]
    fn shared_between_threads() {
        fn sync_send<T: Sync + Send>() {}
        sync_send::<MappedFile>();
        sync_send::<Receipts>();
        sync_send::<Checkout>();
    }

    #[test]
    fn halves_round_trip_and_zeros_are_invalid() {
        let s = State { stream: 7, hwm: u128::MAX - 3, in_doubt: true, seq: SEQ_MASK };
        assert_eq!(decode(&encode(&s)), Some(s));
        assert_ne!(crc32c::crc32c(&[0u8; 28]), 0);
        assert_eq!(decode(&[0u8; HALF_LEN]), None);
        let zero = State { stream: 0, hwm: 0, in_doubt: false, seq: 0 };
        assert_eq!(decode(&encode(&zero)), None, "stream, mark and word all zero: empty");
        let mut torn = encode(&s);
        torn[3] ^= 1;
        assert_eq!(decode(&torn), None);
        // The numbering wraps: 0 comes after 2^31 - 1.
        let old = State { seq: SEQ_MASK, hwm: 9, ..s };
        let new = State { seq: 0, hwm: 3, ..s };
        assert_eq!(newest(Some(old), Some(new)), Some((Half::B, new)));
        assert_eq!(newest(Some(new), Some(old)), Some((Half::A, new)));
        // Unrelated numbers: the larger mark, then the one not in doubt.
        let x = State { seq: 10, hwm: 5, in_doubt: true, ..s };
        let y = State { seq: 20, hwm: 5, in_doubt: false, ..s };
        assert_eq!(newest(Some(x), Some(y)), Some((Half::B, y)));
        assert_eq!(newest(Some(y), Some(x)), Some((Half::A, y)));
    }

    #[test]
    fn marks_survive_a_reopen() {
        let d = TestDir::new();
        {
            let r = Receipts::open(&d.0, 4).unwrap();
            let mut c = r.check_out(7, 1).unwrap();
            assert_eq!((c.stream(), c.hwm()), (7, 0));
            assert_eq!(c.classify(1), Verdict::New);
            c.begin(&r, 5);
            c.done(&r);
            c.begin(&r, 9);
            c.done(&r);
            r.check_in(c);
            assert_eq!(r.counts(), (1, 0));
        }
        let r = Receipts::open(&d.0, 4).unwrap();
        assert_eq!(r.counts(), (1, 0));
        let c = r.check_out(7, 2).unwrap();
        assert_eq!(c.hwm(), 9);
        assert_eq!(c.classify(9), Verdict::Duplicate);
        assert_eq!(c.classify(10), Verdict::New);
        assert_eq!(c.classify(3), Verdict::Duplicate);
        assert_eq!(r.counts(), (1, 1));
        r.check_in(c);
    }

    #[test]
    fn a_crash_while_handling_leaves_the_message_in_doubt() {
        let d = TestDir::new();
        {
            let r = Receipts::open(&d.0, 4).unwrap();
            let mut c = r.check_out(7, 1).unwrap();
            c.begin(&r, 11);
            c.done(&r);
            c.begin(&r, 12);
            // Killed here: neither `done` nor a check-in.
            drop(c);
        }
        let r = Receipts::open(&d.0, 4).unwrap();
        let mut c = r.check_out(7, 1).unwrap();
        assert_eq!(c.hwm(), 12);
        assert_eq!(c.classify(12), Verdict::InDoubt);
        assert_eq!(c.classify(11), Verdict::Duplicate);
        assert_eq!(c.classify(13), Verdict::New);
        c.begin(&r, 12);
        c.done(&r);
        assert_eq!(c.classify(12), Verdict::Duplicate);
        r.check_in(c);
    }

    #[test]
    fn a_torn_write_falls_back_to_the_state_before() {
        let d = TestDir::new();
        let (slot, newest_half) = {
            let r = Receipts::open(&d.0, 4).unwrap();
            let mut c = r.check_out(7, 1).unwrap();
            c.begin(&r, 5);
            c.done(&r);
            c.begin(&r, 9);
            c.done(&r);
            let at = (c.slot, c.newest);
            r.check_in(c);
            at
        };
        // The last write ("9 done") torn: "9 in doubt", in the other half, is what stays.
        d.edit(half_at(slot, newest_half) + 10, |b| b[0] ^= 0x40);
        {
            let r = Receipts::open(&d.0, 4).unwrap();
            let c = r.check_out(7, 1).unwrap();
            assert_eq!(c.hwm(), 9);
            assert_eq!(c.classify(9), Verdict::InDoubt);
            assert_eq!(c.newest, newest_half.other());
            r.check_in(c);
        }
        // Both halves damaged: the slot is free, the stream unknown.
        d.edit(half_at(slot, newest_half.other()) + 30, |b| b[0] ^= 0x01);
        let r = Receipts::open(&d.0, 4).unwrap();
        assert_eq!(r.counts(), (0, 0));
        let c = r.check_out(7, 1).unwrap();
        assert_eq!(c.hwm(), 0);
        assert_eq!(c.classify(9), Verdict::New);
        r.check_in(c);
    }

    #[test]
    fn busy_full_and_least_recently_used_eviction() {
        let d = TestDir::new();
        let r = Receipts::open(&d.0, 2).unwrap();
        let mut one = r.check_out(1, 10).unwrap();
        assert_eq!(r.check_out(1, 11).unwrap_err(), CheckoutError::Busy { owner: 10 });
        assert_eq!(r.check_out(1, 10).unwrap_err(), CheckoutError::Busy { owner: 10 });
        let mut two = r.check_out(2, 11).unwrap();
        assert_eq!(r.check_out(3, 12).unwrap_err(), CheckoutError::Full);
        one.begin(&r, 40);
        one.done(&r);
        two.begin(&r, 20);
        two.done(&r);
        r.check_in(two); // checked in first: the first to go
        r.check_in(one);
        assert_eq!(r.counts(), (2, 0));
        let three = r.check_out(3, 12).unwrap();
        assert_eq!(r.counts(), (2, 1));
        assert_eq!(three.hwm(), 0);
        let one = r.check_out(1, 10).unwrap();
        assert_eq!(one.hwm(), 40, "stream 1 kept its mark");
        r.check_in(one);
        r.check_in(three);
        // Stream 2 was evicted: it forgot its window and starts again from 0, so its
        // old ids would be taken for new ones. It evicts stream 1, checked in before 3.
        let two = r.check_out(2, 11).unwrap();
        assert_eq!(two.hwm(), 0);
        assert_eq!(two.classify(20), Verdict::New);
        r.check_in(two);
        let t = r.lock();
        assert!(t.by_stream.contains_key(&2) && t.by_stream.contains_key(&3));
        assert!(!t.by_stream.contains_key(&1));
    }

    #[test]
    fn a_reassigned_slot_belongs_to_the_new_stream_after_a_crash() {
        let d = TestDir::new();
        let before = {
            let r = Receipts::open(&d.0, 1).unwrap();
            let mut a = r.check_out(0xA, 1).unwrap();
            a.begin(&r, 50);
            a.done(&r);
            r.check_in(a);
            let before = std::fs::read(d.file()).unwrap();
            let b = r.check_out(0xB, 2).unwrap();
            assert_eq!(b.hwm(), 0);
            // Killed while stream B is checked out.
            drop(b);
            before
        };
        let check = |d: &TestDir| {
            let r = Receipts::open(&d.0, 1).unwrap();
            assert_eq!(r.counts(), (1, 0));
            assert!(r.lock().by_stream.contains_key(&0xB));
            let b = r.check_out(0xB, 2).unwrap();
            assert_eq!(b.hwm(), 0);
            assert_eq!(r.check_out(0xA, 1).unwrap_err(), CheckoutError::Full, "A is gone");
            r.check_in(b);
        };
        check(&d);
        // Killed between the new half and the zeroing of the old one: both halves are
        // valid, A's and B's, and B's number follows A's.
        let new_half = {
            let bytes = std::fs::read(d.file()).unwrap();
            let a: [u8; HALF_LEN] = bytes[half_at(0, Half::A)..][..HALF_LEN].try_into().unwrap();
            if decode(&a).is_some_and(|s| s.stream == 0xB) {
                Half::A
            } else {
                Half::B
            }
        };
        let old = half_at(0, new_half.other());
        d.edit(old, |b| b[..HALF_LEN].copy_from_slice(&before[old..old + HALF_LEN]));
        let bytes = std::fs::read(d.file()).unwrap();
        let half =
            |h: Half| -> [u8; HALF_LEN] { bytes[half_at(0, h)..][..HALF_LEN].try_into().unwrap() };
        assert_eq!(decode(&half(new_half.other())).map(|s| (s.stream, s.hwm)), Some((0xA, 50)));
        check(&d);
    }

    #[test]
    fn a_bad_header_or_another_slot_count_is_refused() {
        let d = TestDir::new();
        drop(Receipts::open(&d.0, 3).unwrap());
        let held = Receipts::open(&d.0, 3).unwrap();
        assert_eq!(Receipts::open(&d.0, 3).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(held);
        let e = Receipts::open(&d.0, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("made for 3 slots"), "{e}");
        assert_eq!(Receipts::open(&d.0, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        for off in [0usize, 9, 13, 40, 61] {
            d.edit(off, |b| b[0] ^= 0x10);
            let e = Receipts::open(&d.0, 3).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "byte {off}: {e}");
            d.edit(off, |b| b[0] ^= 0x10);
            assert!(Receipts::open(&d.0, 3).is_ok());
        }
        // A valid header but a file of the wrong size.
        let mut bytes = std::fs::read(d.file()).unwrap();
        bytes.extend_from_slice(&[0u8; SLOT_LEN]);
        std::fs::write(d.file(), &bytes).unwrap();
        assert_eq!(Receipts::open(&d.0, 3).unwrap_err().kind(), io::ErrorKind::InvalidData);
        // Too short for a header.
        std::fs::write(d.file(), [1u8; 10]).unwrap();
        assert_eq!(Receipts::open(&d.0, 3).unwrap_err().kind(), io::ErrorKind::InvalidData);
        // No header, but data in the slots: not formatted over.
        let mut bytes = vec![0u8; file_len(3).unwrap()];
        bytes[HEADER_LEN + 70] = 1;
        std::fs::write(d.file(), &bytes).unwrap();
        let e = Receipts::open(&d.0, 3).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read(d.file()).unwrap(), bytes, "left as it was");
        // Zeros: a new file, formatted.
        std::fs::write(d.file(), vec![0u8; file_len(3).unwrap()]).unwrap();
        assert!(Receipts::open(&d.0, 3).is_ok());
        assert_eq!(std::fs::read(d.file()).unwrap()[..HEADER_LEN], encode_header(3));
    }

    #[test]
    fn duplicate_streams_keep_the_larger_mark() {
        let d = TestDir::new();
        drop(Receipts::open(&d.0, 3).unwrap());
        let put = |slot: u32, hwm: u128| {
            let s = State { stream: 5, hwm, in_doubt: false, seq: 1 };
            d.edit(half_at(slot, Half::A), |b| b[..HALF_LEN].copy_from_slice(&encode(&s)));
        };
        put(0, 10);
        put(2, 30);
        put(1, 20);
        let r = Receipts::open(&d.0, 3).unwrap();
        assert_eq!(r.counts(), (1, 0));
        let c = r.check_out(5, 1).unwrap();
        assert_eq!((c.slot, c.hwm()), (2, 30));
        r.check_in(c);
        // The others were freed (and zeroed): two more streams fit without evicting 5.
        let (x, y) = (r.check_out(6, 2).unwrap(), r.check_out(7, 3).unwrap());
        assert_eq!(r.counts(), (3, 2));
        r.check_in(x);
        r.check_in(y);
        drop(r);
        let r = Receipts::open(&d.0, 3).unwrap();
        assert_eq!(r.counts(), (3, 0));
        assert_eq!(r.check_out(5, 1).unwrap().hwm(), 30);
    }

    #[test]
    fn random_bytes_in_the_slots_do_not_panic() {
        let slots = 64u32;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..8 {
            let d = TestDir::new();
            drop(Receipts::open(&d.0, slots).unwrap());
            let mut bytes = std::fs::read(d.file()).unwrap();
            for half in bytes[HEADER_LEN..].chunks_mut(HALF_LEN) {
                match rand() % 4 {
                    // Noise.
                    0 => half.iter_mut().for_each(|b| *b = rand() as u8),
                    // Valid halves: few streams (duplicates), numbers near each other.
                    1 | 2 => {
                        // Around 0, or around the wrap in odd rounds.
                        let base = if round % 2 == 0 { 0 } else { SEQ_MASK - 1 };
                        let s = State {
                            stream: rand() % 6,
                            hwm: u128::from(rand() % 4),
                            in_doubt: rand() % 2 == 0,
                            seq: (base + (rand() % 3) as u32) & SEQ_MASK,
                        };
                        half.copy_from_slice(&encode(&s));
                    }
                    _ => {}
                }
            }
            std::fs::write(d.file(), &bytes).unwrap();
            let r = Receipts::open(&d.0, slots).unwrap();
            let (known, owned) = r.counts();
            assert!(known <= 6 && owned == 0);
            let mut outs = Vec::new();
            for stream in 0..80u64 {
                match r.check_out(stream, stream) {
                    Ok(mut c) => {
                        let id = c.hwm() + 1;
                        c.begin(&r, id);
                        c.done(&r);
                        outs.push(c);
                    }
                    Err(e) => assert_eq!(e, CheckoutError::Full),
                }
            }
            assert_eq!(outs.len(), slots as usize);
            outs.into_iter().for_each(|c| r.check_in(c));
            drop(r);
            let r = Receipts::open(&d.0, slots).unwrap();
            assert_eq!(r.counts(), (slots as usize, 0));
        }
    }

    #[test]
    fn checkouts_store_from_several_threads() {
        let d = TestDir::new();
        {
            let r = Receipts::open(&d.0, 8).unwrap();
            std::thread::scope(|s| {
                for stream in 1..=8u64 {
                    let r = &r;
                    s.spawn(move || {
                        let mut c = r.check_out(stream, stream).unwrap();
                        for id in 1..=200 {
                            assert_eq!(c.classify(id), Verdict::New);
                            c.begin(r, id);
                            c.done(r);
                        }
                        c.begin(r, 1000 + u128::from(stream));
                        r.check_in(c);
                    });
                }
            });
        }
        let r = Receipts::open(&d.0, 8).unwrap();
        for stream in 1..=8u64 {
            let c = r.check_out(stream, 0).unwrap();
            assert_eq!(c.classify(1000 + u128::from(stream)), Verdict::InDoubt);
            r.check_in(c);
        }
    }
}
