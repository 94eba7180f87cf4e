//! The driver's side of the `fsync` operation (`super::super::fsync`): one entry per file
//! of a sync, and one completion for the caller once all of them have ended.

use std::fs::File;

use crate::sys::uring::fsync::fdatasync;
use crate::sys::uring::{UringDriver, TAG_FSYNC};
use crate::sys::Completion;

/// A sync in flight: its files (kept open until their entries complete), how many
/// entries have not completed, and the first error.
pub(in crate::sys::uring) struct SyncInFlight {
    upto: u64,
    _files: Vec<File>,
    remaining: usize,
    error: Option<rustix::io::Errno>,
}

impl UringDriver {
    /// Starts `fdatasync` of every file, on the first ring; `Synced { upto }` follows once
    /// all have ended.
    pub(super) fn start_sync(&mut self, upto: u64, files: Vec<File>) {
        let job = self.next_sync;
        self.next_sync = (self.next_sync + 1) & ((1 << 56) - 1);
        for f in &files {
            let e = fdatasync(f, super::ud(TAG_FSYNC, job));
            self.push(0, e);
        }
        let remaining = files.len();
        self.syncs.insert(job, SyncInFlight { upto, _files: files, remaining, error: None });
    }

    /// One file's sync of job `job` ended with `res`.
    pub(super) fn on_fsync(&mut self, job: u64, res: i32, f: &mut dyn FnMut(Completion<'_>)) {
        let Some(s) = self.syncs.get_mut(&job) else { return };
        s.remaining -= 1;
        if res < 0 && s.error.is_none() {
            s.error = Some(rustix::io::Errno::from_raw_os_error(-res));
        }
        if s.remaining == 0 {
            if let Some(s) = self.syncs.remove(&job) {
                let result = s.error.map_or(Ok(()), Err);
                f(Completion::Synced { upto: s.upto, result });
            }
        }
    }
}
