//! One worker's log (docs/outbox-format.md): segments of a [`Store`], appends, the
//! in-place acknowledgement and attempt count, dead letters, recycling, syncs, and the
//! recovery that rebuilds the unacknowledged messages on open.

use std::collections::BTreeMap;

use super::format::{
    self, align, field, Kind, RecordMeta, SegmentHeader, State, RECORD_HEADER, SEGMENT_HEADER,
};
use super::store::{SegmentFile, Store};
use super::{OutboxConfig, OutboxError};

/// Where a message record is, and what the log keeps of it in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: u128,
    pub(crate) stream: u64,
    pub(crate) file: u32,
    pub(crate) offset: u32,
    pub(crate) len: u32,
    pub(crate) attempts: u16,
    pub(crate) flags: u8,
}

struct Segment<F> {
    file: F,
    seq: u64,
    /// Message records neither acknowledged nor taken (live or dead).
    open: u32,
    /// Written since its last sync.
    dirty: bool,
}

/// A log over a store.
pub(crate) struct Log<S: Store> {
    store: S,
    cfg: OutboxConfig,
    /// Segment files by index; `None`: free (recyclable, or never valid).
    segs: Vec<Option<Segment<S::File>>>,
    /// Free file indexes (their bytes hold nothing valid or nothing needed).
    free: Vec<u32>,
    active: u32,
    write_off: usize,
    /// The active segment ends with a seal already (after a recovery that found it so).
    active_sealed: bool,
    next_seq: u64,
    /// The largest message id issued or taken (recovered from records and headers'
    /// floors): [`Log::next_id`] goes above it.
    last_id: u128,
    /// Unacknowledged messages by (stream, append order): each stream's in order.
    live: BTreeMap<(u64, u64), Entry>,
    /// Dead letters by append order.
    dead: BTreeMap<u64, Entry>,
    /// Append order of each live or dead message.
    by_id: crate::hash::IntMap<u128, (u64, u64)>,
    /// The next append order number; every record before `synced` is durable.
    next_lsn: u64,
    synced: u64,
    /// The error that stopped appends, if one did.
    failed: Option<String>,
    scratch: Vec<u8>,
}

impl<S: Store> Log<S> {
    /// Opens the log in `store`, recovering what it holds (docs/outbox-format.md,
    /// "Recovery"). Everything recovered is durable.
    pub(crate) fn open(mut store: S, cfg: OutboxConfig, now_ns: u64) -> Result<Self, OutboxError> {
        cfg.validate()?;
        let io = |e: std::io::Error| OutboxError::Io(e.to_string());
        let indexes = store.list().map_err(io)?;
        let max = indexes.iter().max().map_or(0, |&m| m as usize + 1);
        let mut segs: Vec<Option<Segment<S::File>>> = (0..max).map(|_| None).collect();
        let mut scans = Vec::new();
        let mut free = Vec::new();
        let mut top_seq = 0;
        let mut last_id = 0;
        for &i in &indexes {
            let file = store.open(i, cfg.segment_size).map_err(io)?;
            let scan = format::scan(file.len(), |off, buf| file.read(off, buf));
            match scan {
                Some(s) => {
                    top_seq = top_seq.max(s.header.seq);
                    // Every id ever written counts, past a torn point too: such a record
                    // may have been sent before the crash.
                    let top = s.records.iter().map(|r| r.meta.id).max().unwrap_or(0);
                    last_id = last_id.max(s.header.floor).max(top);
                    segs[i as usize] =
                        Some(Segment { file, seq: s.header.seq, open: 0, dirty: false });
                    scans.push((i, s));
                }
                None => {
                    segs[i as usize] = Some(Segment { file, seq: 0, open: 0, dirty: false });
                    free.push(i);
                }
            }
        }
        scans.sort_by_key(|(_, s)| s.header.seq);
        // The valid log runs in `seq` order up to the first segment that is not sealed
        // (the one that was active, or one whose seal was lost in a crash): a later one
        // holds records appended after that segment's torn tail, never reported durable.
        let chain =
            scans.iter().position(|(_, s)| s.sealed.is_none()).map_or(scans.len(), |k| k + 1);
        let mut log = Self {
            store,
            cfg,
            segs,
            free,
            active: 0,
            write_off: 0,
            active_sealed: false,
            next_seq: top_seq + 1,
            last_id,
            live: BTreeMap::new(),
            dead: BTreeMap::new(),
            by_id: crate::hash::IntMap::default(),
            next_lsn: 0,
            synced: 0,
            failed: None,
            scratch: Vec::new(),
        };
        for (k, (i, s)) in scans.iter().enumerate() {
            if k >= chain {
                log.free.push(*i); // after the torn point: not part of the log
                continue;
            }
            for r in &s.records {
                let e = Entry {
                    id: r.meta.id,
                    stream: r.meta.stream,
                    file: *i,
                    offset: r.offset as u32,
                    len: r.len as u32,
                    attempts: r.attempts,
                    flags: r.meta.flags,
                };
                let lsn = log.next_lsn;
                log.next_lsn += 1;
                if log.by_id.contains_key(&e.id) {
                    continue; // an id twice (not written by this log): keep the first
                }
                match r.state {
                    State::Live => {
                        log.live.insert((e.stream, lsn), e);
                    }
                    State::Dead => {
                        log.dead.insert(lsn, e);
                    }
                    State::Acked | State::Taken => continue,
                }
                log.by_id.insert(e.id, (e.stream, lsn));
                if let Some(seg) = log.seg(*i) {
                    seg.open += 1;
                }
            }
        }
        log.synced = log.next_lsn;
        match chain.checked_sub(1).and_then(|k| scans.get(k)) {
            Some((i, s)) => {
                log.active = *i;
                log.write_off = s.end;
                log.active_sealed = s.sealed.is_some();
                log.clear_tail().map_err(io)?;
            }
            None => log.start_segment(now_ns)?,
        }
        // Segments of the chain that hold nothing needed (and are not active) are free.
        for (k, (i, _)) in scans.iter().enumerate().take(chain) {
            let idle = log.segs[*i as usize].as_ref().is_some_and(|s| s.open == 0);
            if idle && *i != log.active && k + 1 < chain {
                log.free.push(*i);
            }
        }
        Ok(log)
    }

