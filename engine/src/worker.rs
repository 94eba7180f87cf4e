//! One worker: a thread with its own ring (or epoll), its own connections, timer wheel
//! and topic table. Nothing here is shared or locked; other threads reach it only
//! through its command queue.
//!
//! Each turn of the loop: run commands from other threads, fire due timers, flush every
//! connection with bytes to send (one vectored send in flight per connection, all
//! submitted together), then wait for completions and feed them to the protocol core
//! and the handler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwire_frame::handshake::{self, HandshakeError};
use ringwire_frame::{
    CloseCode, Closed, Config as FrameConfig, Connection, Event, Message, RecvBuffer,
};

use crate::clock;
use crate::config::{Backpressure, EngineConfig};
use crate::conn::{Conn, Outgoing, Phase};
use crate::handle::{
    shared_frame, Command, ConnHandle, ConnId, Publisher, SendError, Topic, WorkerShared,
};
use crate::handler::{Handler, Upgrade};
use crate::slab::{Key, Slab};
use crate::stats::WorkerStats;
use crate::sys::{Completion, Driver, RecvEnd, Socket};
use crate::topics::Topics;
use crate::wheel::Wheel;

/// Below this many queued bytes in the protocol core, whole messages move from the
/// backlog into it; above, they wait in the backlog where `DropOldest` can drop them.
const CORE_HIGH_WATER: usize = 64 * 1024;
/// Most chunks and bytes in one vectored send.
const MAX_CHUNKS: usize = 64;
const MAX_SEND_BYTES: usize = 1 << 20;
/// Commands run per loop turn, so a flood from other threads cannot starve I/O.
const COMMANDS_PER_TURN: usize = 4096;
/// How long a rejected upgrade may take to flush its error response.
const REJECT_LINGER: Duration = Duration::from_secs(1);

/// Socket work the state machine asks for while the driver is busy reporting
/// completions; applied right after.
enum Op {
    AddConn(Key, Socket),
    Discard(Socket),
    StartRecv(Key),
    Cancel(Key),
    Close(Key),
    CloseListeners,
    /// A send prepared outside `flush_one` (a shared frame sent directly, see `enqueue`);
    /// the connection's `inflight` is already set.
    Send(Key, Vec<Bytes>),
}

/// A worker's state apart from its driver and handler.
pub(crate) struct Core {
    pub(crate) id: u16,
    config: Arc<EngineConfig>,
    frame_config: Arc<FrameConfig>,
    conns: Slab<Conn>,
    topics: Topics,
    wheel: Wheel,
    /// Reused by `due_timers`.
    due_scratch: Vec<u32>,
    epoch: Instant,
    now: Instant,
    dirty: Vec<Key>,
    ops: Vec<Op>,
    pub(crate) stats: Arc<WorkerStats>,
    me: Arc<WorkerShared>,
    all: Arc<[Arc<WorkerShared>]>,
    shutdown_deadline: Option<Instant>,
    vec_pool: Vec<Vec<Bytes>>,
}

/// What a handler can do to the connection it was called for (and beyond).
pub struct Ctx<'a> {
    core: &'a mut Core,
    key: Key,
}

