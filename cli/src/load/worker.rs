//! The client engine: one epoll loop per generator thread over its share of the
//! connections. Each turn reads every ready socket, feeds the bytes to the connections
//! and the scenario's [`Script`], then writes what they queued: reads are batched before
//! writes, buffers are reused, and nothing is allocated per message except what the
//! protocol core hands out for a received message.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwire::frame::handshake::HandshakeLimits;
use ringwire::frame::{CloseCode, Config, Connection, Event, Message};
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventFlags};
use rustix::io::Errno;

use super::args::{source_ip, ClientPlan};
use super::client::{Client, Flush, State};
use super::clock::now_ns;
use super::report::{ErrorKind, Errors};

/// The run's phases, set by the orchestrating thread, seen by workers each loop turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Opening connections.
    Connect = 0,
    /// Traffic, not measured.
    Warmup = 1,
    /// Traffic, measured.
    Measure = 2,
    /// No new traffic; answers still in flight are collected.
    Drain = 3,
    /// Close handshakes.
    Close = 4,
    /// Leave now.
    Stop = 5,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connect,
            1 => Self::Warmup,
            2 => Self::Measure,
            3 => Self::Drain,
            4 => Self::Close,
            _ => Self::Stop,
        }
    }
}

/// Live counters of one worker: written by it alone, read by the progress display.
#[derive(Debug, Default)]
pub struct Gauge {
    /// Upgrades completed.
    pub opened: AtomicU64,
    /// Connections ready for the scenario (open, or subscribed).
    pub ready: AtomicU64,
    /// Connections that failed to open or ended early.
    pub failed: AtomicU64,
    /// Connections finished.
    pub done: AtomicU64,
    /// Messages received.
    pub msgs: AtomicU64,
    /// Messages sent by the script (publishes).
    pub sent: AtomicU64,
    /// Errors.
    pub errors: AtomicU64,
}

impl Gauge {
    /// Adds `n` (single writer: a load and a store, no locked instruction).
    #[inline]
    pub fn bump(c: &AtomicU64, n: u64) {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// What the orchestrator shares with the workers.
#[derive(Debug, Default)]
pub struct Control {
    phase: AtomicU8,
    pub gauges: Vec<Gauge>,
}

impl Control {
    pub fn new(threads: usize) -> Self {
        Self { phase: AtomicU8::new(0), gauges: (0..threads).map(|_| Gauge::default()).collect() }
    }
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Relaxed))
    }
    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Relaxed);
    }
    /// Sum of one counter over all workers.
    pub fn total(&self, f: impl Fn(&Gauge) -> &AtomicU64) -> u64 {
        self.gauges.iter().map(|g| f(g).load(Relaxed)).sum()
    }
}

/// What a script callback sees.
pub struct Cx<'a> {
    /// Monotonic nanoseconds, read after the socket read that brought the input.
    pub now_ns: u64,
    pub phase: Phase,
    pub gauge: &'a Gauge,
    pub errors: &'a mut Errors,
}

/// The connections of a worker, for scripts that act on several at once.
pub struct Clients<'a> {
    list: &'a mut [Client],
    dirty: &'a mut Vec<usize>,
}

impl Clients<'_> {
    pub fn len(&self) -> usize {
        self.list.len()
    }
    /// The open connection `i`; it will be flushed this turn.
    pub fn open(&mut self, i: usize) -> Option<&mut Connection> {
        let c = self.list.get_mut(i)?;
        if c.state != State::Open {
            return None;
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(i);
        }
        c.ws.as_mut().filter(|ws| !ws.is_closed() && !ws.is_closing())
    }
}

