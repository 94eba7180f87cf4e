//! The io_uring backend: multishot accept, multishot receive into a provided-buffer
//! ring, one vectored send per connection, close through the ring, and an eventfd read
//! for cross-thread wake-ups.
//!
//! Ownership rule (STYLE 3): an operation owns its buffer and its fd until its
//! completion arrives. Sends keep their chunks and iovecs in a boxed [`SendOp`] parked in
//! `sends` until the CQE; receives write only into ring buffers; the worker closes a
//! socket only after its receive and send have completed. `user_data` is an 8-bit tag
//! and a slab key or table index.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use rustix::io::Errno;

use super::bufring::BufRing;
use super::{accept_exhausted, Completion, Driver, RecvEnd, Socket, ACCEPT_PAUSE};
use crate::slab::Key;

const TAG_ACCEPT: u64 = 1;
const TAG_RECV: u64 = 2;
const TAG_SEND: u64 = 3;
const TAG_CLOSE: u64 = 4;
const TAG_CANCEL: u64 = 5;
const TAG_WAKE: u64 = 6;

fn ud(tag: u64, low: u64) -> u64 {
    (tag << 56) | (low & ((1 << 56) - 1))
}

fn split_ud(v: u64) -> (u64, u64) {
    (v >> 56, v & ((1 << 56) - 1))
}

/// A connection's socket as an operation addresses it.
#[derive(Debug, Clone, Copy)]
enum Target {
    Fd(RawFd),
    Fixed(u32),
}

/// Builds an entry for either kind of target (the crate's target types are distinct).
macro_rules! on_target {
    ($t:expr, |$fd:ident| $build:expr) => {
        match $t {
            Target::Fd(raw) => {
                let $fd = types::Fd(raw);
                $build
            }
            Target::Fixed(i) => {
                let $fd = types::Fixed(i);
                $build
            }
        }
    };
}

/// Whether a submit error only means "not now": reap completions and try again.
fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN | libc::EINTR))
}

/// Hashes a slab slot (a dense small integer) with one multiply.
#[derive(Default, Clone, Copy)]
struct BuildSlotHasher;

#[derive(Default)]
struct SlotHasher(u64);

impl std::hash::BuildHasher for BuildSlotHasher {
    type Hasher = SlotHasher;
    fn build_hasher(&self) -> SlotHasher {
        SlotHasher(0)
    }
}

impl std::hash::Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        // The high bits of the product are well mixed; hashbrown uses both ends.
        let h = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

