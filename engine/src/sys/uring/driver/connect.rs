//! The driver's side of the `connect` operation (`super::super::connect`): the table of
//! connects in flight, by slab slot, and their completions.

use std::net::SocketAddr;

use rustix::io::Errno;

use crate::slab::Key;
use crate::sys::uring::connect::Connect;
use crate::sys::uring::UringDriver;
use crate::sys::Completion;

/// Gives back the room a burst of dials left in a table of operations in flight, once
/// the burst is over (a table grown to 100,000 dials would hold megabytes otherwise).
pub(super) fn shrink_idle<V>(table: &mut std::collections::HashMap<u32, V>) {
    if table.is_empty() && table.capacity() > 64 {
        table.shrink_to(64);
    }
}

impl UringDriver {
    /// Connects `key`'s socket to `addr`. The worker adds the socket first; without one
    /// there is nothing to connect and nothing is reported (the worker never does that).
    pub(super) fn start_connect(&mut self, key: Key, addr: SocketAddr) {
        let Some((r, t)) = self.target(key) else { return };
        let op = Connect::new(addr);
        let e = op.sqe(t, key);
        // A previous connect of this slot has completed (one per connection at a time,
        // and a slot is reused only after its connection's end): nothing is replaced.
        self.connects.insert(key.slot, op);
        self.push(r, e);
    }

    /// A connect completed with `res`: its address is no longer read.
    pub(super) fn on_connect(&mut self, low: u64, res: i32, f: &mut dyn FnMut(Completion<'_>)) {
        let key = Key::unpack(low);
        self.connects.remove(&key.slot);
        shrink_idle(&mut self.connects);
        let result = if res >= 0 { Ok(()) } else { Err(Errno::from_raw_os_error(-res)) };
        f(Completion::Connected { key, result });
    }
}
