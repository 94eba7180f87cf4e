//! The generator on the engine's client side: one [`LoadHandler`] per engine worker,
//! owning that worker's share of the connections (global index `i`, `i + threads`, ...)
//! and the scenario's [`Script`]. Connections are dialled on the worker itself
//! ([`WorkerCtx::dial`], [`Ctx::dial`]) at the pace the plan allows; the orchestrating
//! thread changes the phase in [`Control`] and rings the workers
//! ([`ringwire::Server::wake_all`]); the handler's `on_wake` sees the change.
//!
//! Load clients never reconnect (one attempt each, `max_attempts = 1`): a connection
//! that fails or ends early is an error of the run, as a load generator reports it.
//! The exception is `load reconnect`, whose clients keep the default retry policy and
//! whose subject is how they come back.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use ringwire::client::{Cause, ClientHandle, ClientSpec, ClientState, ConnectError, StateChange};
use ringwire::frame::{CloseCode, Message};
use ringwire::{ConnId, Ctx, Handler, WorkerCtx};

use super::args::ClientPlan;
use super::clock::now_ns;
use super::report::{ErrorKind, Errors};

/// The run's phases, set by the orchestrating thread, seen by workers when rung.
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
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connect,
            1 => Self::Warmup,
            2 => Self::Measure,
            3 => Self::Drain,
            _ => Self::Close,
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
    /// Messages sent by the script.
    pub sent: AtomicU64,
    /// Errors.
    pub errors: AtomicU64,
    /// Connections dialled.
    pub dialled: AtomicU64,
    /// Connections connected again after a loss (reconnecting runs only).
    pub reconnected: AtomicU64,
}

impl Gauge {
    /// Adds `n` (single writer: a load and a store, no locked instruction).
    #[inline]
    pub fn bump(c: &AtomicU64, n: u64) {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// What the orchestrator shares with the workers.
#[derive(Debug)]
pub struct Control {
    phase: AtomicU8,
    /// Connections (global indexes below this) the workers may open so far.
    limit: AtomicUsize,
    pub gauges: Vec<Gauge>,
}

impl Control {
    pub fn new(threads: usize, limit: usize) -> Self {
        Self {
            phase: AtomicU8::new(0),
            limit: AtomicUsize::new(limit),
            gauges: (0..threads).map(|_| Gauge::default()).collect(),
        }
    }
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Relaxed))
    }
    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Relaxed);
    }
    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }
    pub fn set_limit(&self, n: usize) {
        self.limit.store(n, Relaxed);
    }
    /// Sum of one counter over all workers.
    pub fn total(&self, f: impl Fn(&Gauge) -> &AtomicU64) -> u64 {
        self.gauges.iter().map(|g| f(g).load(Relaxed)).sum()
    }
}

/// What a script callback sees.
pub struct Cx<'a> {
    /// Monotonic nanoseconds, read when the callback started.
    pub now_ns: u64,
    pub phase: Phase,
    pub gauge: &'a Gauge,
    pub errors: &'a mut Errors,
}

/// The connections of a worker, for scripts that act on several at once.
pub struct Clients<'a, 'w> {
    w: &'a mut WorkerCtx<'w>,
    locals: &'a [Local],
}

impl Clients<'_, '_> {
    pub fn len(&self) -> usize {
        self.locals.len()
    }
    /// The open connection `i`.
    pub fn open(&mut self, i: usize) -> Option<Ctx<'_>> {
        match self.locals.get(i)? {
            Local { state: LState::Open, id: Some(id), closing: false } => self.w.conn(*id),
            _ => None,
        }
    }
}

