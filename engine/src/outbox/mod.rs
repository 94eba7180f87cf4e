//! The durable outbox's log: messages kept until the peer acknowledged them, across
//! reconnects and crashes. The format, and why it keeps that promise, are in
//! docs/outbox-format.md.
//!
//! [`Outbox`] is one log (one per worker, in a directory of its own), usable on its
//! own: append messages under a [`Durability`] policy, acknowledge them, count sends,
//! read the unacknowledged ones of a stream in order (to resend after a reconnect) and
//! the dead letters.
//!
//! The engine keeps one per worker when [`crate::EngineConfig::outbox`] is set: a client
//! with [`crate::client::ClientConfig::outbox_stream`] sends durably with
//! [`crate::Ctx::send_durable`] (or, from any thread,
//! [`crate::client::ClientHandle::send_durable`]), and each time it connects its
//! unacknowledged messages go out again, in order, before anything new (paced by its
//! send queue). Syncs are operations on the worker's io_uring ring (a thread under
//! epoll); [`crate::Handler::on_durable`] reports them.
//!
//! Who acknowledges: a ringwire server with a duplicate filter
//! ([`crate::EngineConfig::receipts`]) does, on the wire ([`wire`]; the client offers it
//! in the handshake and hears of each acknowledgement in
//! [`crate::Handler::on_acked`]), drops the copies a resend makes, and tells its
//! application each durable message's id ([`crate::Ctx::delivery`]). With any other
//! server the application does ([`crate::Ctx::ack_durable`]).
//!
//! Standalone:
//!
//! ```no_run
//! use ringwire::outbox::{Durability, Outbox, OutboxConfig};
//!
//! let mut ob = Outbox::open("/var/lib/app/outbox/w0", OutboxConfig::default())?;
//! let id = ob.next_id(); // above every id this outbox issued, across restarts
//! let durable = ob.append(7, id, false, b"payload")?;
//! if !durable {
//!     ob.sync()?; // `Batch` or `Always`: durable once synced
//! }
//! for m in ob.unacked(7) {
//!     println!("resend {:032x} ({} bytes)", m.id, m.payload.len());
//! }
//! ob.ack(id);
//! # Ok::<(), ringwire::outbox::OutboxError>(())
//! ```

pub mod format;
mod log;
pub(crate) mod receipts;
mod receive;
mod store;
pub(crate) mod streams;
pub mod wire;

pub use self::receipts::{read_image as read_receipts, Receipt};
pub(crate) use self::receive::{owner, ReceivingMap};
pub use self::receive::{Delivery, ReceiptSettings, CLOSE_REPLACED};
pub(crate) mod worker;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use self::log::{Entry, Log};
use self::store::DirStore;

/// When a record counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// When it is in the mapping: a crash of the process does not lose it (the kernel
    /// holds the pages); a crash of the machine or a power loss may.
    Os,
    /// When a sync covering it completed: every append asks for one.
    Always,
    /// When a sync covering it completed; a sync is due once `records` records wait or
    /// the oldest has waited `interval` (group commit).
    Batch {
        /// Records that make a sync due.
        records: u32,
        /// Longest wait for one.
        interval: Duration,
    },
}

/// The log's sizes and limits.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OutboxConfig {
    /// Bytes per segment file. Default 64 MiB; at least 64 KiB, a multiple of 4 KiB.
    pub segment_size: usize,
    /// Most segment files. Default 64 (4 GiB with the default size): past it, appends
    /// are refused with [`OutboxError::Full`] until acknowledgements free a segment.
    pub max_segments: u32,
    /// Largest payload. Default 1 MiB.
    pub max_record: usize,
    /// Sends without an acknowledgement after which a message becomes a dead letter.
    /// Default 10.
    pub max_attempts: u16,
    /// The worker the log belongs to (written in segment headers). Default 0.
    pub worker: u16,
    /// When appends are durable. Default `Batch` of 64 records or 2 ms.
    pub durability: Durability,
}

/// An engine's outbox ([`crate::EngineConfig::outbox`]): each worker keeps its own log
/// in `dir/w<worker>`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxSettings {
    /// The directory of the workers' logs (created if absent).
    pub dir: std::path::PathBuf,
    /// The logs' configuration (`worker` is set per worker). Under `Always` and
    /// `Batch` the worker's syncs are operations on its io_uring ring (under epoll, on a
    /// thread of the worker's, started with its first sync): the event loop never waits
    /// for the disk, and
    /// [`crate::Handler::on_durable`] tells the application when records became durable.
    pub config: OutboxConfig,
}

impl OutboxSettings {
    /// An outbox in `dir` with the default configuration but `Durability::Os` (a crash of
    /// the process loses nothing; a power loss may lose the last records).
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        let config = OutboxConfig { durability: Durability::Os, ..OutboxConfig::default() };
        Self { dir: dir.into(), config }
    }

    /// Checks the configuration for the engine.
    pub fn validate(&self) -> Result<(), OutboxError> {
        self.config.validate()
    }
}

