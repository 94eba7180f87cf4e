//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): one pool of receive buffers per
//! worker that the kernel picks from when data arrives on any connection. A connection
//! without data in flight holds no buffer; a buffer goes back to the ring as soon as its
//! bytes are handed to the protocol core.
//!
//! Memory: the ring (16 bytes per entry) and the buffers are two anonymous mappings owned
//! by this struct. The kernel reads ring entries and writes into buffers it took from
//! the ring; user space touches a buffer only between the completion that hands it over
//! and the moment it is pushed back.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

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
    /// Set if the mappings must be leaked because the kernel may still use them.
    leak: bool,
}

impl BufRing {
    /// Maps and registers a ring of `entries` buffers of `buf_size` bytes as group `bgid`,
    /// with every buffer available to the kernel.
    pub(crate) fn new(
        submitter: &Submitter<'_>,
        entries: u16,
        buf_size: u32,
        bgid: u16,
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
            leak: false,
        };
        // SAFETY: the ring mapping is page-aligned, `ring_bytes` long, and stays mapped
        // until `Drop`, which runs only after the ring is unregistered or the io_uring
        // instance is gone (see `UringDriver`'s field order and drop).
        unsafe {
            submitter.register_buf_ring_with_flags(this.ring.as_ptr() as u64, entries, bgid, 0)?;
        }
        for bid in 0..entries {
            this.push(bid);
        }
        this.commit();
        Ok(this)
    }

    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Makes buffer `bid` available to the kernel again (published by `commit`).
    ///
    /// `bid` must be a buffer the kernel handed over in a completion and not yet pushed.
    pub(crate) fn push(&mut self, bid: u16) {
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

    /// The first `len` bytes of buffer `bid`, which a completion just handed over.
    ///
    /// # Safety
    /// `bid` must come from a completion of this group and not have been pushed back
    /// since; the slice must be dropped before the buffer is pushed back.
    pub(crate) unsafe fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid.min(self.entries - 1));
        let len = len.min(self.buf_size as usize);
        // SAFETY: in bounds of the buffer mapping (clamped above); the kernel finished
        // writing this buffer before posting the completion and does not touch it until
        // it is pushed back, which the caller guarantees happens after this borrow.
        unsafe {
            std::slice::from_raw_parts(self.bufs.as_ptr().add(bid * self.buf_size as usize), len)
        }
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