/// A scenario's behaviour on one worker. Callbacks run on the worker's thread.
pub trait Script: Send + 'static {
    /// Connection `local` (global index `global`) completed its upgrade.
    fn on_open(&mut self, cx: &mut Cx<'_>, local: usize, global: usize, ws: &mut Ctx<'_>);
    /// A message arrived on connection `local`.
    fn on_message(&mut self, cx: &mut Cx<'_>, local: usize, ws: &mut Ctx<'_>, msg: &Message);
    /// The phase changed.
    fn on_phase(&mut self, cx: &mut Cx<'_>, clients: &mut Clients<'_, '_>);
    /// A connection's client state changed (before the generator's own handling).
    fn on_state(&mut self, cx: &mut Cx<'_>, local: usize, change: &StateChange) {
        let _ = (cx, local, change);
    }
    /// Runs at the times it asks for (monotonic ns, [`now_ns`]); returns the next one.
    fn on_tick(&mut self, cx: &mut Cx<'_>, clients: &mut Clients<'_, '_>) -> Option<u64> {
        let _ = (cx, clients);
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LState {
    /// Dialled, not open yet.
    Opening,
    Open,
    /// Lost, reconnecting (reconnecting runs only).
    Lost,
    /// Ended (or never started); counted in `done`.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Local {
    state: LState,
    id: Option<ConnId>,
    /// We started its close.
    closing: bool,
}

/// Most closes started per wake in the `Close` phase.
const CLOSE_BATCH: usize = 1024;
/// Most closes waiting for the peer's answer at once.
const MAX_CLOSING: usize = 8192;

/// Where a worker's script and errors go when its handler is dropped (engine shutdown).
pub type Outcomes<S> = Arc<Mutex<Vec<Option<(S, Errors)>>>>;

/// What every worker's handler shares with the orchestrator.
pub struct Shared<S> {
    pub plan: Arc<ClientPlan>,
    pub control: Arc<Control>,
    /// One spec per (target, source address): set before the first ring.
    pub specs: OnceLock<Vec<ClientSpec>>,
    /// Each worker's script, taken by its handler at its first wake (made once the
    /// engine runs and the connection count is known).
    pub scripts: Mutex<Vec<Option<S>>>,
    /// Clients reconnect after a loss (`load reconnect`); otherwise a loss ends them.
    pub reconnect: bool,
}

/// Something that can dial on the current worker and ask for a wake: a callback's
/// [`Ctx`] or `on_wake`'s [`WorkerCtx`].
trait Dialer {
    fn dial(&mut self, spec: &ClientSpec) -> Result<ClientHandle, ConnectError>;
    fn wake_at(&mut self, at: Instant);
}

impl Dialer for Ctx<'_> {
    fn dial(&mut self, spec: &ClientSpec) -> Result<ClientHandle, ConnectError> {
        Ctx::dial(self, spec)
    }
    fn wake_at(&mut self, at: Instant) {
        Ctx::wake_at(self, at);
    }
}

impl Dialer for WorkerCtx<'_> {
    fn dial(&mut self, spec: &ClientSpec) -> Result<ClientHandle, ConnectError> {
        WorkerCtx::dial(self, spec)
    }
    fn wake_at(&mut self, at: Instant) {
        WorkerCtx::wake_at(self, at);
    }
}

/// One engine worker's share of the generator.
pub struct LoadHandler<S: Script> {
    index: usize,
    shared: Arc<Shared<S>>,
    script: Option<S>,
    errors: Errors,
    outcomes: Outcomes<S>,
    locals: Vec<Local>,
    /// Local index by `ConnId::index` (`u32::MAX`: none).
    by_slot: Vec<u32>,
    next_pending: usize,
    in_progress: usize,
    next_connect_ns: u64,
    connect_interval_ns: u64,
    phase: Phase,
    /// The script's next tick (monotonic ns).
    tick_at: Option<u64>,
    /// In the `Close` phase: the next local to close.
    close_next: usize,
    /// Closes started and not finished.
    closing: usize,
}

