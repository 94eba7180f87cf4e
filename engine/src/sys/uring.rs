//! The io_uring backend: multishot accept, multishot receive into a provided-buffer
//! ring, one vectored send per connection, close through the ring, and an eventfd read
//! for cross-thread wake-ups.
//!
//! With direct descriptors a worker can hold more connections than one fixed-file table
//! takes (the kernel caps a table at RLIMIT_NOFILE): when the table of the ring that
//! accepts fills up, the driver opens another ring (up to a configured number) and
//! accepts there. Every connection lives on one ring for its whole life; its
//! `Socket::Fixed` index carries the ring's number in its top bits. The worker sleeps in
//! the first ring only: every further ring has an eventfd registered, which the kernel
//! signals when that ring has completion work, and the first ring keeps a read armed on
//! each of those eventfds.
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
/// A further ring's eventfd fired (low bits: the ring's number).
const TAG_RING: u64 = 7;
/// A refused connection's socket was closed (it frees a fixed-file slot).
const TAG_DISCARD: u64 = 8;

/// Bits of a `Socket::Fixed` value that hold the slot in its ring's table; the bits
/// above hold the ring's number.
const RING_SHIFT: u32 = 24;
/// Most rings per worker (the ring number must fit above `RING_SHIFT`).
pub(crate) const MAX_RINGS: usize = 64;

/// Free fixed-file slots below which a ring's accepts go one at a time. A multishot
/// accept takes every connection waiting in the listen queue (4096 deep) in one pass,
/// and one that finds the table full loses the connection (the kernel has already taken
/// it off the queue when the slot allocation fails), so it may run only while the table
/// has room for a whole queue and then some.
const MULTISHOT_MARGIN: u32 = 4096 + 1024;

/// Receive buffers a further ring starts with in circulation (it adds more as receives
/// find none free; see `BufRing::grow`).
const FURTHER_RING_BUFFERS: u16 = 4;

fn fixed(ring: usize, slot: u32) -> u32 {
    ((ring as u32) << RING_SHIFT) | slot
}

fn split_fixed(v: u32) -> (usize, u32) {
    ((v >> RING_SHIFT) as usize, v & ((1 << RING_SHIFT) - 1))
}

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
    /// The ring its accept is armed on, if it is.
    armed: Option<usize>,
    /// That accept takes one connection (the ring's table is nearly full), not many.
    single: bool,
    /// Its multishot accept is being cancelled, to be re-armed one at a time.
    narrowing: bool,
    /// Stop re-arming (shutdown); the fd is dropped once the accept ends.
    closing: bool,
    /// Out of descriptors: not re-armed until `resume_accepts`.
    paused: bool,
}

/// One io_uring instance: its queues, its provided-buffer ring and (with direct
/// descriptors) its fixed-file table.
struct Ring {
    // Field order matters for drop: the ring goes first, so the kernel stops using the
    // buffer ring before its memory is freed.
    ring: IoUring,
    bufs: BufRing,
    /// Entries pushed and not yet completed (multishot ones until their last CQE).
    in_flight: usize,
    /// Entries the submission queue had no room for (see `UringDriver::push`).
    overflow: VecDeque<squeue::Entry>,
    /// Fixed-file slots in use, slots promised to armed one-shot accepts, and the
    /// table's size (all 0 without direct descriptors).
    files_used: u32,
    reserved: u32,
    files: u32,
    /// For every ring but the first: the eventfd the kernel signals when this ring has
    /// completion work, the buffer the first ring reads it into, and whether that read
    /// is armed.
    evfd: Option<OwnedFd>,
    evfd_buf: Box<[u8; 8]>,
    evfd_armed: bool,
    /// Its eventfd fired: run and reap its completions.
    ready: bool,
}

