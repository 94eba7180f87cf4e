//! The buffer memory of a [`BufRing`] and what borrows or shares it: the [`Region`] one
//! receive completion lends to the protocol core, and the [`Lent`] owner behind a message
//! kept without a copy. The ring itself (entries, tail, circulation) is in the parent
//! module.

use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use ringwire_frame::RecvBuffer;
use rustix::mm::munmap;

use super::BufRing;

/// Messages of at least this many bytes that arrive whole in one receive are lent out of
/// the receive buffer instead of copied (below it, a copy costs less than the lending).
pub(crate) const LEND_MIN: usize = 2048;

/// The buffer memory and what the messages lent out of it share with the ring: the
/// mapping stays until the ring and every lent message are gone.
pub(super) struct Pool {
    /// The start of a private anonymous mapping of `bytes` bytes that this pool owns.
    pub(super) bufs: NonNull<u8>,
    pub(super) bytes: usize,
    /// Per buffer: messages lent out of it and still alive.
    pub(super) pins: Box<[AtomicU32]>,
    /// Per buffer: its number is in `returned` (so it is queued at most once).
    pub(super) queued: Box<[AtomicBool]>,
    /// Buffers whose last lent message was dropped, for the ring's thread to take back.
    pub(super) returned: ArrayQueue<u16>,
    /// Set if the mapping must be leaked because the kernel may still write into it.
    pub(super) leak: AtomicBool,
}

// SAFETY: the one field that is not `Send` is `bufs`, a pointer to a private mapping that
// the pool owns alone: no thread-local state is behind it, and unmapping it in `Drop` is
// valid on any thread (the pool is dropped wherever its last owner goes, e.g. with a
// message dropped by another thread). The other fields are atomics, boxed slices of
// atomics and a lock-free queue, all `Send`.
unsafe impl Send for Pool {}
// SAFETY: the one field that is not `Sync` is `bufs`. Through a shared `&Pool` the bytes
// behind it are only read, by `Lent::as_ref`, and only inside a lent range; nothing writes
// such a range while a `Lent` of it is alive: the kernel gets the buffer back only when
// its pin count is zero (`BufRing::collect`), and a `Region` hands out mutable access
// only to bytes past the last range it shared. The ring's thread writes buffers through
// `&mut BufRing`, never through a shared `&Pool`. Every other field is an atomic or a
// lock-free queue, which are `Sync`.
unsafe impl Sync for Pool {}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.leak.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: `bufs` was mapped in `BufRing::with_mode` with `bytes` bytes and is
        // unmapped only here, by the last owner: the ring (dropped after the kernel is
        // done with its buffers, else it set `leak` and this returned above) and every
        // lent message are gone, so nothing reads or writes the buffers any more.
        let _ = unsafe { munmap(self.bufs.as_ptr().cast(), self.bytes) };
    }
}

/// A message's bytes lent out of a receive buffer (the owner behind its `Bytes`).
pub(super) struct Lent {
    pool: Arc<Pool>,
    bid: u16,
    offset: usize,
    len: usize,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `offset..offset + len` lies inside the mapping: `Region::share` lends
        // only a range inside its region, and `BufRing::region` keeps a region inside
        // its buffer. The mapping lives as long as `pool`, which this `Lent` holds. The
        // bytes were written (received, then unmasked) before the range was lent, and
        // nothing writes them while this `Lent` is alive: its pin keeps the buffer out of
        // the ring (so away from the kernel), and the region that lent it hands out
        // mutable access only past `shared_end`, which is at or past this range's end.
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
///
/// Made only by the unsafe [`BufRing::region`], whose caller vouches that the kernel
/// handed these bytes over; that is what the `unsafe` blocks below rely on.
pub(crate) struct Region<'a> {
    pub(super) ring: &'a mut BufRing,
    pub(super) bid: u16,
    /// Offset of the region in the buffer mapping (`region` keeps `start + len` inside it).
    pub(super) start: usize,
    pub(super) len: usize,
    /// End of the last range shared: bytes before it are never handed out again.
    pub(super) shared_end: usize,
}

impl RecvBuffer for Region<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn bytes_from(&mut self, start: usize) -> &mut [u8] {
        let start = start.clamp(self.shared_end, self.len);
        // SAFETY: `start <= len` after the clamp, so `self.start + start .. self.start +
        // len` lies inside this region, which `BufRing::region` keeps inside the mapping.
        // These are the bytes of one completion, which (by the contract of the unsafe
        // `BufRing::region` that made this region) the kernel finished writing before it
        // posted the completion and does not write again until the buffer is pushed back;
        // that happens in `BufRing::release`/`collect`, which need the `&mut BufRing` this
        // region borrows, so not while the slice lives. No other reference to these bytes
        // exists: the slice borrows `self` mutably, `region`'s contract gives each
        // completion one region and completions' bytes do not overlap, and bytes before
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
