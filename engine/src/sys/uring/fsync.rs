//! `fdatasync` through the ring: the outbox's syncs on the worker's own ring, so no
//! thread is needed under io_uring and the event loop never waits for the disk.

use std::os::fd::AsRawFd;

use io_uring::{opcode, types};

use super::Sqe;

/// The entry that syncs the data of `file` (`IORING_OP_FSYNC` with
/// `IORING_FSYNC_DATASYNC`), tagged `user_data`. The caller keeps `file` open until the
/// completion arrives.
pub(super) fn fdatasync(file: &std::fs::File, user_data: u64) -> Sqe {
    let e =
        opcode::Fsync::new(types::Fd(file.as_raw_fd())).flags(types::FsyncFlags::DATASYNC).build();
    // SAFETY: an fsync points at no memory. The descriptor it names belongs to a `File`
    // that the driver keeps in its table of syncs in flight (`UringDriver::syncs`) until
    // this entry's completion has been reaped, so it stays open and is not reused; the
    // driver's drop reaps what is in flight before the table goes.
    unsafe { Sqe::new(e, user_data) }
}