/// A durable message the outbox took ([`crate::Ctx::send_durable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Its id: the one the outbox issued ([`crate::Ctx::send_durable`]) or the one
    /// given ([`crate::Ctx::send_durable_as`]).
    pub id: u128,
    /// Its place in the worker's log: it is durable once
    /// [`crate::Handler::on_durable`] reports a position past it.
    pub position: u64,
    /// Durable already (`Durability::Os`).
    pub durable: bool,
}

/// Why [`crate::Ctx::send_durable`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// The engine has no outbox ([`crate::EngineConfig::outbox`]).
    #[error("the engine has no outbox (EngineConfig::outbox)")]
    NoOutbox,
    /// The connection is not a client with an outbox stream
    /// ([`crate::client::ClientConfig::outbox_stream`]).
    #[error("the connection is not a client with an outbox stream (ClientConfig::outbox_stream)")]
    NoStream,
    /// The connection is up but its send queue is over its limit: nothing was stored.
    /// [`crate::Handler::on_writable`] follows once it has drained below the low
    /// watermark.
    #[error("the connection's send queue is full; nothing was stored")]
    Backpressure,
    /// The client is closed (or ended before its worker took the message). Nothing was
    /// stored.
    #[error("the client is closed; nothing was stored")]
    Closed,
    /// The worker did not answer in time (a handle's
    /// [`crate::client::ClientHandle::store_durable`]); it may still store the message.
    #[error("the worker did not answer in time; the message may still be stored")]
    NoAnswer,
    /// The stream's home worker could not be reached: its command queue is full.
    /// Nothing was stored.
    #[error("the stream's home worker's command queue is full; nothing was stored")]
    QueueFull,
    /// The outbox refused it (full, failed, a duplicate id, too large).
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            max_segments: 64,
            max_record: 1 << 20,
            max_attempts: 10,
            worker: 0,
            durability: Durability::Batch { records: 64, interval: Duration::from_millis(2) },
        }
    }
}

impl OutboxConfig {
    /// Checks the sizes: the error names the setting.
    pub fn validate(&self) -> Result<(), OutboxError> {
        let bad = |s: &str| Err(OutboxError::Config(s.into()));
        if self.segment_size < 64 << 10 || !self.segment_size.is_multiple_of(4096) {
            return bad("segment_size must be at least 64 KiB and a multiple of 4 KiB");
        }
        if self.segment_size > u32::MAX as usize {
            return bad("segment_size must be below 4 GiB");
        }
        // A record, then a seal, after the header.
        let room = self.segment_size - format::SEGMENT_HEADER - 2 * format::RECORD_HEADER - 8;
        if self.max_record > room {
            return bad("max_record must leave room in a segment for the record and a seal");
        }
        if self.max_segments == 0 || self.max_attempts == 0 {
            return bad("max_segments and max_attempts must be at least 1");
        }
        if let Durability::Batch { records: 0, .. } = self.durability {
            return bad("durability Batch needs records >= 1");
        }
        Ok(())
    }
}

/// Why the outbox refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The configuration is invalid.
    #[error("invalid outbox configuration: {0}")]
    Config(String),
    /// A file could not be opened, created or read.
    #[error("outbox I/O: {0}")]
    Io(String),
    /// A sync failed earlier: the outbox accepts nothing more (what it accepted before
    /// stays in its files). Reopen it to recover.
    #[error("the outbox failed and accepts nothing more: {0}")]
    Failed(String),
    /// Every segment holds unacknowledged messages.
    #[error("the outbox is full: {segments} segments of unacknowledged messages")]
    Full {
        /// The limit.
        segments: u32,
    },
    /// The payload is over [`OutboxConfig::max_record`].
    #[error("a record of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message with this id is already in the outbox.
    #[error("message id {0:032x} is already in the outbox")]
    DuplicateId(u128),
    /// An id the application chose is not above every id the outbox issued or took: a
    /// receiver that drops ids at or below the last one of a stream would drop it.
    #[error("message id {id:032x} is not above the outbox's last id {last:032x}")]
    IdOrder {
        /// The id refused.
        id: u128,
        /// The largest id issued or taken.
        last: u128,
    },
}

/// A message as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its id.
    pub id: u128,
    /// Its stream.
    pub stream: u64,
    /// Text (else binary).
    pub text: bool,
    /// Sends so far.
    pub attempts: u16,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// One durable log (see the module's documentation).
