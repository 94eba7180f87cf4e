//! Rings spread for direct descriptors: when the fixed-file table of the ring that
//! accepts fills up, the driver opens a further ring (with its own table and buffer
//! ring) and accepts there. A connection's `Socket::Fixed` value carries its ring's
//! number above the slot. The worker sleeps in the first ring only; each further ring
//! has an eventfd registered, which the kernel signals when the ring has completion
//! work, and the first ring keeps a read of it armed (`TAG_RING`).

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::driver::UringDriver;
use super::ring::Ring;
use super::wake::EventfdRead;
use super::{ud, Target, TAG_RING};
use crate::slab::Key;
use crate::sys::{Completion, Socket};

/// Bits of a `Socket::Fixed` value that hold the slot in its ring's table; the bits
/// above hold the ring's number.
const RING_SHIFT: u32 = 24;
/// Most rings per worker (the ring number must fit above `RING_SHIFT`).
pub(crate) const MAX_RINGS: usize = 64;

/// Receive buffers a further ring starts with in circulation (it adds more as receives
/// find none free; see `BufRing::grow`).
const FURTHER_RING_BUFFERS: u16 = 4;

/// The `Socket::Fixed` value of slot `slot` of ring `ring`'s table.
#[inline]
pub(super) fn fixed(ring: usize, slot: u32) -> u32 {
    ((ring as u32) << RING_SHIFT) | slot
}

/// The ring and the slot of a `Socket::Fixed` value.
#[inline]
pub(super) fn split_fixed(v: u32) -> (usize, u32) {
    ((v >> RING_SHIFT) as usize, v & ((1 << RING_SHIFT) - 1))
}

impl UringDriver {
    /// The ring a connection lives on and how its ops address its socket.
    #[inline]
    pub(super) fn target(&self, key: Key) -> Option<(usize, Target)> {
        match self.fds.get(key.slot as usize)?.as_ref()? {
            Socket::Fd(f) => Some((0, Target::Fd(f.as_raw_fd()))),
            Socket::Fixed(v) => {
                let (r, slot) = split_fixed(*v);
                Some((r, Target::Fixed(slot)))
            }
        }
    }

    /// The ring to accept on next: the first whose table has room, else a new one.
    pub(super) fn accept_ring(&mut self) -> Option<usize> {
        if !self.direct {
            return Some(0);
        }
        self.rings.iter().position(Ring::has_room).or_else(|| self.add_ring())
    }

    /// Opens one more ring (with its own table and buffer ring) and arms the first
    /// ring's read of its eventfd. Its number, or `None` if no more may or can be opened.
    fn add_ring(&mut self) -> Option<usize> {
        if self.rings.len() >= self.max_rings {
            return None;
        }
        let mut features = Vec::new();
        // Smaller queues than the first ring's: their pages are touched as the queues
        // cycle, and a further ring mostly holds idle connections (a full submission
        // queue is submitted on the spot, and completions beyond the completion queue
        // wait in the kernel until reaped).
        let mut ring = Ring::new(
            (self.entries / 16).max(128).min(self.entries),
            self.recv_buffers,
            self.recv_buffer_size,
            FURTHER_RING_BUFFERS,
            self.files_per_ring,
            &mut features,
        )
        .ok()?;
        if ring.files == 0 {
            return None;
        }
        let evfd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .ok()?;
        ring.ring.submitter().register_eventfd(evfd.as_raw_fd()).ok()?;
        ring.evfd = Some(EventfdRead::new(evfd));
        self.rings.push(ring);
        let r = self.rings.len() - 1;
        self.arm_ring_read(r);
        Some(r)
    }

    /// Arms the first ring's read of ring `r`'s eventfd.
    pub(super) fn arm_ring_read(&mut self, r: usize) {
        let Some(evfd) = self.rings[r].evfd.as_mut() else { return };
        let e = evfd.arm(ud(TAG_RING, r as u64));
        self.push(0, e);
    }

    /// Ring `k`'s eventfd fired: note that it has work, and read the eventfd again.
    #[inline]
    pub(super) fn on_ring_ready(&mut self, k: usize) {
        if let Some(ring) = self.rings.get_mut(k) {
            if let Some(evfd) = ring.evfd.as_mut() {
                evfd.fired();
            }
            ring.ready = true;
        }
        self.arm_ring_read(k);
    }

    /// Submits to and reaps every further ring that has work queued or whose eventfd
    /// fired, without waiting. How many completions that reported.
    pub(super) fn service_further_rings(
        &mut self,
        f: &mut dyn FnMut(Completion<'_>),
    ) -> std::io::Result<usize> {
        let mut n = 0;
        for r in 1..self.rings.len() {
            let ring = &mut self.rings[r];
            ring.drain_overflow();
            let queued = !ring.ring.submission().is_empty();
            if !(ring.ready || queued) {
                continue;
            }
            ring.ready = false;
            ring.enter(Some(Duration::ZERO))?;
            n += self.reap(r, f);
            self.rings[r].drain_overflow();
        }
        Ok(n)
    }
}