impl Ring {
    /// A ring for the calling thread (SINGLE_ISSUER and DEFER_TASKRUN tie it to the
    /// thread that submits) with its buffer ring and, if `files` > 0, a sparse fixed-file
    /// table of that size (`files` is 0 afterwards if the kernel refused the table).
    fn new(
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
            evfd_buf: Box::new([0; 8]),
            evfd_armed: false,
            ready: false,
        })
    }

    /// Puts `e` in the submission queue if there is room.
    fn try_push(&mut self, e: &squeue::Entry) -> bool {
        // SAFETY: every entry built in this module points only at memory that lives
        // until its completion: listener and connection fds stay open until their ops
        // end, send data is parked in the driver's `sends`, the wake and eventfd buffers
        // live in the driver and its rings. An entry waiting in `overflow` points at the
        // same memory, which stays put meanwhile.
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

    /// Fixed-file slots neither in use nor promised.
    fn free(&self) -> u32 {
        self.files.saturating_sub(self.files_used + self.reserved)
    }

    /// Whether another connection can be accepted into this ring's table.
    fn has_room(&self) -> bool {
        self.free() > 0
    }
}

pub(crate) struct UringDriver {
    // Field order matters for drop: the rings go first, so the kernel stops using the
    // send ops before their memory is freed.
    rings: Vec<Ring>,
    /// Settings for rings opened later.
    entries: u32,
    recv_buffers: u16,
    recv_buffer_size: u32,
    files_per_ring: u32,
    max_rings: usize,
    listeners: Vec<Listener>,
    /// Connection sockets by slab slot.
    fds: Vec<Option<Socket>>,
    /// Accept into the rings' fixed-file tables (direct descriptors).
    direct: bool,
    sends: Vec<Option<Box<SendOp>>>,
    free_sends: Vec<usize>,
    /// The op index of each connection's send in flight, by slab slot, so that a cancel
    /// can name both of a connection's ops by `user_data`: the kernel finds those in a
    /// hash table, while a cancel by descriptor scans every armed request of the ring
    /// (with 15,000 connections that made closing them all quadratic).
    send_of: HashMap<u32, u32, BuildSlotHasher>,
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
    busy_poll: Option<Duration>,
    /// Waits in which busy polling found work before the sleep.
    busy_poll_hits: u64,
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

/// Sizes of the driver's rings.
pub(crate) struct RingConfig {
    /// Submission queue entries per ring.
    pub(crate) entries: u32,
    /// Provided receive buffers per ring, and their size.
    pub(crate) recv_buffers: u16,
    pub(crate) recv_buffer_size: u32,
    /// Fixed-file slots per ring (`None`: plain descriptors).
    pub(crate) direct_table: Option<u32>,
    /// Most rings (only with direct descriptors; 1 otherwise).
    pub(crate) max_rings: usize,
    /// Connections the socket table reserves room for.
    pub(crate) max_conns: usize,
    /// Spin this long watching for completion work before sleeping (see
    /// `EngineConfig::busy_poll`).
    pub(crate) busy_poll: Option<Duration>,
}

impl UringDriver {
    /// Sets up the first ring for the calling thread, its buffer ring and the wake-up
    /// read; further rings open on demand.
    pub(crate) fn new(cfg: RingConfig, wake_fd: Arc<OwnedFd>) -> io::Result<Self> {
        let mut features = Vec::new();
        let files = cfg.direct_table.unwrap_or(0);
        let first = Ring::new(
            cfg.entries,
            cfg.recv_buffers,
            cfg.recv_buffer_size,
            cfg.recv_buffers,
            files,
            &mut features,
        )?;
        let direct = first.files > 0;
        match (cfg.direct_table, direct) {
            (Some(_), true) => {
                features.push("direct descriptors");
                if cfg.max_rings > 1 {
                    features.push("further rings as fixed-file tables fill");
                }
            }
            (Some(_), false) => features.push("plain descriptors (fixed-file table refused)"),
            (None, _) => {}
        }
        let mut d = Self {
            rings: vec![first],
            entries: cfg.entries,
            recv_buffers: cfg.recv_buffers,
            recv_buffer_size: cfg.recv_buffer_size,
            files_per_ring: files,
            max_rings: if direct { cfg.max_rings.clamp(1, MAX_RINGS) } else { 1 },
            listeners: Vec::new(),
            fds: Vec::with_capacity(cfg.max_conns),
            direct,
            sends: Vec::new(),
            free_sends: Vec::new(),
            send_of: HashMap::default(),
            failed: None,
            send_pool: Vec::new(),
            wake_fd,
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
            accept_paused_at: None,
            busy_poll: cfg.busy_poll,
            busy_poll_hits: 0,
            cqes: Vec::with_capacity(1024),
            features,
        };
        d.arm_wake();
        Ok(d)
    }