pub struct Outbox {
    log: Log<DirStore>,
    policy: Durability,
    /// When the oldest record not covered by a sync (done or running) was appended.
    waiting_since: Option<Instant>,
    /// Records before this position are covered by a sync done or running.
    covered: u64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (live, dead) = self.log.counts();
        f.debug_struct("Outbox").field("unacked", &live).field("dead", &dead).finish()
    }
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, locking it, and recovers what it holds:
    /// every message not acknowledged before is there again ([`Outbox::unacked`]).
    pub fn open(dir: impl AsRef<Path>, config: OutboxConfig) -> Result<Self, OutboxError> {
        config.validate()?;
        let store = DirStore::open(dir.as_ref()).map_err(|e| OutboxError::Io(e.to_string()))?;
        let policy = config.durability;
        let log = Log::open(store, config, unix_ns())?;
        let covered = log.next_lsn();
        Ok(Self { log, policy, waiting_since: None, covered })
    }

    /// Appends a message for `stream` with `id` (unique in the outbox; time-ordered ids
    /// such as UUIDv7 keep them so). Returns whether it is durable already (`Os`); under
    /// `Always` and `Batch` it is once [`Outbox::sync`] ran.
    pub fn append(
        &mut self,
        stream: u64,
        id: u128,
        text: bool,
        payload: &[u8],
    ) -> Result<bool, OutboxError> {
        self.append_positioned(stream, id, text, payload).map(|(_, durable)| durable)
    }

    /// As [`Outbox::append`], with the record's position in the log's order (durable
    /// once [`Outbox::durable_position`] passes it).
    pub fn append_positioned(
        &mut self,
        stream: u64,
        id: u128,
        text: bool,
        payload: &[u8],
    ) -> Result<(u64, bool), OutboxError> {
        let flags = if text { format::FLAG_TEXT } else { 0 };
        let position = self.log.append(stream, id, flags, payload, unix_ns())?;
        Ok((position, self.appended()))
    }

    /// A record was appended: whether it is durable already (`Os`); under the other
    /// policies it waits for a sync from now.
    fn appended(&mut self) -> bool {
        if self.policy == Durability::Os {
            return true;
        }
        self.waiting_since.get_or_insert_with(Instant::now);
        false
    }

    /// The engine's durable send: a new message with the outbox's next id (one clock
    /// reading for both), its send count already 1 if `sent` (it goes out now). Returns
    /// its id, position and whether it is durable already.
    pub(crate) fn append_new(
        &mut self,
        stream: u64,
        id: Option<u128>,
        text: bool,
        payload: &[u8],
        sent: bool,
    ) -> Result<(u128, u64, bool), OutboxError> {
        let now = unix_ns();
        let id = match id {
            Some(id) => {
                self.check_new_id(id)?;
                id
            }
            None => self.log.next_id(now),
        };
        let flags = if text { format::FLAG_TEXT } else { 0 };
        let position = self.log.append_sent(stream, id, flags, payload, now, u16::from(sent))?;
        Ok((id, position, self.appended()))
    }

    /// Every record at a position below this one is durable.
    pub fn durable_position(&self) -> u64 {
        match self.policy {
            Durability::Os => self.log.next_lsn(),
            _ => self.log.synced(),
        }
    }

    /// Whether the policy wants a sync now (never once the outbox has failed: no sync
    /// could succeed).
    pub fn sync_due(&self, now: Instant) -> bool {
        if self.log.is_failed() {
            return false;
        }
        let waiting = self.log.next_lsn() - self.covered.max(self.log.synced());
        match self.policy {
            Durability::Os => false,
            Durability::Always => waiting > 0,
            Durability::Batch { records, interval } => {
                waiting >= u64::from(records)
                    || self.waiting_since.is_some_and(|t| now.duration_since(t) >= interval)
            }
        }
    }

    /// When the policy will want a sync if nothing more is appended (`Batch`'s
    /// interval), if it will (never once the outbox has failed).
    pub fn sync_deadline(&self) -> Option<Instant> {
        if self.log.is_failed() {
            return None;
        }
        match self.policy {
            Durability::Batch { interval, .. } => self.waiting_since.map(|t| t + interval),
            Durability::Always if self.waiting_since.is_some() => Some(Instant::now()),
            _ => None,
        }
    }

    /// Starts a sync to run on another thread: handles to the files to `fdatasync`, in
    /// order, and the position everything before which is durable once they are
    /// ([`Outbox::finish_sync`]).
    pub(crate) fn begin_sync(&mut self) -> Result<Option<(Vec<std::fs::File>, u64)>, OutboxError> {
        let job = self.log.begin_sync()?;
        if let Some((_, upto)) = &job {
            self.covered = *upto;
            self.waiting_since = None;
        }
        Ok(job)
    }

    /// A sync begun with [`Outbox::begin_sync`] finished.
    pub(crate) fn finish_sync(&mut self, upto: u64, result: Result<(), String>) {
        self.log.finish_sync(upto, result);
    }

    /// Syncs what was written: every record appended so far is durable when it returns
    /// `Ok`. A failure stops the outbox for good ([`OutboxError::Failed`]).
    pub fn sync(&mut self) -> Result<(), OutboxError> {
        if self.log.needs_sync() {
            self.log.sync()?;
        }
        self.covered = self.log.next_lsn();
        self.waiting_since = None;
        Ok(())
    }

    /// The peer acknowledged message `id`: it is dropped from the outbox. `false` if it
    /// was not an unacknowledged message.
    pub fn ack(&mut self, id: u128) -> bool {
        self.log.ack(id)
    }

    /// The peer acknowledged every message of `stream` up to id `upto` (cumulative):
    /// the stream's oldest unacknowledged messages are dropped while their ids are at
    /// most `upto`. Ids must increase along the stream, as [`Outbox::next_id`]'s do.
    /// Returns how many were acknowledged.
    pub fn ack_upto(&mut self, stream: u64, upto: u128) -> usize {
        self.log.ack_upto(stream, upto)
    }

    /// A new message id: above every id this outbox has issued or taken, in this life
    /// and before it (the log keeps the largest across recycling), time-ordered (Unix
    /// nanoseconds in the high 64 bits). A receiver that drops ids at or below the
    /// last one it saw of a stream needs ids that only grow: these do, across restarts
    /// and clock steps. One exception: after a power loss (not a process crash), ids of
    /// records lost with it (never durable) may have reached the peer; new ones are above
    /// them unless the clock stepped back past them.
    pub fn next_id(&mut self) -> u128 {
        self.log.next_id(unix_ns())
    }

    /// Whether `id` may be appended as a new message whose id must grow along its stream:
    /// not held already ([`OutboxError::DuplicateId`]) and above every id issued or taken
    /// ([`OutboxError::IdOrder`]).
    pub fn check_new_id(&self, id: u128) -> Result<(), OutboxError> {
        if self.log.holds(id) {
            return Err(OutboxError::DuplicateId(id));
        }
        let last = self.log.last_id();
        if id <= last {
            return Err(OutboxError::IdOrder { id, last });
        }
        Ok(())
    }

    /// The largest id issued by [`Outbox::next_id`] or taken by an append.
    pub fn last_id(&self) -> u128 {
        self.log.last_id()
    }

    /// Message `id` was sent (once more). Returns its sends so far and whether that made
    /// it a dead letter; `None` if it is not an unacknowledged message.
    pub fn attempted(&mut self, id: u128) -> Option<(u16, bool)> {
        self.log.attempted(id)
    }

    fn stored(&self, e: &Entry) -> Stored {
        Stored {
            id: e.id,
            stream: e.stream,
            text: e.flags & format::FLAG_TEXT != 0,
            attempts: e.attempts,
            payload: self.log.payload(e),
        }
    }

    /// Stream `stream`'s unacknowledged messages, oldest first (what to resend after a
    /// reconnect, in order).
    pub fn unacked(&self, stream: u64) -> Vec<Stored> {
        self.log.unacked(stream).map(|e| self.stored(e)).collect()
    }

    /// Stream `stream`'s unacknowledged messages appended at or after position `from`
    /// (an append's place in the log's order), oldest first, until their payloads pass
    /// `max_bytes` (at least one is returned if there is one), each with its position.
    pub(crate) fn unacked_from(
        &self,
        stream: u64,
        from: u64,
        max_bytes: usize,
    ) -> Vec<(u64, Stored)> {
        let mut bytes = 0;
        let mut out = Vec::new();
        for (lsn, e) in self.log.unacked_from(stream, from) {
            if !out.is_empty() && bytes + e.len as usize > max_bytes {
                break;
            }
            bytes += e.len as usize;
            out.push((lsn, self.stored(e)));
        }
        out
    }

    /// Every unacknowledged message: by stream, each stream's oldest first.
    pub fn all_unacked(&self) -> Vec<Stored> {
        self.log.all_unacked().map(|e| self.stored(e)).collect()
    }

    /// The dead letters not taken yet, oldest first.
    pub fn dead_letters(&self) -> Vec<Stored> {
        self.log.dead_letters().map(|e| self.stored(e)).collect()
    }

    /// Takes dead letter `id` out of the outbox. `false` if it is not one.
    pub fn take_dead(&mut self, id: u128) -> bool {
        self.log.take_dead(id)
    }

    /// Unacknowledged messages held (dead letters apart).
    pub fn unacked_count(&self) -> usize {
        self.log.counts().0
    }

    /// Unacknowledged messages and dead letters held.
    pub fn len(&self) -> usize {
        let (live, dead) = self.log.counts();
        live + dead
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segment files it has (in use or free for reuse).
    pub fn segment_files(&self) -> usize {
        self.log.files()
    }
}
