//! The driver's side of the `accept` operation (`super::super::accept`): arming it and the
//! bookkeeping its completions need.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

use crate::sys::uring::accept::{accept_sqe, MULTISHOT_MARGIN};
use crate::sys::uring::cancel::cancel;
use crate::sys::uring::spread::fixed;
use crate::sys::uring::UringDriver;
use crate::sys::uring::{ud, TAG_ACCEPT};
use crate::sys::{accept_exhausted, Completion, Socket};

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
