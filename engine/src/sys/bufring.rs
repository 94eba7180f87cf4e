//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): one pool of receive buffers per
//! io_uring instance that the kernel picks from when data arrives on any of its
//! connections. A connection without data in flight holds no buffer; a buffer goes back
//! to the ring as soon as the kernel is done with it and its bytes are handed to the
//! protocol core.
//!
//! Memory: the ring (16 bytes per entry) and the buffers are two anonymous mappings owned
//! by this struct. Buffers are handed to the kernel on demand: a ring created with fewer
//! than all of them in circulation doubles that number each time a receive finds none
//! free (`ENOBUFS`), up to the pool's size. The kernel takes buffers in ring order, so
//! every buffer in circulation gets touched sooner or later: circulating only what the
//! load has needed keeps a quiet worker's receive memory a fraction of the pool.
//!
//! Where the kernel has it (6.12), the ring is registered for incremental consumption
//! (`IOU_PBUF_RING_INC`): a receive takes only the bytes it needs from the current
//! buffer and the next one goes on from there, so a thousand 6-byte pongs fill part of
//! one buffer instead of touching a thousand pages. Such a ring starts with at most 64 KiB
//! in circulation (one to four buffers). Without it, the first ring circulates all its
//! buffers from the start and a worker's further rings start with 4.
//!
//! The kernel reads ring entries and writes into buffers it took from the ring; user
//! space reads a buffer's bytes only between the completion that hands them over and the
//! moment the buffer is released.

use std::io;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use ringwire_frame::RecvBuffer;
use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// `IOU_PBUF_RING_INC` (linux/io_uring.h): buffers of the ring are consumed incrementally.
const PBUF_RING_INC: u16 = 2;
/// Most bytes in circulation at first with incremental consumption (at least one buffer,
/// at most four).
const INCREMENTAL_INITIAL_BYTES: u32 = 64 * 1024;

/// Buffers in circulation at first with incremental consumption.
fn incremental_initial(buf_size: u32) -> u16 {
    (INCREMENTAL_INITIAL_BYTES / buf_size.max(1)).clamp(1, 4) as u16
}

pub(crate) struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    /// The buffers' mapping, shared with the messages lent out of it.
    pool: Arc<Pool>,
    entries: u16,
    buf_size: u32,
    bgid: u16,
    /// Our copy of the tail; published to the kernel by `commit`.
    tail: u16,
    /// Buffers `0..provided` are in circulation; the rest were never handed out.
    provided: u16,
    /// Incremental consumption (`IOU_PBUF_RING_INC`): the kernel fills a buffer receive
    /// by receive, each one starting where the last ended, and says in each completion
    /// whether it will put more into that buffer. `used[bid]` is how far it got.
    used: Option<Vec<u32>>,
    /// Per buffer: the kernel has finished with it, but messages lent out of it are
    /// still alive, so it goes back to the ring when the last of them is dropped.
    done: Vec<bool>,
    /// Per buffer: counted in `lent` (some message shares it, or did until a drop that
    /// `collect` has not seen yet).
    held: Vec<bool>,
    /// Buffers with `held` set.
    lent: u16,
    /// Messages lent out so far.
    messages_lent: u64,
    /// Set if the ring mapping must be leaked because the kernel may still use it.
    leak: bool,
    /// A receive found no buffer free since the last `grow_if_short`.
    short: bool,
}

/// Messages of at least this many bytes that arrive whole in one receive are lent out of
/// the receive buffer instead of copied (below it, a copy costs less than the lending).
pub(crate) const LEND_MIN: usize = 2048;

/// The buffer memory and what the messages lent out of it share with the ring: the
/// mapping stays until the ring and every lent message are gone.
struct Pool {
    bufs: NonNull<u8>,
    bytes: usize,
    /// Per buffer: messages lent out of it and still alive.
    pins: Box<[AtomicU32]>,
    /// Per buffer: its number is in `returned` (so it is queued at most once).
    queued: Box<[AtomicBool]>,
    /// Buffers whose last lent message was dropped, for the ring's thread to take back.
    returned: ArrayQueue<u16>,
    /// Set if the mapping must be leaked because the kernel may still write into it.
    leak: AtomicBool,
}

