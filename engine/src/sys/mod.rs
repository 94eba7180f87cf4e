//! The I/O backends behind one completion-style interface.
//!
//! The worker loop never touches sockets: it asks a [`Driver`] to receive, send and
//! close, and the driver reports what happened as [`Completion`]s. io_uring is natively
//! completion-based; the epoll backend runs the same syscalls on readiness and reports
//! them the same way, so the worker, the protocol handling and the tests are shared.
//!
//! `unsafe` in the engine lives in this module and nowhere else (the crate root denies
//! `unsafe_code` and allows it on `mod sys` only): in the io_uring backend, `uring/`
//! (one file per operation, each building its submission entries through the `unsafe`
//! `Sqe::new` next to the struct that owns what the kernel touches; see its module doc)
//! and `bufring/` (the provided-buffer ring and its memory, with the `unsafe fn`s that
//! hand receive buffers out and take them back), one `setsockopt` in `net.rs` that
//! rustix lacks, and `mmap.rs` (the outbox's mapped segment files: bytes copied in and
//! out through raw pointers, bounds-checked). `epoll.rs` has none.

pub(crate) mod bufring;
pub(crate) mod epoll;
pub(crate) mod mmap;
pub(crate) mod net;
pub(crate) mod uring;

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use bytes::Bytes;
use ringwire_frame::RecvBuffer;
use rustix::io::Errno;

use crate::slab::Key;

/// How long accepting pauses after it failed for lack of resources (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM), unless a connection closes first and frees a descriptor. Without the
/// pause a listener whose queue holds a connection that cannot be accepted would spin.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The wait's timeout while accepting is paused since `since` (`None`: not paused):
/// `timeout`, shortened to what is left of the pause. `Err(())` when the pause is over
/// and accepting should resume now.
pub(crate) fn accept_pause_timeout(
    since: Option<std::time::Instant>,
    timeout: Option<Duration>,
) -> Result<Option<Duration>, ()> {
    let Some(at) = since else { return Ok(timeout) };
    let left = ACCEPT_PAUSE.saturating_sub(crate::clock::now().saturating_duration_since(at));
    if left.is_zero() {
        return Err(());
    }
    Ok(Some(timeout.map_or(left, |t| t.min(left))))
}

/// Whether accepting should pause after this error: everything but the errors that
/// concern one connection only. Out of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) is the
/// usual case; any other persistent error would otherwise make the listener spin.
pub(crate) fn accept_exhausted(e: Errno) -> bool {
    !matches!(e, Errno::CONNABORTED | Errno::INTR | Errno::AGAIN | Errno::PERM | Errno::PROTO)
}

/// Why a connection's receive stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecvEnd {
    /// The peer closed its side (read returned 0).
    Eof,
    /// The socket failed.
    Error(Errno),
    /// The shared receive buffers ran out; re-arm once they are back.
    NoBuffers,
    /// Cancelled at our request.
    Cancelled,
    /// The multishot receive ended for an internal reason; re-arm.
    Rearm,
}

/// An accepted connection's socket: a plain descriptor, or an io_uring direct
/// descriptor (an index in the ring's fixed-file table, not in the process's fd table).
#[derive(Debug)]
pub(crate) enum Socket {
    Fd(OwnedFd),
    Fixed(u32),
}

/// Something the driver finished.
pub(crate) enum Completion<'a> {
    /// A new connection.
    Accepted(Socket),
    /// An accept failed (e.g. EMFILE); the driver keeps accepting.
    AcceptFailed,
    /// Bytes received, lent for the callback: the protocol core may unmask them in place
    /// and keep whole large messages without a copy ([`RecvBuffer::share`]); the rest of
    /// the buffer goes back to the shared pool right after.
    Recv { key: Key, data: &'a mut dyn RecvBuffer },
    /// The receive for `key` stopped; nothing more arrives until `start_recv` again.
    RecvEnded { key: Key, why: RecvEnd },
    /// A send finished: `Ok(n)` bytes went out (possibly fewer than queued). The chunks
    /// come back so the caller can resend the rest and reuse the vector.
    Sent { key: Key, result: Result<usize, Errno>, chunks: Vec<Bytes> },
    /// The connect of `key`'s socket finished: `Ok` once the TCP connection is up.
    /// Either way the socket stays under `key` until [`Driver::close`].
    Connected { key: Key, result: Result<(), Errno> },
    /// The socket of `key` is closed; no completion for `key` follows.
    FdClosed { key: Key },
    /// Another thread woke this worker (its command queue has work).
    Wake,
    /// A sync started with [`Driver::sync_data`] ended: every file's data is on the disk
    /// (`Ok`), or one of them failed.
    Synced { upto: u64, result: Result<(), Errno> },
}