impl Ctx<'_> {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        ConnId { worker: self.core.id, key: self.key }
    }

    /// The worker running this callback.
    pub fn worker(&self) -> usize {
        usize::from(self.core.id)
    }

    /// The time this loop turn started.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// Queues a message, subject to the backpressure policy.
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.core.enqueue(self.key, Outgoing::Msg(msg))
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send(Message::text(text.to_owned()))
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send(Message::binary(Bytes::copy_from_slice(data)))
    }

    /// Sends a heartbeat ping whose pong reports its RTT to `on_pong`.
    pub fn ping(&mut self) -> Result<(), SendError> {
        let now = self.core.now;
        let ws = self.core.conns.get_mut(self.key).and_then(Conn::ws).ok_or(SendError::Closed)?;
        ws.send_ping(now).map_err(|_| SendError::Closed)?;
        self.core.mark_dirty(self.key);
        Ok(())
    }

    /// Starts the close handshake.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.core.close(self.key, code, reason)
    }

    /// Subscribes this connection to `topic`.
    pub fn subscribe(&mut self, topic: &str) {
        self.core.subscribe(self.key, topic.into());
    }

    /// Unsubscribes this connection from `topic`.
    pub fn unsubscribe(&mut self, topic: &str) {
        self.core.unsubscribe(self.key, topic);
    }

    /// Publishes to every subscriber of `topic` on every worker: this worker's at once,
    /// the others' through their queues. The frame is encoded once.
    pub fn publish(&mut self, topic: &str, msg: &Message) {
        let frame = shared_frame(msg);
        self.core.deliver(topic, &frame);
        let topic: Topic = topic.into();
        for (i, w) in self.core.all.iter().enumerate() {
            if i != usize::from(self.core.id) {
                let _ = w.push(Command::Publish(topic.clone(), frame.clone()));
            }
        }
    }

    /// A handle to this connection for other threads.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle { id: self.id(), shared: self.core.me.clone() }
    }

    /// A publisher for other threads.
    pub fn publisher(&self) -> Publisher {
        Publisher { workers: self.core.all.clone() }
    }

    /// Bytes queued on this connection and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.core.conns.get(self.key).map_or(0, Conn::queued_bytes)
    }
}

impl Core {
    pub(crate) fn new(
        id: u16,
        config: Arc<EngineConfig>,
        stats: Arc<WorkerStats>,
        me: Arc<WorkerShared>,
        all: Arc<[Arc<WorkerShared>]>,
    ) -> Self {
        let now = clock::now();
        let max_conns = config.max_connections_per_worker;
        Self {
            id,
            frame_config: Arc::new(config.frame.clone()),
            config,
            // Reserved up front (address space only: pages are touched as connections
            // arrive), so growing never copies a large table in the middle of a burst.
            conns: Slab::with_capacity(max_conns),
            topics: Topics::default(),
            wheel: Wheel::with_capacity(max_conns),
            due_scratch: Vec::new(),
            epoch: now,
            now,
            dirty: Vec::new(),
            ops: Vec::new(),
            stats,
            me,
            all,
            shutdown_deadline: None,
            vec_pool: Vec::new(),
        }
    }

