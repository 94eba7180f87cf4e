//! The connect of an outgoing connection: the peer's address lives in a boxed
//! [`Connect`] that the driver keeps until the completion. Current kernels copy the
//! address when they take the entry, but the io_uring ABI does not promise when it is
//! read, so it is kept, like a send's data, until the request is over.

use std::net::SocketAddr;

use io_uring::opcode;

use super::{ud, Sqe, Target, TAG_CONNECT};
use crate::slab::Key;

/// One connect in flight: the peer's address in the kernel's layout.
pub(super) struct Connect {
    addr: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Connect {
    /// The address `addr` in `sockaddr_in` / `sockaddr_in6` form, boxed so that it keeps
    /// its address while the driver's table moves.
    pub(super) fn new(addr: SocketAddr) -> Box<Self> {
        // SAFETY: `sockaddr_storage` is a plain C struct of integers, for which all-zero
        // is a valid value (family AF_UNSPEC, every byte zero).
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                    sin_zero: [0; 8],
                };
                // SAFETY: `sockaddr_storage` is larger than and aligned for every
                // socket address type (that is its purpose); the write covers the first
                // `size_of::<sockaddr_in>()` bytes of `storage`, which we own.
                unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), sin) };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: as above, for `sockaddr_in6`.
                unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), sin6) };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        Box::new(Self { addr: storage, len: len as libc::socklen_t })
    }

    /// The entry that connects `t` for `key`.
    pub(super) fn sqe(&self, t: Target, key: Key) -> Sqe {
        let ptr = (&raw const self.addr).cast::<libc::sockaddr>();
        let e = on_target!(t, |fd| opcode::Connect::new(fd, ptr, self.len).build());
        // SAFETY: the entry reads the address in `self`, which the caller keeps boxed (a
        // stable heap address) and unmodified in the driver's table of connects until the
        // completion tagged `ud(TAG_CONNECT, key)` takes it out (`on_connect`), or leaks
        // it if the driver's drop cannot collect that completion. The socket, `t`, stays
        // open (a fixed slot stays registered) until then: the worker closes a
        // connection only after its connect completed (`Driver::close`).
        unsafe { Sqe::new(e, ud(TAG_CONNECT, key.pack())) }
    }
}
