//! The driver's side of installing outgoing sockets as direct descriptors
//! (`super::super::install`): the table of installs in flight, by slab slot, the
//! connect that waits for one, and their completions.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::io::Errno;

use crate::slab::Key;
use crate::sys::uring::install::Install;
use crate::sys::uring::spread::fixed;
use crate::sys::uring::UringDriver;
use crate::sys::{Completion, Socket};

impl UringDriver {
    /// Takes an outgoing connection's plain socket: with direct descriptors it is
    /// installed into the table of a ring with room (or a new ring), and held as a plain
    /// descriptor until then (and for good if the install fails or no ring has room).
    pub(super) fn add_outgoing(&mut self, key: Key, fd: OwnedFd) {
        let Some(r) = self.accept_ring().filter(|_| self.direct) else {
            self.set_socket(key, Socket::Fd(fd));
            return;
        };
        // Promised to this install, so that accepts do not take the last slot first.
        self.rings[r].reserved += 1;
        let mut op = Install::new(fd, r);
        let e = op.sqe(key);
        self.installs.insert(key.slot, op);
        self.push(r, e);
    }

    /// A connect for `key`: now, or once its socket is installed.
    pub(super) fn connect_outgoing(&mut self, key: Key, addr: SocketAddr) {
        match self.installs.get_mut(&key.slot) {
            Some(op) => op.connect = Some(addr),
            None => self.start_connect(key, addr),
        }
    }

    /// A cancel for `key` while its socket is being installed: the connect asked for
    /// will not start. `true` if there was such an install.
    pub(super) fn cancel_install(&mut self, key: Key) -> bool {
        match self.installs.get_mut(&key.slot) {
            Some(op) => {
                op.cancelled = true;
                true
            }
            None => false,
        }
    }

    /// The install of `key`'s socket completed with `res` (the number of descriptors
    /// installed, 1, or an error).
    pub(super) fn on_install(&mut self, low: u64, res: i32, f: &mut dyn FnMut(Completion<'_>)) {
        let key = Key::unpack(low);
        let Some(op) = self.installs.remove(&key.slot) else { return };
        super::connect::shrink_idle(&mut self.installs);
        let r = op.ring;
        let ring = &mut self.rings[r];
        ring.reserved = ring.reserved.saturating_sub(1);
        let sock = if res == 1 {
            ring.files_used += 1;
            let slot = op.slot();
            drop(op.fd); // the table holds the socket now
            Socket::Fixed(fixed(r, slot))
        } else {
            Socket::Fd(op.fd)
        };
        self.set_socket(key, sock);
        match (op.connect, op.cancelled) {
            (Some(_), true) => f(Completion::Connected { key, result: Err(Errno::CANCELED) }),
            (Some(addr), false) => self.start_connect(key, addr),
            (None, _) => {}
        }
    }
}