// SAFETY: `bufs` points into a private mapping that `Pool` owns (unmapped only in its
// `Drop`, by the last owner). Other threads only read the bytes of lent ranges, which
// nothing writes while they are lent (the buffer is out of the ring until the last lent
// message is dropped); everything else shared is atomics and a lock-free queue.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.leak.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: mapped in `BufRing::new` with this length. The last owner drops the
        // pool: the ring (after the kernel is done with it, else `leak` is set) and every
        // lent message are gone, so nothing reads or writes the buffers any more.
        let _ = unsafe { munmap(self.bufs.as_ptr().cast(), self.bytes) };
    }
}

/// A message's bytes lent out of a receive buffer (the owner behind its `Bytes`).
struct Lent {
    pool: Arc<Pool>,
    bid: u16,
    offset: usize,
    len: usize,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `offset + len` lies inside the mapping (checked by `Region::share`),
        // which lives as long as `pool`. The range was received and unmasked before it
        // was lent, and nothing writes to it until this `Lent` is dropped: the kernel
        // gets the buffer back only when its pin count is zero, and the connection
        // changes no byte of a range it has shared.
        unsafe { std::slice::from_raw_parts(self.pool.bufs.as_ptr().add(self.offset), self.len) }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let bid = usize::from(self.bid);
        // SeqCst here and in `collect` (count, then flag; flag, then count): a drop and a
        // `collect` racing on one buffer cannot both miss the other, so a buffer whose
        // last message is gone is always queued or seen (no lost buffer).
        if self.pool.pins[bid].fetch_sub(1, Ordering::SeqCst) == 1
            && !self.pool.queued[bid].swap(true, Ordering::SeqCst)
        {
            // Cannot fail: the queue holds as many entries as there are buffers, and a
            // buffer is in it at most once (`queued`).
            let _ = self.pool.returned.push(self.bid);
        }
    }
}

/// The bytes one receive completion delivered, lent to the protocol core for the length
/// of one callback: it may unmask them in place and keep whole messages without a copy
/// ([`RecvBuffer`]).
pub(crate) struct Region<'a> {
    ring: &'a mut BufRing,
    bid: u16,
    /// Offset of the region in the buffer mapping.
    start: usize,
    len: usize,
    /// End of the last range shared: bytes before it are never handed out again.
    shared_end: usize,
}

impl RecvBuffer for Region<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn bytes_from(&mut self, start: usize) -> &mut [u8] {
        let start = start.clamp(self.shared_end, self.len);
        // SAFETY: `start..len` lies inside this completion's bytes of buffer `bid`, which
        // the kernel finished writing before posting the completion and does not touch
        // until the buffer is pushed back (after this region is dropped and no lent
        // message pins it). No other reference to these bytes exists: each completion
        // gets one region, regions of one buffer do not overlap, and bytes before
        // `shared_end` (lent out as messages) are never handed out mutably again.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ring.pool.bufs.as_ptr().add(self.start + start),
                self.len - start,
            )
        }
    }

    fn min_share(&self) -> usize {
        LEND_MIN
    }

    fn share(&mut self, range: Range<usize>) -> Option<Bytes> {
        if range.len() < LEND_MIN || range.start < self.shared_end || range.end > self.len {
            return None;
        }
        let ring = &mut *self.ring;
        let bid = usize::from(self.bid);
        if !ring.held[bid] {
            // Lent buffers are out of circulation: keep at least three quarters of those
            // in circulation receiving, however long the application keeps messages.
            // At the cap the message is copied, and the circulation grows (once per batch,
            // up to the pool) so that a load that keeps messages briefly, like an echo
            // that sends them on, is lent to from then on.
            if ring.lent >= (ring.provided / 4).max(1) {
                ring.short = true;
                return None;
            }
            ring.held[bid] = true;
            ring.lent += 1;
        }
        ring.pool.pins[bid].fetch_add(1, Ordering::AcqRel);
        ring.messages_lent += 1;
        self.shared_end = range.end;
        Some(Bytes::from_owner(Lent {
            pool: Arc::clone(&ring.pool),
            bid: self.bid,
            offset: self.start + range.start,
            len: range.len(),
        }))
    }
}