    /// Opens one more ring (with its own table and buffer ring) and arms the first
    /// ring's read of its eventfd. Its number, or `None` if no more may or can be opened.
    fn add_ring(&mut self) -> Option<usize> {
        if self.rings.len() >= self.max_rings {
            return None;
        }
        let mut features = Vec::new();
        // Smaller queues than the first ring's: their pages are touched as the queues
        // cycle, and a further ring mostly holds idle connections (a full submission
        // queue is submitted on the spot, and completions beyond the completion queue
        // wait in the kernel until reaped).
        let mut ring = Ring::new(
            (self.entries / 16).max(128).min(self.entries),
            self.recv_buffers,
            self.recv_buffer_size,
            FURTHER_RING_BUFFERS,
            self.files_per_ring,
            &mut features,
        )
        .ok()?;
        if ring.files == 0 {
            return None;
        }
        let evfd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .ok()?;
        ring.ring.submitter().register_eventfd(evfd.as_raw_fd()).ok()?;
        ring.evfd = Some(evfd);
        self.rings.push(ring);
        let r = self.rings.len() - 1;
        self.arm_ring_read(r);
        Some(r)
    }

    /// Arms the first ring's read of ring `r`'s eventfd.
    fn arm_ring_read(&mut self, r: usize) {
        let ring = &mut self.rings[r];
        let Some(fd) = ring.evfd.as_ref().map(|f| f.as_raw_fd()) else { return };
        let e = opcode::Read::new(types::Fd(fd), ring.evfd_buf.as_mut_ptr(), 8)
            .build()
            .user_data(ud(TAG_RING, r as u64));
        ring.evfd_armed = true;
        self.push(0, e);
    }

    /// Queues an entry on ring `r`. When the submission queue is full it is handed to
    /// the kernel first; if the kernel takes no more right now (EBUSY: its completion
    /// queue must be reaped first), the entry waits in the ring's `overflow` for the next
    /// [`Driver::wait`], which reaps and then submits it. Never blocks, never panics; a
    /// hard submit error is reported by the next `wait`.
    fn push(&mut self, r: usize, e: squeue::Entry) {
        let ring = &mut self.rings[r];
        if ring.overflow.is_empty() && ring.try_push(&e) {
            return;
        }
        if ring.overflow.is_empty() {
            match ring.ring.submit() {
                Ok(_) if ring.try_push(&e) => return,
                Ok(_) => {}
                Err(err) if is_transient(&err) => {}
                Err(err) => {
                    self.failed.get_or_insert(err);
                }
            }
        }
        ring.overflow.push_back(e);
    }

    fn arm_wake(&mut self) {
        let e =
            opcode::Read::new(types::Fd(self.wake_fd.as_raw_fd()), self.wake_buf.as_mut_ptr(), 8)
                .build()
                .user_data(ud(TAG_WAKE, 0));
        self.push(0, e);
        self.wake_armed = true;
    }

    /// The ring to accept on next: the first whose table has room, else a new one.
    fn accept_ring(&mut self) -> Option<usize> {
        if !self.direct {
            return Some(0);
        }
        self.rings.iter().position(Ring::has_room).or_else(|| self.add_ring())
    }

    fn arm_accept(&mut self, i: usize) {
        let Some(fd) = self.listeners[i].fd.as_ref().map(|f| f.as_raw_fd()) else { return };
        let Some(r) = self.accept_ring() else {
            // Every table is full and no ring may be added: wait for a close.
            self.pause_accept(i, None);
            return;
        };
        // Direct descriptors are not in the fd table, so close-on-exec does not apply (the
        // kernel refuses the flag with them).
        let flags = if self.direct { 0 } else { libc::SOCK_CLOEXEC };
        let single = self.direct && self.rings[r].free() <= MULTISHOT_MARGIN;
        let e = if single {
            self.rings[r].reserved += 1;
            opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                .file_index(Some(types::DestinationSlot::auto_target()))
                .build()
        } else {
            opcode::AcceptMulti::new(types::Fd(fd))
                .allocate_file_index(self.direct)
                .flags(flags)
                .build()
        };
        self.push(r, e.user_data(ud(TAG_ACCEPT, i as u64)));
        let l = &mut self.listeners[i];
        l.armed = Some(r);
        l.single = single;
        l.narrowing = false;
    }

