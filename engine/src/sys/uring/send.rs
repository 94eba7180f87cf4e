//! The vectored send: at most one per connection in flight, its chunks and iovecs parked
//! in a boxed [`SendOp`] in the [`SendTable`] until the completion hands them back.

use bytes::Bytes;
use io_uring::opcode;
use rustix::io::Errno;

use super::{ud, Sqe, Target, TAG_SEND};
use crate::slab::Key;
use crate::sys::Completion;

/// A send in flight: everything the kernel reads lives here, at a stable heap address
/// (the op is boxed): the chunks' bytes (kept alive by their `Bytes`), the iovecs that
/// point at them, and the `msghdr` that points at the iovecs.
///
/// Not `Send` (its raw pointers), and it needs not be: the driver owns its ops and is
/// itself tied to the thread that made its rings (its buffer rings are not `Send`).
struct SendOp {
    key: Key,
    chunks: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

/// The sends in flight, by op index (the low bits of their `user_data`), and a pool of
/// finished ops for reuse, so that a send allocates nothing once the pool is warm.
#[derive(Default)]
pub(super) struct SendTable {
    ops: Vec<Option<Box<SendOp>>>,
    free: Vec<usize>,
    /// The op index of each connection's send in flight, by slab slot, so that a cancel
    /// can name both of a connection's ops by `user_data`: the kernel finds those in a
    /// hash table, while a cancel by descriptor scans every armed request of the ring
    /// (with 15,000 connections that made closing them all quadratic).
    of: crate::hash::IntMap<u32, u32>,
    /// Boxed so that a recycled op keeps a stable address for the kernel's pointers.
    #[allow(clippy::vec_box)]
    pool: Vec<Box<SendOp>>,
}

impl SendTable {
    /// The op index of `slot`'s send in flight, if it has one.
    #[inline]
    pub(super) fn in_flight(&self, slot: u32) -> Option<u32> {
        self.of.get(&slot).copied()
    }

    /// Parks `chunks` in an op for `key` and returns the entry that sends them, in
    /// order, to `t`: a plain send for one chunk, a `sendmsg` for more.
    #[inline]
    pub(super) fn start(&mut self, key: Key, t: Target, chunks: Vec<Bytes>) -> Sqe {
        let mut op = self.pool.pop().unwrap_or_else(|| {
            Box::new(SendOp {
                key,
                chunks: Vec::new(),
                iov: Vec::new(),
                // SAFETY: `msghdr` is a plain C struct of integers and raw pointers, for
                // which all-zero (null pointers, zero lengths) is a valid value.
                msg: unsafe { std::mem::zeroed() },
            })
        });
        op.key = key;
        op.chunks = chunks;
        op.iov.clear();
        op.iov.extend(
            op.chunks.iter().map(|c| libc::iovec {
                iov_base: c.as_ptr() as *mut libc::c_void,
                iov_len: c.len(),
            }),
        );
        op.msg.msg_iov = op.iov.as_mut_ptr();
        op.msg.msg_iovlen = op.iov.len();
        let i = self.free.pop().unwrap_or_else(|| {
            self.ops.push(None);
            self.ops.len() - 1
        });
        let e = if op.iov.len() == 1 {
            let (ptr, len) = (op.iov[0].iov_base as *const u8, op.iov[0].iov_len as u32);
            on_target!(t, |fd| opcode::Send::new(fd, ptr, len).flags(libc::MSG_NOSIGNAL).build())
        } else {
            let msg = &op.msg as *const libc::msghdr;
            on_target!(t, |fd| opcode::SendMsg::new(fd, msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build())
        };
        // SAFETY: the entry reads the chunks' bytes, and for `sendmsg` the `msghdr` and
        // the iovecs; all of it is owned by `op`: the bytes by the `Bytes` in
        // `op.chunks` (whose data does not move while they live), the iovecs by the heap
        // buffer of `op.iov`, the `msghdr` by the box. The box goes into `ops[i]` below
        // (moving the box moves no heap data) and stays there, unmodified, until the
        // completion tagged `i` takes it out (`complete`), or is leaked (`leak`) if the
        // driver's drop cannot collect it. The socket, `t`, stays open (a fixed slot stays
        // registered) until then: the worker closes a connection only after its send
        // completed (`Driver::close`).
        let e = unsafe { Sqe::new(e, ud(TAG_SEND, i as u64)) };
        self.ops[i] = Some(op);
        self.of.insert(key.slot, i as u32);
        e
    }

    /// The send with op index `i` completed with `res`: reports it with its chunks and
    /// keeps the op for reuse.
    #[inline]
    pub(super) fn complete(&mut self, i: usize, res: i32, f: &mut dyn FnMut(Completion<'_>)) {
        let Some(mut op) = self.ops.get_mut(i).and_then(Option::take) else { return };
        self.free.push(i);
        self.of.remove(&op.key.slot);
        let result = if res >= 0 { Ok(res as usize) } else { Err(Errno::from_raw_os_error(-res)) };
        let chunks = std::mem::take(&mut op.chunks);
        op.iov.clear();
        f(Completion::Sent { key: op.key, result, chunks });
        if self.pool.len() < 1024 {
            self.pool.push(op);
        }
    }

    /// Keeps the memory of every send in flight forever: the kernel may still read it.
    pub(super) fn leak(&mut self) {
        for op in self.ops.drain(..).flatten() {
            std::mem::forget(op);
        }
    }
}