impl<S: Script> LoadHandler<S> {
    /// Worker `index`'s handler; its script comes from `shared.scripts` at its first
    /// wake and goes to `outcomes` when the handler is dropped.
    pub fn new(index: usize, shared: Arc<Shared<S>>, outcomes: Outcomes<S>) -> Self {
        let threads = shared.plan.threads;
        let connect_interval_ns =
            shared.plan.connect_rate.map_or(0, |r| (threads as f64 * 1e9 / r) as u64);
        Self {
            index,
            shared,
            script: None,
            errors: Errors::default(),
            outcomes,
            locals: Vec::new(),
            by_slot: Vec::new(),
            next_pending: 0,
            in_progress: 0,
            next_connect_ns: 0,
            connect_interval_ns,
            phase: Phase::Connect,
            tick_at: None,
            close_next: 0,
            closing: 0,
        }
    }

    fn global(&self, local: usize) -> usize {
        self.index + local * self.shared.plan.threads
    }

    fn gauge(&self) -> &Gauge {
        &self.shared.control.gauges[self.index]
    }

    fn local_of(&self, id: ConnId) -> Option<usize> {
        match self.by_slot.get(id.index()) {
            Some(&l) if l != u32::MAX => {
                let l = l as usize;
                (self.locals.get(l)?.id == Some(id)).then_some(l)
            }
            _ => None,
        }
    }

    /// Dials as many connections as the limit, the pending cap and the rate allow.
    fn start_connects(&mut self, d: &mut dyn Dialer) {
        if self.phase >= Phase::Close {
            return;
        }
        let shared = self.shared.clone();
        let Some(specs) = shared.specs.get() else { return };
        let plan = &shared.plan;
        let limit = shared.control.limit();
        while self.global(self.next_pending) < limit && self.in_progress < plan.max_pending {
            if self.connect_interval_ns > 0 {
                let t = now_ns();
                if t < self.next_connect_ns {
                    let wait = Duration::from_nanos(self.next_connect_ns - t);
                    d.wake_at(Instant::now() + wait);
                    return;
                }
                // No bursts after a stall: at most one slot of credit.
                self.next_connect_ns =
                    self.next_connect_ns.max(t - t.min(self.connect_interval_ns))
                        + self.connect_interval_ns;
            }
            let local = self.next_pending;
            self.next_pending += 1;
            self.locals.push(Local { state: LState::Done, id: None, closing: false });
            let g = self.global(local);
            let sources = usize::from(plan.source_ips.max(1));
            let spec = &specs[plan.target_of(g) * sources + g % sources];
            Gauge::bump(&shared.control.gauges[self.index].dialled, 1);
            match d.dial(spec).map(|h| h.id()) {
                Ok(Some(id)) => {
                    self.in_progress += 1;
                    self.locals[local].state = LState::Opening;
                    self.locals[local].id = Some(id);
                    if self.by_slot.len() <= id.index() {
                        self.by_slot.resize(id.index() + 1, u32::MAX);
                    }
                    self.by_slot[id.index()] = local as u32;
                }
                Ok(None) => self.fail_unstarted(local, "the worker did not take the dial".into()),
                Err(e) => self.fail_unstarted(local, format!("dial: {e}")),
            }
        }
    }

    fn fail_unstarted(&mut self, local: usize, detail: String) {
        self.locals[local].state = LState::Done;
        let gauge = &self.shared.control.gauges[self.index];
        Gauge::bump(&gauge.failed, 1);
        Gauge::bump(&gauge.done, 1);
        Gauge::bump(&gauge.errors, 1);
        self.errors.note(ErrorKind::Connect, || detail);
    }