/// A scenario's behaviour on one worker. Callbacks run on the worker's thread.
pub trait Script: Send + 'static {
    /// Connection `local` (global index `global`) completed its upgrade.
    fn on_open(&mut self, cx: &mut Cx<'_>, local: usize, global: usize, ws: &mut Connection);
    /// A message arrived on connection `local`.
    fn on_message(&mut self, cx: &mut Cx<'_>, local: usize, ws: &mut Connection, msg: &Message);
    /// The phase changed.
    fn on_phase(&mut self, cx: &mut Cx<'_>, clients: &mut Clients<'_>);
    /// Called every loop turn; returns the next time (ns) it wants to run, if any.
    fn on_tick(&mut self, cx: &mut Cx<'_>, clients: &mut Clients<'_>) -> Option<u64> {
        let _ = (cx, clients);
        None
    }
}

/// Longest sleep in `epoll_wait`, so phase changes are seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(10);
/// How long the close handshakes may take before sockets are simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Bytes read per `read` call.
const SCRATCH: usize = 64 * 1024;

/// What a worker hands back.
pub struct WorkerOutcome<S> {
    pub script: S,
    pub errors: Errors,
}

/// One generator thread's engine.
pub struct Worker<S: Script> {
    index: usize,
    plan: Arc<ClientPlan>,
    control: Arc<Control>,
    script: S,
    ep: OwnedFd,
    clients: Vec<Client>,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    errors: Errors,
    config: Arc<Config>,
    limits: HandshakeLimits,
    seed: u64,
    next_pending: usize,
    in_progress: usize,
    next_connect_ns: u64,
    connect_interval_ns: u64,
    phase: Phase,
    done: usize,
}

impl<S: Script> Worker<S> {
    /// Worker `index` of `plan.threads`, owning the connections whose global index is
    /// `index` modulo the thread count (`total` over all threads).
    pub fn new(
        index: usize,
        total: usize,
        plan: Arc<ClientPlan>,
        control: Arc<Control>,
        script: S,
        seed: u64,
    ) -> Result<Self, String> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        let clients: Vec<Client> = (index..total).step_by(plan.threads).map(Client::new).collect();
        let connect_interval_ns =
            plan.connect_rate.map_or(0, |r| (plan.threads as f64 * 1e9 / r) as u64);
        Ok(Self {
            index,
            plan,
            control,
            script,
            ep,
            clients,
            scratch: vec![0; SCRATCH],
            dirty: Vec::new(),
            errors: Errors::default(),
            // The generator accepts what any server sends (echoes up to 64 MiB).
            config: Arc::new(Config::default().max_frame_size(64 << 20)),
            limits: HandshakeLimits::default(),
            seed,
            next_pending: 0,
            in_progress: 0,
            next_connect_ns: 0,
            connect_interval_ns,
            phase: Phase::Connect,
            done: 0,
        })
    }

    /// Runs until the orchestrator says stop, or every connection closed after `Close`.
    pub fn run(mut self) -> Result<WorkerOutcome<S>, String> {
        let mut events = Vec::with_capacity(1024);
        let mut close_deadline = None;
        loop {
            let now = Instant::now();
            let phase = self.control.phase();
            if phase != self.phase {
                self.phase = phase;
                if phase == Phase::Close {
                    self.start_close(now);
                    close_deadline = Some(now + CLOSE_GRACE);
                }
                self.with_clients(|s, cx, cl| s.on_phase(cx, cl));
            }
            if phase == Phase::Stop
                || (phase == Phase::Close
                    && (self.done == self.clients.len()
                        || close_deadline.is_some_and(|d| now >= d)))
            {
                break;
            }
            if phase < Phase::Close {
                self.start_connects();
            }
            let wake = self.with_clients(|s, cx, cl| s.on_tick(cx, cl));
            self.flush_dirty();

            // Sleep until I/O, the script's next deadline, the next connect slot or the
            // phase poll, whichever is first.
            let t = now_ns();
            let mut wait = MAX_WAIT.as_nanos() as u64;
            if let Some(w) = wake {
                wait = wait.min(w.saturating_sub(t));
            }
            if phase < Phase::Close
                && self.next_pending < self.clients.len()
                && self.in_progress < self.plan.max_pending
            {
                wait = wait.min(self.next_connect_ns.saturating_sub(t));
            }
            let ts = rustix::time::Timespec {
                tv_sec: (wait / 1_000_000_000) as _,
                tv_nsec: (wait % 1_000_000_000) as _,
            };
            events.clear();
            match epoll::wait(&self.ep, spare_capacity(&mut events), Some(&ts)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(format!("epoll_wait: {e}")),
            }
            let now = Instant::now();
            for ev in &events {
                self.on_event(ev.data.u64() as usize, ev.flags, now);
            }
            self.flush_dirty();
        }
        for c in &mut self.clients {
            c.finish();
        }
        Ok(WorkerOutcome { script: self.script, errors: self.errors })
    }

    /// Runs a script callback that may touch several connections.
    fn with_clients<R>(&mut self, f: impl FnOnce(&mut S, &mut Cx<'_>, &mut Clients<'_>) -> R) -> R {
        let gauge = &self.control.gauges[self.index];
        let mut cx = Cx { now_ns: now_ns(), phase: self.phase, gauge, errors: &mut self.errors };
        let mut cl = Clients { list: &mut self.clients, dirty: &mut self.dirty };
        f(&mut self.script, &mut cx, &mut cl)
    }

    /// Opens as many connections as the pending-handshake cap and the rate allow.
    fn start_connects(&mut self) {
        let n = self.clients.len();
        while self.next_pending < n && self.in_progress < self.plan.max_pending {
            if self.connect_interval_ns > 0 {
                let t = now_ns();
                if t < self.next_connect_ns {
                    break;
                }
                // No bursts after a stall: at most one slot of credit.
                self.next_connect_ns =
                    self.next_connect_ns.max(t - t.min(self.connect_interval_ns))
                        + self.connect_interval_ns;
            }
            let i = self.next_pending;
            self.next_pending += 1;
            let c = &mut self.clients[i];
            let g = c.global;
            let target = &self.plan.targets[g % self.plan.targets.len()];
            let src = (self.plan.source_ips > 1).then(|| source_ip(g, self.plan.source_ips));
            let seed = self.seed ^ (g as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
            match c.connect(&self.ep, target, src, seed, i as u64) {
                Ok(()) => self.in_progress += 1,
                Err(e) => {
                    c.finish();
                    self.done += 1;
                    let gauge = &self.control.gauges[self.index];
                    Gauge::bump(&gauge.failed, 1);
                    Gauge::bump(&gauge.done, 1);
                    Gauge::bump(&gauge.errors, 1);
                    self.errors.note(ErrorKind::Connect, || e);
                }
            }
        }
    }

    fn mark_dirty(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(i);
        }
    }

    /// A connection failed to open or broke: count it and drop it.
    fn fail(&mut self, i: usize, kind: ErrorKind, detail: String) {
        let c = &mut self.clients[i];
        if c.state == State::Done {
            return;
        }
        let opening = matches!(c.state, State::Connecting | State::Handshaking);
        c.finish();
        self.done += 1;
        if opening {
            self.in_progress -= 1;
        }
        let gauge = &self.control.gauges[self.index];
        Gauge::bump(&gauge.done, 1);
        if opening || self.phase == Phase::Connect {
            Gauge::bump(&gauge.failed, 1);
        }
        if self.phase < Phase::Close || opening {
            Gauge::bump(&gauge.errors, 1);
            self.errors.note(kind, || detail);
        }
    }

    fn on_event(&mut self, i: usize, flags: EventFlags, now: Instant) {
        let Some(c) = self.clients.get_mut(i) else { return };
        if c.state == State::Connecting {
            if let Err(e) = c.finish_connect() {
                self.fail(i, ErrorKind::Connect, e);
                return;
            }
            self.mark_dirty(i); // the upgrade request goes out
        }
        if flags.contains(EventFlags::OUT) && self.clients[i].has_output() {
            self.mark_dirty(i);
        }
        let readable = EventFlags::IN | EventFlags::ERR | EventFlags::HUP | EventFlags::RDHUP;
        if flags.intersects(readable) {
            self.read_all(i, now);
        }
    }

    /// Reads until the socket is drained (a short read means it is: edge-triggered epoll
    /// reports the next arrival as a new edge).
    fn read_all(&mut self, i: usize, now: Instant) {
        loop {
            let c = &mut self.clients[i];
            if !matches!(c.state, State::Handshaking | State::Open) {
                return;
            }
            match c.read(&mut self.scratch) {
                Ok(0) => {
                    self.on_eof(i, now);
                    return;
                }
                Ok(n) => {
                    self.on_bytes(i, n, now);
                    if n < self.scratch.len() {
                        return;
                    }
                }
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => {}
                Err(e) => {
                    let kind = if self.clients[i].state == State::Open {
                        ErrorKind::Io
                    } else {
                        ErrorKind::Handshake
                    };
                    self.fail(i, kind, format!("read: {e}"));
                    return;
                }
            }
        }
    }

    fn on_eof(&mut self, i: usize, now: Instant) {
        let c = &mut self.clients[i];
        match (c.state, c.ws.as_mut()) {
            (State::Open, Some(ws)) => {
                ws.handle_eof(now);
                self.drain_events(i);
                let c = &mut self.clients[i];
                if c.state != State::Done {
                    c.finish();
                    self.done += 1;
                    Gauge::bump(&self.control.gauges[self.index].done, 1);
                }
            }
            _ => self.fail(i, ErrorKind::Handshake, "server closed during the upgrade".into()),
        }
    }

    fn on_bytes(&mut self, i: usize, n: usize, now: Instant) {
        let c = &mut self.clients[i];
        if c.state == State::Handshaking {
            let seed = self.seed ^ (c.global as u64) ^ 0xa5a5;
            match c.handle_handshake(&self.scratch[..n], &self.limits, &self.config, seed, now) {
                Ok(None) => return,
                Ok(Some(rest)) => {
                    self.in_progress -= 1;
                    let gauge = &self.control.gauges[self.index];
                    Gauge::bump(&gauge.opened, 1);
                    let mut cx =
                        Cx { now_ns: now_ns(), phase: self.phase, gauge, errors: &mut self.errors };
                    if let Some(ws) = c.ws.as_mut() {
                        self.script.on_open(&mut cx, i, c.global, ws);
                        if !rest.is_empty() {
                            ws.handle_bytes(now, &rest);
                        }
                    }
                }
                Err(e) => {
                    self.fail(i, ErrorKind::Handshake, e);
                    return;
                }
            }
        } else if let Some(ws) = c.ws.as_mut() {
            ws.handle_bytes(now, &self.scratch[..n]);
        }
        self.drain_events(i);
        self.mark_dirty(i);
    }

    /// Hands the connection's events to the script.
    fn drain_events(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Some(ws) = c.ws.as_mut() else { return };
        let gauge = &self.control.gauges[self.index];
        let mut cx = Cx { now_ns: now_ns(), phase: self.phase, gauge, errors: &mut self.errors };
        let mut closed = None;
        while let Some(ev) = ws.poll_event() {
            match ev {
                Event::Message(m) => self.script.on_message(&mut cx, i, ws, &m),
                Event::Closed(cl) => closed = Some(cl),
                _ => {} // pings are answered by the protocol core
            }
        }
        if let Some(cl) = closed {
            if !c.closing && self.phase < Phase::Close {
                Gauge::bump(&gauge.errors, 1);
                let g = c.global;
                self.errors.note(ErrorKind::Closed, || {
                    format!("connection {g} closed by the server: {} ({:?})", cl.code, cl.cause)
                });
                if self.phase == Phase::Connect {
                    Gauge::bump(&gauge.failed, 1);
                }
            }
            // The close frame (ours or the answer) still goes out in the flush.
            self.mark_dirty(i);
        }
    }

    /// Starts the close handshake on every open connection; drops the others.
    fn start_close(&mut self, now: Instant) {
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            match c.state {
                State::Open => {
                    if let Some(ws) = c.ws.as_mut() {
                        if ws.close(now, CloseCode::NORMAL, "").is_ok() {
                            c.closing = true;
                        }
                    }
                    self.mark_dirty(i);
                }
                State::Done => {}
                State::Pending => {
                    c.finish();
                    self.done += 1;
                }
                State::Connecting | State::Handshaking => {
                    let g = c.global;
                    self.fail(i, ErrorKind::Handshake, format!("connection {g} never opened"));
                }
            }
        }
    }

    /// Writes every connection touched this turn.
    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            let c = &mut self.clients[i];
            c.dirty = false;
            match c.flush() {
                Ok(Flush::Blocked) => {}
                Ok(Flush::Done) => {
                    if c.state == State::Open && c.ws.as_ref().is_some_and(Connection::is_closed) {
                        c.finish();
                        self.done += 1;
                        Gauge::bump(&self.control.gauges[self.index].done, 1);
                    }
                }
                Err(e) => {
                    let kind =
                        if c.state == State::Open { ErrorKind::Io } else { ErrorKind::Handshake };
                    self.fail(i, kind, format!("write: {e}"));
                }
            }
        }
        dirty.clear();
        // Callbacks during the flush cannot add entries; keep the allocation.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }
}
