//! Async cancel by `user_data`. The cancelled operation reports its own end (its last
//! completion, usually `ECANCELED`); the cancel's own completion (`TAG_CANCEL`) carries
//! nothing anyone needs, so the dispatch ignores it.

use io_uring::opcode;

use super::driver::UringDriver;
use super::{ud, Sqe, TAG_CANCEL, TAG_RECV, TAG_SEND};
use crate::slab::Key;

/// The entry that cancels the request tagged `target` (all of its shots, if multishot).
#[inline]
pub(super) fn cancel(target: u64) -> Sqe {
    let e = opcode::AsyncCancel::new(target).build();
    // SAFETY: an async cancel names its target by `user_data`, a plain value the kernel
    // matches against its requests; it points at no memory and names no descriptor, so
    // nothing has to outlive it.
    unsafe { Sqe::new(e, ud(TAG_CANCEL, 0)) }
}

impl UringDriver {
    /// Cancels both of a connection's requests, by `user_data` (a hash lookup in the
    /// kernel): the multishot receive, and the send in flight if there is one. A request
    /// that already ended makes its cancel fail with ENOENT, which nobody needs to hear.
    pub(super) fn cancel_conn(&mut self, key: Key) {
        let Some((r, _)) = self.target(key) else { return };
        self.push(r, cancel(ud(TAG_RECV, key.pack())));
        if let Some(i) = self.sends.in_flight(key.slot) {
            self.push(r, cancel(ud(TAG_SEND, u64::from(i))));
        }
    }
}
