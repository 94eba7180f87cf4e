//! One worker: a thread with its own driver (io_uring or epoll), its own shard of
//! connections and its handler. Nothing here is shared or locked; other threads reach it
//! only through its command queue and its shutdown flag.
//!
//! Each turn of the loop: run commands from other threads, fire due timers, flush every
//! connection with bytes to send (one vectored send in flight per connection, all
//! submitted together), then wait for completions and feed them to the protocol core
//! and the handler. The clock is read here only (through [`Clock`]), once per turn
//! before the wait and once after it (if anything completed); a test drives the loop with a virtual clock and a fake driver.

mod dial;
mod events;
#[cfg(test)]
mod sim;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::handler::Handler;
use crate::shard::{Core, Op};
use crate::sys::Driver;

/// How often the busiest topics are refreshed while a dashboard watches.
const TOPICS_REPORT_EVERY: Duration = Duration::from_secs(1);
/// How many of them.
pub(crate) const TOP_TOPICS: usize = 10;

/// Commands run per loop turn, so a flood from other threads cannot starve I/O.
const COMMANDS_PER_TURN: usize = 4096;
/// Flush rounds per turn: a handler's `on_writable` can queue more, flushed in the next
/// round; past this, the next turn goes on without waiting.
const FLUSH_ROUNDS: usize = 4;
/// How long a worker with no timer due sleeps at most before it looks again.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How soon durable forwarding that found another worker's command queue full tries
/// again.
const FORWARD_RETRY: Duration = Duration::from_millis(1);
/// How often the thread's spare protocol buffers not needed since the last time are freed
/// ([`ringwire_frame::Connection::release_spare_buffers`]).
const SPARES_EVERY: Duration = Duration::from_secs(1);

/// The earlier of two instants, either of which may be absent.
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A worker: its driver, its handler, its shard and its clock.
pub(crate) struct Worker<D: Driver, H: Handler, C: Clock> {
    pub(crate) driver: D,
    pub(crate) handler: H,
    pub(crate) core: Core,
    pub(crate) clock: C,
    /// When the spare protocol buffers are next released (`None` until the first turn).
    pub(crate) spares_at: Option<Instant>,
}

impl<D: Driver, H: Handler, C: Clock> Worker<D, H, C> {
    fn apply_ops(&mut self) {
        let mut ops = std::mem::take(&mut self.core.ops);
        for op in ops.drain(..) {
            match op {
                Op::AddConn(key, sock) => self.driver.add_conn(key, sock),
                Op::Discard(sock) => self.driver.discard(sock),
                Op::StartRecv(key) => self.driver.start_recv(key),
                Op::Cancel(key) => self.driver.cancel(key),
                Op::Close(key) => self.driver.close(key),
                Op::CloseListeners => self.driver.close_listeners(),
                Op::Send(key, chunks) => self.driver.send(key, chunks),
                Op::Connect(key, addr) => self.driver.connect(key, addr),
                Op::Sync(upto, files) => {
                    // On the ring under io_uring; on the worker's sync thread otherwise.
                    if let Err(files) = self.driver.sync_data(upto, files) {
                        self.core.sync_on_thread(upto, files);
                    }
                }
            }
        }
        // The allocation is kept for the next turn (nothing queues ops meanwhile).
        if self.core.ops.is_empty() {
            self.core.ops = ops;
        }
    }

    /// Sends for every dirty connection, and closes drained ones.
    fn flush(&mut self) {
        let mut round = 0;
        while !self.core.dirty.is_empty() && round < FLUSH_ROUNDS {
            round += 1;
            let mut dirty = std::mem::take(&mut self.core.dirty);
            for key in dirty.drain(..) {
                if self.core.flush_one(key) {
                    self.core.writable(&mut self.handler, key);
                }
            }
            if self.core.dirty.is_empty() {
                self.core.dirty = dirty;
            }
        }
        self.apply_ops();
    }