/// Largest buffer of a ring without incremental consumption. There every receive takes a
/// whole buffer, however few bytes it brings, so the pool is cut into more, smaller
/// buffers (the same bytes in all): a thousand connections receiving at once then need a
/// thousand buffers, not a thousand times the configured size.
const WHOLE_BUFFER_MAX: u32 = 16 * 1024;

/// The ring's buffers without incremental consumption: `buf_size` halved (and `entries`
/// doubled) while it is above [`WHOLE_BUFFER_MAX`] and the ring has room for more entries.
fn whole_buffer_geometry(mut entries: u16, mut buf_size: u32) -> (u16, u32) {
    while buf_size > WHOLE_BUFFER_MAX && buf_size % 2 == 0 && entries <= 16384 {
        buf_size /= 2;
        entries *= 2;
    }
    (entries, buf_size)
}

/// Whether the kernel consumes provided buffers incrementally (`IOU_PBUF_RING_INC`,
/// 6.12): registers a one-entry ring as group `bgid` with the flag and unregisters it.
fn kernel_has_incremental(submitter: &Submitter<'_>, bgid: u16) -> bool {
    let bytes = std::mem::size_of::<BufRingEntry>();
    // SAFETY: a fresh private anonymous mapping at an address of the kernel's choice
    // aliases nothing; the length is non-zero.
    let Ok(ring) = (unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            bytes,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }) else {
        return false;
    };
    // SAFETY: the mapping is page-aligned and holds one entry; it is unregistered below,
    // before it is unmapped, and no receive selects from group `bgid` meanwhile (the
    // ring that will use the group is created after this returns).
    let ok = unsafe { submitter.register_buf_ring_with_flags(ring as u64, 1, bgid, PBUF_RING_INC) }
        .is_ok();
    if ok {
        let _ = submitter.unregister_buf_ring(bgid);
    }
    // SAFETY: mapped above with this length; the kernel no longer refers to it.
    let _ = unsafe { munmap(ring, bytes) };
    ok
}

impl BufRing {
    /// Maps and registers a ring of `entries` buffers of `buf_size` bytes as group `bgid`,
    /// with the first `initial` of them available to the kernel (see `grow`). Where the
    /// kernel cannot consume buffers incrementally, buffers above 16 KiB are cut into
    /// more, smaller ones (see [`whole_buffer_geometry`]).
    pub(crate) fn new(
        submitter: &Submitter<'_>,
        entries: u16,
        buf_size: u32,
        bgid: u16,
        initial: u16,
    ) -> io::Result<Self> {
        let incremental = kernel_has_incremental(submitter, bgid);
        Self::with_mode(submitter, entries, buf_size, bgid, initial, incremental)
    }

