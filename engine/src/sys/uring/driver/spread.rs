//! The driver's side of the `spread` operation (`super::super::spread`): arming it and the
//! bookkeeping its completions need.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::slab::Key;
use crate::sys::uring::ring::Ring;
use crate::sys::uring::spread::{split_fixed, FURTHER_RING_BUFFERS};
use crate::sys::uring::wake::EventfdRead;
use crate::sys::uring::UringDriver;
use crate::sys::uring::{ud, Target, TAG_RING};
use crate::sys::{Completion, Socket};

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