    /// Cancels listener `i`'s accept on ring `r`.
    fn cancel_accept(&mut self, i: usize, r: usize) {
        let e =
            opcode::AsyncCancel::new(ud(TAG_ACCEPT, i as u64)).build().user_data(ud(TAG_CANCEL, 0));
        self.push(r, e);
    }

    /// Stops listener `i` until descriptors free up (see `ACCEPT_PAUSE`).
    fn pause_accept(&mut self, i: usize, armed_on: Option<usize>) {
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
    fn resume_accepts(&mut self) {
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

    /// The ring a connection lives on and how its ops address its socket.
    fn target(&self, key: Key) -> Option<(usize, Target)> {
        match self.fds.get(key.slot as usize)?.as_ref()? {
            Socket::Fd(f) => Some((0, Target::Fd(f.as_raw_fd()))),
            Socket::Fixed(v) => {
                let (r, slot) = split_fixed(*v);
                Some((r, Target::Fixed(slot)))
            }
        }
    }

    fn arm_recv(&mut self, key: Key, r: usize, t: Target) {
        let bgid = self.rings[r].bufs.bgid();
        let e = on_target!(t, |fd| opcode::RecvMulti::new(fd, bgid).build())
            .user_data(ud(TAG_RECV, key.pack()));
        self.push(r, e);
    }

    /// Closes a socket through its ring; `user_data` says who hears of it.
    fn close_socket(&mut self, sock: Socket, user_data: u64) {
        let (r, e) = match sock {
            Socket::Fd(fd) => (0, opcode::Close::new(types::Fd(fd.into_raw_fd())).build()),
            Socket::Fixed(v) => {
                let (r, slot) = split_fixed(v);
                (r, opcode::Close::new(types::Fixed(slot)).build())
            }
        };
        self.push(r, e.user_data(user_data));
    }

    /// A fixed-file slot of ring `r` was freed: a full ring may accept again.
    fn slot_freed(&mut self, r: usize) {
        if self.direct {
            let ring = &mut self.rings[r];
            ring.files_used = ring.files_used.saturating_sub(1);
        }
        self.resume_accepts();
    }

    fn handle(&mut self, r: usize, cqe: &cqueue::Entry, f: &mut dyn FnMut(Completion<'_>)) {
        let (tag, low) = split_ud(cqe.user_data());
        let res = cqe.result();
        let more = cqueue::more(cqe.flags());
        if !more {
            self.rings[r].in_flight -= 1;
        }
        match tag {
            TAG_ACCEPT => {
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
                    // SAFETY: a successful accept returns a new descriptor that nothing
                    // else owns.
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
            TAG_RECV => {
                let key = Key::unpack(low);
                let bid = cqueue::buffer_select(cqe.flags());
                let buf_more = cqueue::buffer_more(cqe.flags());
                if res > 0 {
                    if let Some(bid) = bid {
                        // The kernel handed these bytes of buffer `bid` over with this
                        // CQE; the buffer is released after the callback (and goes back
                        // to the ring once no message lent out of it is alive).
                        f(Completion::Recv {
                            key,
                            data: &mut self.rings[r].bufs.region(bid, res as usize),
                        });
                        self.rings[r].bufs.release(bid, res as usize, buf_more);
                    }
                    if !more {
                        f(Completion::RecvEnded { key, why: RecvEnd::Rearm });
                    }
                } else {
                    let why = match -res {
                        0 => RecvEnd::Eof,
                        libc::ENOBUFS => {
                            // More receives at once than buffers in circulation: add some
                            // once this batch is handled (the worker re-arms this receive).
                            self.rings[r].bufs.note_short();
                            RecvEnd::NoBuffers
                        }
                        libc::ECANCELED => RecvEnd::Cancelled,
                        e => RecvEnd::Error(Errno::from_raw_os_error(e)),
                    };
                    if let Some(bid) = bid {
                        self.rings[r].bufs.release(bid, 0, buf_more);
                    }
                    f(Completion::RecvEnded { key, why });
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
                self.slot_freed(r);
                f(Completion::FdClosed { key: Key::unpack(low) });
            }
            TAG_DISCARD => self.slot_freed(r),
            TAG_WAKE => {
                self.wake_armed = false;
                f(Completion::Wake);
                self.arm_wake();
            }
            TAG_RING => {
                let k = low as usize;
                if let Some(ring) = self.rings.get_mut(k) {
                    ring.evfd_armed = false;
                    ring.ready = true;
                }
                self.arm_ring_read(k);
            }
            _ => {} // TAG_CANCEL: the cancelled op reports on its own.
        }
    }

    /// Reaps ring `r`'s completion queue and reports what is in it.
    fn reap(&mut self, r: usize, f: &mut dyn FnMut(Completion<'_>)) -> usize {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.rings[r].ring.completion());
        let n = cqes.len();
        for cqe in &cqes {
            self.handle(r, cqe, f);
        }
        cqes.clear();
        self.cqes = cqes;
        self.rings[r].bufs.collect();
        self.rings[r].bufs.grow_if_short();
        self.rings[r].bufs.commit();
        n
    }

    /// Enters ring `r` (submitting what it has queued) and waits up to `timeout` for a
    /// completion; a zero timeout only runs and collects what is ready.
    fn enter(&mut self, r: usize, timeout: Option<Duration>) -> io::Result<()> {
        let ring = &mut self.rings[r].ring;
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

    /// Busy polling: submits what the first ring has queued, then watches (without a
    /// syscall) for completion work for up to `spin` of `timeout`. Returns the timeout
    /// left for the wait: zero when work showed up, the rest of it otherwise.
    fn spin(&mut self, spin: Duration, timeout: Option<Duration>) -> Option<Duration> {
        if timeout == Some(Duration::ZERO) {
            return timeout;
        }
        let ring = &mut self.rings[0].ring;
        if let Err(e) = ring.submit() {
            if !is_transient(&e) {
                self.failed.get_or_insert(e);
                return Some(Duration::ZERO);
            }
        }
        let start = crate::clock::now();
        let budget = timeout.map_or(spin, |t| t.min(spin));
        loop {
            for _ in 0..64 {
                // The kernel sets TASKRUN in the ring's flags when it queues completion
                // work for us (deferred task work) and posts plain completions to the CQ.
                if ring.submission().taskrun() || !ring.completion().is_empty() {
                    self.busy_poll_hits += 1;
                    return Some(Duration::ZERO);
                }
                std::hint::spin_loop();
            }
            let spent = crate::clock::now().saturating_duration_since(start);
            if spent >= budget {
                return timeout.map(|t| t.saturating_sub(spent));
            }
        }
    }

    /// Submits to and reaps every further ring that has work queued or whose eventfd
    /// fired, without waiting. How many completions that reported.
    fn service_further_rings(&mut self, f: &mut dyn FnMut(Completion<'_>)) -> io::Result<usize> {
        let mut n = 0;
        for r in 1..self.rings.len() {
            let ring = &mut self.rings[r];
            ring.drain_overflow();
            let queued = !ring.ring.submission().is_empty();
            if !(ring.ready || queued) {
                continue;
            }
            ring.ready = false;
            self.enter(r, Some(Duration::ZERO))?;
            n += self.reap(r, f);
            self.rings[r].drain_overflow();
        }
        Ok(n)
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
        self.listeners.push(Listener {
            fd: Some(fd),
            armed: None,
            single: false,
            narrowing: false,
            closing: false,
            paused: false,
        });
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
            match l.armed {
                Some(r) => self.cancel_accept(i, r),
                None => l.fd = None,
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
        self.close_socket(sock, ud(TAG_DISCARD, 0));
    }

    fn start_recv(&mut self, key: Key) {
        if let Some((r, t)) = self.target(key) {
            self.arm_recv(key, r, t);
        }
    }

    fn cancel(&mut self, key: Key) {
        let Some((r, _)) = self.target(key) else { return };
        // Both of the connection's requests, by `user_data` (a hash lookup in the kernel):
        // the multishot receive, and the send in flight if there is one. A request that
        // already ended makes its cancel fail with ENOENT, which nobody needs to hear.
        let recv = opcode::AsyncCancel::new(ud(TAG_RECV, key.pack())).build();
        self.push(r, recv.user_data(ud(TAG_CANCEL, 0)));
        if let Some(&i) = self.send_of.get(&key.slot) {
            let send = opcode::AsyncCancel::new(ud(TAG_SEND, u64::from(i))).build();
            self.push(r, send.user_data(ud(TAG_CANCEL, 0)));
        }
    }

    fn send(&mut self, key: Key, chunks: Vec<Bytes>) {
        let Some((r, t)) = self.target(key) else { return };
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
        self.push(r, e.user_data(ud(TAG_SEND, i as u64)));
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
        // Further rings first: what they report makes this turn's work, so the first
        // ring then must not sleep.
        if self.service_further_rings(f)? > 0 {
            timeout = Some(Duration::ZERO);
        }
        self.rings[0].drain_overflow();
        // With entries still waiting for room, submit and reap without sleeping.
        if self.rings.iter().any(|r| !r.overflow.is_empty()) {
            timeout = Some(Duration::ZERO);
        }
        if let Some(spin) = self.busy_poll {
            timeout = self.spin(spin, timeout);
        }
        self.enter(0, timeout)?;
        self.reap(0, f);
        self.rings[0].drain_overflow();
        // Rings whose eventfd fired while the first ring waited.
        self.service_further_rings(f)?;
        Ok(())
    }

    fn rings(&self) -> usize {
        self.rings.len()
    }

    fn messages_lent(&self) -> u64 {
        self.rings.iter().map(|r| r.bufs.messages_lent()).sum()
    }

    fn busy_poll_hits(&self) -> u64 {
        self.busy_poll_hits
    }

    fn in_flight(&self) -> usize {
        // The wake-up read and the further rings' eventfd reads are always armed and are
        // not work to wait for.
        let armed_reads =
            usize::from(self.wake_armed) + self.rings.iter().filter(|r| r.evfd_armed).count();
        self.rings.iter().map(|r| r.in_flight + r.overflow.len()).sum::<usize>() - armed_reads
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // Entries that never reached the kernel reference nothing the kernel holds.
        for ring in &mut self.rings {
            ring.overflow.clear();
        }
        // Cancel the always-armed reads and collect what is still in flight, so that no
        // operation outlives the memory it uses.
        if self.wake_armed {
            let e = opcode::AsyncCancel::new(ud(TAG_WAKE, 0)).build().user_data(ud(TAG_CANCEL, 0));
            self.push(0, e);
        }
        for r in 1..self.rings.len() {
            if self.rings[r].evfd_armed {
                let e = opcode::AsyncCancel::new(ud(TAG_RING, r as u64))
                    .build()
                    .user_data(ud(TAG_CANCEL, 0));
                self.push(0, e);
            }
        }
        for _ in 0..100 {
            if self.rings.iter().all(|r| r.in_flight == 0) {
                break;
            }
            for r in 0..self.rings.len() {
                let ring = &mut self.rings[r];
                ring.drain_overflow();
                if ring.in_flight == 0 {
                    continue;
                }
                let ts = types::Timespec::from(Duration::from_millis(10));
                let args = types::SubmitArgs::new().timespec(&ts);
                let _ = ring.ring.submitter().submit_with_args(1, &args);
                let cqes: Vec<cqueue::Entry> = ring.ring.completion().collect();
                for cqe in cqes {
                    let (tag, _) = split_ud(cqe.user_data());
                    if tag == TAG_ACCEPT && cqe.result() >= 0 && !self.direct {
                        // SAFETY: a new descriptor from accept that nothing else owns.
                        drop(unsafe { OwnedFd::from_raw_fd(cqe.result()) });
                    }
                    if !cqueue::more(cqe.flags()) {
                        ring.in_flight -= 1;
                    }
                }
            }
        }
        if self.rings.iter().any(|r| r.in_flight > 0) {
            // Operations could still write into the receive buffers or read send data:
            // keep that memory rather than risk the kernel touching freed pages.
            for ring in &mut self.rings {
                ring.bufs.leak();
                std::mem::forget(std::mem::take(&mut ring.evfd_buf));
            }
            std::mem::forget(std::mem::take(&mut self.wake_buf));
            for op in self.sends.drain(..).flatten() {
                std::mem::forget(op);
            }
        }
    }
}