    /// [`BufRing::new`] with the choice of incremental consumption made by the caller
    /// (`false` also where the kernel has it: what older kernels get, for tests).
    fn with_mode(
        submitter: &Submitter<'_>,
        entries: u16,
        buf_size: u32,
        bgid: u16,
        initial: u16,
        incremental: bool,
    ) -> io::Result<Self> {
        assert!(entries.is_power_of_two(), "validated by EngineConfig");
        let (entries, buf_size) = if incremental {
            (entries, buf_size)
        } else {
            whole_buffer_geometry(entries, buf_size)
        };
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        let bufs_bytes = usize::from(entries) * buf_size as usize;
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choice
        // aliases nothing; the length is non-zero.
        let ring = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                ring_bytes,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::POPULATE,
            )?
        };
        // SAFETY: as above.
        let bufs = match unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                bufs_bytes,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        } {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `ring` was mapped above with this length and is not used again.
                let _ = unsafe { munmap(ring, ring_bytes) };
                return Err(e.into());
            }
        };
        let n = usize::from(entries);
        let bufs =
            NonNull::new(bufs.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        let pool = Arc::new(Pool {
            bufs,
            bytes: bufs_bytes,
            pins: (0..n).map(|_| AtomicU32::new(0)).collect(),
            queued: (0..n).map(|_| AtomicBool::new(false)).collect(),
            returned: ArrayQueue::new(n),
            leak: AtomicBool::new(false),
        });
        let mut this = Self {
            ring: NonNull::new(ring.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?,
            ring_bytes,
            pool,
            entries,
            buf_size,
            bgid,
            tail: 0,
            provided: 0,
            used: None,
            done: vec![false; n],
            held: vec![false; n],
            lent: 0,
            messages_lent: 0,
            leak: false,
            short: false,
        };
        // SAFETY: the ring mapping is page-aligned, `ring_bytes` long, and stays mapped
        // until `Drop`, which runs only after the ring is unregistered or the io_uring
        // instance is gone (see `UringDriver`'s field order and drop).
        // Incremental consumption where the kernel has it (6.12): many small receives
        // (pongs, chat messages) then share one buffer instead of touching a page each.
        let addr = this.ring.as_ptr() as u64;
        let registered_incremental = incremental && {
            // SAFETY: as above.
            unsafe { submitter.register_buf_ring_with_flags(addr, entries, bgid, PBUF_RING_INC) }
                .is_ok()
        };
        if registered_incremental {
            this.used = Some(vec![0; usize::from(entries)]);
        } else {
            // SAFETY: as above.
            unsafe { submitter.register_buf_ring_with_flags(addr, entries, bgid, 0)? };
        }
        // Incrementally consumed buffers hold many receives each, and traffic streams
        // through every buffer in circulation (touching all its pages), so few circulate
        // at first; the pool grows when a receive finds none free.
        let initial =
            if this.used.is_some() { initial.min(incremental_initial(buf_size)) } else { initial };
        this.grow_to(initial.clamp(1, entries));
        Ok(this)
    }

    /// Hands more buffers to the kernel: as many again as are in circulation, up to the
    /// ring's size. Whether there were any left to add.
    fn grow(&mut self) -> bool {
        self.grow_to(self.provided.saturating_mul(2).min(self.entries))
    }

    /// Notes that a receive found no buffer free (`ENOBUFS`).
    pub(crate) fn note_short(&mut self) {
        self.short = true;
    }

    /// Grows the circulation once if any receive found no buffer free since the last call.
    /// Called once per batch of completions: a burst in which many receives find none
    /// free at the same moment doubles the circulation once, not once per receive (which
    /// would put the whole pool into circulation, and its pages into the resident set,
    /// on the first burst).
    pub(crate) fn grow_if_short(&mut self) -> bool {
        std::mem::take(&mut self.short) && self.grow()
    }

    fn grow_to(&mut self, to: u16) -> bool {
        if to == self.provided {
            return false;
        }
        for bid in self.provided..to {
            self.push(bid);
        }
        self.provided = to;
        self.commit();
        true
    }

    /// Whether buffers are consumed incrementally.
    pub(crate) fn incremental(&self) -> bool {
        self.used.is_some()
    }

    /// Buffers in circulation.
    #[cfg(test)]
    pub(crate) fn provided(&self) -> u16 {
        self.provided
    }

    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Makes buffer `bid` available to the kernel again (published by `commit`).
    ///
    /// `bid` must be a buffer the kernel handed over in a completion and not yet pushed.
    fn push(&mut self, bid: u16) {
        if bid >= self.entries {
            return;
        }
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `idx < entries`, so the entry lies inside the ring mapping. The kernel
        // only reads entries between its head and our published tail; this one is at or
        // past the published tail, so the kernel is not reading it now.
        let entry = unsafe { &mut *self.ring.as_ptr().add(idx) };
        // SAFETY: `bid < entries`, so the offset stays inside the buffer mapping.
        let addr =
            unsafe { self.pool.bufs.as_ptr().add(usize::from(bid) * self.buf_size as usize) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes pushed buffers to the kernel.
    pub(crate) fn commit(&mut self) {
        // SAFETY: the tail field lives in the first entry of the live ring mapping; the
        // kernel reads it concurrently, so it is written atomically, with release
        // ordering so the entries written by `push` are visible first.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *mut u16;
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// The `len` bytes a completion just delivered in buffer `bid` (from the start of the
    /// buffer, or with incremental consumption from where the buffer's previous
    /// completion ended), to hand to the protocol core; call `release` after it is dropped.
    pub(crate) fn region(&mut self, bid: u16, len: usize) -> Region<'_> {
        let bid = bid.min(self.entries - 1);
        let size = self.buf_size as usize;
        let at = self.used.as_ref().map_or(0, |u| u[usize::from(bid)] as usize).min(size);
        let len = len.min(size - at);
        Region { start: usize::from(bid) * size + at, len, bid, shared_end: 0, ring: self }
    }

    /// Done with the `len` bytes of a completion in buffer `bid`; `more` is the
    /// completion's `IORING_CQE_F_BUF_MORE` (the kernel keeps filling the buffer). The
    /// buffer goes back to the ring once the kernel is done with it and no message lent
    /// out of it is alive.
    pub(crate) fn release(&mut self, bid: u16, len: usize, more: bool) {
        if let Some(used) = self.used.as_mut() {
            let Some(u) = used.get_mut(usize::from(bid)) else { return };
            if more {
                *u = u.saturating_add(len as u32);
                return;
            }
            *u = 0;
        }
        let Some(held) = self.held.get(usize::from(bid)) else { return };
        if *held {
            // `collect` pushes it when the last lent message is gone.
            self.done[usize::from(bid)] = true;
        } else {
            self.push(bid);
        }
    }

    /// Takes back the buffers whose lent messages were all dropped (on any thread) since
    /// the last call; those the kernel is done with go back to the ring (published by
    /// `commit`).
    pub(crate) fn collect(&mut self) {
        while let Some(bid) = self.pool.returned.pop() {
            let i = usize::from(bid);
            // Cleared before the count is read: a drop to zero after this queues it again.
            self.pool.queued[i].store(false, Ordering::SeqCst);
            if self.pool.pins[i].load(Ordering::SeqCst) != 0 || !self.held[i] {
                continue; // lent again since, or already taken back
            }
            self.held[i] = false;
            self.lent -= 1;
            if std::mem::take(&mut self.done[i]) {
                self.push(bid);
            }
        }
    }

    /// Messages lent out so far.
    pub(crate) fn messages_lent(&self) -> u64 {
        self.messages_lent
    }

    /// Buffers some lent message still holds.
    #[cfg(test)]
    pub(crate) fn lent(&self) -> u16 {
        self.lent
    }

    /// Keeps the mappings alive forever (the kernel may still use them).
    pub(crate) fn leak(&mut self) {
        self.leak = true;
        self.pool.leak.store(true, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: the ring was mapped in `new` with this length; the owner drops the
        // ring only after the io_uring instance that used it is gone or every operation
        // that could use it has completed (else it calls `leak`). The buffers' mapping
        // goes with the pool, when lent messages are gone too.
        unsafe {
            let _ = munmap(self.ring.as_ptr().cast(), self.ring_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_go_into_circulation_on_demand() {
        let Ok(ring) = io_uring::IoUring::new(8) else { return }; // no io_uring here
        let mut b = BufRing::new(&ring.submitter(), 256, 4096, 3, 64).unwrap();
        let first = if b.incremental() { incremental_initial(4096) } else { 64 };
        assert_eq!((b.provided(), b.tail), (first, first));
        let mut n = first;
        while n < 256 {
            assert!(b.grow());
            n *= 2;
            assert_eq!((b.provided(), b.tail), (n, n));
        }
        assert!(!b.grow(), "all 256 in circulation");
        assert_eq!(b.tail, 256u16);
        let small = BufRing::new(&ring.submitter(), 2, 4096, 4, 64).unwrap();
        assert_eq!(small.provided(), 2);
        let all = BufRing::new(&ring.submitter(), 128, 4096, 5, 128).unwrap();
        assert_eq!(all.provided(), if all.incremental() { incremental_initial(4096) } else { 128 });
        let large = BufRing::new(&ring.submitter(), 128, 65536, 6, 128).unwrap();
        assert_eq!(large.provided(), if large.incremental() { 1 } else { 128 }, "64 KiB at first");
    }

    #[test]
    fn without_incremental_consumption_buffers_are_cut_to_16_kib() {
        assert_eq!(whole_buffer_geometry(256, 65536), (1024, 16384));
        assert_eq!(whole_buffer_geometry(1024, 16384), (1024, 16384));
        assert_eq!(whole_buffer_geometry(16384, 65536), (32768, 32768), "at most 32768");
        assert_eq!(whole_buffer_geometry(8, 3 * 65536), (128, 12288));
        assert_eq!(whole_buffer_geometry(8, 17_001), (8, 17_001), "an odd size stays");
        let Ok(ring) = io_uring::IoUring::new(8) else { return };
        let mut b = BufRing::with_mode(&ring.submitter(), 256, 65536, 12, 4, false).unwrap();
        assert!(!b.incremental());
        assert_eq!((b.entries, b.buf_size, b.provided()), (1024, 16384, 4));
        while b.grow() {}
        assert_eq!(b.provided(), 1024);
        // The last buffer lies at the end of the same 16 MiB.
        let mut r = received(&mut b, 1023, 16384, 9);
        assert_eq!(r.bytes_from(0).len(), 16384);
        b.release(1023, 16384, false);
        if kernel_has_incremental(&ring.submitter(), 13) {
            let b = BufRing::new(&ring.submitter(), 256, 65536, 13, 4).unwrap();
            assert!(b.incremental());
            assert_eq!((b.entries, b.buf_size), (256, 65536));
        }
    }

    #[test]
    fn a_burst_of_receives_without_buffers_grows_the_circulation_once() {
        let Ok(ring) = io_uring::IoUring::new(8) else { return };
        let mut b = BufRing::new(&ring.submitter(), 256, 4096, 3, 2).unwrap();
        let first = b.provided();
        assert!(!b.grow_if_short(), "no receive was short");
        for _ in 0..100 {
            b.note_short();
        }
        assert!(b.grow_if_short());
        assert_eq!(b.provided(), first * 2, "doubled once for the whole burst");
        assert!(!b.grow_if_short(), "nothing short since");
        assert_eq!(b.provided(), first * 2);
    }

    #[test]
    fn incremental_consumption_reads_on_from_the_last_offset() {
        let Ok(ring) = io_uring::IoUring::new(8) else { return };
        let mut b = BufRing::new(&ring.submitter(), 8, 4096, 6, 8).unwrap();
        if b.used.is_none() {
            return; // kernel without IOU_PBUF_RING_INC
        }
        let base = |b: &mut BufRing, bid: u16| b.region(bid, 1).start;
        assert_eq!(base(&mut b, 3), 3 * 4096);
        b.release(3, 100, true); // the kernel goes on filling buffer 3
        assert_eq!(base(&mut b, 3), 3 * 4096 + 100);
        b.release(3, 50, true);
        assert_eq!(base(&mut b, 3), 3 * 4096 + 150);
        let tail = b.tail;
        b.release(3, 10, false); // done: back to the ring, from its start
        assert_eq!((base(&mut b, 3), b.tail), (3 * 4096, tail.wrapping_add(1)));
        assert_eq!(b.region(2, 10_000).len(), 4096, "clamped to the buffer");
    }

    /// Fills `len` bytes of buffer `bid` as a receive would (no kernel op uses the group
    /// in these tests) and returns the region.
    fn received(b: &mut BufRing, bid: u16, len: usize, byte: u8) -> Region<'_> {
        let mut r = b.region(bid, len);
        r.bytes_from(0).fill(byte);
        r
    }

    #[test]
    fn a_buffer_with_lent_messages_returns_to_the_ring_after_the_last_is_dropped() {
        let Ok(ring) = io_uring::IoUring::new(8) else { return };
        let mut b = BufRing::new(&ring.submitter(), 16, 16384, 7, 16).unwrap();
        let mut r = received(&mut b, 1, 10_000, 7);
        assert!(r.share(0..LEND_MIN - 1).is_none(), "small messages are copied");
        let m1 = r.share(0..4000).expect("lent");
        let m2 = r.share(5000..9000).expect("lent");
        assert!(r.share(4000..4100).is_none(), "only past what was shared");
        assert_eq!(r.bytes_from(0).len(), 1000, "no mutable access to lent bytes");
        assert_eq!((&m1[..4000], m1.len()), (&[7u8; 4000][..], 4000));
        assert_eq!(b.lent(), 1);
        let tail = b.tail;
        b.release(1, 10_000, false);
        b.collect();
        assert_eq!(b.tail, tail, "kept out of the ring while lent");
        drop(m1);
        b.collect();
        assert_eq!(b.tail, tail, "one lent message still alive");
        // Dropped on another thread: the buffer comes back through the queue.
        std::thread::spawn(move || drop(m2)).join().unwrap();
        b.collect();
        assert_eq!((b.tail, b.lent()), (tail.wrapping_add(1), 0), "back in the ring");
        b.collect();
        assert_eq!(b.tail, tail.wrapping_add(1), "pushed once");
    }

    #[test]
    fn a_lent_buffer_dropped_before_the_kernel_is_done_goes_back_once() {
        let Ok(ring) = io_uring::IoUring::new(8) else { return };
        let mut b = BufRing::new(&ring.submitter(), 16, 16384, 8, 16).unwrap();
        let m = received(&mut b, 2, 4096, 1).share(0..4096).expect("lent");
        b.release(2, 4096, b.incremental()); // incremental: the kernel goes on
        drop(m);
        let tail = b.tail;
        b.collect();
        if b.incremental() {
            assert_eq!((b.tail, b.lent()), (tail, 0), "not the ring's yet: the kernel fills it");
            let m = received(&mut b, 2, 4096, 2).share(0..4096).expect("lent again");
            assert_eq!(m[0], 2);
            b.release(2, 4096, false);
            assert_eq!(b.tail, tail, "kept while lent");
            drop(m);
            b.collect();
        }
        assert_eq!(
            (b.tail, b.lent()),
            (tail.wrapping_add(1), 0),
            "pushed once, when both were done"
        );
    }

    #[test]
    fn lending_stops_at_a_quarter_of_the_buffers_in_circulation() {
        let Ok(ring) = io_uring::IoUring::new(8) else { return };
        let mut b = BufRing::new(&ring.submitter(), 16, 16384, 9, 16).unwrap();
        while b.grow() {}
        let mut kept = Vec::new();
        for bid in 0..16 {
            if let Some(m) = received(&mut b, bid, 4096, 3).share(0..4096) {
                kept.push(m);
            }
            b.release(bid, 4096, false);
        }
        assert_eq!((kept.len(), b.lent()), (4, 4));
        assert!(!b.grow_if_short(), "all 16 already in circulation");
        let tail = b.tail;
        drop(kept);
        b.collect();
        assert_eq!((b.tail, b.lent()), (tail.wrapping_add(4), 0));
    }

    #[test]
    fn lending_at_the_cap_grows_the_circulation() {
        let Ok(ring) = io_uring::IoUring::new(8) else { return };
        let mut b = BufRing::new(&ring.submitter(), 16, 16384, 11, 4).unwrap();
        assert_eq!(b.provided(), 4);
        let kept = received(&mut b, 0, 4096, 3).share(0..4096).expect("lent");
        b.release(0, 4096, false);
        assert!(!b.grow_if_short(), "below the cap");
        let copied = received(&mut b, 1, 4096, 4).share(0..4096);
        b.release(1, 4096, false);
        assert!(copied.is_none(), "one of four buffers is lent: the cap");
        assert!(b.grow_if_short());
        assert_eq!(b.provided(), 8);
        let lent = received(&mut b, 2, 4096, 5).share(0..4096);
        assert!(lent.is_some(), "two of eight may be lent");
        drop((kept, lent));
    }

    #[test]
    fn lent_messages_outlive_the_ring() {
        let Ok(ring) = io_uring::IoUring::new(8) else { return };
        let mut b = BufRing::new(&ring.submitter(), 16, 16384, 10, 16).unwrap();
        let m = received(&mut b, 0, 3000, 9).share(0..3000).expect("lent");
        drop(b);
        drop(ring);
        assert!(m.iter().all(|&x| x == 9), "the mapping lives while a message does");
    }
}