    fn seg(&mut self, i: u32) -> Option<&mut Segment<S::File>> {
        self.segs.get_mut(i as usize)?.as_mut()
    }

    fn active_seg(&mut self) -> &mut Segment<S::File> {
        let i = self.active as usize;
        self.segs[i].as_mut().expect("the active segment is open")
    }

    /// Zeroes the active segment past the write offset where it is not zero, and syncs
    /// it, so that no record written before a crash and left past the valid end can
    /// come back to life after the next append lands before it.
    fn clear_tail(&mut self) -> std::io::Result<()> {
        const CHUNK: usize = 64 * 1024;
        let off = self.write_off;
        let seg = self.active_seg();
        let len = seg.file.len();
        let mut buf = vec![0u8; CHUNK];
        let zeros = vec![0u8; CHUNK];
        let mut wrote = false;
        let mut at = off;
        while at < len {
            let n = CHUNK.min(len - at);
            seg.file.read(at, &mut buf[..n]);
            if buf[..n].iter().any(|&b| b != 0) {
                seg.file.write(at, &zeros[..n]);
                wrote = true;
            }
            at += n;
        }
        if wrote {
            seg.file.sync()?;
        }
        Ok(())
    }

    /// Makes a free (or new) file the active segment: a header with the next `seq`.
    fn start_segment(&mut self, now_ns: u64) -> Result<(), OutboxError> {
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.segs.len() < self.cfg.max_segments as usize => self.segs.len() as u32,
            None => return Err(OutboxError::Full { segments: self.cfg.max_segments }),
        };
        if index as usize >= self.segs.len() || self.segs[index as usize].is_none() {
            let file = match self.store.open(index, self.cfg.segment_size) {
                Ok(f) => f,
                Err(e) => {
                    // A free file goes back to the list; a new index was never taken.
                    if (index as usize) < self.segs.len() {
                        self.free.push(index);
                    }
                    return Err(OutboxError::Io(e.to_string()));
                }
            };
            if index as usize >= self.segs.len() {
                self.segs.push(None);
            }
            self.segs[index as usize] = Some(Segment { file, seq: 0, open: 0, dirty: false });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let seg = self.segs[index as usize].as_mut().expect("just opened");
        let size = seg.file.len();
        let h = SegmentHeader {
            seq,
            created_ns: now_ns,
            size: size as u32,
            worker: self.cfg.worker,
            floor: self.last_id,
        };
        seg.file.write(0, &h.encode());
        // A recycled file's old records must not follow a torn first record of its new
        // life: its first record's place is zeroed with the header.
        seg.file.write(SEGMENT_HEADER, &[0u8; 8]);
        seg.seq = seq;
        seg.open = 0;
        seg.dirty = true;
        self.active = index;
        self.write_off = SEGMENT_HEADER;
        self.active_sealed = false;
        Ok(())
    }

