//! Close through the ring: a connection's socket once its operations have ended, or a
//! refused connection's socket that was never added. With direct descriptors this is
//! the only way to close one (it is no descriptor of the process), and it frees a slot
//! of the ring's fixed-file table, which a paused listener may be waiting for.

use std::os::fd::IntoRawFd;

use io_uring::{opcode, types};

use super::spread::split_fixed;
use super::Sqe;
use crate::sys::Socket;

/// The close of one socket. It takes the socket's ownership: a plain descriptor leaves
/// its `OwnedFd` for the entry (the kernel closes it; nothing else may), a direct
/// descriptor's slot is emptied by the kernel.
pub(super) struct Close {
    sock: Socket,
}

impl Close {
    pub(super) fn new(sock: Socket) -> Self {
        Self { sock }
    }

    /// The ring to close on (a direct descriptor's, the first for a plain one) and the
    /// entry, tagged `user_data` (which says who hears of it).
    #[inline]
    pub(super) fn sqe(self, user_data: u64) -> (usize, Sqe) {
        let (r, e) = match self.sock {
            Socket::Fd(fd) => (0, opcode::Close::new(types::Fd(fd.into_raw_fd())).build()),
            Socket::Fixed(v) => {
                let (r, slot) = split_fixed(v);
                (r, opcode::Close::new(types::Fixed(slot)).build())
            }
        };
        // SAFETY: a close points at no memory. The descriptor it names is this op's: a
        // plain one was released from its `OwnedFd` just above, so nothing else closes
        // or reuses it before the kernel does (an entry dropped unsubmitted leaks it,
        // which is safe); a direct one is slot `slot` of ring `r`'s table, registered for
        // the ring's life, which the caller took out of the connection table (or never put
        // in: a refused connection), so no further operation is built on it, and those
        // built before have ended (`Driver::close`).
        (r, unsafe { Sqe::new(e, user_data) })
    }
}
