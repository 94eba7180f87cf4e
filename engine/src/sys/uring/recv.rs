//! The multishot receive: one armed per connection, the kernel picking a buffer from the
//! ring's provided-buffer group for each batch of bytes it delivers, until the receive
//! ends (EOF, an error, no buffer free, a cancel, or the kernel's own reasons).

use io_uring::{cqueue, opcode};
use rustix::io::Errno;

use super::ring::Ring;
use super::{ud, Sqe, Target, TAG_RECV};
use crate::slab::Key;
use crate::sys::{Completion, RecvEnd};

/// A multishot receive of one connection. What the kernel touches while it is armed is
/// the socket and the buffers of the ring's group `bgid`; neither is owned here, and the
/// struct carries nothing on the heap (arming a receive allocates nothing): the buffers
/// belong to the ring the receive is armed on (`Ring::bufs`, dropped after the ring's
/// io_uring instance), the socket to the driver's connection table until the worker
/// closes it, which it does only after this receive's end (`Driver::close`).
pub(super) struct Recv {
    pub(super) key: Key,
    pub(super) target: Target,
    pub(super) bgid: u16,
}

impl Recv {
    /// The entry that arms the receive.
    #[inline]
    pub(super) fn sqe(self) -> Sqe {
        let e = on_target!(self.target, |fd| opcode::RecvMulti::new(fd, self.bgid).build());
        // SAFETY: the entry points at no memory of ours but the provided buffers of group
        // `bgid`, which is registered on the ring this entry goes to (each ring's
        // `BufRing` with that ring's group) and stays mapped until that ring's io_uring
        // instance is gone (field order of `Ring`), or forever (`BufRing::leak`) if the
        // driver's drop cannot collect the receive; the kernel writes only buffers it took
        // from the ring. The socket stays open (a fixed slot stays registered) until the
        // receive's last completion: the worker closes a connection only after its
        // receive ended (`Driver::close`).
        unsafe { Sqe::new(e, ud(TAG_RECV, self.key.pack())) }
    }

    /// Reports a completion of the receive of `key` on ring `r`: the bytes it delivered
    /// (lent for the callback, the buffer released right after), or how it ended.
    #[inline]
    pub(super) fn complete(
        ring: &mut Ring,
        key: Key,
        cqe: &cqueue::Entry,
        more: bool,
        f: &mut dyn FnMut(Completion<'_>),
    ) {
        let res = cqe.result();
        let bid = cqueue::buffer_select(cqe.flags());
        let buf_more = cqueue::buffer_more(cqe.flags());
        if res > 0 {
            if let Some(bid) = bid {
                // SAFETY: `cqe` is a completion, reaped from `ring`, of a receive that
                // selected from `ring.bufs`'s group (every receive on this ring does; see
                // `Recv::sqe`), and `bid`, `res` are its buffer id and byte count: the
                // kernel handed these bytes over and writes them no more. Each completion
                // is reaped and handled once, so this is its only region; the completions
                // of one ring are handled in the order the kernel posted them, each
                // released right after its region (just below) before the next.
                let mut region = unsafe { ring.bufs.region(bid, res as usize) };
                f(Completion::Recv { key, data: &mut region });
                // SAFETY: the same completion, its buffer id, byte count and
                // `IORING_CQE_F_BUF_MORE`, released once, here, after its region was
                // dropped; completions of the ring come here in the kernel's order.
                unsafe { ring.bufs.release(bid, res as usize, buf_more) };
            }
            if !more {
                f(Completion::RecvEnded { key, why: RecvEnd::Rearm });
            }
        } else {
            let why = match -res {
                0 => RecvEnd::Eof,
                libc::ENOBUFS => {
                    // More receives at once than buffers in circulation: add some once this
                    // batch is handled (the worker re-arms this receive).
                    ring.bufs.note_short();
                    RecvEnd::NoBuffers
                }
                libc::ECANCELED => RecvEnd::Cancelled,
                e => RecvEnd::Error(Errno::from_raw_os_error(e)),
            };
            if let Some(bid) = bid {
                // SAFETY: a failed completion, reaped from `ring`, of a receive on
                // `ring.bufs`'s group that still carried buffer `bid` (with no bytes of
                // it delivered: length 0) and `IORING_CQE_F_BUF_MORE` as given; released
                // once, here, in the kernel's order, and no region of it was made.
                unsafe { ring.bufs.release(bid, 0, buf_more) };
            }
            f(Completion::RecvEnded { key, why });
        }
    }
}