    /// Fires due timers. A connection whose timer queued a frame (a heartbeat ping, a
    /// close) is flushed at once, so its protocol buffers are freed before the next one:
    /// heartbeats of many connections due together never hold buffers all at once.
    fn fire_timers(&mut self) {
        let mut due = self.core.timers.take_due(self.core.now);
        // Slots are resolved to keys here: connections leave the slab only on completions,
        // which do not run while timers fire, so a due slot still holds its connection.
        for slot in due.drain(..) {
            let Some(key) = self.core.conns.key_at(slot) else { continue };
            self.core.fire_timer(&mut self.handler, key);
            if self.core.conns.get(key).is_some_and(|c| c.dirty()) && self.core.flush_one(key) {
                self.core.writable(&mut self.handler, key);
            }
        }
        self.core.timers.restore_due(due);
    }

    fn drain_commands(&mut self) {
        self.core.me.clear_notified();
        if self.core.me.shutdown_requested() {
            self.core.start_shutdown(&mut self.handler);
        }
        for _ in 0..COMMANDS_PER_TURN {
            let Some(cmd) = self.core.me.queue.pop() else { break };
            self.core.run_command(&mut self.handler, cmd);
        }
    }

    /// Runs the handler's `on_wake` if the application rang or the time it asked for
    /// came. A panic there is contained like any callback's (counted, logged); no
    /// connection is closed for it.
    fn wake_handler(&mut self) {
        let due = self.core.wake_at.is_some_and(|at| at <= self.core.now);
        if !(self.core.me.take_ring() | due) {
            return;
        }
        if due {
            self.core.wake_at = None;
        }
        let Self { handler, core, .. } = self;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.on_wake(&mut crate::WorkerCtx::new(core))
        }));
        if let Err(payload) = r {
            crate::stats::WorkerStats::add(&core.stats.handler_panics, 1);
            tracing::error!(
                worker = core.id,
                panic = crate::panic::message(&*payload),
                "handler on_wake panicked"
            );
        }
    }

    /// About once a second, frees the thread's spare protocol buffers that no connection
    /// took since the last time: those a burst or a wave of heartbeats left behind. (While
    /// the thread holds spares, the worker's wait ends by the next release, so a worker
    /// gone quiet frees them too.)
    fn release_spares(&mut self) {
        let now = self.core.now;
        match self.spares_at {
            Some(at) if now < at => return,
            Some(_) => {
                ringwire_frame::Connection::release_spare_buffers();
            }
            None => {}
        }
        let (_, bytes) = ringwire_frame::Connection::spare_buffers();
        self.core.stats.spare_buffer_bytes.store(bytes as u64, Relaxed);
        self.spares_at = Some(now + SPARES_EVERY);
    }

    /// Runs until shutdown completes.
    pub(crate) fn run(mut self) -> std::io::Result<()> {
        while !self.turn()? {}
        Ok(())
    }

    /// While the admin listener is read (a dashboard open, or `/metrics` scraped lately),
    /// once a second: the figures that take a walk to know (the bytes queued for
    /// sending over all connections, those over the send limit) or are not worth a
    /// store every turn (the timer wheel, the receive buffers) and, for a dashboard,
    /// the busiest topics. Not otherwise: the walk is O(connections).
    fn report_sampled(&mut self) {
        let core = &mut self.core;
        if core.now < core.topics_report_at || !core.me.sampled(core.now) {
            return;
        }
        let bufs = self.driver.recv_buffers();
        core.stats.recv_buffers.store(bufs.0, Relaxed);
        core.stats.recv_buffers_free.store(bufs.1, Relaxed);
        core.stats.recv_buffers_lent.store(bufs.2, Relaxed);
        core.stats.timers.store(core.timers.len() as u64, Relaxed);
        core.topics_report_at = core.now + TOPICS_REPORT_EVERY;
        if core.me.topics_watched() {
            core.me.set_top_topics(core.topics.busiest(TOP_TOPICS));
        }
        let (mut bytes, mut over) = (0u64, 0u64);
        for c in core.conns.values() {
            bytes += c.queued_bytes() as u64;
            over += u64::from(c.over_limit());
        }
        core.stats.send_queue_bytes.store(bytes, Relaxed);
        core.stats.backpressured.store(over, Relaxed);
    }

    /// How long the wait may sleep: until the earliest of the wheel's next deadline and
    /// what the loop checks on its own clock (the shutdown's deadline, the handler's
    /// wake-up, the sampled figures, the outbox's sync, the grants' end, the release of
    /// spares held), at most [`IDLE_WAIT`] with nothing on the wheel. Instants are
    /// compared, and one duration taken at the end.
    fn wait_timeout(&self, now: Instant) -> Duration {
        let core = &self.core;
        let wheel = core.timers.next_deadline();
        let mut until = wheel;
        for at in
            [core.shutdown_deadline, core.wake_at, core.outbox_deadline(), core.grants_deadline()]
        {
            until = earlier(until, at);
        }
        if core.me.sampled(now) {
            until = earlier(until, Some(core.topics_report_at));
        }
        // Spares held (a burst's, a heartbeat wave's) are freed on time even when the
        // next timer is a heartbeat many seconds away.
        if let Some(at) = self.spares_at {
            if until.is_none_or(|u| at < u) && ringwire_frame::Connection::spare_buffers().0 > 0 {
                until = Some(at);
            }
        }
        let mut timeout = until.map_or(IDLE_WAIT, |at| at.saturating_duration_since(now));
        if wheel.is_none() {
            timeout = timeout.min(IDLE_WAIT);
        }
        // Another worker empties its command queue each turn, and nothing would wake this
        // one when it has: forwarding that found it full tries again shortly.
        if core.forwards_waiting() {
            timeout = timeout.min(FORWARD_RETRY);
        }
        timeout
    }

    /// One turn of the loop. Returns `true` once the shutdown is complete (every
    /// connection closed, nothing in flight).
    pub(crate) fn turn(&mut self) -> std::io::Result<bool> {
        self.core.now = self.clock.now();
        self.drain_commands();
        self.fire_timers();
        self.core.flush_changes(&mut self.handler);
        self.wake_handler();
        self.core.flush_changes(&mut self.handler);
        if let Some(deadline) = self.core.shutdown_deadline {
            if self.core.now >= deadline {
                self.core.force_close_all(&mut self.handler);
            }
        }
        self.flush();
        self.report_sampled();
        self.release_spares();
        self.core.expire_grants();
        self.core.outbox_tick();
        self.core.retry_forwards();
        if !self.core.ops.is_empty() {
            self.apply_ops(); // a sync the tick started goes out with this turn's wait
        }
        if self.core.shutdown_deadline.is_some()
            && self.core.conns.len() == 0
            && self.driver.in_flight() == 0
        {
            return Ok(true);
        }
        let now = self.clock.now();
        let mut timeout = self.wait_timeout(now);
        // Work already known (commands, socket ops, connections left dirty by a busy
        // flush, a shutdown request) must not wait for the next completion.
        if !self.core.me.queue.is_empty()
            || !self.core.ops.is_empty()
            || !self.core.dirty.is_empty()
            || !self.core.changes.is_empty()
            || (self.core.me.shutdown_requested() && self.core.shutdown_deadline.is_none())
        {
            timeout = Duration::ZERO;
        }
        let stats = &self.core.stats;
        stats.rings.store(self.driver.rings() as u64, Relaxed);
        stats.messages_lent.store(self.driver.messages_lent(), Relaxed);
        stats.busy_poll_hits.store(self.driver.busy_poll_hits(), Relaxed);
        let (submitted, completed) = self.driver.op_counts();
        stats.submissions.store(submitted, Relaxed);
        stats.completions.store(completed, Relaxed);
        let Self { driver, handler, core, clock, .. } = self;
        core.now = now;
        // The clock is read again once the wait has ended, before the first completion:
        // what a completion starts (a handshake deadline, a pong's RTT) is timed from
        // when it arrived, not from before a wait that may have lasted a second. (A
        // wait that may not block leaves the clock as it is.)
        let mut fresh = timeout.is_zero();
        driver.wait(Some(timeout), &mut |c| {
            if !fresh {
                fresh = true;
                core.now = clock.now();
            }
            core.on_completion(handler, c)
        })?;
        core.flush_changes(handler);
        crate::stats::WorkerStats::add(&self.core.stats.loop_turns, 1);
        Ok(false)
    }
}