    fn tick_of(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.epoch);
        // Round up, so a timer never fires before its deadline.
        d.as_millis() as u64 + u64::from(d.subsec_nanos() % 1_000_000 != 0)
    }

    fn mark_dirty(&mut self, key: Key) {
        if let Some(c) = self.conns.get_mut(key) {
            if !c.dirty() {
                c.set_dirty(true);
                self.dirty.push(key);
            }
        }
    }

    /// Keeps the connection's one wheel entry at or before its next deadline. A deadline
    /// that moved later keeps the entry (it fires early and is re-filed: cheap, since
    /// heartbeats move later on every read); one that moved earlier replaces it.
    fn schedule(&mut self, key: Key) {
        let Some(deadline) = self.conns.get(key).and_then(Conn::deadline) else { return };
        let tick = self.tick_of(deadline).max(1);
        match self.wheel.when(key.slot) {
            Some(at) if at <= tick => {}
            _ => self.wheel.insert(key.slot, tick),
        }
    }

    /// Takes the connection's entry off the wheel.
    fn unschedule(&mut self, key: Key) {
        if self.conns.get(key).is_some() {
            self.wheel.remove(key.slot);
        }
    }

    fn enqueue(&mut self, key: Key, out: Outgoing) -> Result<(), SendError> {
        let max = self.config.max_queued_bytes;
        let policy = self.config.backpressure;
        let Some(c) = self.conns.get_mut(key) else { return Err(SendError::Closed) };
        let Phase::Open(ws) = &mut c.phase else { return Err(SendError::Closed) };
        if ws.is_closing() || ws.is_closed() {
            return Err(SendError::Closed);
        }
        let len = out.len();
        if c.queued_bytes() + len > max {
            c.set_over_limit(true);
            match policy {
                Backpressure::DropNewest => {
                    WorkerStats::add(&self.stats.drops, 1);
                    return Err(SendError::Backpressure);
                }
                Backpressure::DropOldest => {
                    while c.queued_bytes() + len > max {
                        if c.pending.as_mut().and_then(|p| p.pop_backlog()).is_none() {
                            break;
                        }
                        WorkerStats::add(&self.stats.drops, 1);
                    }
                    if c.queued_bytes() + len > max {
                        WorkerStats::add(&self.stats.drops, 1);
                        return Err(SendError::Backpressure);
                    }
                }
                Backpressure::Close => {
                    self.close_slow(key);
                    return Err(SendError::Backpressure);
                }
            }
        }
        let Some(c) = self.conns.get_mut(key) else { return Err(SendError::Closed) };
        let backlog_empty = c.backlog_is_empty();
        // A shared frame (fan-out) to a server connection with nothing queued and nothing
        // in flight goes to the socket as it is: the protocol core and its buffers are not
        // involved (no allocation per subscriber, and the frame is not queued twice).
        // Anything sent after it waits for its completion (`inflight`), so order holds.
        let direct = matches!(out, Outgoing::Frame(_))
            && backlog_empty
            && c.inflight.is_none()
            && c.unsent_is_empty()
            && !c.closing();
        let Phase::Open(ws) = &mut c.phase else { return Err(SendError::Closed) };
        let out = match out {
            Outgoing::Frame(frame)
                if direct
                    && !frame.is_empty()
                    && !ws.has_transmit()
                    && ws.role() == ringwire_frame::Role::Server =>
            {
                c.inflight = std::num::NonZeroU32::new(frame.len().min(u32::MAX as usize) as u32);
                let mut chunks = self.vec_pool.pop().unwrap_or_default();
                chunks.push(frame);
                self.ops.push(Op::Send(key, chunks));
                WorkerStats::add(&self.stats.messages_out, 1);
                return Ok(());
            }
            other => other,
        };
        if backlog_empty && ws.queued_bytes() < CORE_HIGH_WATER {
            let r = match out {
                Outgoing::Msg(m) => ws.send(m),
                Outgoing::Frame(f) => ws.send_shared_frame(f),
            };
            if r.is_err() {
                return Err(SendError::Closed);
            }
        } else {
            c.pend().push_backlog(out);
        }
        WorkerStats::add(&self.stats.messages_out, 1);
        self.mark_dirty(key);
        Ok(())
    }

    /// Starts the close handshake behind every message already accepted for sending: the
    /// backlog moves into the protocol core first, so the close frame is the last frame.
    fn close(&mut self, key: Key, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let now = self.now;
        let c = self.conns.get_mut(key).ok_or(SendError::Closed)?;
        let backlog: Vec<Outgoing> = match c.pending.as_mut() {
            Some(p) => std::iter::from_fn(|| p.pop_backlog()).collect(),
            None => Vec::new(),
        };
        let ws = c.ws().ok_or(SendError::Closed)?;
        for o in backlog {
            let _ = match o {
                Outgoing::Msg(m) => ws.send(m),
                Outgoing::Frame(f) => ws.send_shared_frame(f),
            };
        }
        ws.close(now, code, reason).map_err(|_| SendError::Closed)?;
        self.mark_dirty(key);
        self.schedule(key);
        Ok(())
    }

    /// Closes a slow consumer with 1008. Messages already accepted (at most
    /// `max_queued_bytes`) still go out before the close frame: nothing accepted is lost
    /// silently. Counted in `slow_closes`.
    fn close_slow(&mut self, key: Key) {
        WorkerStats::add(&self.stats.slow_closes, 1);
        let _ = self.close(key, CloseCode::POLICY, "slow consumer");
    }

    fn subscribe(&mut self, key: Key, topic: Topic) {
        let Some(c) = self.conns.get_mut(key) else { return };
        if !matches!(c.phase, Phase::Open(_)) || c.topics().contains(&topic) {
            return;
        }
        self.topics.add(&topic, key);
        c.subscribe(topic);
    }

    fn unsubscribe(&mut self, key: Key, topic: &str) {
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.unsubscribe(topic) {
            self.topics.remove(topic, key);
        }
    }

    /// Hands a shared frame to every local subscriber.
    fn deliver(&mut self, topic: &str, frame: &Bytes) {
        // Walk the members without copying them: enqueueing never changes subscriptions
        // (a connection leaves its topics only when its Closed event is processed).
        let Some((name, members)) = self.topics.take(topic) else { return };
        for key in &members {
            let _ = self.enqueue(*key, Outgoing::Frame(frame.clone()));
        }
        self.topics.restore(name, members);
    }

    /// The WebSocket part of a connection ended: the rest of its output goes to
    /// `unsent`, the protocol state is freed, and the socket closes once flushed.
    fn drain(&mut self, key: Key) {
        let deadline = self.now + self.frame_config.close_timeout;
        let Some(c) = self.conns.get_mut(key) else { return };
        if let Phase::Open(ws) = &mut c.phase {
            let mut chunks = Vec::new();
            while let Some(chunk) = ws.poll_transmit() {
                chunks.push(chunk);
            }
            if !chunks.is_empty() {
                c.pend().unsent.extend(chunks);
            }
        }
        c.phase = Phase::Draining { deadline };
        if let Some(p) = c.pending.as_mut() {
            p.clear_backlog();
        }
        for t in c.topics.take().into_iter().flat_map(|v| v.into_iter()) {
            self.topics.remove(&t, key);
        }
        self.mark_dirty(key);
        self.schedule(key);
    }

    /// Starts closing the socket: cancel what is in flight, then close.
    fn begin_close(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.closing() {
            return;
        }
        c.set_closing(true);
        c.pending = None;
        if c.recv_armed() || c.inflight.is_some() {
            self.ops.push(Op::Cancel(key));
        } else {
            c.set_close_submitted(true);
            self.ops.push(Op::Close(key));
        }
    }

    /// Closes the socket once nothing is in flight any more.
    fn maybe_finish_close(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.closing() && !c.close_submitted() && !c.recv_armed() && c.inflight.is_none() {
            c.set_close_submitted(true);
            self.ops.push(Op::Close(key));
        }
    }

    fn run_command<H: Handler>(&mut self, handler: &mut H, cmd: Command) {
        match cmd {
            Command::Send(key, msg) => {
                let _ = self.enqueue(key, Outgoing::Msg(msg));
            }
            Command::Close(key, code, reason) => {
                let _ = self.close(key, code, &reason);
                self.process_events(handler, key);
            }
            Command::Subscribe(key, topic) => self.subscribe(key, topic),
            Command::Unsubscribe(key, topic) => self.unsubscribe(key, &topic),
            Command::Publish(topic, frame) => self.deliver(&topic, &frame),
            Command::Shutdown => self.start_shutdown(handler),
        }
    }

    fn start_shutdown<H: Handler>(&mut self, handler: &mut H) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        let deadline = self.now + self.config.shutdown_timeout;
        self.shutdown_deadline = Some(deadline);
        self.ops.push(Op::CloseListeners);
        for key in self.conns.keys() {
            let Some(c) = self.conns.get_mut(key) else { continue };
            match &mut c.phase {
                Phase::Handshake { .. } => {
                    c.phase = Phase::Draining { deadline };
                    self.mark_dirty(key);
                }
                Phase::Open(_) => {
                    let _ = self.close(key, CloseCode::GOING_AWAY, "server shutdown");
                    self.process_events(handler, key);
                }
                Phase::Draining { .. } => {}
            }
            self.schedule(key);
        }
    }

    /// Ends every connection now: the shutdown's grace time is over.
    fn force_close_all<H: Handler>(&mut self, handler: &mut H) {
        for key in self.conns.keys() {
            if let Some(ws) = self.conns.get_mut(key).and_then(Conn::ws) {
                ws.handle_eof(self.now);
                self.process_events(handler, key);
            }
            self.begin_close(key);
        }
    }

    /// Runs the handler for every event the protocol core has.
    fn process_events<H: Handler>(&mut self, handler: &mut H, key: Key) {
        loop {
            let Some(ev) = self.conns.get_mut(key).and_then(Conn::ws).and_then(|w| w.poll_event())
            else {
                break;
            };
            match ev {
                Event::Message(m) => {
                    WorkerStats::add(&self.stats.messages_in, 1);
                    handler.on_message(&mut Ctx { core: self, key }, m);
                }
                Event::Pong(p) => handler.on_pong(&mut Ctx { core: self, key }, p.rtt),
                Event::Closed(closed) => {
                    self.stats.count_close(closed.code.0);
                    self.on_closed(handler, key, &closed);
                    return;
                }
                _ => {}
            }
        }
        if let Some(ws) = self.conns.get_mut(key).and_then(Conn::ws) {
            if ws.has_transmit() {
                self.mark_dirty(key);
            } else {
                // Nothing to send: this lets the core free its buffers if it is idle.
                let _ = ws.poll_transmit();
            }
        }
        self.schedule(key);
    }

    fn on_closed<H: Handler>(&mut self, handler: &mut H, key: Key, closed: &Closed) {
        self.drain(key);
        handler.on_close(&mut Ctx { core: self, key }, closed);
    }

    fn on_accept(&mut self, sock: Socket) {
        WorkerStats::add(&self.stats.accepted, 1);
        if self.conns.len() >= self.config.max_connections_per_worker
            || self.shutdown_deadline.is_some()
        {
            WorkerStats::add(&self.stats.rejected, 1);
            self.ops.push(Op::Discard(sock));
            return;
        }
        // TCP_NODELAY and keepalive come from the listener (see `sys::net::listener`).
        let mut conn = Conn::new(self.now + self.config.handshake_timeout);
        conn.set_recv_armed(true);
        let key = self.conns.insert(conn);
        self.ops.push(Op::AddConn(key, sock));
        self.ops.push(Op::StartRecv(key));
        WorkerStats::add(&self.stats.connections, 1);
        self.schedule(key);
    }

    fn on_recv<H: Handler>(&mut self, handler: &mut H, key: Key, data: &mut dyn RecvBuffer) {
        WorkerStats::add(&self.stats.bytes_in, data.len() as u64);
        let now = self.now;
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.closing() {
            return;
        }
        match &mut c.phase {
            Phase::Open(ws) => {
                ws.handle_buffer(now, data);
                self.process_events(handler, key);
            }
            Phase::Handshake { buf, .. } => {
                let data = &*data.bytes_from(0);
                let limits = self.config.handshake_limits;
                let parsed = if buf.is_empty() {
                    handshake::parse_request(data, &limits)
                } else {
                    buf.extend_from_slice(data);
                    handshake::parse_request(buf, &limits)
                };
                match parsed {
                    Ok(None) => {
                        if buf.is_empty() {
                            buf.extend_from_slice(data);
                        }
                    }
                    Err(e) => self.reject(key, &e),
                    Ok(Some((req, used))) => {
                        let rest = if buf.is_empty() {
                            Bytes::copy_from_slice(&data[used..])
                        } else {
                            Bytes::copy_from_slice(&buf[used..])
                        };
                        self.upgrade(handler, key, &req, &rest);
                    }
                }
            }
            Phase::Draining { .. } => {}
        }
    }

    /// Answers a failed upgrade and closes after the answer is out.
    fn reject(&mut self, key: Key, err: &HandshakeError) {
        WorkerStats::add(&self.stats.handshake_failures, 1);
        if matches!(err, HandshakeError::Rejected(_)) {
            WorkerStats::add(&self.stats.rejected, 1);
        }
        let mut resp = Vec::new();
        err.write_response(&mut resp);
        let deadline = self.now + REJECT_LINGER;
        let Some(c) = self.conns.get_mut(key) else { return };
        c.pend().unsent.push(Bytes::from(resp));
        c.phase = Phase::Draining { deadline };
        self.unschedule(key);
        self.mark_dirty(key);
        self.schedule(key);
    }

    fn upgrade<H: Handler>(
        &mut self,
        handler: &mut H,
        key: Key,
        req: &handshake::Request,
        rest: &[u8],
    ) {
        if let Some(check) = &self.config.origin_check {
            if !check(req.origin.as_deref()) {
                self.reject(key, &HandshakeError::Rejected(403));
                return;
            }
        }
        let ws = Connection::server(self.frame_config.clone(), self.now);
        let Some(c) = self.conns.get_mut(key) else { return };
        c.phase = Phase::Open(ws);
        let protocol = match handler.on_open(&mut Ctx { core: self, key }, req) {
            Upgrade::Accept => None,
            Upgrade::AcceptProtocol(p) => Some(p),
            Upgrade::Reject(status) => {
                self.reject(key, &HandshakeError::Rejected(status));
                return;
            }
        };
        let mut resp = Vec::with_capacity(160);
        if let Err(e) = req.accept(protocol.as_deref(), &[], &mut resp) {
            // The handler chose a subprotocol the client did not offer: our bug, but
            // the client must not see a broken handshake.
            self.reject(key, &e);
            return;
        }
        let Some(c) = self.conns.get_mut(key) else { return };
        c.pend().unsent.push(Bytes::from(resp));
        self.unschedule(key); // the handshake deadline no longer applies
        self.mark_dirty(key);
        if !rest.is_empty() {
            let now = self.now;
            if let Some(ws) = self.conns.get_mut(key).and_then(Conn::ws) {
                ws.handle_bytes(now, rest);
            }
        }
        self.process_events(handler, key);
    }

    fn on_recv_ended<H: Handler>(&mut self, handler: &mut H, key: Key, why: RecvEnd) {
        let Some(c) = self.conns.get_mut(key) else { return };
        c.set_recv_armed(false);
        match why {
            RecvEnd::Rearm | RecvEnd::NoBuffers if !c.closing() => {
                c.set_recv_armed(true);
                self.ops.push(Op::StartRecv(key));
            }
            RecvEnd::Eof | RecvEnd::Error(_) if !c.closing() => {
                if matches!(c.phase, Phase::Handshake { .. }) {
                    WorkerStats::add(&self.stats.handshake_failures, 1);
                }
                let now = self.now;
                if let Some(ws) = c.ws() {
                    ws.handle_eof(now);
                    self.process_events(handler, key);
                }
                self.begin_close(key);
            }
            _ => self.maybe_finish_close(key),
        }
    }

    fn on_sent<H: Handler>(
        &mut self,
        handler: &mut H,
        key: Key,
        result: Result<usize, rustix::io::Errno>,
        mut chunks: Vec<Bytes>,
    ) {
        let Some(c) = self.conns.get_mut(key) else { return };
        c.inflight = None;
        match result {
            Ok(mut n) => {
                WorkerStats::add(&self.stats.bytes_out, n as u64);
                if !c.closing() {
                    // Keep what did not go out, in order, ahead of anything newer.
                    let mut rest = Vec::new();
                    for mut chunk in chunks.drain(..) {
                        if n >= chunk.len() {
                            n -= chunk.len();
                        } else {
                            rest.push(chunk.split_off(n));
                            n = 0;
                        }
                    }
                    if !rest.is_empty() {
                        let p = c.pend();
                        rest.append(&mut p.unsent);
                        p.unsent = rest;
                    }
                }
                self.mark_dirty(key);
            }
            Err(_) if !c.closing() => {
                // The peer is gone (reset, broken pipe).
                let now = self.now;
                if let Some(ws) = c.ws() {
                    ws.handle_eof(now);
                    self.process_events(handler, key);
                }
                self.begin_close(key);
            }
            Err(_) => {}
        }
        chunks.clear();
        if self.vec_pool.len() < 256 {
            self.vec_pool.push(chunks);
        }
        self.maybe_finish_close(key);
    }

    fn on_fd_closed(&mut self, key: Key) {
        self.unschedule(key);
        if let Some(c) = self.conns.remove(key) {
            for t in c.topics() {
                self.topics.remove(t, key);
            }
            WorkerStats::sub(&self.stats.connections, 1);
        }
    }

    pub(crate) fn on_completion<H: Handler>(&mut self, handler: &mut H, c: Completion<'_>) {
        match c {
            Completion::Accepted(sock) => self.on_accept(sock),
            Completion::AcceptFailed => WorkerStats::add(&self.stats.accept_errors, 1),
            Completion::Recv { key, data } => self.on_recv(handler, key, data),
            Completion::RecvEnded { key, why } => self.on_recv_ended(handler, key, why),
            Completion::Sent { key, result, chunks } => self.on_sent(handler, key, result, chunks),
            Completion::FdClosed { key } => self.on_fd_closed(key),
            Completion::Wake => {}
        }
    }

    /// Moves the wheel's due entries (slab slots, now off the wheel) into `due`.
    fn due_timers(&mut self, due: &mut Vec<u32>) {
        // Deadlines were rounded up to a tick; a tick is due once it has fully passed.
        let floor = self.now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.wheel.poll(floor, due);
    }

    /// Runs one connection's due timer.
    fn fire_timer<H: Handler>(&mut self, handler: &mut H, key: Key) {
        let Some(c) = self.conns.get_mut(key) else { return };
        let now = self.now;
        match &mut c.phase {
            Phase::Handshake { deadline, .. } if now >= *deadline => {
                // Slowloris: the upgrade did not complete in time.
                WorkerStats::add(&self.stats.handshake_failures, 1);
                self.begin_close(key);
            }
            Phase::Draining { deadline } if now >= *deadline => self.begin_close(key),
            Phase::Open(ws) => {
                ws.handle_timeout(now);
                self.process_events(handler, key);
            }
            _ => {}
        }
        self.schedule(key);
    }
}

