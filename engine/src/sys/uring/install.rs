//! Installing an outgoing connection's socket into a ring's fixed-file table: an
//! `IORING_OP_FILES_UPDATE` at offset `IORING_FILE_INDEX_ALLOC` (Linux 5.19), for which
//! the kernel picks a free slot (as for a direct accept) and writes its index back into
//! the array it read the descriptor from. The socket then is a direct descriptor like
//! an accepted one: its plain descriptor is closed, so it no longer counts against
//! RLIMIT_NOFILE.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::opcode;

use super::{ud, Sqe, TAG_INSTALL};
use crate::slab::Key;

/// "Pick a free slot", as an update's offset (`IORING_FILE_INDEX_ALLOC`).
const FILE_INDEX_ALLOC: u32 = u32::MAX;

/// One install in flight: the array the kernel reads the descriptor from and writes
/// the slot into, and the descriptor itself.
pub(super) struct Install {
    fds: [i32; 1],
    /// Kept open until the completion (the kernel takes its own reference to the file
    /// while it installs it); closed then if the install worked, used as is if not.
    pub(super) fd: OwnedFd,
    /// The ring whose table it goes into.
    pub(super) ring: usize,
    /// A connect asked for meanwhile, started once the socket is installed.
    pub(super) connect: Option<SocketAddr>,
    /// Cancelled meanwhile: no connect is started; the connect is reported cancelled.
    pub(super) cancelled: bool,
}

impl Install {
    pub(super) fn new(fd: OwnedFd, ring: usize) -> Box<Self> {
        Box::new(Self { fds: [fd.as_raw_fd()], fd, ring, connect: None, cancelled: false })
    }

    /// The entry that installs the socket for `key`.
    pub(super) fn sqe(&mut self, key: Key) -> Sqe {
        // `IORING_FILE_INDEX_ALLOC` (`~0U` in linux/io_uring.h) as the update's offset:
        // the kernel reads the entry's offset as 32 bits.
        let alloc = FILE_INDEX_ALLOC as i32;
        let e = opcode::FilesUpdate::new(self.fds.as_mut_ptr(), 1).offset(alloc).build();
        // SAFETY: the kernel reads `self.fds` (one descriptor) and writes the allocated
        // slot into it; the array is inside `self`, which the caller keeps boxed (a
        // stable heap address) and does not touch in the driver's table of installs
        // until the completion tagged `ud(TAG_INSTALL, key)` takes it out (`on_install`),
        // or leaks if the driver's drop cannot collect that completion. The descriptor
        // in it stays open until then (`self.fd`).
        unsafe { Sqe::new(e, ud(TAG_INSTALL, key.pack())) }
    }

    /// The slot the kernel chose, once the install completed with a result of 1.
    pub(super) fn slot(&self) -> u32 {
        self.fds[0] as u32
    }
}
