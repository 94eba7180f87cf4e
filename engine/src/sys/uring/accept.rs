//! The accept: per listener, a multishot accept on the ring that accepts (one-shot
//! accepts instead while that ring's fixed-file table is nearly full), paused when the
//! process runs out of descriptors and re-armed on another ring when a table fills.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, types};
use rustix::io::Errno;

use super::cancel::cancel;
use super::driver::UringDriver;
use super::spread::fixed;
use super::{split_ud, ud, Sqe, TAG_ACCEPT};
use crate::sys::{accept_exhausted, Completion, Socket};

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
fn accept_sqe(fd: RawFd, i: usize, direct: bool, single: bool) -> Sqe {
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

impl UringDriver {
    /// Arms listener `i`'s accept on the ring that accepts (see `accept_ring`).
    pub(super) fn arm_accept(&mut self, i: usize) {
        let Some(fd) = self.listeners[i].fd.as_ref().map(|f| f.as_raw_fd()) else { return };
        let Some(r) = self.accept_ring() else {
            // Every table is full and no ring may be added: wait for a close.
            self.pause_accept(i, None);
            return;
        };
        let single = self.direct && self.rings[r].free() <= MULTISHOT_MARGIN;
        if single {
            self.rings[r].reserved += 1;
        }
        let e = accept_sqe(fd, i, self.direct, single);
        self.push(r, e);
        let l = &mut self.listeners[i];
        l.armed = Some(r);
        l.single = single;
        l.narrowing = false;
    }

    /// Cancels listener `i`'s accept on ring `r`.
    pub(super) fn cancel_accept(&mut self, i: usize, r: usize) {
        self.push(r, cancel(ud(TAG_ACCEPT, i as u64)));
    }

    /// Stops listener `i` until descriptors free up (see `ACCEPT_PAUSE`).
    pub(super) fn pause_accept(&mut self, i: usize, armed_on: Option<usize>) {
        let Some(l) = self.listeners.get_mut(i) else { return };
        if l.paused || l.closing {
            return;
        }
        l.paused = true;
        if let Some(r) = armed_on {
            self.cancel_accept(i, r);
        }
        self.accept_paused_at = Some(crate::clock::now());
    }

    /// Re-arms paused listeners.
    pub(super) fn resume_accepts(&mut self) {
        if self.accept_paused_at.take().is_none() {
            return;
        }
        for i in 0..self.listeners.len() {
            let l = &mut self.listeners[i];
            if l.paused {
                l.paused = false;
                if l.armed.is_none() && !l.closing {
                    self.arm_accept(i);
                }
            }
        }
    }

    /// Stops accepting: cancels armed accepts (their listeners close when they end) and
    /// closes the others.
    pub(super) fn close_all_listeners(&mut self) {
        for i in 0..self.listeners.len() {
            let l = &mut self.listeners[i];
            if l.closing {
                continue;
            }
            l.closing = true;
            match l.armed {
                Some(r) => self.cancel_accept(i, r),
                None => l.fd = None,
            }
        }
    }

    /// A completion of listener `low`'s accept on ring `r`.
    pub(super) fn on_accept(
        &mut self,
        r: usize,
        low: u64,
        res: i32,
        more: bool,
        f: &mut dyn FnMut(Completion<'_>),
    ) {
        let i = low as usize;
        let single = self.listeners.get(i).is_some_and(|l| l.single);
        if single {
            let ring = &mut self.rings[r];
            ring.reserved = ring.reserved.saturating_sub(1);
        }
        if res >= 0 && self.direct {
            // With IORING_FILE_INDEX_ALLOC the result is the fixed-file slot.
            self.rings[r].files_used += 1;
            f(Completion::Accepted(Socket::Fixed(fixed(r, res as u32))));
            let narrowing = self.listeners.get(i).is_none_or(|l| l.narrowing);
            if more && !narrowing && self.rings[r].free() <= MULTISHOT_MARGIN {
                // Nearly full: from now on one connection per accept.
                self.listeners[i].narrowing = true;
                self.cancel_accept(i, r);
            }
        } else if res >= 0 {
            // SAFETY: a successful accept returns a new descriptor that nothing else
            // owns, and this completion is handled once, here.
            f(Completion::Accepted(Socket::Fd(unsafe { OwnedFd::from_raw_fd(res) })));
        } else if res == -libc::ENFILE && self.direct {
            // This ring's table is full (whatever our count said): accept on
            // another ring, or pause if none has room and none may be added.
            let ring = &mut self.rings[r];
            ring.files_used = ring.files;
            if more {
                self.cancel_accept(i, r);
            }
        } else if res != -libc::ECANCELED {
            f(Completion::AcceptFailed);
            if accept_exhausted(Errno::from_raw_os_error(-res)) {
                self.pause_accept(i, more.then_some(r));
            }
        }
        if !more {
            if let Some(l) = self.listeners.get_mut(i) {
                l.armed = None;
                if l.closing {
                    l.fd = None;
                } else if !l.paused {
                    self.arm_accept(i);
                }
            }
        }
    }
}