    /// Seals the active segment and moves to the next one.
    fn rotate(&mut self, now_ns: u64) -> Result<(), OutboxError> {
        if self.free.is_empty() && self.segs.len() >= self.cfg.max_segments as usize {
            return Err(OutboxError::Full { segments: self.cfg.max_segments });
        }
        let old = self.active;
        if !self.active_sealed {
            let seal = RecordMeta {
                kind: Kind::Seal,
                flags: 0,
                stream: self.next_seq,
                id: 0,
                appended_ns: now_ns,
            };
            let seq = self.active_seg().seq;
            format::encode_record(seq, &seal, &[], &mut self.scratch);
            let (off, rec) = (self.write_off, std::mem::take(&mut self.scratch));
            let seg = self.active_seg();
            seg.file.write(off, &rec);
            seg.dirty = true;
            self.scratch = rec;
            // Sealed even if no next segment can be had now: the next append tries again.
            self.active_sealed = true;
            self.write_off = align(off + RECORD_HEADER);
        }
        self.start_segment(now_ns)?;
        if self.segs[old as usize].as_ref().is_some_and(|s| s.open == 0) {
            self.free.push(old);
        }
        Ok(())
    }

    /// Appends a message record; returns its append order number (durable once
    /// [`Log::synced`] passes it).
    pub(crate) fn append(
        &mut self,
        stream: u64,
        id: u128,
        flags: u8,
        payload: &[u8],
        now_ns: u64,
    ) -> Result<u64, OutboxError> {
        self.append_sent(stream, id, flags, payload, now_ns, 0)
    }

    /// As [`Log::append`], the record's send count already `attempts` (1 for a message
    /// sent as it is stored: one write instead of an append and an `attempted`).
    pub(crate) fn append_sent(
        &mut self,
        stream: u64,
        id: u128,
        flags: u8,
        payload: &[u8],
        now_ns: u64,
        attempts: u16,
    ) -> Result<u64, OutboxError> {
        if let Some(e) = &self.failed {
            return Err(OutboxError::Failed(e.clone()));
        }
        if payload.len() > self.cfg.max_record {
            return Err(OutboxError::TooLarge { len: payload.len(), max: self.cfg.max_record });
        }
        if self.by_id.contains_key(&id) {
            return Err(OutboxError::DuplicateId(id));
        }
        let need = align(RECORD_HEADER + payload.len());
        // Room for the record and, after it, a seal.
        if self.active_sealed
            || self.write_off + need + RECORD_HEADER > self.active_seg().file.len()
        {
            self.rotate(now_ns)?;
        }
        let meta = RecordMeta { kind: Kind::Message, flags, stream, id, appended_ns: now_ns };
        let seq = self.active_seg().seq;
        format::encode_record(seq, &meta, payload, &mut self.scratch);
        // A mutable field, outside the CRC.
        self.scratch[field::ATTEMPTS..field::ATTEMPTS + 2].copy_from_slice(&attempts.to_le_bytes());
        let (off, rec) = (self.write_off, std::mem::take(&mut self.scratch));
        let seg = self.active_seg();
        seg.file.write(off, &rec);
        seg.open += 1;
        seg.dirty = true;
        self.scratch = rec;
        self.write_off = align(off + RECORD_HEADER + payload.len());
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        let e = Entry {
            id,
            stream,
            file: self.active,
            offset: off as u32,
            len: (RECORD_HEADER + payload.len()) as u32,
            attempts,
            flags,
        };
        self.live.insert((stream, lsn), e);
        self.by_id.insert(id, (stream, lsn));
        self.last_id = self.last_id.max(id);
        Ok(lsn)
    }

