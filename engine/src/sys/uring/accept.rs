//! The accept: per listener, a multishot accept on the ring that accepts (one-shot
//! accepts instead while that ring's fixed-file table is nearly full), paused when the
//! process runs out of descriptors and re-armed on another ring when a table fills.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, types};

use super::{split_ud, ud, Sqe, TAG_ACCEPT};

/// Free fixed-file slots below which a ring's accepts go one at a time. A multishot
/// accept takes every connection waiting in the listen queue (4096 deep) in one pass,
/// and one that finds the table full loses the connection (the kernel has already taken
/// it off the queue when the slot allocation fails), so it may run only while the table
/// has room for a whole queue and then some.
pub(super) const MULTISHOT_MARGIN: u32 = 4096 + 1024;

/// A listener and the state of its accept. The accept reads only the listening socket,
/// which this struct owns: `fd` is dropped only while no accept is armed on it.
pub(super) struct Listener {
    pub(super) fd: Option<OwnedFd>,
    /// The ring its accept is armed on, if it is.
    pub(super) armed: Option<usize>,
    /// That accept takes one connection (the ring's table is nearly full), not many.
    pub(super) single: bool,
    /// Its multishot accept is being cancelled, to be re-armed one at a time.
    pub(super) narrowing: bool,
    /// Stop re-arming (shutdown); the fd is dropped once the accept ends.
    pub(super) closing: bool,
    /// Out of descriptors: not re-armed until `resume_accepts`.
    pub(super) paused: bool,
}

impl Listener {
    pub(super) fn new(fd: OwnedFd) -> Self {
        Self {
            fd: Some(fd),
            armed: None,
            single: false,
            narrowing: false,
            closing: false,
            paused: false,
        }
    }
}

/// The entry that accepts on listener `i`'s socket `fd`: into the ring's fixed-file table
/// (`direct`) or as plain close-on-exec descriptors, one connection (`single`, direct
/// only) or every one that comes.
#[inline]
pub(super) fn accept_sqe(fd: RawFd, i: usize, direct: bool, single: bool) -> Sqe {
    let fd = types::Fd(fd);
    // Direct descriptors are not in the fd table, so close-on-exec does not apply (the
    // kernel refuses the flag with them).
    let flags = if direct { 0 } else { libc::SOCK_CLOEXEC };
    let e = if single {
        opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
            .file_index(Some(types::DestinationSlot::auto_target()))
            .build()
    } else {
        opcode::AcceptMulti::new(fd).allocate_file_index(direct).flags(flags).build()
    };
    // SAFETY: the entry points at no memory (no peer address is asked for: both pointers
    // are null). The descriptor it names is listener `i`'s socket, which that `Listener`
    // owns and keeps open until this accept's last completion: its `fd` is dropped only
    // while no accept is armed on it (`close_all_listeners`, `on_accept`), and the
    // driver's fields drop the rings before the listeners.
    unsafe { Sqe::new(e, ud(TAG_ACCEPT, i as u64)) }
}

/// A completion the driver's drop collects: a connection a multishot accept took that
/// nobody will claim is closed rather than leaked.
pub(super) fn drop_unclaimed(cqe: &cqueue::Entry, direct: bool) {
    let (tag, _) = split_ud(cqe.user_data());
    if tag == TAG_ACCEPT && cqe.result() >= 0 && !direct {
        // SAFETY: a successful accept's result is a new descriptor that nothing else
        // owns (this completion is seen once, here, and not reported).
        drop(unsafe { OwnedFd::from_raw_fd(cqe.result()) });
    }
}
