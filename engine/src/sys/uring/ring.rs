//! One io_uring instance: set-up and the probe of what the kernel offers, the submission
//! queue with its overflow, the fixed-file table's accounting, and entering the kernel.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use io_uring::{opcode, types, IoUring, Probe};

use super::wake::EventfdRead;
use super::{is_transient, Sqe};
use crate::sys::bufring::BufRing;

/// What the kernel offers, checked before choosing io_uring.
pub(crate) fn probe() -> io::Result<Vec<&'static str>> {
    probe_ring(&IoUring::new(8)?)
}

/// The opcodes the engine needs, checked on an existing ring.
fn probe_ring(ring: &IoUring) -> io::Result<Vec<&'static str>> {
    let mut p = Probe::new();
    ring.submitter().register_probe(&mut p)?;
    let mut missing = Vec::new();
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "accept"),
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::SendMsg::CODE, "sendmsg"),
        (opcode::Send::CODE, "send"),
        (opcode::Close::CODE, "close"),
        (opcode::AsyncCancel::CODE, "async_cancel"),
        (opcode::Read::CODE, "read"),
    ] {
        if !p.is_supported(code) {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        return Err(io::Error::other(format!("io_uring lacks opcodes: {}", missing.join(", "))));
    }
    Ok(vec!["multishot accept", "multishot recv + provided buffer ring", "sendmsg", "close"])
}

/// One io_uring instance: its queues, its provided-buffer ring and (with direct
/// descriptors) its fixed-file table.
pub(super) struct Ring {
    // Field order matters for drop: the ring goes first, so the kernel stops using the
    // buffer ring before its memory is freed.
    pub(super) ring: IoUring,
    pub(super) bufs: BufRing,
    /// Entries pushed and not yet completed (multishot ones until their last CQE).
    pub(super) in_flight: usize,
    /// Entries the submission queue had no room for (see `UringDriver::push`).
    pub(super) overflow: VecDeque<Sqe>,
    /// Fixed-file slots in use, slots promised to armed one-shot accepts, and the
    /// table's size (all 0 without direct descriptors).
    pub(super) files_used: u32,
    pub(super) reserved: u32,
    pub(super) files: u32,
    /// For every ring but the first: the eventfd the kernel signals when this ring has
    /// completion work, and the first ring's read of it (see `spread.rs`).
    pub(super) evfd: Option<EventfdRead<OwnedFd>>,
    /// Its eventfd fired: run and reap its completions.
    pub(super) ready: bool,
}

impl Ring {
    /// A ring for the calling thread (SINGLE_ISSUER and DEFER_TASKRUN tie it to the
    /// thread that submits) with its buffer ring and, if `files` > 0, a sparse fixed-file
    /// table of that size (`files` is 0 afterwards if the kernel refused the table).
    pub(super) fn new(
        entries: u32,
        recv_buffers: u16,
        recv_buffer_size: u32,
        first_buffers: u16,
        files: u32,
        features: &mut Vec<&'static str>,
    ) -> io::Result<Self> {
        let ring = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(entries * 4)
            .build(entries)
        {
            Ok(r) => {
                features.extend(["SINGLE_ISSUER", "DEFER_TASKRUN", "COOP_TASKRUN", "TASKRUN_FLAG"]);
                r
            }
            Err(_) => match IoUring::builder()
                .setup_coop_taskrun()
                .setup_cqsize(entries * 4)
                .build(entries)
            {
                Ok(r) => {
                    features.push("COOP_TASKRUN");
                    r
                }
                Err(_) => IoUring::builder().setup_cqsize(entries * 4).build(entries)?,
            },
        };
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::other("io_uring lacks IORING_FEAT_EXT_ARG (kernel < 5.11)"));
        }
        let bufs =
            BufRing::new(&ring.submitter(), recv_buffers, recv_buffer_size, 0, first_buffers)?;
        features.extend(probe_ring(&ring)?);
        if bufs.incremental() {
            features.push("incremental buffer consumption");
        }
        // Direct descriptors: accepted sockets live in the ring's fixed-file table, so each
        // operation skips the fd-table lookup and connections do not count against the
        // process's RLIMIT_NOFILE (the table itself is capped at that limit).
        let files = match files {
            0 => 0,
            n => match ring.submitter().register_files_sparse(n) {
                Ok(()) => n,
                Err(_) => 0,
            },
        };
        Ok(Self {
            ring,
            bufs,
            in_flight: 0,
            overflow: VecDeque::new(),
            files_used: 0,
            reserved: 0,
            files,
            evfd: None,
            ready: false,
        })
    }

    /// Puts `e` in the submission queue if there is room.
    #[inline]
    pub(super) fn try_push(&mut self, e: &Sqe) -> bool {
        // SAFETY: `SubmissionQueue::push` needs everything the entry names to stay valid
        // until the kernel is done with it. An `Sqe` is made only by the unsafe
        // `Sqe::new`, whose caller promised exactly that, from now until the entry's last
        // completion (for an entry parked in `overflow` until then, too); the op files
        // say, each where it builds its entry, why their memory lives that long.
        let ok = unsafe { self.ring.submission().push(e.entry()) }.is_ok();
        if ok {
            self.in_flight += 1;
        }
        ok
    }

    /// Moves entries from `overflow` into the submission queue while there is room.
    #[inline]
    pub(super) fn drain_overflow(&mut self) {
        while let Some(e) = self.overflow.pop_front() {
            if !self.try_push(&e) {
                self.overflow.push_front(e);
                break;
            }
        }
    }

    /// Fixed-file slots neither in use nor promised.
    pub(super) fn free(&self) -> u32 {
        self.files.saturating_sub(self.files_used + self.reserved)
    }

    /// Whether another connection can be accepted into this ring's table.
    pub(super) fn has_room(&self) -> bool {
        self.free() > 0
    }

    /// Enters the ring (submitting what it has queued) and waits up to `timeout` for a
    /// completion; a zero timeout only runs and collects what is ready.
    pub(super) fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let ring = &mut self.ring;
        // `want` 1 with a timeout rather than 0: without GETEVENTS the kernel would not
        // run a DEFER_TASKRUN ring's deferred completion work at all.
        let res = match timeout {
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                ring.submitter().submit_with_args(1, &args)
            }
            None => ring.submit_and_wait(1),
        };
        match res {
            Err(e) if !is_transient(&e) && e.raw_os_error() != Some(libc::ETIME) => Err(e),
            _ => Ok(()),
        }
    }
}