    /// A new message id, above every id this log has issued or taken, in this life and
    /// before it (records and segment headers keep them): the time in nanoseconds in the
    /// high 64 bits, so ids follow the clock, and one past the last if the clock is
    /// behind it (the same nanosecond, or a clock stepped back).
    pub(crate) fn next_id(&mut self, now_ns: u64) -> u128 {
        let id = (u128::from(now_ns) << 64).max(self.last_id.saturating_add(1));
        self.last_id = id;
        id
    }

    /// Whether message `id` is held (unacknowledged or a dead letter).
    pub(crate) fn holds(&self, id: u128) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The largest id issued or taken.
    pub(crate) fn last_id(&self) -> u128 {
        self.last_id
    }

    /// Stores a record's state in place and, when it no longer needs keeping, counts it
    /// out of its segment (which is recycled once empty and not active).
    fn set_state(&mut self, e: &Entry, state: State, done: bool) {
        let active = self.active;
        let Some(seg) = self.seg(e.file) else { return };
        seg.file.write(e.offset as usize + field::STATE, &[state as u8]);
        seg.dirty = true;
        if done {
            seg.open = seg.open.saturating_sub(1);
            if seg.open == 0 && e.file != active {
                self.free.push(e.file);
            }
        }
    }

    /// The peer acknowledged message `id`. `false` if it is not an unacknowledged one.
    pub(crate) fn ack(&mut self, id: u128) -> bool {
        let Some(&(stream, lsn)) = self.by_id.get(&id) else { return false };
        let Some(e) = self.live.remove(&(stream, lsn)) else { return false };
        self.by_id.remove(&id);
        self.set_state(&e, State::Acked, true);
        true
    }

    /// The peer acknowledged every message of `stream` up to `upto` (a cumulative
    /// acknowledgement): the stream's unacknowledged messages are acknowledged in order
    /// while their ids are at most `upto` (ids increase along a stream, as
    /// [`Log::next_id`] makes them). Returns how many.
    pub(crate) fn ack_upto(&mut self, stream: u64, upto: u128) -> usize {
        // One walk finds them (a prefix of the stream's range), then each goes.
        let keys: Vec<(u64, u64)> = self
            .live
            .range((stream, 0)..=(stream, u64::MAX))
            .take_while(|(_, e)| e.id <= upto)
            .map(|(&k, _)| k)
            .collect();
        for key in &keys {
            if let Some(e) = self.live.remove(key) {
                self.by_id.remove(&e.id);
                self.set_state(&e, State::Acked, true);
            }
        }
        keys.len()
    }

    /// Message `id` was sent once more. Returns its attempts so far, and whether that
    /// made it a dead letter (`max_attempts` reached). `None` if it is not live.
    pub(crate) fn attempted(&mut self, id: u128) -> Option<(u16, bool)> {
        let &(stream, lsn) = self.by_id.get(&id)?;
        let e = self.live.get_mut(&(stream, lsn))?;
        e.attempts = e.attempts.saturating_add(1);
        let (e, n) = (*e, e.attempts);
        if let Some(seg) = self.seg(e.file) {
            seg.file.write(e.offset as usize + field::ATTEMPTS, &n.to_le_bytes());
            seg.dirty = true;
        }
        if n < self.cfg.max_attempts {
            return Some((n, false));
        }
        self.live.remove(&(stream, lsn));
        self.dead.insert(lsn, e);
        self.set_state(&e, State::Dead, false);
        Some((n, true))
    }

    /// The application took dead letter `id`. `false` if it is not one.
    pub(crate) fn take_dead(&mut self, id: u128) -> bool {
        let Some(&(_, lsn)) = self.by_id.get(&id) else { return false };
        let Some(e) = self.dead.remove(&lsn) else { return false };
        self.by_id.remove(&id);
        self.set_state(&e, State::Taken, true);
        true
    }