    /// Runs `f` with the script and a callback context.
    fn with_script<R>(&mut self, f: impl FnOnce(&mut S, &mut Cx<'_>) -> R) -> Option<R> {
        let gauge = &self.shared.control.gauges[self.index];
        let mut cx = Cx { now_ns: now_ns(), phase: self.phase, gauge, errors: &mut self.errors };
        self.script.as_mut().map(|s| f(s, &mut cx))
    }

    /// A client left `Opening` or `Open` without our asking: count it once.
    fn ended(&mut self, local: usize, change: &StateChange) {
        let l = self.locals[local];
        if l.state == LState::Done {
            return;
        }
        let opening = l.state == LState::Opening;
        self.locals[local].state = LState::Done;
        if l.closing && self.closing > 0 {
            self.closing -= 1;
        }
        if opening {
            self.in_progress -= 1;
        }
        let phase = self.phase;
        let gauge = &self.shared.control.gauges[self.index];
        Gauge::bump(&gauge.done, 1);
        if l.closing && !opening {
            return; // our own close, answered
        }
        if opening || phase == Phase::Connect {
            Gauge::bump(&gauge.failed, 1);
        }
        let cause = match &change.cause {
            Cause::GaveUp { last, .. } => last.as_ref(),
            c => c,
        };
        let kind = match cause {
            Cause::ConnectFailed { .. } | Cause::ConnectTimeout => ErrorKind::Connect,
            Cause::Closed { .. } if !opening => ErrorKind::Closed,
            Cause::Io { .. } if !opening => ErrorKind::Io,
            _ if opening => ErrorKind::Handshake,
            _ => ErrorKind::Closed,
        };
        if phase < Phase::Close || opening {
            Gauge::bump(&gauge.errors, 1);
            let g = self.global(local);
            let what = if opening { "never opened" } else { "ended early" };
            self.errors.note(kind, || format!("connection {g} {what}: {cause}"));
        }
    }

    /// In the `Close` phase: closes the next open connections, stops the others. A
    /// connection that starts its close handshake holds the protocol core's buffers
    /// (about 4.5 KiB) until the peer answers, so at most [`CLOSE_BATCH`] start per
    /// wake and at most [`MAX_CLOSING`] wait for their answer at once: closing a
    /// million connections must not take gigabytes.
    fn continue_close(&mut self, w: &mut WorkerCtx<'_>) {
        let mut started = 0;
        while self.close_next < self.locals.len()
            && started < CLOSE_BATCH
            && self.closing < MAX_CLOSING
        {
            let local = self.close_next;
            self.close_next += 1;
            let l = self.locals[local];
            // A local that is not done has its connection (it was dialled).
            match (l.state, l.id) {
                (LState::Done, _) | (_, None) => {}
                (state, Some(id)) => {
                    if state == LState::Opening {
                        let g = self.global(local);
                        self.errors
                            .note(ErrorKind::Handshake, || format!("connection {g} never opened"));
                        Gauge::bump(&self.gauge().errors, 1);
                        Gauge::bump(&self.gauge().failed, 1);
                    }
                    self.locals[local].closing = true;
                    if let Some(mut cx) = w.conn(id) {
                        if cx.close(CloseCode::NORMAL, "").is_ok() {
                            self.closing += 1;
                            started += 1;
                        }
                    }
                }
            }
        }
        if self.close_next < self.locals.len() && self.closing < MAX_CLOSING {
            w.wake_at(w.now());
        }
    }

    /// The script's tick, if due; asks for the next one. `on_wake` may come before the
    /// tick is due (another wake asked for earlier, or the wake's instant computed a
    /// little early): the tick's wake is then asked for again, since the engine keeps
    /// one wake time and the one that ran was it. (It was not asked again before, and a
    /// publisher woken 5-25 us early stopped publishing until the next phase.)
    fn tick(&mut self, w: &mut WorkerCtx<'_>) {
        let now = now_ns();
        if let Some(t) = self.tick_at.filter(|t| *t > now) {
            w.wake_at(wake_instant(t));
            return;
        }
        let Some(script) = self.script.as_mut() else { return };
        let gauge = &self.shared.control.gauges[self.index];
        let mut cx = Cx { now_ns: now, phase: self.phase, gauge, errors: &mut self.errors };
        let mut clients = Clients { w, locals: &self.locals };
        self.tick_at = script.on_tick(&mut cx, &mut clients);
        if let Some(t) = self.tick_at {
            w.wake_at(wake_instant(t));
        }
    }
}

/// The `Instant` of monotonic time `t` (ns, [`now_ns`]), never before it: the delay is
/// measured first and `Instant::now()` read after, so time lost between the two reads
/// (the thread preempted, a softirq) makes the wake late, never early.
fn wake_instant(t: u64) -> Instant {
    let delay = Duration::from_nanos(t.saturating_sub(now_ns()));
    Instant::now() + delay
}

impl<S: Script> Handler for LoadHandler<S> {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message) {
        let Some(local) = self.local_of(ctx.id()) else { return };
        self.with_script(|s, cx| s.on_message(cx, local, ctx, &msg));
    }

