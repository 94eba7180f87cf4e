//! The driver's side of the `close` operation (`super::super::close`): arming it and the
//! bookkeeping its completions need.

use crate::slab::Key;
use crate::sys::uring::close::Close;
use crate::sys::uring::UringDriver;
use crate::sys::{Completion, Socket};

impl UringDriver {
    /// Closes a socket through its ring; `user_data` says who hears of it.
    pub(super) fn close_socket(&mut self, sock: Socket, user_data: u64) {
        let (r, e) = Close::new(sock).sqe(user_data);
        self.push(r, e);
    }

    /// A fixed-file slot of ring `r` was freed: a full ring may accept again.
    pub(super) fn slot_freed(&mut self, r: usize) {
        if self.direct {
            let ring = &mut self.rings[r];
            ring.files_used = ring.files_used.saturating_sub(1);
        }
        self.resume_accepts();
    }

    /// A connection's close on ring `r` completed: a descriptor was freed, so a paused
    /// listener may accept again.
    #[inline]
    pub(super) fn on_close(&mut self, r: usize, low: u64, f: &mut dyn FnMut(Completion<'_>)) {
        self.slot_freed(r);
        f(Completion::FdClosed { key: Key::unpack(low) });
    }
}
