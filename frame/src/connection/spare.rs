//! A small per-thread cache of idle connections' buffers.
//!
//! A busy connection goes idle and busy again many times a second (each time its output
//! drains), and freeing its buffers each time would cost an allocation of the box plus
//! the regrowth of every queue inside it on the next burst. Idle buffers therefore go to
//! a per-thread list of at most [`MAX`] instead, emptied and with any large
//! capacity dropped, so that the next connection of this thread to get busy reuses them.
//! An idle connection still holds no buffers, and the cache's memory is bounded per
//! thread (a thread-per-core engine has one cache per worker).

use std::cell::RefCell;

use super::Buffers;
use bytes::BytesMut;

/// Spare buffers kept per thread.
pub(super) const MAX: usize = 64;
/// Byte buffers larger than this are not kept.
const KEEP_BYTES: usize = 16 * 1024;
/// Queues longer than this are not kept.
const KEEP_ITEMS: usize = 256;

thread_local! {
    // Boxes, not values: handing one out or back moves a pointer, and the connection
    // holds exactly this box.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Buffers>>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn take() -> Box<Buffers> {
    SPARE.try_with(|s| s.borrow_mut().pop()).ok().flatten().unwrap_or_default()
}

/// Keeps `b` (idle: nothing queued, no message half received) for reuse.
pub(super) fn give(mut b: Box<Buffers>) {
    b.custom_masks = None;
    b.contexts = None;
    trim(&mut b);
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < MAX {
            s.push(b);
        }
    });
}

/// Empties idle buffers `b` and drops any large capacity: what `give` keeps, and what a
/// connection that keeps its buffers (a caller's mask source is in them) holds idle.
pub(super) fn trim(b: &mut Buffers) {
    fn trim(buf: &mut BytesMut) {
        if buf.capacity() > KEEP_BYTES {
            *buf = BytesMut::new();
        } else {
            buf.clear();
        }
    }
    trim(&mut b.msg_buf);
    trim(&mut b.ctrl_buf);
    trim(&mut b.out.buf);
    b.recv = Default::default();
    b.msg_opcode = None;
    b.msg_deflated = false;
    b.utf8 = Default::default();
    b.deferred = None;
    if b.pongs.capacity() > KEEP_ITEMS {
        b.pongs = Default::default();
    }
    if b.events.capacity() > KEEP_ITEMS {
        b.events = Default::default();
    }
    b.out.trim(KEEP_ITEMS);
}