/// One worker's I/O backend. All methods only queue work; it happens (and completions
/// arrive) during [`Driver::wait`].
pub(crate) trait Driver {
    /// "io_uring" or "epoll".
    fn name(&self) -> &'static str;
    /// What the backend uses, for the startup report.
    fn features(&self) -> Vec<&'static str>;
    /// Starts accepting on a listening socket.
    fn add_listener(&mut self, fd: OwnedFd) -> io::Result<()>;
    /// Stops accepting and closes the listeners.
    fn close_listeners(&mut self);
    /// Takes ownership of a connection's socket under `key`. The driver owns every
    /// connection socket, so it can later hold them as io_uring direct descriptors or
    /// spread them over several rings without the worker noticing.
    fn add_conn(&mut self, key: Key, sock: Socket);
    /// Closes an accepted socket that was never added (a refused connection).
    fn discard(&mut self, sock: Socket);
    /// Connects the socket added under `key` (an outgoing connection's, made by
    /// [`net::client_socket`]) to `addr`; one `Connected` follows, also when it failed or
    /// was cancelled (`ECANCELED`).
    fn connect(&mut self, key: Key, addr: std::net::SocketAddr);
    /// Starts receiving on a connection until it ends (one `RecvEnded` per start).
    fn start_recv(&mut self, key: Key);
    /// Cancels the receive, any send and any connect of `key`; each reports its end
    /// (`RecvEnded`, `Sent` with `ECANCELED` or with what it managed, `Connected`).
    fn cancel(&mut self, key: Key);
    /// Sends the chunks in order, as one vectored write; `Sent` follows.
    fn send(&mut self, key: Key, chunks: Vec<Bytes>);
    /// Closes a connection's socket once no operation of it is in flight (the caller
    /// guarantees that); `FdClosed` follows and nothing for `key` after it.
    fn close(&mut self, key: Key);
    /// Submits queued work, waits up to `timeout` for at least one completion (or none if
    /// `timeout` is zero), and reports every completion ready.
    fn wait(
        &mut self,
        timeout: Option<Duration>,
        f: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()>;
    /// Starts `fdatasync` of `files` (the outbox's segments); `Synced { upto }` follows
    /// once all have ended. A backend that cannot run it without blocking gives the files
    /// back, and the caller syncs them on a thread.
    fn sync_data(
        &mut self,
        upto: u64,
        files: Vec<std::fs::File>,
    ) -> Result<(), Vec<std::fs::File>> {
        let _ = upto;
        Err(files)
    }
    /// Operations in flight (the worker waits for zero before it exits).
    fn in_flight(&self) -> usize;
    /// io_uring instances in use (0 for a backend without rings).
    fn rings(&self) -> usize {
        0
    }
    /// Received messages lent out of receive buffers so far (no copy).
    fn messages_lent(&self) -> u64 {
        0
    }
    /// The provided receive buffers of each ring as chosen for this kernel (count,
    /// bytes each): the configured ones, or more smaller ones where the kernel lacks
    /// incremental consumption. `None` for a backend without them.
    fn recv_pool(&self) -> Option<(u32, u32)> {
        None
    }
    /// Waits in which busy polling found work before sleeping.
    fn busy_poll_hits(&self) -> u64 {
        0
    }
    /// Submission entries queued and completions reaped so far (io_uring; zeros on
    /// epoll), for the metrics.
    fn op_counts(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Provided receive buffers of all rings: all, those the kernel may fill now, those
    /// lent to the application (io_uring; zeros on epoll).
    fn recv_buffers(&self) -> (u64, u64, u64) {
        (0, 0, 0)
    }
}
