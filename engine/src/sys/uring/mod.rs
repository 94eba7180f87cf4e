//! The io_uring backend: multishot accept, multishot receive into a provided-buffer
//! ring, one vectored send per connection, close through the ring, and an eventfd read
//! for cross-thread wake-ups.
//!
//! With direct descriptors a worker can hold more connections than one fixed-file table
//! takes (the kernel caps a table at RLIMIT_NOFILE): when the table of the ring that
//! accepts fills up, the driver opens another ring (up to a configured number) and
//! accepts there. Every connection lives on one ring for its whole life; its
//! `Socket::Fixed` index carries the ring's number in its top bits. The worker sleeps in
//! the first ring only: every further ring has an eventfd registered, which the kernel
//! signals when that ring has completion work, and the first ring keeps a read armed on
//! each of those eventfds.
//!
//! Ownership rule (STYLE 3): an operation owns its buffer and its fd until its
//! completion arrives. Sends keep their chunks and iovecs in a boxed `SendOp` parked in
//! the send table until the CQE; receives write only into ring buffers; the worker closes
//! a socket only after its receive and send have completed. `user_data` is an 8-bit tag
//! and a slab key or table index.
//!
//! # Layout
//!
//! One operation per file, each with the struct that owns what the kernel may touch
//! until the operation's last completion, its submission entry and its completion
//! handling:
//!
//! | file         | operation                                                       |
//! |--------------|-----------------------------------------------------------------|
//! | `accept.rs`  | multishot (or one-shot, near a full table) accept per listener  |
//! | `recv.rs`    | multishot receive into the ring's provided buffers              |
//! | `send.rs`    | one vectored send per connection, and the table of those in flight |
//! | `close.rs`   | close through the ring (connections and refused sockets)        |
//! | `wake.rs`    | the eventfd read: cross-thread wake-ups, further rings' eventfds |
//! | `cancel.rs`  | async cancel by `user_data`                                     |
//! | `connect.rs` | an outgoing connection's connect, owning the peer's address     |
//! | `install.rs` | an outgoing socket into a fixed-file table (a direct descriptor) |
//!
//! and the machinery around them:
//!
//! | file         | what                                                            |
//! |--------------|-----------------------------------------------------------------|
//! | `ring.rs`    | one io_uring instance: set-up, probe, submission queue, overflow, enter |
//! | `spread.rs`  | the fixed-file index that names a ring and a slot; further rings' constants |
//! | `driver/`    | [`UringDriver`]: submission, waiting, busy poll, completion dispatch, teardown (`mod.rs`); its part of each operation (arming, bookkeeping), one file per operation again; further rings as fixed-file tables fill (`spread.rs`) |
//!
//! The operation files know nothing of the driver; the driver's files use them (no
//! import circle: an operation is a value with its entry and its completion, the driver
//! decides when to submit it and what its completion means for the connections).
//!
//! Every entry is built through the `unsafe` [`Sqe::new`], next to the struct that owns
//! its memory; the `// SAFETY:` comment there says why that memory outlives the operation.

use std::io;
use std::os::fd::RawFd;

use io_uring::squeue;

/// Builds an entry for either kind of target (the crate's target types are distinct).
macro_rules! on_target {
    ($t:expr, |$fd:ident| $build:expr) => {
        match $t {
            $crate::sys::uring::Target::Fd(raw) => {
                let $fd = io_uring::types::Fd(raw);
                $build
            }
            $crate::sys::uring::Target::Fixed(i) => {
                let $fd = io_uring::types::Fixed(i);
                $build
            }
        }
    };
}

mod accept;
mod cancel;
mod close;
mod connect;
mod driver;
mod fsync;
mod install;
mod recv;
mod ring;
mod send;
mod spread;
mod wake;

pub(crate) use driver::{RingConfig, UringDriver};
pub(crate) use ring::probe;
#[allow(unused_imports)] // nothing outside uses it now; the path `uring::MAX_RINGS` stays
pub(crate) use spread::MAX_RINGS;

/// `user_data` tags: what a completion is for (the top 8 bits of `user_data`).
const TAG_ACCEPT: u64 = 1;
const TAG_RECV: u64 = 2;
const TAG_SEND: u64 = 3;
const TAG_CLOSE: u64 = 4;
const TAG_CANCEL: u64 = 5;
const TAG_WAKE: u64 = 6;
/// A further ring's eventfd fired (low bits: the ring's number).
const TAG_RING: u64 = 7;
/// A refused connection's socket was closed (it frees a fixed-file slot).
const TAG_DISCARD: u64 = 8;
/// An outgoing connection's connect finished.
const TAG_CONNECT: u64 = 9;
/// An outgoing connection's socket went into a fixed-file table (or did not).
const TAG_INSTALL: u64 = 10;
/// One file of an outbox sync was synced (low bits: the sync's number).
const TAG_FSYNC: u64 = 11;

#[inline]
fn ud(tag: u64, low: u64) -> u64 {
    (tag << 56) | (low & ((1 << 56) - 1))
}

#[inline]
fn split_ud(v: u64) -> (u64, u64) {
    (v >> 56, v & ((1 << 56) - 1))
}

/// A connection's socket as an operation addresses it.
#[derive(Debug, Clone, Copy)]
enum Target {
    Fd(RawFd),
    Fixed(u32),
}

/// Whether a submit error only means "not now": reap completions and try again.
fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN | libc::EINTR))
}

/// A submission entry, with its `user_data` set, whose descriptors and memory stay valid
/// until its last completion: the only kind of entry the rings accept
/// (`Ring::try_push`), so the promise `SubmissionQueue::push` asks for is made where the
/// entry is built.
struct Sqe(squeue::Entry);

impl Sqe {
    /// Wraps `e`, tagged with `user_data`.
    ///
    /// # Safety
    ///
    /// Everything `e` names must stay valid until the kernel posts its last completion
    /// (the one without `IORING_CQE_F_MORE`), or, if it never reaches the kernel, until
    /// it is dropped: every buffer and struct it points to stays allocated, at the same
    /// address, and nothing else writes memory the kernel reads or touches memory the
    /// kernel writes; every descriptor it names stays open (a fixed-file slot stays
    /// registered) and is not replaced. `UringDriver`'s drop waits for the last
    /// completions, or leaks what they could still touch.
    ///
    /// The memory part is what the kernel could corrupt. The descriptor part is I/O
    /// safety: once a request is issued the kernel holds its own reference to the file,
    /// so closing a descriptor early cannot make it touch freed memory, but a number
    /// closed before the entry is submitted could be reused by another file. For
    /// connection sockets it rests on the worker keeping [`crate::sys::Driver::close`]'s
    /// contract (close only once the connection's receive and send have ended).
    #[inline]
    unsafe fn new(e: squeue::Entry, user_data: u64) -> Self {
        Self(e.user_data(user_data))
    }

    /// The entry, for the submission queue.
    #[inline]
    fn entry(&self) -> &squeue::Entry {
        &self.0
    }
}
