//! The epoll backend, for where io_uring is refused (seccomp in containers, old
//! kernels) or `RINGWIRE_BACKEND=epoll` is set. It makes readiness-driven syscalls and
//! reports them as the same completions as io_uring, so the engine above is unchanged.
//!
//! Reads go into one per-worker scratch buffer and are handed over at once, so here too
//! an idle connection holds no receive buffer. Safe code over `rustix`.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, Event, EventData, EventFlags};
use rustix::io::Errno;
use rustix::net::{self, SendAncillaryBuffer, SendFlags, SocketFlags};

use super::accept_pause_timeout;
use super::{accept_exhausted, Completion, Driver, RecvEnd, Socket};
use crate::slab::Key;

const WAKE: u64 = u64::MAX;
const LISTENER_BASE: u64 = u64::MAX - 1024;
/// Most reads per readiness event per connection, for fairness.
const READS_PER_EVENT: usize = 4;
/// Most accepts per readiness event per listener.
const ACCEPTS_PER_EVENT: usize = 64;
/// Most chunks per vectored send.
const MAX_IOV: usize = 64;

struct Conn {
    key: Key,
    fd: OwnedFd,
    recv: bool,
    /// A send waiting for the socket to become writable.
    send: Option<Vec<Bytes>>,
    /// An outgoing connection's connect is in progress (writability reports its end).
    connecting: bool,
}

impl Conn {
    fn interest(&self) -> EventFlags {
        let mut f = EventFlags::RDHUP;
        if self.recv {
            f |= EventFlags::IN;
        }
        if self.send.is_some() || self.connecting {
            f |= EventFlags::OUT;
        }
        f
    }
}

/// Completions produced outside `epoll_wait` (a send that finished at once, a close),
/// reported at the next `wait`.
enum Pending {
    RecvEnded(Key, RecvEnd),
    Connected(Key, Result<(), Errno>),
    Sent(Key, Result<usize, Errno>, Vec<Bytes>),
    FdClosed(Key),
}