    /// Stream `stream`'s unacknowledged messages, oldest first.
    pub(crate) fn unacked(&self, stream: u64) -> impl Iterator<Item = &Entry> + '_ {
        self.unacked_from(stream, 0).map(|(_, e)| e)
    }

    /// Stream `stream`'s unacknowledged messages from append order `from` on, oldest
    /// first, with their append order.
    pub(crate) fn unacked_from(
        &self,
        stream: u64,
        from: u64,
    ) -> impl Iterator<Item = (u64, &Entry)> + '_ {
        self.live.range((stream, from)..=(stream, u64::MAX)).map(|(&(_, lsn), e)| (lsn, e))
    }

    /// Every unacknowledged message, by stream, each stream's oldest first.
    pub(crate) fn all_unacked(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.live.values()
    }

    /// The dead letters, oldest first.
    pub(crate) fn dead_letters(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.dead.values()
    }

    /// A record's payload, copied out.
    pub(crate) fn payload(&self, e: &Entry) -> Vec<u8> {
        let mut out = vec![0u8; e.len as usize - RECORD_HEADER];
        if let Some(Some(seg)) = self.segs.get(e.file as usize) {
            seg.file.read(e.offset as usize + RECORD_HEADER, &mut out);
        }
        out
    }

    /// Messages unacknowledged (live) and dead letters not taken.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.live.len(), self.dead.len())
    }

    /// Whether records were written since the last sync.
    pub(crate) fn needs_sync(&self) -> bool {
        self.synced < self.next_lsn || self.segs.iter().flatten().any(|s| s.dirty)
    }

    /// A sync or a write failed: the log refuses appends and syncs for good.
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Every record before this append order number is durable.
    pub(crate) fn synced(&self) -> u64 {
        self.synced
    }

    /// The next append order number.
    pub(crate) fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The segment files written since their last sync, oldest segment first.
    fn dirty_in_order(&self) -> Vec<usize> {
        let mut order: Vec<(u64, usize)> = self
            .segs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|s| s.dirty).map(|s| (s.seq, i)))
            .collect();
        order.sort_unstable();
        order.into_iter().map(|(_, i)| i).collect()
    }

    /// Syncs every segment written since the last sync, older segments first; on
    /// success every record appended so far is durable. A failure stops appends for
    /// good (what was accepted stays in the files).
    pub(crate) fn sync(&mut self) -> Result<u64, OutboxError> {
        if let Some(e) = &self.failed {
            return Err(OutboxError::Failed(e.clone()));
        }
        let upto = self.next_lsn;
        let order = self.dirty_in_order();
        for i in order {
            let seg = self.segs[i].as_mut().expect("listed");
            if let Err(e) = seg.file.sync() {
                let msg = format!("sync of segment file {i}: {e}");
                self.failed = Some(msg.clone());
                return Err(OutboxError::Failed(msg));
            }
            seg.dirty = false;
        }
        self.synced = upto;
        Ok(upto)
    }

    /// Starts a sync to run on another thread: handles to every segment file written
    /// since the last sync (older first), and the append position everything before
    /// which is durable once they are all synced ([`Log::finish_sync`]). The segments
    /// count as clean from here; what is written during the sync waits for the next.
    /// `Ok(None)` when nothing waits; an error when a handle cannot be had (the log
    /// then refuses appends, as after a failed sync).
    pub(crate) fn begin_sync(&mut self) -> Result<Option<(Vec<std::fs::File>, u64)>, OutboxError> {
        if let Some(e) = &self.failed {
            return Err(OutboxError::Failed(e.clone()));
        }
        if !self.needs_sync() {
            return Ok(None);
        }
        let upto = self.next_lsn;
        let order = self.dirty_in_order();
        let mut files = Vec::with_capacity(order.len());
        for &i in &order {
            let seg = self.segs[i].as_ref().expect("listed");
            match seg.file.detached() {
                Some(f) => files.push(f),
                None => {
                    let msg = format!("segment file {i} cannot be synced from another thread");
                    self.failed = Some(msg.clone());
                    return Err(OutboxError::Failed(msg));
                }
            }
        }
        for i in order {
            if let Some(seg) = self.segs[i].as_mut() {
                seg.dirty = false;
            }
        }
        Ok(Some((files, upto)))
    }

    /// A sync begun with [`Log::begin_sync`] finished: on success everything before
    /// `upto` is durable; a failure stops appends for good.
    pub(crate) fn finish_sync(&mut self, upto: u64, result: Result<(), String>) {
        match result {
            Ok(()) => self.synced = self.synced.max(upto),
            Err(e) => {
                if self.failed.is_none() {
                    self.failed = Some(format!("sync: {e}"));
                }
            }
        }
    }

    /// Segment files in use or free.
    pub(crate) fn files(&self) -> usize {
        self.segs.iter().flatten().count()
    }
}