/// A worker: its driver, its handler, and the rest.
pub(crate) struct Worker<D: Driver, H: Handler> {
    pub(crate) driver: D,
    pub(crate) handler: H,
    pub(crate) core: Core,
}

impl<D: Driver, H: Handler> Worker<D, H> {
    fn apply_ops(&mut self) {
        for op in self.core.ops.drain(..) {
            match op {
                Op::AddConn(key, sock) => self.driver.add_conn(key, sock),
                Op::Discard(sock) => self.driver.discard(sock),
                Op::StartRecv(key) => self.driver.start_recv(key),
                Op::Cancel(key) => self.driver.cancel(key),
                Op::Close(key) => self.driver.close(key),
                Op::CloseListeners => self.driver.close_listeners(),
                Op::Send(key, chunks) => self.driver.send(key, chunks),
            }
        }
    }

    /// Sends for every dirty connection, and closes drained ones.
    fn flush(&mut self) {
        let mut round = 0;
        while !self.core.dirty.is_empty() && round < 4 {
            round += 1;
            let dirty = std::mem::take(&mut self.core.dirty);
            for key in &dirty {
                self.flush_one(*key);
            }
            let mut dirty = dirty;
            dirty.clear();
            if self.core.dirty.is_empty() {
                self.core.dirty = dirty;
            }
        }
        self.apply_ops();
    }

