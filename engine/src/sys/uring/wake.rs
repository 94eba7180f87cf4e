//! The eventfd read: an 8-byte read of an eventfd, kept armed on the first ring. Two
//! eventfds are read this way: the worker's wake-up eventfd (other threads write it when
//! they queue commands), and each further ring's registered eventfd (the kernel signals
//! it when that ring has completion work; see `spread.rs`).

use std::os::fd::AsRawFd;

use io_uring::{opcode, types};

use super::Sqe;

/// A read of an eventfd into a buffer of its own: the op owns both the descriptor and
/// the 8 bytes the kernel writes, so neither can go while the read is armed.
pub(super) struct EventfdRead<F> {
    fd: F,
    /// Boxed: the kernel writes here, so the address must not move with the struct.
    buf: Box<[u8; 8]>,
    /// A read is in flight (its completion has not arrived).
    armed: bool,
}

impl<F: AsRawFd> EventfdRead<F> {
    pub(super) fn new(fd: F) -> Self {
        Self { fd, buf: Box::new([0; 8]), armed: false }
    }

    /// Whether a read is in flight.
    #[inline]
    pub(super) fn armed(&self) -> bool {
        self.armed
    }

    /// The entry for the next read, tagged `user_data`; the read counts as armed from
    /// now until [`EventfdRead::fired`].
    #[inline]
    pub(super) fn arm(&mut self, user_data: u64) -> Sqe {
        let e = opcode::Read::new(types::Fd(self.fd.as_raw_fd()), self.buf.as_mut_ptr(), 8).build();
        self.armed = true;
        // SAFETY: the entry writes 8 bytes into `buf`, a heap allocation of exactly 8
        // bytes that `self` owns and nothing else reads or writes, and reads from `fd`,
        // which `self` owns too (for the wake-up eventfd, one reference of its `Arc`).
        // Both live as long as `self`: the wake-up read sits in the driver, a further
        // ring's in that ring, and the driver frees neither buffer while its read may be
        // in flight: its drop cancels the reads and collects their completions, or keeps
        // the buffers forever (`leak_buf`); and the rings drop in order, the first (where
        // the reads are armed) before the further ones (which own their eventfd). At
        // most one read per `EventfdRead` is armed: `arm` is called again only after
        // `fired`, so no two reads write `buf` at once.
        unsafe { Sqe::new(e, user_data) }
    }

    /// The read completed (whatever its result).
    #[inline]
    pub(super) fn fired(&mut self) {
        self.armed = false;
    }

    /// Keeps the buffer allocated forever: a read that could not be collected may
    /// still write into it.
    pub(super) fn leak_buf(&mut self) {
        std::mem::forget(std::mem::replace(&mut self.buf, Box::new([0; 8])));
    }
}
