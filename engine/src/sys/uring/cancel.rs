//! Async cancel by `user_data`. The cancelled operation reports its own end (its last
//! completion, usually `ECANCELED`); the cancel's own completion (`TAG_CANCEL`) carries
//! nothing anyone needs, so the dispatch ignores it.

use io_uring::opcode;

use super::{ud, Sqe, TAG_CANCEL};

/// The entry that cancels the request tagged `target` (all of its shots, if multishot).
#[inline]
pub(super) fn cancel(target: u64) -> Sqe {
    let e = opcode::AsyncCancel::new(target).build();
    // SAFETY: an async cancel names its target by `user_data`, a plain value the kernel
    // matches against its requests; it points at no memory and names no descriptor, so
    // nothing has to outlive it.
    unsafe { Sqe::new(e, ud(TAG_CANCEL, 0)) }
}