    fn flush_one(&mut self, key: Key) {
        let core = &mut self.core;
        let Some(c) = core.conns.get_mut(key) else { return };
        c.set_dirty(false);
        if c.closing() {
            return;
        }
        if c.inflight.is_none() {
            if let Phase::Open(ws) = &mut c.phase {
                while ws.queued_bytes() < CORE_HIGH_WATER {
                    let Some(o) = c.pending.as_mut().and_then(|p| p.pop_backlog()) else {
                        break;
                    };
                    let _ = match o {
                        Outgoing::Msg(m) => ws.send(m),
                        Outgoing::Frame(f) => ws.send_shared_frame(f),
                    };
                }
            }
            let mut chunks = core.vec_pool.pop().unwrap_or_default();
            let mut bytes = 0;
            if let Some(p) = c.pending.as_mut() {
                for chunk in p.unsent.drain(..) {
                    bytes += chunk.len();
                    chunks.push(chunk);
                }
            }
            if let Phase::Open(ws) = &mut c.phase {
                while chunks.len() < MAX_CHUNKS && bytes < MAX_SEND_BYTES {
                    let Some(chunk) = ws.poll_transmit() else { break };
                    bytes += chunk.len();
                    chunks.push(chunk);
                }
            }
            c.shrink();
            if chunks.is_empty() {
                core.vec_pool.push(chunks);
            } else {
                c.inflight = std::num::NonZeroU32::new(bytes.clamp(1, u32::MAX as usize) as u32);
                self.driver.send(key, chunks);
            }
        }
        let c = match core.conns.get_mut(key) {
            Some(c) => c,
            None => return,
        };
        if c.over_limit() && c.queued_bytes() <= core.config.low_watermark {
            c.set_over_limit(false);
            if matches!(c.phase, Phase::Open(_)) {
                self.handler.on_writable(&mut Ctx { core: &mut self.core, key });
            }
        }
        let core = &mut self.core;
        let Some(c) = core.conns.get_mut(key) else { return };
        if matches!(c.phase, Phase::Draining { .. }) && c.inflight.is_none() && c.unsent_is_empty()
        {
            core.begin_close(key);
        }
    }

