//! The driver's side of the `cancel` operation (`super::super::cancel`): arming it and the
//! bookkeeping its completions need.

use crate::slab::Key;
use crate::sys::uring::cancel::cancel;
use crate::sys::uring::UringDriver;
use crate::sys::uring::{ud, TAG_CONNECT, TAG_RECV, TAG_SEND};

impl UringDriver {
    /// Cancels a connection's requests, by `user_data` (a hash lookup in the kernel):
    /// the multishot receive, the send in flight if there is one, the connect of an
    /// outgoing connection that has not finished. A request
    /// that already ended makes its cancel fail with ENOENT, which nobody needs to hear.
    pub(super) fn cancel_conn(&mut self, key: Key) {
        let Some((r, _)) = self.target(key) else { return };
        self.push(r, cancel(ud(TAG_RECV, key.pack())));
        if let Some(i) = self.sends.in_flight(key.slot) {
            self.push(r, cancel(ud(TAG_SEND, u64::from(i))));
        }
        if self.connects.contains_key(&key.slot) {
            self.push(r, cancel(ud(TAG_CONNECT, key.pack())));
        }
    }
}