impl Pending {
    fn report(self, f: &mut dyn FnMut(Completion<'_>)) {
        match self {
            Pending::RecvEnded(key, why) => f(Completion::RecvEnded { key, why }),
            Pending::Connected(key, result) => f(Completion::Connected { key, result }),
            Pending::Sent(key, result, chunks) => f(Completion::Sent { key, result, chunks }),
            Pending::FdClosed(key) => f(Completion::FdClosed { key }),
        }
    }
}

pub(crate) struct EpollDriver {
    ep: OwnedFd,
    listeners: Vec<Option<OwnedFd>>,
    /// Connections by slab slot.
    conns: Vec<Option<Conn>>,
    pending: Vec<Pending>,
    /// `pending`'s memory while its completions are reported (the two swap, so that
    /// neither is allocated again each turn).
    reporting: Vec<Pending>,
    /// The last wait polled the kernel: the next one with completions pending may report
    /// them alone (see `wait`).
    skip_next: bool,
    scratch: Vec<u8>,
    events: Vec<Event>,
    wake_fd: Arc<OwnedFd>,
    waiting_sends: usize,
    /// Connects in progress.
    waiting_connects: usize,
    /// When accepting paused for lack of resources (listeners out of the epoll set).
    accept_paused_at: Option<std::time::Instant>,
}

/// Readiness events taken from one `epoll_wait`.
const EVENTS: usize = 1024;
/// Chunks of a send whose iovecs go on the stack; more take a vector.
const STACK_IOV: usize = 8;

fn try_send(fd: &OwnedFd, chunks: &[Bytes]) -> Result<usize, Errno> {
    // Most sends are a chunk or two: their iovecs on the stack, not an allocation each.
    if chunks.len() <= STACK_IOV {
        let mut slices = [IoSlice::new(&[]); STACK_IOV];
        for (s, c) in slices.iter_mut().zip(chunks) {
            *s = IoSlice::new(c);
        }
        return send_slices(fd, &slices[..chunks.len()]);
    }
    let slices: Vec<IoSlice<'_>> = chunks.iter().take(MAX_IOV).map(|c| IoSlice::new(c)).collect();
    send_slices(fd, &slices)
}

fn send_slices(fd: &OwnedFd, slices: &[IoSlice<'_>]) -> Result<usize, Errno> {
    loop {
        let mut anc = SendAncillaryBuffer::default();
        match net::sendmsg(fd, slices, &mut anc, SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

impl EpollDriver {
    /// Reports the completions already known, keeping the vectors' memory (one
    /// allocation per turn otherwise, at one message in flight one per message).
    fn report_pending(&mut self, f: &mut dyn FnMut(Completion<'_>)) {
        std::mem::swap(&mut self.pending, &mut self.reporting);
        for p in self.reporting.drain(..) {
            p.report(f);
        }
    }

    pub(crate) fn new(
        scratch_size: usize,
        max_conns: usize,
        wake_fd: Arc<OwnedFd>,
    ) -> io::Result<Self> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(&ep, &*wake_fd, EventData::new_u64(WAKE), EventFlags::IN)?;
        Ok(Self {
            ep,
            listeners: Vec::new(),
            conns: Vec::with_capacity(max_conns),
            pending: Vec::new(),
            reporting: Vec::new(),
            skip_next: false,
            scratch: vec![0; scratch_size.max(4096)],
            events: Vec::with_capacity(EVENTS),
            wake_fd,
            waiting_sends: 0,
            waiting_connects: 0,
            accept_paused_at: None,
        })
    }

    fn conn_mut(&mut self, key: Key) -> Option<&mut Conn> {
        self.conns.get_mut(key.slot as usize)?.as_mut().filter(|c| c.key == key)
    }

    fn update(ep: &OwnedFd, c: &Conn) {
        let _ = epoll::modify(ep, &c.fd, EventData::new_u64(c.key.pack()), c.interest());
    }

    fn on_conn_event(&mut self, key: Key, flags: EventFlags, f: &mut dyn FnMut(Completion<'_>)) {
        let ep = &self.ep;
        let Some(Some(c)) = self.conns.get_mut(key.slot as usize) else { return };
        if c.key != key {
            return;
        }
        if c.connecting && flags.intersects(EventFlags::OUT | EventFlags::ERR | EventFlags::HUP) {
            // A non-blocking connect has ended: SO_ERROR says how (connect(2), EINPROGRESS).
            c.connecting = false;
            self.waiting_connects -= 1;
            let result = net::sockopt::socket_error(&c.fd).and_then(|r| r);
            Self::update(ep, c);
            f(Completion::Connected { key, result });
            return;
        }
        if flags.intersects(EventFlags::OUT | EventFlags::ERR | EventFlags::HUP) {
            if let Some(chunks) = c.send.take() {
                match try_send(&c.fd, &chunks) {
                    Err(Errno::AGAIN) => c.send = Some(chunks),
                    r => {
                        self.waiting_sends -= 1;
                        Self::update(ep, c);
                        f(Completion::Sent { key, result: r, chunks });
                    }
                }
            }
        }
        let readable = EventFlags::IN | EventFlags::ERR | EventFlags::HUP | EventFlags::RDHUP;
        for _ in 0..READS_PER_EVENT {
            let Some(Some(c)) = self.conns.get_mut(key.slot as usize) else { return };
            if c.key != key || !c.recv || !flags.intersects(readable) {
                return;
            }
            let end = match rustix::io::read(&c.fd, &mut self.scratch[..]) {
                Ok(0) => Some(RecvEnd::Eof),
                Ok(n) => {
                    f(Completion::Recv { key, data: &mut &mut self.scratch[..n] });
                    if n < self.scratch.len() {
                        return;
                    }
                    None
                }
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => None,
                Err(e) => Some(RecvEnd::Error(e)),
            };
            if let Some(why) = end {
                if let Some(Some(c)) = self.conns.get_mut(key.slot as usize) {
                    c.recv = false;
                    Self::update(&self.ep, c);
                }
                f(Completion::RecvEnded { key, why });
                return;
            }
        }
    }

    fn accept_from(&mut self, i: usize, f: &mut dyn FnMut(Completion<'_>)) {
        let Some(Some(l)) = self.listeners.get(i) else { return };
        for _ in 0..ACCEPTS_PER_EVENT {
            match net::accept_with(l, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok(fd) => f(Completion::Accepted(Socket::Fd(fd))),
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR | Errno::CONNABORTED) => continue,
                Err(e) => {
                    f(Completion::AcceptFailed);
                    if accept_exhausted(e) {
                        self.pause_accepts();
                    }
                    break;
                }
            }
        }
    }

    /// Takes the listeners out of the epoll set: level-triggered, a listener with a
    /// connection we cannot accept would report it again at once, forever.
    fn pause_accepts(&mut self) {
        if self.accept_paused_at.is_some() {
            return;
        }
        for l in self.listeners.iter().flatten() {
            let _ = epoll::delete(&self.ep, l);
        }
        self.accept_paused_at = Some(crate::clock::now());
    }

    fn resume_accepts(&mut self) {
        if self.accept_paused_at.take().is_none() {
            return;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if let Some(l) = l {
                let data = EventData::new_u64(LISTENER_BASE + i as u64);
                let _ = epoll::add(&self.ep, l, data, EventFlags::IN);
            }
        }
    }
}

impl Driver for EpollDriver {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn features(&self) -> Vec<&'static str> {
        vec!["epoll (level-triggered)", "per-worker read scratch buffer", "sendmsg"]
    }

    fn add_listener(&mut self, fd: OwnedFd) -> io::Result<()> {
        let i = self.listeners.len() as u64;
        epoll::add(&self.ep, &fd, EventData::new_u64(LISTENER_BASE + i), EventFlags::IN)?;
        self.listeners.push(Some(fd));
        Ok(())
    }

    fn close_listeners(&mut self) {
        self.accept_paused_at = None;
        for l in self.listeners.iter_mut() {
            if let Some(fd) = l.take() {
                let _ = epoll::delete(&self.ep, &fd);
            }
        }
    }

    fn discard(&mut self, sock: Socket) {
        drop(sock); // epoll only ever hands out plain descriptors: dropping closes it
    }

    fn add_conn(&mut self, key: Key, sock: Socket) {
        let Socket::Fd(fd) = sock else {
            // This backend never produces direct descriptors.
            return;
        };
        let slot = key.slot as usize;
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        let c = Conn { key, fd, recv: false, send: None, connecting: false };
        if let Err(e) = epoll::add(&self.ep, &c.fd, EventData::new_u64(key.pack()), c.interest()) {
            self.pending.push(Pending::RecvEnded(key, RecvEnd::Error(e)));
        }
        self.conns[slot] = Some(c);
    }

    fn start_recv(&mut self, key: Key) {
        let ep = &self.ep;
        if let Some(Some(c)) = self.conns.get_mut(key.slot as usize) {
            if c.key == key {
                c.recv = true;
                Self::update(ep, c);
            }
        }
    }

    fn cancel(&mut self, key: Key) {
        let ep = &self.ep;
        if let Some(Some(c)) = self.conns.get_mut(key.slot as usize) {
            if c.key != key {
                return;
            }
            if c.recv {
                c.recv = false;
                self.pending.push(Pending::RecvEnded(key, RecvEnd::Cancelled));
            }
            if let Some(chunks) = c.send.take() {
                self.waiting_sends -= 1;
                self.pending.push(Pending::Sent(key, Err(Errno::CANCELED), chunks));
            }
            if std::mem::take(&mut c.connecting) {
                self.waiting_connects -= 1;
                self.pending.push(Pending::Connected(key, Err(Errno::CANCELED)));
            }
            Self::update(ep, c);
        }
    }

    fn connect(&mut self, key: Key, addr: std::net::SocketAddr) {
        let ep = &self.ep;
        let Some(c) = self.conns.get_mut(key.slot as usize).and_then(Option::as_mut) else {
            return;
        };
        match net::connect(&c.fd, &addr) {
            Ok(()) => self.pending.push(Pending::Connected(key, Ok(()))),
            Err(Errno::INPROGRESS | Errno::INTR) => {
                // EINTR: the connect goes on asynchronously, as for EINPROGRESS.
                c.connecting = true;
                self.waiting_connects += 1;
                Self::update(ep, c);
            }
            Err(e) => self.pending.push(Pending::Connected(key, Err(e))),
        }
    }

    fn send(&mut self, key: Key, chunks: Vec<Bytes>) {
        let ep = &self.ep;
        let Some(Some(c)) = self.conns.get_mut(key.slot as usize) else {
            self.pending.push(Pending::Sent(key, Err(Errno::BADF), chunks));
            return;
        };
        match try_send(&c.fd, &chunks) {
            Err(Errno::AGAIN) => {
                c.send = Some(chunks);
                self.waiting_sends += 1;
                Self::update(ep, c);
            }
            r => self.pending.push(Pending::Sent(key, r, chunks)),
        }
    }

    fn close(&mut self, key: Key) {
        if self.conn_mut(key).is_some() {
            if let Some(c) = self.conns[key.slot as usize].take() {
                let _ = epoll::delete(&self.ep, &c.fd);
                if c.send.is_some() {
                    self.waiting_sends -= 1;
                }
                if c.connecting {
                    self.waiting_connects -= 1;
                }
            }
        }
        self.pending.push(Pending::FdClosed(key));
        // A descriptor was freed: a paused listener may accept again.
        self.resume_accepts();
    }

    fn wait(
        &mut self,
        timeout: Option<Duration>,
        f: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        // Completions already known (a send that finished inside `send`, a cancel) are
        // reported without asking the kernel for readiness first, every other wait: at
        // one message in flight that saves an `epoll_wait(0)` per message (the send of
        // the reply completes at once; the wait after it would find nothing), and
        // alternating keeps a loop that always has some from never polling sockets.
        if !self.pending.is_empty() && !std::mem::take(&mut self.skip_next) {
            self.skip_next = true;
            self.report_pending(f);
            return Ok(());
        }
        self.skip_next = false;
        let timeout = if self.pending.is_empty() { timeout } else { Some(Duration::ZERO) };
        let timeout = match accept_pause_timeout(self.accept_paused_at, timeout) {
            Ok(t) => t,
            Err(()) => {
                self.resume_accepts();
                timeout
            }
        };
        let ts = timeout.map(|t| rustix::time::Timespec {
            tv_sec: t.as_secs() as _,
            tv_nsec: t.subsec_nanos() as _,
        });
        self.events.clear();
        if self.events.capacity() == 0 {
            // Lost with the vector if a completion's handling unwound (see below).
            self.events.reserve(EVENTS);
        }
        match epoll::wait(&self.ep, spare_capacity(&mut self.events), ts.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        self.report_pending(f);
        // Taken out while the events are handled (which needs the driver), and put back
        // with its memory for the next wait.
        let events = std::mem::take(&mut self.events);
        for e in &events {
            let (k, flags) = (e.data.u64(), e.flags);
            if k == WAKE {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(self.wake_fd.as_fd(), &mut b);
                f(Completion::Wake);
            } else if k >= LISTENER_BASE {
                self.accept_from((k - LISTENER_BASE) as usize, f);
            } else {
                self.on_conn_event(Key::unpack(k), flags, f);
            }
        }
        self.events = events;
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.pending.len() + self.waiting_sends + self.waiting_connects
    }
}