    /// Fires due timers. A connection whose timer queued a frame (a heartbeat ping, a
    /// close) is flushed at once, so its protocol buffers are freed before the next one:
    /// heartbeats of many connections due together never hold buffers all at once.
    fn fire_timers(&mut self) {
        let mut due = std::mem::take(&mut self.core.due_scratch);
        self.core.due_timers(&mut due);
        // Slots are resolved to keys here: connections leave the slab only on completions,
        // which do not run while timers fire, so a due slot still holds its connection.
        for slot in due.drain(..) {
            let Some(key) = self.core.conns.key_at(slot) else { continue };
            self.core.fire_timer(&mut self.handler, key);
            if self.core.conns.get(key).is_some_and(|c| c.dirty()) {
                self.flush_one(key);
            }
        }
        self.core.due_scratch = due;
    }

    fn drain_commands(&mut self) {
        self.core.me.clear_notified();
        for _ in 0..COMMANDS_PER_TURN {
            let Some(cmd) = self.core.me.queue.pop() else { break };
            self.core.run_command(&mut self.handler, cmd);
        }
    }

    /// Runs until shutdown completes.
    pub(crate) fn run(mut self) -> std::io::Result<()> {
        loop {
            self.core.now = clock::now();
            self.drain_commands();
            self.fire_timers();
            if let Some(deadline) = self.core.shutdown_deadline {
                if self.core.now >= deadline {
                    self.core.force_close_all(&mut self.handler);
                }
            }
            self.flush();
            if self.core.shutdown_deadline.is_some()
                && self.core.conns.len() == 0
                && self.driver.in_flight() == 0
            {
                return Ok(());
            }
            let mut timeout = match self.core.wheel.next_deadline() {
                Some(tick) => {
                    let at = self.core.epoch + Duration::from_millis(tick);
                    at.saturating_duration_since(clock::now())
                }
                None => Duration::from_secs(1),
            };
            if let Some(d) = self.core.shutdown_deadline {
                timeout = timeout.min(d.saturating_duration_since(clock::now()));
            }
            // Work already known (commands, socket ops, connections left dirty by a busy
            // flush) must not wait for the next completion.
            if !self.core.me.queue.is_empty()
                || !self.core.ops.is_empty()
                || !self.core.dirty.is_empty()
            {
                timeout = Duration::ZERO;
            }
            let stats = &self.core.stats;
            stats.rings.store(self.driver.rings() as u64, std::sync::atomic::Ordering::Relaxed);
            let lent = self.driver.messages_lent();
            stats.messages_lent.store(lent, std::sync::atomic::Ordering::Relaxed);
            let hits = self.driver.busy_poll_hits();
            stats.busy_poll_hits.store(hits, std::sync::atomic::Ordering::Relaxed);
            let Self { driver, handler, core } = &mut self;
            core.now = clock::now();
            driver.wait(Some(timeout), &mut |c| core.on_completion(handler, c))?;
            WorkerStats::add(&self.core.stats.loop_turns, 1);
        }
    }
}
