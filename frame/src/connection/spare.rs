//! A per-thread cache of idle connections' buffers.
//!
//! A busy connection goes idle and busy again many times a second (each time its output
//! drains), and freeing its buffers each time would cost an allocation of the box plus
//! the regrowth of every queue inside it on the next burst (above all the output's
//! `CHUNK`, which the spares carry from one connection to the next, so that the frames
//! of many connections are written into one allocation). Idle buffers therefore go to a
//! per-thread list instead, emptied and with any large capacity dropped, so that the
//! next connection of this thread to get busy reuses them. An idle connection still holds
//! no buffers.
//!
//! The list holds as many spares as connections of this thread were busy at once (an
//! engine worker's turn makes every connection that received something busy until its
//! replies are sent: with 64 spares, the 65th connection of a turn allocated afresh and
//! its buffers were freed again at the end of the turn), within two bounds: at most
//! [`MAX`] spares and [`BUDGET`] bytes of retained capacity. Past the budget a spare is
//! kept without its byte buffers, or not at all. [`release_unused`] frees those not taken
//! since its previous call, so a wave of activity (every connection's heartbeat in the
//! same tick) leaves no memory behind once it has passed; an engine calls it about once
//! a second.

use std::cell::RefCell;
use std::mem::size_of;

use super::Buffers;
use bytes::BytesMut;

/// Spare buffers kept per thread, at most.
pub(super) const MAX: usize = 1024;
/// Bytes the spares of one thread may retain, their boxes and the capacity of their
/// buffers and queues counted (the capacity of a byte buffer that shares its
/// allocation with chunks still queued elsewhere is counted as its own rest only).
pub(super) const BUDGET: usize = 4 << 20;
/// Byte buffers larger than this are not kept.
const KEEP_BYTES: usize = 16 * 1024;
/// Queues longer than this are not kept.
const KEEP_ITEMS: usize = 256;

#[derive(Default)]
struct Spares {
    // Boxes, not values: handing one out or back moves a pointer, and the connection
    // holds exactly this box.
    #[allow(clippy::vec_box)]
    list: Vec<Box<Buffers>>,
    /// What the spares in `list` retain ([`retained`] summed).
    bytes: usize,
    /// The fewest spares the list held since the last [`release_unused`]: that many
    /// were not needed since then.
    low: usize,
}

thread_local! {
    static SPARE: RefCell<Spares> = RefCell::new(Spares::default());
}

/// The bytes an idle `Buffers` retains: its box and the capacity of its buffers and
/// queues.
fn retained(b: &Buffers) -> usize {
    size_of::<Buffers>()
        + b.msg_buf.capacity()
        + b.ctrl_buf.capacity()
        + b.out.retained()
        + b.pongs.capacity() * size_of::<bytes::Bytes>()
        + b.events.capacity() * size_of::<super::Event>()
}

pub(super) fn take() -> Box<Buffers> {
    SPARE
        .try_with(|s| {
            let mut s = s.borrow_mut();
            let b = s.list.pop()?;
            s.bytes -= retained(&b);
            s.low = s.low.min(s.list.len());
            Some(b)
        })
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps `b` (idle: nothing queued, no message half received) for reuse, within the
/// thread's bounds.
pub(super) fn give(mut b: Box<Buffers>) {
    b.custom_masks = None;
    b.contexts = None;
    trim(&mut b);
    let _ = SPARE.try_with(move |s| {
        let mut s = s.borrow_mut();
        if s.list.len() >= MAX {
            return;
        }
        let mut cost = retained(&b);
        if s.bytes + cost > BUDGET {
            // Over the budget: the box and its small queues are still worth keeping.
            b.msg_buf = BytesMut::new();
            b.ctrl_buf = BytesMut::new();
            b.out.buf = BytesMut::new();
            cost = retained(&b);
            if s.bytes + cost > BUDGET {
                return;
            }
        }
        s.bytes += cost;
        s.list.push(b);
    });
}

/// Frees this thread's spares that no connection took since the previous call (the
/// oldest ones); returns how many.
pub(crate) fn release_unused() -> usize {
    SPARE
        .try_with(|s| {
            let mut s = s.borrow_mut();
            let n = s.low.min(s.list.len());
            let freed: usize = s.list.drain(..n).map(|b| retained(&b)).sum();
            s.bytes -= freed;
            s.low = s.list.len();
            n
        })
        .unwrap_or(0)
}

/// This thread's spares: how many, and the bytes they retain.
pub(crate) fn held() -> (usize, usize) {
    SPARE.try_with(|s| (s.borrow().list.len(), s.borrow().bytes)).unwrap_or((0, 0))
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

#[cfg(test)]
mod tests {
    //! Each test runs on a thread of its own, so it sees a pool of its own.
    use super::*;

    #[test]
    fn spares_are_kept_up_to_max_and_a_release_frees_those_not_taken_since_the_last() {
        for _ in 0..MAX + 10 {
            give(Box::default());
        }
        let (n, bytes) = held();
        assert_eq!(n, MAX, "at most MAX spares");
        assert_eq!(bytes, MAX * size_of::<Buffers>());
        assert_eq!(release_unused(), 0, "the first release only marks what it found");
        // Ten are taken and given back: the other MAX - 10 were not needed.
        let taken: Vec<_> = (0..10).map(|_| take()).collect();
        taken.into_iter().for_each(give);
        assert_eq!(release_unused(), MAX - 10);
        assert_eq!(held(), (10, 10 * size_of::<Buffers>()));
        assert_eq!(release_unused(), 10, "none taken since: all go");
        assert_eq!(held(), (0, 0));
        assert_eq!(release_unused(), 0);
    }

    #[test]
    fn past_the_budget_spares_are_kept_without_their_byte_buffers() {
        let big = |n: usize| {
            let mut b = Box::<Buffers>::default();
            b.out.buf = BytesMut::with_capacity(n);
            b
        };
        let each = size_of::<Buffers>() + KEEP_BYTES;
        let fit = BUDGET / each;
        assert!(fit < MAX, "the budget binds before the count");
        for _ in 0..fit {
            give(big(KEEP_BYTES));
        }
        assert_eq!(held(), (fit, fit * each));
        assert!(BUDGET - fit * each >= size_of::<Buffers>(), "room for a bare box");
        give(big(KEEP_BYTES));
        let (n, bytes) = held();
        assert!(bytes <= BUDGET, "{bytes} B held");
        assert_eq!(n, fit + 1, "the one past the budget is kept stripped");
        let stripped = take();
        assert_eq!(stripped.out.buf.capacity(), 0);
        assert_eq!(held().1, bytes - size_of::<Buffers>());
        // Larger than `KEEP_BYTES`: trimmed to nothing before it counts.
        give(big(KEEP_BYTES * 4));
        assert_eq!(held().1, bytes);
        // Once even a bare box does not fit, spares are freed instead.
        while held().1 + size_of::<Buffers>() <= BUDGET {
            give(Box::default());
        }
        let before = held();
        give(Box::default());
        assert_eq!(held(), before);
    }
}