/// A send in flight: everything the kernel reads lives here, at a stable heap address.
struct SendOp {
    key: Key,
    chunks: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

// SAFETY: `SendOp` holds raw pointers (into `iov` and into the `Bytes` in `chunks`) only
// for the kernel's benefit; it is created, used and dropped on the owning worker thread
// and never shared. This impl only lets the driver be built on one thread and moved to
// its worker before any op exists.
unsafe impl Send for SendOp {}

struct Listener {
    fd: Option<OwnedFd>,
    /// Whether a multishot accept is armed.
    armed: bool,
    /// Stop re-arming (shutdown); the fd is dropped once the accept ends.
    closing: bool,
    /// Out of descriptors: not re-armed until `resume_accepts`.
    paused: bool,
}

pub(crate) struct UringDriver {
    // Field order matters for drop: the ring goes first, so the kernel stops using the
    // buffer ring and the send ops before their memory is freed.
    ring: IoUring,
    bufs: BufRing,
    listeners: Vec<Listener>,
    /// Connection sockets by slab slot.
    fds: Vec<Option<Socket>>,
    /// Accept into the ring's fixed-file table (direct descriptors).
    direct: bool,
    sends: Vec<Option<Box<SendOp>>>,
    free_sends: Vec<usize>,
    /// The op index of each connection's send in flight, by slab slot, so that a cancel
    /// can name both of a connection's ops by `user_data`: the kernel finds those in a
    /// hash table, while a cancel by descriptor scans every armed request of the ring
    /// (with 15,000 connections that made closing them all quadratic).
    send_of: HashMap<u32, u32, BuildSlotHasher>,
    /// Entries the submission queue had no room for (see `push`).
    overflow: VecDeque<squeue::Entry>,
    /// A submit error met outside `wait`, reported by the next `wait`.
    failed: Option<io::Error>,
    /// Boxed so that a recycled op keeps a stable address for the kernel's pointers.
    #[allow(clippy::vec_box)]
    send_pool: Vec<Box<SendOp>>,
    wake_fd: Arc<OwnedFd>,
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
    /// When accepting paused for lack of resources.
    accept_paused_at: Option<std::time::Instant>,
    in_flight: usize,
    cqes: Vec<cqueue::Entry>,
    features: Vec<&'static str>,
}

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

impl UringDriver {
    /// Sets up a ring for the calling thread (SINGLE_ISSUER and DEFER_TASKRUN tie it to
    /// the thread that submits), the buffer ring and the wake-up read.
    pub(crate) fn new(
        entries: u32,
        recv_buffers: u16,
        recv_buffer_size: u32,
        direct_table: Option<u32>,
        max_conns: usize,
        wake_fd: Arc<OwnedFd>,
    ) -> io::Result<Self> {
        let mut features = Vec::new();
        let ring = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_cqsize(entries * 4)
            .build(entries)
        {
            Ok(r) => {
                features.push("SINGLE_ISSUER");
                features.push("DEFER_TASKRUN");
                features.push("COOP_TASKRUN");
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
        let bufs = BufRing::new(&ring.submitter(), recv_buffers, recv_buffer_size, 0)?;
        features.extend(probe_ring(&ring)?);
        // Direct descriptors: accepted sockets live in the ring's fixed-file table, so each
        // operation skips the fd-table lookup and connections do not count against the
        // process's RLIMIT_NOFILE (the table itself is capped at that limit).
        let direct = match direct_table {
            Some(n) if n > 0 => match ring.submitter().register_files_sparse(n) {
                Ok(()) => {
                    features.push("direct descriptors");
                    true
                }
                Err(_) => {
                    features.push("plain descriptors (fixed-file table refused)");
                    false
                }
            },
            _ => false,
        };
        let mut d = Self {
            ring,
            bufs,
            listeners: Vec::new(),
            fds: Vec::with_capacity(max_conns),
            direct: false,
            sends: Vec::new(),
            free_sends: Vec::new(),
            send_of: HashMap::default(),
            overflow: VecDeque::new(),
            failed: None,
            send_pool: Vec::new(),
            wake_fd,
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
            accept_paused_at: None,
            in_flight: 0,
            cqes: Vec::with_capacity(1024),
            features,
        };
        d.direct = direct;
        d.arm_wake();
        Ok(d)
    }

    /// Queues an entry. When the submission queue is full it is handed to the kernel
    /// first; if the kernel takes no more right now (EBUSY: its completion queue must be
    /// reaped first), the entry waits in `overflow` for the next [`Driver::wait`], which
    /// reaps and then submits it. Never blocks, never panics; a hard submit error is
    /// reported by the next `wait`.
    fn push(&mut self, e: squeue::Entry) {
        if self.overflow.is_empty() && self.try_push(&e) {
            return;
        }
        if self.overflow.is_empty() {
            match self.ring.submit() {
                Ok(_) if self.try_push(&e) => return,
                Ok(_) => {}
                Err(err) if is_transient(&err) => {}
                Err(err) => {
                    self.failed.get_or_insert(err);
                }
            }
        }
        self.overflow.push_back(e);
    }

    /// Puts `e` in the submission queue if there is room.
    fn try_push(&mut self, e: &squeue::Entry) -> bool {
        // SAFETY: every entry built in this module points only at memory that lives
        // until its completion: listener and connection fds stay open until their ops
        // end, send data is parked in `sends`, the wake buffer lives in `self`. An entry
        // waiting in `overflow` points at the same memory, which stays put meanwhile.
        let ok = unsafe { self.ring.submission().push(e) }.is_ok();
        if ok {
            self.in_flight += 1;
        }
        ok
    }

    /// Moves entries from `overflow` into the submission queue while there is room.
    fn drain_overflow(&mut self) {
        while let Some(e) = self.overflow.pop_front() {
            if !self.try_push(&e) {
                self.overflow.push_front(e);
                break;
            }
        }
    }

    fn arm_wake(&mut self) {
        let e =
            opcode::Read::new(types::Fd(self.wake_fd.as_raw_fd()), self.wake_buf.as_mut_ptr(), 8)
                .build()
                .user_data(ud(TAG_WAKE, 0));
        self.push(e);
        self.wake_armed = true;
    }

    fn arm_accept(&mut self, i: usize) {
        let Some(fd) = self.listeners[i].fd.as_ref().map(|f| f.as_raw_fd()) else { return };
        // Direct descriptors are not in the fd table, so close-on-exec does not apply (the
        // kernel refuses the flag with them).
        let flags = if self.direct { 0 } else { libc::SOCK_CLOEXEC };
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .allocate_file_index(self.direct)
            .flags(flags)
            .build()
            .user_data(ud(TAG_ACCEPT, i as u64));
        self.push(e);
        self.listeners[i].armed = true;
    }

    /// Stops listener `i` until descriptors free up (see `ACCEPT_PAUSE`).
    fn pause_accept(&mut self, i: usize, armed: bool) {
        let Some(l) = self.listeners.get_mut(i) else { return };
        if l.paused || l.closing {
            return;
        }
        l.paused = true;
        if armed {
            let e = opcode::AsyncCancel::new(ud(TAG_ACCEPT, i as u64))
                .build()
                .user_data(ud(TAG_CANCEL, 0));
            self.push(e);
        }
        self.accept_paused_at = Some(crate::clock::now());
    }

    /// Re-arms paused listeners.
    fn resume_accepts(&mut self) {
        if self.accept_paused_at.take().is_none() {
            return;
        }
        for i in 0..self.listeners.len() {
            let l = &mut self.listeners[i];
            if l.paused {
                l.paused = false;
                if !l.armed && !l.closing {
                    self.arm_accept(i);
                }
            }
        }
    }

    fn target(&self, key: Key) -> Option<Target> {
        match self.fds.get(key.slot as usize)?.as_ref()? {
            Socket::Fd(f) => Some(Target::Fd(f.as_raw_fd())),
            Socket::Fixed(i) => Some(Target::Fixed(*i)),
        }
    }

    fn arm_recv(&mut self, key: Key, t: Target) {
        let bgid = self.bufs.bgid();
        let e = on_target!(t, |fd| opcode::RecvMulti::new(fd, bgid).build())
            .user_data(ud(TAG_RECV, key.pack()));
        self.push(e);
    }

    /// Closes a socket through the ring; `user_data` says who hears of it.
    fn close_socket(&mut self, sock: Socket, user_data: u64) {
        let e = match sock {
            Socket::Fd(fd) => opcode::Close::new(types::Fd(fd.into_raw_fd())).build(),
            Socket::Fixed(i) => opcode::Close::new(types::Fixed(i)).build(),
        };
        self.push(e.user_data(user_data));
    }

    fn handle(&mut self, cqe: &cqueue::Entry, f: &mut dyn FnMut(Completion<'_>)) {
        let (tag, low) = split_ud(cqe.user_data());
        let res = cqe.result();
        let more = cqueue::more(cqe.flags());
        if !more {
            self.in_flight -= 1;
        }
        match tag {
            TAG_ACCEPT => {
                let i = low as usize;
                if res >= 0 && self.direct {
                    // With IORING_FILE_INDEX_ALLOC the result is the fixed-file slot.
                    f(Completion::Accepted(Socket::Fixed(res as u32)));
                } else if res >= 0 {
                    // SAFETY: a successful accept returns a new descriptor that nothing
                    // else owns.
                    f(Completion::Accepted(Socket::Fd(unsafe { OwnedFd::from_raw_fd(res) })));
                } else if res != -libc::ECANCELED {
                    f(Completion::AcceptFailed);
                    if accept_exhausted(Errno::from_raw_os_error(-res)) {
                        self.pause_accept(i, more);
                    }
                }
                if !more {
                    if let Some(l) = self.listeners.get_mut(i) {
                        l.armed = false;
                        if l.closing {
                            l.fd = None;
                        } else if !l.paused {
                            self.arm_accept(i);
                        }
                    }
                }
            }
            TAG_RECV => {
                let key = Key::unpack(low);
                let bid = cqueue::buffer_select(cqe.flags());
                if res > 0 {
                    if let Some(bid) = bid {
                        // SAFETY: the kernel handed buffer `bid` over with this CQE and it
                        // is pushed back only after the callback returns.
                        let data = unsafe { self.bufs.buffer(bid, res as usize) };
                        f(Completion::Recv { key, data });
                    }
                } else {
                    let why = match -res {
                        0 => RecvEnd::Eof,
                        libc::ENOBUFS => RecvEnd::NoBuffers,
                        libc::ECANCELED => RecvEnd::Cancelled,
                        e => RecvEnd::Error(Errno::from_raw_os_error(e)),
                    };
                    if let Some(bid) = bid {
                        self.bufs.push(bid);
                    }
                    f(Completion::RecvEnded { key, why });
                    return;
                }
                if let Some(bid) = bid {
                    self.bufs.push(bid);
                }
                if !more {
                    f(Completion::RecvEnded { key, why: RecvEnd::Rearm });
                }
            }
            TAG_SEND => {
                let i = low as usize;
                let Some(mut op) = self.sends.get_mut(i).and_then(Option::take) else { return };
                self.free_sends.push(i);
                self.send_of.remove(&op.key.slot);
                let result =
                    if res >= 0 { Ok(res as usize) } else { Err(Errno::from_raw_os_error(-res)) };
                let chunks = std::mem::take(&mut op.chunks);
                op.iov.clear();
                f(Completion::Sent { key: op.key, result, chunks });
                if self.send_pool.len() < 1024 {
                    self.send_pool.push(op);
                }
            }
            TAG_CLOSE => {
                // A descriptor was freed: a paused listener may accept again.
                self.resume_accepts();
                f(Completion::FdClosed { key: Key::unpack(low) });
            }
            TAG_WAKE => {
                self.wake_armed = false;
                f(Completion::Wake);
                self.arm_wake();
            }
            _ => {} // TAG_CANCEL: the cancelled op reports on its own.
        }
    }
}

impl Driver for UringDriver {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn features(&self) -> Vec<&'static str> {
        self.features.clone()
    }

    fn add_listener(&mut self, fd: OwnedFd) -> io::Result<()> {
        self.listeners.push(Listener { fd: Some(fd), armed: false, closing: false, paused: false });
        self.arm_accept(self.listeners.len() - 1);
        Ok(())
    }

    fn close_listeners(&mut self) {
        for i in 0..self.listeners.len() {
            let l = &mut self.listeners[i];
            if l.closing {
                continue;
            }
            l.closing = true;
            if l.armed {
                let e = opcode::AsyncCancel::new(ud(TAG_ACCEPT, i as u64))
                    .build()
                    .user_data(ud(TAG_CANCEL, 0));
                self.push(e);
            } else {
                l.fd = None;
            }
        }
    }

    fn add_conn(&mut self, key: Key, sock: Socket) {
        let slot = key.slot as usize;
        if self.fds.len() <= slot {
            self.fds.resize_with(slot + 1, || None);
        }
        self.fds[slot] = Some(sock);
    }

    fn discard(&mut self, sock: Socket) {
        self.close_socket(sock, ud(TAG_CANCEL, 0));
    }

    fn start_recv(&mut self, key: Key) {
        if let Some(t) = self.target(key) {
            self.arm_recv(key, t);
        }
    }

    fn cancel(&mut self, key: Key) {
        // Both of the connection's requests, by `user_data` (a hash lookup in the kernel):
        // the multishot receive, and the send in flight if there is one. A request that
        // already ended makes its cancel fail with ENOENT, which nobody needs to hear.
        let recv = opcode::AsyncCancel::new(ud(TAG_RECV, key.pack())).build();
        self.push(recv.user_data(ud(TAG_CANCEL, 0)));
        if let Some(&i) = self.send_of.get(&key.slot) {
            let send = opcode::AsyncCancel::new(ud(TAG_SEND, u64::from(i))).build();
            self.push(send.user_data(ud(TAG_CANCEL, 0)));
        }
    }

    fn send(&mut self, key: Key, chunks: Vec<Bytes>) {
        let Some(t) = self.target(key) else { return };
        let mut op = self.send_pool.pop().unwrap_or_else(|| {
            Box::new(SendOp {
                key,
                chunks: Vec::new(),
                iov: Vec::new(),
                // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
                msg: unsafe { std::mem::zeroed() },
            })
        });
        op.key = key;
        op.chunks = chunks;
        op.iov.clear();
        op.iov.extend(
            op.chunks.iter().map(|c| libc::iovec {
                iov_base: c.as_ptr() as *mut libc::c_void,
                iov_len: c.len(),
            }),
        );
        op.msg.msg_iov = op.iov.as_mut_ptr();
        op.msg.msg_iovlen = op.iov.len();
        let i = self.free_sends.pop().unwrap_or_else(|| {
            self.sends.push(None);
            self.sends.len() - 1
        });
        let e = if op.iov.len() == 1 {
            let (ptr, len) = (op.iov[0].iov_base as *const u8, op.iov[0].iov_len as u32);
            on_target!(t, |fd| opcode::Send::new(fd, ptr, len).flags(libc::MSG_NOSIGNAL).build())
        } else {
            let msg = &op.msg as *const libc::msghdr;
            on_target!(t, |fd| opcode::SendMsg::new(fd, msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build())
        };
        self.sends[i] = Some(op);
        self.send_of.insert(key.slot, i as u32);
        self.push(e.user_data(ud(TAG_SEND, i as u64)));
    }

    fn close(&mut self, key: Key) {
        let Some(sock) = self.fds.get_mut(key.slot as usize).and_then(Option::take) else {
            return;
        };
        self.close_socket(sock, ud(TAG_CLOSE, key.pack()));
    }

    fn wait(
        &mut self,
        timeout: Option<Duration>,
        f: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        let mut timeout = timeout;
        if let Some(at) = self.accept_paused_at {
            let left =
                ACCEPT_PAUSE.saturating_sub(crate::clock::now().saturating_duration_since(at));
            if left.is_zero() {
                self.resume_accepts();
            } else {
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.drain_overflow();
        // With entries still waiting for room, submit and reap without sleeping (a zero
        // timeout, not `want` 0: without GETEVENTS the kernel would not run the deferred
        // completions at all).
        if !self.overflow.is_empty() {
            timeout = Some(Duration::ZERO);
        }
        let want = 1;
        let res = match timeout {
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            None => self.ring.submit_and_wait(want),
        };
        if let Err(e) = res {
            if !is_transient(&e) && e.raw_os_error() != Some(libc::ETIME) {
                return Err(e);
            }
        }
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.ring.completion());
        for cqe in &cqes {
            self.handle(cqe, f);
        }
        cqes.clear();
        self.cqes = cqes;
        self.bufs.commit();
        self.drain_overflow();
        Ok(())
    }

    fn in_flight(&self) -> usize {
        // The wake-up read is always armed and is not work to wait for.
        self.in_flight + self.overflow.len() - usize::from(self.wake_armed)
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // Entries that never reached the kernel reference nothing the kernel holds.
        self.overflow.clear();
        // Cancel the wake-up read and collect what is still in flight, so that no
        // operation outlives the memory it uses.
        if self.wake_armed {
            let e = opcode::AsyncCancel::new(ud(TAG_WAKE, 0)).build().user_data(ud(TAG_CANCEL, 0));
            self.push(e);
        }
        for _ in 0..100 {
            self.drain_overflow();
            if self.in_flight == 0 {
                break;
            }
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let cqes: Vec<cqueue::Entry> = self.ring.completion().collect();
            for cqe in cqes {
                let (tag, _) = split_ud(cqe.user_data());
                if tag == TAG_ACCEPT && cqe.result() >= 0 && !self.direct {
                    // SAFETY: a new descriptor from accept that nothing else owns.
                    drop(unsafe { OwnedFd::from_raw_fd(cqe.result()) });
                }
                if !cqueue::more(cqe.flags()) {
                    self.in_flight -= 1;
                }
            }
        }
        if self.in_flight > 0 {
            // Operations could still write into the receive buffers or read send data:
            // keep that memory rather than risk the kernel touching freed pages.
            self.bufs.leak();
            for op in self.sends.drain(..).flatten() {
                std::mem::forget(op);
            }
        }
    }
}
