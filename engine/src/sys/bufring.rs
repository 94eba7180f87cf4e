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
//! one buffer instead of touching a thousand pages. Such a ring starts with at most 4
//! buffers in circulation. Without it, the first ring circulates all its buffers from the
//! start. A worker's further rings start with 4 either way.
//!
//! The kernel reads ring entries and writes into buffers it took from the ring; user
//! space reads a buffer's bytes only between the completion that hands them over and the
//! moment the buffer is released.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// `IOU_PBUF_RING_INC` (linux/io_uring.h): buffers of the ring are consumed incrementally.
const PBUF_RING_INC: u16 = 2;
/// Most buffers in circulation at first with incremental consumption.
const INCREMENTAL_INITIAL: u16 = 4;

pub(crate) struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    bufs: NonNull<u8>,
    bufs_bytes: usize,
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
    /// Set if the mappings must be leaked because the kernel may still use them.
    leak: bool,
}

impl BufRing {
    /// Maps and registers a ring of `entries` buffers of `buf_size` bytes as group `bgid`,
    /// with the first `initial` of them available to the kernel (see `grow`).
    pub(crate) fn new(
        submitter: &Submitter<'_>,
        entries: u16,
        buf_size: u32,
        bgid: u16,
        initial: u16,
    ) -> io::Result<Self> {
        assert!(entries.is_power_of_two(), "validated by EngineConfig");
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
        let mut this = Self {
            ring: NonNull::new(ring.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?,
            ring_bytes,
            bufs: NonNull::new(bufs.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?,
            bufs_bytes,
            entries,
            buf_size,
            bgid,
            tail: 0,
            provided: 0,
            used: None,
            leak: false,
        };
        // SAFETY: the ring mapping is page-aligned, `ring_bytes` long, and stays mapped
        // until `Drop`, which runs only after the ring is unregistered or the io_uring
        // instance is gone (see `UringDriver`'s field order and drop).
        // Incremental consumption where the kernel has it (6.12): many small receives
        // (pongs, chat messages) then share one buffer instead of touching a page each.
        let addr = this.ring.as_ptr() as u64;
        // SAFETY: as above.
        if unsafe { submitter.register_buf_ring_with_flags(addr, entries, bgid, PBUF_RING_INC) }
            .is_ok()
        {
            this.used = Some(vec![0; usize::from(entries)]);
        } else {
            // SAFETY: as above.
            unsafe { submitter.register_buf_ring_with_flags(addr, entries, bgid, 0)? };
        }
        // Incrementally consumed buffers hold many receives each, and traffic streams
        // through every buffer in circulation (touching all its pages), so few circulate
        // at first; the pool grows when a receive finds none free.
        let initial = if this.used.is_some() { initial.min(INCREMENTAL_INITIAL) } else { initial };
        this.grow_to(initial.clamp(1, entries));
        Ok(this)
    }

    /// Hands more buffers to the kernel: as many again as are in circulation, up to the
    /// ring's size. Whether there were any left to add.
    pub(crate) fn grow(&mut self) -> bool {
        self.grow_to(self.provided.saturating_mul(2).min(self.entries))
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
        let addr = unsafe { self.bufs.as_ptr().add(usize::from(bid) * self.buf_size as usize) };
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
    /// completion ended).
    ///
    /// # Safety
    /// `bid` must come from a completion of this group, handed to `release` only after
    /// this slice is dropped.
    pub(crate) unsafe fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid.min(self.entries - 1));
        let size = self.buf_size as usize;
        let start = self.used.as_ref().map_or(0, |u| u[bid] as usize).min(size);
        let len = len.min(size - start);
        // SAFETY: `start + len <= buf_size`, so the range lies inside buffer `bid` of the
        // mapping. The kernel finished writing these bytes before posting the completion
        // and writes to this buffer again only past them (incremental consumption) or
        // after the buffer is pushed back, which `release` does after this borrow ends.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().add(bid * size + start), len) }
    }

    /// Done with the `len` bytes of a completion in buffer `bid`; `more` is the
    /// completion's `IORING_CQE_F_BUF_MORE` (the kernel keeps filling the buffer). The
    /// buffer goes back to the ring once the kernel is done with it.
    pub(crate) fn release(&mut self, bid: u16, len: usize, more: bool) {
        if let Some(used) = self.used.as_mut() {
            let Some(u) = used.get_mut(usize::from(bid)) else { return };
            if more {
                *u = u.saturating_add(len as u32);
                return;
            }
            *u = 0;
        }
        self.push(bid);
    }

    /// Keeps the mappings alive forever (the kernel may still use them).
    pub(crate) fn leak(&mut self) {
        self.leak = true;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: both regions were mapped in `new` with these lengths; the owner drops
        // the ring only after the io_uring instance that used them is gone or every
        // operation that could write to them has completed (else it calls `leak`).
        unsafe {
            let _ = munmap(self.ring.as_ptr().cast(), self.ring_bytes);
            let _ = munmap(self.bufs.as_ptr().cast(), self.bufs_bytes);
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
        let first = if b.incremental() { INCREMENTAL_INITIAL } else { 64 };
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
        assert_eq!(all.provided(), if all.incremental() { INCREMENTAL_INITIAL } else { 128 });
    }

    #[test]
    fn incremental_consumption_reads_on_from_the_last_offset() {
        let Ok(ring) = io_uring::IoUring::new(8) else { return };
        let mut b = BufRing::new(&ring.submitter(), 8, 4096, 6, 8).unwrap();
        if b.used.is_none() {
            return; // kernel without IOU_PBUF_RING_INC
        }
        let base = |b: &BufRing, bid: u16| {
            // SAFETY: test only: no kernel op uses this group.
            unsafe { b.buffer(bid, 1).as_ptr() as usize - b.bufs.as_ptr() as usize }
        };
        assert_eq!(base(&b, 3), 3 * 4096);
        b.release(3, 100, true); // the kernel goes on filling buffer 3
        assert_eq!(base(&b, 3), 3 * 4096 + 100);
        b.release(3, 50, true);
        assert_eq!(base(&b, 3), 3 * 4096 + 150);
        let tail = b.tail;
        b.release(3, 10, false); // done: back to the ring, from its start
        assert_eq!((base(&b, 3), b.tail), (3 * 4096, tail.wrapping_add(1)));
        // SAFETY: as above.
        assert_eq!(unsafe { b.buffer(2, 10_000) }.len(), 4096, "clamped to the buffer");
    }
}