    fn on_state(&mut self, ctx: &mut Ctx<'_>, change: &StateChange) {
        let Some(local) = self.local_of(ctx.id()) else { return };
        self.with_script(|s, cx| s.on_state(cx, local, change));
        let reconnect = self.shared.reconnect;
        match (change.to, self.locals[local].state) {
            (ClientState::Connected, LState::Opening) => {
                self.locals[local].state = LState::Open;
                self.in_progress -= 1;
                Gauge::bump(&self.gauge().opened, 1);
                let global = self.global(local);
                self.with_script(|s, cx| s.on_open(cx, local, global, ctx));
                if self.phase >= Phase::Close {
                    self.locals[local].closing = true;
                    self.closing += usize::from(ctx.close(CloseCode::NORMAL, "").is_ok());
                }
            }
            (ClientState::Connected, LState::Lost) => {
                self.locals[local].state = LState::Open;
                Gauge::bump(&self.gauge().reconnected, 1);
                if self.phase >= Phase::Close {
                    self.locals[local].closing = true;
                    self.closing += usize::from(ctx.close(CloseCode::NORMAL, "").is_ok());
                }
            }
            (ClientState::Reconnecting, LState::Open) if reconnect => {
                self.locals[local].state = LState::Lost;
            }
            (ClientState::Reconnecting, _) if !reconnect => {
                // Load clients do not reconnect (a stable connection's loss would).
                self.ended(local, change);
                let _ = ctx.close(CloseCode::NORMAL, "");
            }
            // Our close of an open connection: it ends when the close handshake does
            // (`on_close`), not when the client's state says Closed at its start.
            (ClientState::Closed, LState::Open) if self.locals[local].closing => {}
            (ClientState::Closed, _) => {
                self.ended(local, change);
                if self.phase == Phase::Close && self.close_next < self.locals.len() {
                    ctx.wake_at(ctx.now());
                }
            }
            _ => {}
        }
        self.start_connects(ctx);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, _closed: &ringwire::frame::Closed) {
        let Some(local) = self.local_of(ctx.id()) else { return };
        let l = self.locals[local];
        if l.closing && l.state == LState::Open {
            self.locals[local].state = LState::Done;
            self.closing = self.closing.saturating_sub(1);
            Gauge::bump(&self.gauge().done, 1);
            if self.phase == Phase::Close && self.close_next < self.locals.len() {
                ctx.wake_at(ctx.now());
            }
        }
    }

    fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
        if self.script.is_none() {
            let mut scripts = self.shared.scripts.lock().unwrap_or_else(PoisonError::into_inner);
            self.script = scripts.get_mut(self.index).and_then(Option::take);
        }
        let phase = self.shared.control.phase();
        if phase != self.phase {
            self.phase = phase;
            if phase == Phase::Close {
                self.close_next = 0;
            }
            let Some(script) = self.script.as_mut() else { return };
            let gauge = &self.shared.control.gauges[self.index];
            let mut cx = Cx { now_ns: now_ns(), phase, gauge, errors: &mut self.errors };
            script.on_phase(&mut cx, &mut Clients { w, locals: &self.locals });
            self.tick_at = None;
        }
        if self.phase == Phase::Close {
            self.continue_close(w);
        }
        self.start_connects(w);
        self.tick(w);
    }
}

impl<S: Script> Drop for LoadHandler<S> {
    fn drop(&mut self) {
        if let Some(script) = self.script.take() {
            let errors = std::mem::take(&mut self.errors);
            let mut out = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = out.get_mut(self.index) {
                *slot = Some((script, errors));
            }
        }
    }
}
