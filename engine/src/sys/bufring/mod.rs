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
//! moment the buffer is released. That rule is the contract of the two `unsafe fn`s that
//! hand buffers out and take them back, [`BufRing::region`] and [`BufRing::release`]:
//! only the code that holds a receive completion (`sys::uring::recv`) can keep it.
//!
//! This file holds the ring (its entries, the tail, the circulation and the lending
//! bookkeeping); `pool.rs` the buffer memory, the [`Region`] a completion lends and the
//! owner behind a message kept without a copy.

mod pool;
#[cfg(test)]
mod tests;

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use pool::Pool;
pub(crate) use pool::Region;
#[cfg(test)]
use pool::LEND_MIN;

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

/// Largest buffer of a ring without incremental consumption. There every receive takes a
/// whole buffer, however few bytes it brings, so the pool is cut into more, smaller
/// buffers (the same bytes in all): a thousand connections receiving at once then need a
/// thousand buffers, not a thousand times the configured size.
const WHOLE_BUFFER_MAX: u32 = 16 * 1024;

/// The ring's buffers without incremental consumption: `buf_size` halved (and `entries`
/// doubled) while it is above [`WHOLE_BUFFER_MAX`] and the ring has room for more entries.
fn whole_buffer_geometry(mut entries: u16, mut buf_size: u32) -> (u16, u32) {
    while buf_size > WHOLE_BUFFER_MAX && buf_size.is_multiple_of(2) && entries <= 16384 {
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
    if ok && submitter.unregister_buf_ring(bgid).is_err() {
        // Still registered (no known cause): keep the page rather than unmap it.
        return ok;
    }
    // SAFETY: mapped above with `bytes` bytes; the kernel no longer refers to it: either
    // the registration failed, or the group was unregistered just above.
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
        let mut this = Self::map(entries, buf_size, bgid, incremental)?;
        // Incremental consumption where the kernel has it (6.12): many small receives
        // (pongs, chat messages) then share one buffer instead of touching a page each.
        let addr = this.ring.as_ptr() as u64;
        let entries = this.entries;
        let registered_incremental = incremental && {
            // SAFETY: `addr` is the page-aligned start of the ring mapping, which holds
            // `entries` entries and stays mapped while the kernel may read it: `Drop`
            // unmaps it only once the io_uring instance is gone or nothing is in flight
            // (the owner's field order and drop; else the owner calls `leak`). The
            // entries are written only by `push`, past the tail published to the kernel.
            unsafe { submitter.register_buf_ring_with_flags(addr, entries, bgid, PBUF_RING_INC) }
                .is_ok()
        };
        if !registered_incremental {
            // SAFETY: the same mapping and the same lifetime as the attempt just above
            // (which, if made, failed and left nothing registered): `addr` is the
            // page-aligned start of `entries` entries that stay mapped until the kernel is
            // done with them (`Drop` runs after the io_uring instance is gone or idle, or
            // leaks the mapping).
            unsafe { submitter.register_buf_ring_with_flags(addr, entries, bgid, 0)? };
        }
        this.start(initial, registered_incremental);
        Ok(this)
    }

    /// The ring and buffer mappings of a ring of `entries` buffers of `buf_size` bytes
    /// (cut by [`whole_buffer_geometry`] unless `incremental`), registered nowhere and
    /// with no buffer in circulation yet.
    fn map(entries: u16, buf_size: u32, bgid: u16, incremental: bool) -> io::Result<Self> {
        assert!(entries.is_power_of_two(), "validated by EngineConfig");
        let (entries, buf_size) = if incremental {
            (entries, buf_size)
        } else {
            whole_buffer_geometry(entries, buf_size)
        };
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        let bufs_bytes = usize::from(entries) * buf_size as usize;
        // The ring's pages are touched at once rather than on the kernel's first read of
        // an entry. Only a hint: Miri, which runs the tests of the bookkeeping, supports
        // no mmap flag but MAP_PRIVATE|MAP_ANONYMOUS.
        let populate = if cfg!(miri) { MapFlags::empty() } else { MapFlags::POPULATE };
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choice
        // aliases nothing; the length is non-zero (`entries` is a power of two, so at
        // least 1).
        let ring = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                ring_bytes,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | populate,
            )?
        };
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choice
        // aliases nothing, the ring's mapping just above included (a zero length, from a
        // zero buffer size, makes mmap fail with EINVAL rather than map anything).
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
        Ok(Self {
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
        })
    }

    /// Puts the first `initial` buffers into circulation, for a ring registered with
    /// incremental consumption or without.
    fn start(&mut self, initial: u16, incremental: bool) {
        if incremental {
            self.used = Some(vec![0; usize::from(self.entries)]);
        }
        // Incrementally consumed buffers hold many receives each, and traffic streams
        // through every buffer in circulation (touching all its pages), so few circulate
        // at first; the pool grows when a receive finds none free.
        let initial =
            if incremental { initial.min(incremental_initial(self.buf_size)) } else { initial };
        self.grow_to(initial.clamp(1, self.entries));
    }

    /// A ring that is mapped but registered with no io_uring, with the bookkeeping of
    /// either mode: what the tests of the lending and circulation use, also where no
    /// io_uring can be made (Miri, which cannot make the syscalls).
    #[cfg(test)]
    fn unregistered(
        entries: u16,
        buf_size: u32,
        initial: u16,
        incremental: bool,
    ) -> io::Result<Self> {
        let mut this = Self::map(entries, buf_size, 0, incremental)?;
        this.start(initial, incremental);
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
            // SAFETY: buffers `provided..` were never pushed (the circulation only grows),
            // so the kernel has not had them and no region or lent message refers to them.
            unsafe { self.push(bid) };
        }
        self.provided = to;
        self.commit();
        true
    }

    /// Whether buffers are consumed incrementally.
    pub(crate) fn incremental(&self) -> bool {
        self.used.is_some()
    }

    /// The ring's buffers as chosen for this kernel: how many, and how large each is.
    pub(crate) fn geometry(&self) -> (u32, u32) {
        (u32::from(self.entries), self.buf_size)
    }

    /// Buffers in circulation.
    pub(crate) fn provided(&self) -> u16 {
        self.provided
    }

    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Makes buffer `bid` available to the kernel again (published by `commit`).
    ///
    /// # Safety
    ///
    /// Buffer `bid` must not be in the ring already, and nothing may use its bytes from
    /// now on: it was never pushed (`grow_to`), or the kernel has handed it over and is
    /// done with it (a completion without `IORING_CQE_F_BUF_MORE`), no [`Region`] of it
    /// is alive and no message lent out of it is. Otherwise the kernel could hand it to
    /// two receives at once, or write into bytes that a region or a message reads.
    unsafe fn push(&mut self, bid: u16) {
        if bid >= self.entries {
            return;
        }
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `idx < entries`, so the entry lies inside the ring mapping, which is
        // live while `self` is. The kernel only reads entries between its head and our
        // published tail; this one is at or past the published tail (`tail` runs ahead of
        // what `commit` published, and at most `entries` buffers exist to be in the ring),
        // so the kernel is not reading it and no other reference to it exists.
        let entry = unsafe { &mut *self.ring.as_ptr().add(idx) };
        // SAFETY: `bid < entries` (checked above), so `bid * buf_size` is at most the
        // mapping's length minus one buffer: the pointer stays inside the buffer mapping.
        let addr =
            unsafe { self.pool.bufs.as_ptr().add(usize::from(bid) * self.buf_size as usize) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes pushed buffers to the kernel.
    pub(crate) fn commit(&mut self) {
        // SAFETY: the tail field lives in the first entry of the ring mapping, which is
        // live while `self` is; it is a `u16` at an even offset of a page-aligned
        // mapping, so aligned for `AtomicU16`. The kernel reads it concurrently, so it is
        // only ever written through this atomic (never by a plain write), with release
        // ordering so the entries written by `push` are visible first.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *mut u16;
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// The `len` bytes a completion just delivered in buffer `bid` (from the start of the
    /// buffer, or with incremental consumption from where the buffer's previous
    /// completion ended), to hand to the protocol core; call `release` after it is dropped.
    ///
    /// `bid` and `len` are clamped so that the region stays inside the buffer whatever
    /// they are; what the caller must vouch for is who owns the bytes.
    ///
    /// # Safety
    ///
    /// - The kernel must have handed these bytes over and must not write them: `bid` is
    ///   the buffer id (`IORING_CQE_F_BUFFER`) of a receive completion that selected from
    ///   this ring's group (`bgid`, on the io_uring instance this ring is registered
    ///   with), and `len` at most that completion's (positive) result.
    /// - At most one region per completion: a second region of the same completion would
    ///   hand out mutable access to bytes the first one lent out as messages.
    /// - With incremental consumption, the completions of one buffer come here in the
    ///   order the kernel posted them, each followed by its `release` before the next
    ///   one's `region`: that is how the region's offset in the buffer is known.
    ///
    /// Where no operation ever selects from the group (this module's tests), the kernel
    /// never owns a buffer and only the last two points apply.
    ///
    /// A token that only a completion could produce was the alternative; it is not
    /// sounder here: the crate's `cqueue::Entry` is `Clone` and does not say which ring
    /// it came from, so making the token from it would need the same promise, in an
    /// `unsafe` constructor further from the buffer it is about.
    pub(crate) unsafe fn region(&mut self, bid: u16, len: usize) -> Region<'_> {
        let bid = bid.min(self.entries - 1);
        let size = self.buf_size as usize;
        let at = self.used.as_ref().map_or(0, |u| u[usize::from(bid)] as usize).min(size);
        let len = len.min(size - at);
        Region { start: usize::from(bid) * size + at, len, bid, shared_end: 0, ring: self }
    }

    /// Done with the `len` bytes of a completion in buffer `bid`; `more` is the
    /// completion's `IORING_CQE_F_BUF_MORE` (the kernel keeps filling the buffer). The
    /// buffer goes back to the ring once the kernel is done with it and no message lent
    /// out of it is alive. (The region of the completion, if one was made, is gone: it
    /// borrows `self`.)
    ///
    /// # Safety
    ///
    /// - `bid`, `len` and `more` come from one completion of a receive that selected
    ///   from this ring's group: its buffer id, its result if positive (0 for a failed
    ///   completion that still carried a buffer) and its `IORING_CQE_F_BUF_MORE` flag.
    ///   Releasing a buffer the kernel did not hand over, or with `more` false while the
    ///   kernel goes on filling it, puts into the ring a buffer the kernel is writing or
    ///   that a region or a lent message uses.
    /// - Exactly once per such completion, and (with incremental consumption) in the
    ///   order the kernel posted the completions of that buffer: a second release would
    ///   push the buffer twice, and the offset kept per buffer would go wrong.
    ///
    /// Where no operation ever selects from the group (this module's tests), the kernel
    /// never owns a buffer: any `bid` that is in circulation may be released once per
    /// region made of it, with `more` false at its last.
    pub(crate) unsafe fn release(&mut self, bid: u16, len: usize, more: bool) {
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
            // SAFETY: by this function's contract the kernel handed `bid` over and, `more`
            // being false, is done with it, and this is its only release; the region of
            // the completion is gone (it borrowed `self`), and no lent message holds the
            // buffer (`held` is false: none was lent since the kernel took it, or
            // `collect` saw the last one dropped).
            unsafe { self.push(bid) };
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
                // SAFETY: `done` was set by the one `release` of the kernel's last
                // completion of `bid` (so the kernel is done with it and it is not in the
                // ring), and cleared here by `take`, so it is pushed once. No region of it
                // is alive (they borrow `self`), and no lent message: the pin count read
                // zero after `queued` was cleared, and new messages are lent only through
                // a region.
                unsafe { self.push(bid) };
            }
        }
    }

    /// Messages lent out so far.
    pub(crate) fn messages_lent(&self) -> u64 {
        self.messages_lent
    }

    /// Buffers some lent message still holds.
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
        // SAFETY: `ring` was mapped in `with_mode` with `ring_bytes` and is unmapped only
        // here. The kernel no longer reads it: the owner drops this ring only after the
        // io_uring instance that used it is gone or every operation that could select
        // from it has completed, and calls `leak` (which skips this) otherwise. The
        // buffers' mapping is not touched: it goes with the pool, once lent messages are
        // gone too.
        unsafe {
            let _ = munmap(self.ring.as_ptr().cast(), self.ring_bytes);
        }
    }
}
