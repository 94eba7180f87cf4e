//! The driver: the first ring and the further ones, queueing entries (with an overflow
//! when a submission queue is full), waiting (with optional busy polling), dispatching
//! each completion to its operation's file by the tag in its `user_data`, and a teardown
//! that lets no operation outlive the memory it uses.

mod accept;
mod cancel;
mod close;
mod connect;
mod fsync;
mod install;
mod recv;
mod spread;
mod wake;

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_uring::{cqueue, types};

use super::accept::{drop_unclaimed, Listener};
use super::cancel::cancel;
use super::connect::Connect;
use super::install::Install;
use super::recv::Recv;
use super::ring::Ring;
use super::send::SendTable;
use super::spread::MAX_RINGS;
use super::wake::EventfdRead;
use super::{is_transient, split_ud, ud, Sqe};
use super::{
    TAG_ACCEPT, TAG_CLOSE, TAG_CONNECT, TAG_DISCARD, TAG_FSYNC, TAG_INSTALL, TAG_RECV, TAG_RING,
    TAG_SEND, TAG_WAKE,
};
use crate::slab::Key;
use crate::sys::{accept_pause_timeout, Completion, Driver, Socket};

pub(crate) struct UringDriver {
    // Field order matters for drop: the rings go first, so the kernel stops using the
    // send ops, the listeners and the wake-up read's buffer before they are freed.
    pub(super) rings: Vec<Ring>,
    /// Settings for rings opened later.
    pub(super) entries: u32,
    pub(super) recv_buffers: u16,
    pub(super) recv_buffer_size: u32,
    pub(super) files_per_ring: u32,
    pub(super) max_rings: usize,
    pub(super) listeners: Vec<Listener>,
    /// Connection sockets by slab slot.
    pub(super) fds: Vec<Option<Socket>>,
    /// Accept into the rings' fixed-file tables (direct descriptors).
    pub(super) direct: bool,
    /// The sends in flight and the pool of ops for reuse.
    pub(super) sends: SendTable,
    /// Outgoing connections' connects in flight, by slab slot (few at a time: only
    /// while connections are being dialled).
    pub(super) connects: HashMap<u32, Box<Connect>>,
    /// Outgoing sockets being installed as direct descriptors, by slab slot.
    pub(super) installs: HashMap<u32, Box<Install>>,
    /// A submit error met outside `wait`, reported by the next `wait`.
    pub(super) failed: Option<io::Error>,
    /// The read of the wake-up eventfd, always armed on the first ring.
    pub(super) wake: EventfdRead<Arc<OwnedFd>>,
    /// When accepting paused for lack of resources.
    pub(super) accept_paused_at: Option<std::time::Instant>,
    pub(super) busy_poll: Option<Duration>,
    /// Waits in which busy polling found work before the sleep.
    pub(super) busy_poll_hits: u64,
    /// Entries queued and completions reaped so far (the metrics).
    submitted: u64,
    completed: u64,
    pub(super) cqes: Vec<cqueue::Entry>,
    pub(super) features: Vec<&'static str>,
    /// The outbox's syncs in flight, by number, with their files (kept open until done).
    pub(super) syncs: HashMap<u64, fsync::SyncInFlight>,
    pub(super) next_sync: u64,
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
            sends: SendTable::default(),
            connects: HashMap::new(),
            installs: HashMap::new(),
            failed: None,
            wake: EventfdRead::new(wake_fd),
            accept_paused_at: None,
            busy_poll: cfg.busy_poll,
            busy_poll_hits: 0,
            submitted: 0,
            completed: 0,
            cqes: Vec::with_capacity(1024),
            features,
            syncs: HashMap::new(),
            next_sync: 0,
        };
        d.arm_wake();
        Ok(d)
    }

    /// Queues an entry on ring `r`. When the submission queue is full it is handed to
    /// the kernel first; if the kernel takes no more right now (EBUSY: its completion
    /// queue must be reaped first), the entry waits in the ring's `overflow` for the next
    /// [`Driver::wait`], which reaps and then submits it. Never blocks, never panics; a
    /// hard submit error is reported by the next `wait`.
    pub(super) fn push(&mut self, r: usize, e: Sqe) {
        self.submitted += 1;
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

    /// Holds `sock` as `key`'s socket.
    pub(super) fn set_socket(&mut self, key: Key, sock: Socket) {
        let slot = key.slot as usize;
        if self.fds.len() <= slot {
            self.fds.resize_with(slot + 1, || None);
        }
        self.fds[slot] = Some(sock);
    }

    /// Hands a completion of ring `r` to the operation its tag names.
    fn handle(&mut self, r: usize, cqe: &cqueue::Entry, f: &mut dyn FnMut(Completion<'_>)) {
        let (tag, low) = split_ud(cqe.user_data());
        let res = cqe.result();
        let more = cqueue::more(cqe.flags());
        if !more {
            self.rings[r].in_flight -= 1;
        }
        match tag {
            TAG_ACCEPT => self.on_accept(r, low, res, more, f),
            TAG_RECV => Recv::complete(&mut self.rings[r], Key::unpack(low), cqe, more, f),
            TAG_SEND => self.sends.complete(low as usize, res, f),
            TAG_CLOSE => self.on_close(r, low, f),
            TAG_DISCARD => self.slot_freed(r),
            TAG_CONNECT => self.on_connect(low, res, f),
            TAG_INSTALL => self.on_install(low, res, f),
            TAG_WAKE => self.on_wake(f),
            TAG_FSYNC => self.on_fsync(low, res, f),
            TAG_RING => self.on_ring_ready(low as usize),
            _ => {} // TAG_CANCEL: the cancelled op reports on its own.
        }
    }

    /// Reaps ring `r`'s completion queue and reports what is in it.
    pub(super) fn reap(&mut self, r: usize, f: &mut dyn FnMut(Completion<'_>)) -> usize {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.rings[r].ring.completion());
        let n = cqes.len();
        self.completed += n as u64;
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
}

impl Driver for UringDriver {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn features(&self) -> Vec<&'static str> {
        self.features.clone()
    }

    fn recv_pool(&self) -> Option<(u32, u32)> {
        self.rings.first().map(|r| r.bufs.geometry())
    }

    fn add_listener(&mut self, fd: OwnedFd) -> io::Result<()> {
        self.listeners.push(Listener::new(fd));
        self.arm_accept(self.listeners.len() - 1);
        Ok(())
    }

    fn close_listeners(&mut self) {
        self.close_all_listeners();
    }

    fn add_conn(&mut self, key: Key, sock: Socket) {
        match sock {
            // Only outgoing sockets arrive plain while direct descriptors are in use.
            Socket::Fd(fd) if self.direct => self.add_outgoing(key, fd),
            sock => self.set_socket(key, sock),
        }
    }

    fn discard(&mut self, sock: Socket) {
        self.close_socket(sock, ud(TAG_DISCARD, 0));
    }

    fn connect(&mut self, key: Key, addr: std::net::SocketAddr) {
        self.connect_outgoing(key, addr);
    }

    fn start_recv(&mut self, key: Key) {
        if let Some((r, t)) = self.target(key) {
            self.arm_recv(key, r, t);
        }
    }

    fn cancel(&mut self, key: Key) {
        if !self.cancel_install(key) {
            self.cancel_conn(key);
        }
    }

    fn sync_data(
        &mut self,
        upto: u64,
        files: Vec<std::fs::File>,
    ) -> Result<(), Vec<std::fs::File>> {
        if files.is_empty() {
            return Err(files); // no entry would complete it: the caller's path reports it
        }
        self.start_sync(upto, files);
        Ok(())
    }

    fn send(&mut self, key: Key, chunks: Vec<Bytes>) {
        let Some((r, t)) = self.target(key) else { return };
        let e = self.sends.start(key, t, chunks);
        self.push(r, e);
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
        let mut timeout = match accept_pause_timeout(self.accept_paused_at, timeout) {
            Ok(t) => t,
            Err(()) => {
                self.resume_accepts();
                timeout
            }
        };
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
        self.rings[0].enter(timeout)?;
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

    fn op_counts(&self) -> (u64, u64) {
        (self.submitted, self.completed)
    }

    fn recv_buffers(&self) -> (u64, u64, u64) {
        self.rings.iter().fold((0, 0, 0), |(all, free, lent), r| {
            (
                all + u64::from(r.bufs.geometry().0),
                free + u64::from(r.bufs.provided()),
                lent + u64::from(r.bufs.lent()),
            )
        })
    }

    fn in_flight(&self) -> usize {
        // The wake-up read and the further rings' eventfd reads are always armed and are
        // not work to wait for.
        let armed_reads = usize::from(self.wake.armed())
            + self.rings.iter().filter(|r| r.evfd.as_ref().is_some_and(EventfdRead::armed)).count();
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
        if self.wake.armed() {
            self.push(0, cancel(ud(TAG_WAKE, 0)));
        }
        for r in 1..self.rings.len() {
            if self.rings[r].evfd.as_ref().is_some_and(EventfdRead::armed) {
                self.push(0, cancel(ud(TAG_RING, r as u64)));
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
                    drop_unclaimed(&cqe, self.direct);
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
                if let Some(evfd) = ring.evfd.as_mut() {
                    evfd.leak_buf();
                }
            }
            self.wake.leak_buf();
            self.sends.leak();
            for (_, op) in self.connects.drain() {
                std::mem::forget(op);
            }
            for (_, op) in self.installs.drain() {
                std::mem::forget(op);
            }
        }
    }
}
