//! The driver's side of the `recv` operation (`super::super::recv`): arming it and the
//! bookkeeping its completions need.

use crate::slab::Key;
use crate::sys::uring::recv::Recv;
use crate::sys::uring::Target;
use crate::sys::uring::UringDriver;

impl UringDriver {
    /// Arms the multishot receive of `key`, whose socket `t` lives on ring `r`.
    pub(super) fn arm_recv(&mut self, key: Key, r: usize, t: Target) {
        let bgid = self.rings[r].bufs.bgid();
        let e = Recv { key, target: t, bgid }.sqe();
        self.push(r, e);
    }
}
