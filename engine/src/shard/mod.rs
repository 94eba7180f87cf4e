//! A worker's shard: its connections, topics and timers, and every change to them that
//! does not call the application. [`crate::Ctx`] acts through these methods; the event
//! loop (`crate::worker`) adds the ones that run handler callbacks.
//!
//! Socket work that the shard decides on while the driver is busy reporting completions
//! is queued as [`Op`]s and submitted by the loop right after.

mod grants;
mod timers;
mod tls;

pub(crate) use self::timers::Timers;
pub(crate) use self::tls::{TlsRecv, TlsTable, Window};

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwire_frame::handshake::HandshakeError;
use ringwire_frame::{CloseCode, Config as FrameConfig};

use crate::client::{ClientEvent, ClientState, Dialer, Level, Rng, StateChange};
use crate::config::EngineConfig;
use crate::conn::{reject_response, Conn, Enqueued, Outgoing, Refused, SendLimits, SocketStep};
use crate::handle::{shared_frame, Command, SendError, Topic, WorkerShared};
use crate::log::Noisy;
use crate::slab::{Key, Slab};
use crate::stats::WorkerStats;
use crate::sys::Socket;
use crate::topics::Topics;

/// Below this many queued bytes in the protocol core, whole messages move from the
/// backlog into it; above, they wait in the backlog where `DropOldest` can drop them.
const CORE_HIGH_WATER: usize = 64 * 1024;
/// Most chunks and bytes in one vectored send.
const MAX_CHUNKS: usize = 64;
const MAX_SEND_BYTES: usize = 1 << 20;
/// How long a rejected upgrade may take to flush its error response.
const REJECT_LINGER: Duration = Duration::from_secs(1);
/// Vectors of chunks kept for reuse by sends.
const VEC_POOL: usize = 256;

/// Socket work for the driver, applied after the current batch of completions.
pub(crate) enum Op {
    AddConn(Key, Socket),
    Discard(Socket),
    StartRecv(Key),
    Cancel(Key),
    Close(Key),
    CloseListeners,
    /// A send; the connection's send in flight is already set.
    Send(Key, Vec<Bytes>),
    /// A client's connect; its socket was added just before.
    Connect(Key, std::net::SocketAddr),
    /// The outbox's sync: `fdatasync` of these files, after which every record before
    /// `upto` is durable.
    Sync(u64, Vec<std::fs::File>),
}

/// A worker's state apart from its driver and handler.
pub(crate) struct Core {
    pub(crate) id: u16,
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) frame_config: Arc<FrameConfig>,
    pub(crate) limits: SendLimits,
    pub(crate) conns: Slab<Conn>,
    pub(crate) topics: Topics,
    pub(crate) timers: Timers,
    /// The time this loop turn started (the clock is read by the loop only).
    pub(crate) now: Instant,
    /// Connections with something to send, each once (`Conn::dirty`).
    pub(crate) dirty: Vec<Key>,
    pub(crate) ops: Vec<Op>,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) me: Arc<WorkerShared>,
    pub(crate) all: Arc<[Arc<WorkerShared>]>,
    pub(crate) shutdown_deadline: Option<Instant>,
    vec_pool: Vec<Vec<Bytes>>,
    /// Client connections' records, by slab slot (only clients pay for them).
    pub(crate) clients: crate::client::ClientTable,
    /// The event streams of stream clients (`ClientStream`), by slab slot: apart from
    /// the records, so that a client with a handler does not carry the field.
    pub(crate) sinks: crate::hash::IntMap<u32, std::sync::Arc<crate::client::EventSink>>,
    /// When the busiest topics are next reported (while an admin dashboard watches).
    pub(crate) topics_report_at: Instant,
    /// Keeps what peers cause from flooding the log.
    pub(crate) log_limits: crate::log::LogLimits,
    /// The other nodes (publishes out, this worker's interest in topics), when the
    /// engine is one of a cluster.
    pub(crate) cluster: Option<Arc<crate::cluster::ClusterShared>>,
    /// What the authorizer granted each connection, by slab slot (only with an
    /// authorizer).
    pub(crate) grants: crate::hash::IntMap<u32, Arc<crate::auth::Grant>>,
    /// When the grants are next checked for expiry.
    pub(crate) grants_checked_at: Instant,
    /// Client state changes and health alerts not yet delivered to the handler's
    /// `on_state` / `on_health`.
    pub(crate) changes: Vec<(Key, ClientEvent)>,
    /// Backoff jitter, upgrade nonces and masking-key seeds, seeded from the OS.
    pub(crate) rng: Rng,
    pub(crate) dialer: Arc<Dialer>,
    /// When the handler asked for its next `on_wake` (`Ctx::wake_at`, `WorkerCtx::wake_at`):
    /// the earliest time asked for since the last one.
    pub(crate) wake_at: Option<Instant>,
    /// The worker's durable outbox, if the engine has one.
    pub(crate) outbox: Option<Box<crate::outbox::worker::WorkerOutbox>>,
    /// The engine's duplicate filter, if it has one ([`EngineConfig::receipts`]).
    pub(crate) receipts: Option<Arc<crate::outbox::receipts::Receipts>>,
    /// Connections that took a stream of the filter, by slab slot.
    pub(crate) receiving: crate::outbox::ReceivingMap,
    /// Clients' streams in the filter while they are not connected, by slab slot (the
    /// client takes durable messages from the server; only such clients pay for it).
    pub(crate) parked: crate::hash::IntMap<u32, crate::outbox::receipts::Checkout>,
    /// The durable message `on_message` is handling, if it is one.
    pub(crate) delivering: Option<crate::outbox::Delivery>,
    /// TLS connections' sessions, by slab slot (only TLS connections have one).
    pub(crate) tls: TlsTable,
}

/// 8 bytes from the kernel's random source (getrandom(2)); the clock if it fails.
fn os_seed() -> u64 {
    let mut b = [0u8; 8];
    match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// Keeps a send's vector (emptied) for the next send, up to [`VEC_POOL`] of them.
fn recycle(pool: &mut Vec<Vec<Bytes>>, mut chunks: Vec<Bytes>) {
    chunks.clear();
    if pool.len() < VEC_POOL {
        pool.push(chunks);
    }
}

/// Puts `c` on the list of connections to flush, once.
fn mark_dirty(dirty: &mut Vec<Key>, key: Key, c: &mut Conn) {
    if !c.dirty() {
        c.set_dirty(true);
        dirty.push(key);
    }
}

impl Core {
    pub(crate) fn new(
        id: u16,
        config: Arc<EngineConfig>,
        stats: Arc<WorkerStats>,
        me: Arc<WorkerShared>,
        all: Arc<[Arc<WorkerShared>]>,
        dialer: Arc<Dialer>,
        now: Instant,
    ) -> Self {
        let max_conns = config.max_connections_per_worker;
        let limits = SendLimits {
            max_queued: config.max_queued_bytes,
            policy: config.backpressure,
            low_watermark: config.low_watermark,
            core_high_water: CORE_HIGH_WATER,
            max_chunks: MAX_CHUNKS,
            max_send_bytes: MAX_SEND_BYTES,
        };
        Self {
            id,
            frame_config: Arc::new(config.frame.clone()),
            limits,
            config,
            // Reserved up front (address space only: pages are touched as connections
            // arrive), so growing never copies a large table in the middle of a burst.
            conns: Slab::with_capacity(max_conns),
            topics: Topics::default(),
            timers: Timers::new(now, max_conns),
            now,
            dirty: Vec::new(),
            ops: Vec::new(),
            stats,
            me,
            all,
            shutdown_deadline: None,
            vec_pool: Vec::new(),
            clients: crate::client::ClientTable::default(),
            sinks: crate::hash::IntMap::default(),
            topics_report_at: now,
            log_limits: crate::log::LogLimits::default(),
            cluster: None,
            grants: crate::hash::IntMap::default(),
            grants_checked_at: now,
            changes: Vec::new(),
            rng: Rng::new(os_seed()),
            dialer,
            wake_at: None,
            outbox: None,
            receipts: None,
            receiving: crate::hash::IntMap::default(),
            parked: crate::hash::IntMap::default(),
            delivering: None,
            tls: TlsTable::default(),
        }
    }

    /// Asks for the handler's `on_wake` at `at` (the earliest time asked for wins).
    pub(crate) fn wake_at(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Dials a client from `spec` on this worker, at once (no queue): its record and
    /// first attempt exist when this returns.
    pub(crate) fn dial_here(
        &mut self,
        spec: &crate::client::ClientSpec,
    ) -> Result<crate::client::ClientHandle, crate::client::ConnectError> {
        if self.shutdown_deadline.is_some() {
            return Err(crate::client::ConnectError::ShuttingDown);
        }
        if self.conns.len() >= self.config.max_connections_per_worker {
            return Err(crate::client::ConnectError::WorkerFull);
        }
        let shared = triomphe::Arc::new(crate::client::ClientShared::new());
        self.dial(crate::client::Dial { spec: spec.0.clone(), shared: shared.clone(), sink: None });
        Ok(crate::client::ClientHandle { shared, worker: self.me.clone() })
    }

    /// Queues a client's state change for the handler (see `worker::dial`).
    pub(crate) fn queue_change(&mut self, key: Key, change: Option<StateChange>) {
        let Some(c) = change else { return };
        let s = &self.stats;
        match (c.from, c.to) {
            (_, ClientState::Connected) => WorkerStats::add(&s.clients_connected, 1),
            (ClientState::Connected, _) => WorkerStats::sub(&s.clients_connected, 1),
            _ => {}
        }
        if c.to == ClientState::Reconnecting {
            WorkerStats::add(&s.client_losses, 1);
            WorkerStats::add(&s.clients_reconnecting, 1);
        }
        if c.from == ClientState::Reconnecting {
            WorkerStats::sub(&s.clients_reconnecting, 1);
        }
        if c.to == ClientState::Closed {
            WorkerStats::sub(&s.clients, 1);
            if self.clients.get(&key.slot).is_some_and(|cl| cl.health.reported() != Level::Ok) {
                WorkerStats::sub(&s.clients_degraded, 1);
            }
        }
        // A stream client's changes go straight to its stream, in order with its
        // messages; a handler's wait for the next safe point (no re-entry).
        if let Some(sink) = self.client_sink(key) {
            sink.push(crate::client::Event::State(c));
            return;
        }
        self.changes.push((key, ClientEvent::State(c)));
    }

    /// The stream a client's events go to, if it has one.
    #[inline]
    pub(crate) fn client_sink(&self, key: Key) -> Option<&crate::client::EventSink> {
        if self.sinks.is_empty() {
            return None;
        }
        self.sinks.get(&key.slot).map(|s| &**s)
    }

    /// Queues a client's health alert for the handler (a stream client has none: its
    /// figures are read with `Ctx::health`).
    pub(crate) fn queue_alert(&mut self, key: Key, alert: Option<ClientEvent>) {
        if self.client_sink(key).is_some() {
            return;
        }
        if let Some(a) = alert {
            self.changes.push((key, a));
        }
    }

    pub(crate) fn mark_dirty(&mut self, key: Key) {
        if let Some(c) = self.conns.get_mut(key) {
            mark_dirty(&mut self.dirty, key, c);
        }
    }

    /// Keeps the connection's wheel entry at or before its next deadline.
    pub(crate) fn schedule(&mut self, key: Key) {
        if let Some(c) = self.conns.get(key) {
            self.timers.schedule(key, c);
            // A client's application heartbeat shares the entry (the earlier wins).
            if !c.closing() {
                if let Some(at) = self.client_app_due(key) {
                    self.timers.schedule_at(key, at);
                }
            }
        }
    }

    /// When a client's application heartbeat is next due, if it has one running.
    fn client_app_due(&self, key: Key) -> Option<Instant> {
        if self.clients.is_empty() {
            return None;
        }
        let now = self.now;
        self.clients.get(&key.slot)?.app_due().map(|t| t.instant(now))
    }

    /// A vector for a send's chunks.
    pub(crate) fn chunk_vec(&mut self) -> Vec<Bytes> {
        self.vec_pool.pop().unwrap_or_default()
    }

    /// Takes back a send's vector (emptied) for reuse.
    pub(crate) fn recycle(&mut self, chunks: Vec<Bytes>) {
        recycle(&mut self.vec_pool, chunks);
    }

    /// Queues a message on a connection, subject to the backpressure policy.
    pub(crate) fn enqueue(&mut self, key: Key, out: Outgoing) -> Result<(), SendError> {
        let Some(c) = self.conns.get_mut(key) else { return Err(SendError::Closed) };
        match c.enqueue(out, &self.limits, &self.stats) {
            Ok(Enqueued::Queued) => {
                mark_dirty(&mut self.dirty, key, c);
                Ok(())
            }
            Ok(Enqueued::Direct(frame)) => {
                let mut chunks = self.chunk_vec();
                chunks.push(frame);
                self.ops.push(Op::Send(key, chunks));
                Ok(())
            }
            Err(Refused::Closed) => Err(SendError::Closed),
            Err(Refused::Backpressure) => Err(SendError::Backpressure),
            Err(Refused::SlowConsumer) => {
                self.close_slow(key);
                Err(SendError::Backpressure)
            }
        }
    }

    /// Sends a heartbeat ping whose pong reports its RTT.
    pub(crate) fn ping(&mut self, key: Key) -> Result<u32, SendError> {
        let now = self.now;
        let c = self.conns.get_mut(key).ok_or(SendError::Closed)?;
        let seq = c.ws().ok_or(SendError::Closed)?.send_ping(now)?;
        mark_dirty(&mut self.dirty, key, c);
        Ok(seq)
    }

    /// Starts the close handshake behind every message already accepted for sending: the
    /// backlog moves into the protocol core first, so the close frame is the last frame.
    pub(crate) fn close(
        &mut self,
        key: Key,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        let now = self.now;
        let c = self.conns.get_mut(key).ok_or(SendError::Closed)?;
        match c.ws() {
            Some(ws) if !ws.is_closing() && !ws.is_closed() => {}
            _ => return Err(SendError::Closed),
        }
        c.feed_core(usize::MAX, &self.stats);
        let ws = c.ws().ok_or(SendError::Closed)?;
        ws.close(now, code, reason)?;
        mark_dirty(&mut self.dirty, key, c);
        self.timers.schedule(key, c);
        Ok(())
    }

    /// Closes a slow consumer with 1008. Messages already accepted (at most
    /// `max_queued_bytes`) still go out before the close frame: nothing accepted is lost
    /// silently. Counted in `slow_closes`.
    fn close_slow(&mut self, key: Key) {
        WorkerStats::add(&self.stats.slow_closes, 1);
        if let Some(suppressed) = self.log_limits.allow(Noisy::SlowConsumer, self.now) {
            tracing::warn!(
                worker = self.id,
                max_queued_bytes = self.config.max_queued_bytes,
                suppressed,
                "slow consumer closed (1008)"
            );
        }
        let _ = self.close(key, CloseCode::POLICY, "slow consumer");
    }

    /// Subscribes a connection to `topic`, within the per-connection limits.
    pub(crate) fn subscribe(&mut self, key: Key, topic: Topic) -> Result<(), SendError> {
        if !self.granted(key, &topic, false) {
            return Err(SendError::NotAllowed);
        }
        let max_topics = self.config.max_topics_per_connection;
        let max_len = self.config.max_topic_len;
        let c = self.conns.get_mut(key).ok_or(SendError::Closed)?;
        if !c.is_open() || c.closing() {
            return Err(SendError::Closed);
        }
        if topic.len() > max_len {
            WorkerStats::add(&self.stats.subscribes_refused, 1);
            return Err(SendError::TopicTooLong { len: topic.len(), max: max_len });
        }
        if c.topics().len() >= max_topics && !c.topics().contains(&topic) {
            WorkerStats::add(&self.stats.subscribes_refused, 1);
            return Err(SendError::TooManyTopics { max: max_topics });
        }
        if c.subscribe(&topic) {
            self.topics.add(&topic, key);
        }
        Ok(())
    }

    pub(crate) fn unsubscribe(&mut self, key: Key, topic: &str) {
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.unsubscribe(topic) {
            self.topics.remove(topic, key);
        }
    }

    /// Hands a shared frame to every local subscriber.
    pub(crate) fn deliver(&mut self, topic: &str, frame: &Bytes) {
        // Walk the members without copying them: enqueueing never changes subscriptions
        // (a connection leaves its topics only when its Closed event is processed).
        let Some((name, mut members)) = self.topics.take(topic) else { return };
        members.published += 1;
        if let Some(cfg) = self.frame_config.deflate.clone() {
            // Compressed once per window among the subscribers that agreed
            // permessage-deflate without server context takeover (RFC 7692); the others
            // get the frame as it is.
            let mut compressed: [Option<Option<Bytes>>; 8] = Default::default();
            for key in &members.keys {
                let window = self.conns.get(*key).and_then(|c| c.shared_deflate_window());
                let f = match window {
                    Some(w @ 8..=15) => compressed[usize::from(w - 8)]
                        .get_or_insert_with(|| {
                            ringwire_frame::deflate::compress_frame(frame, w, &cfg)
                        })
                        .clone()
                        .unwrap_or_else(|| frame.clone()),
                    _ => frame.clone(),
                };
                let _ = self.enqueue(*key, Outgoing::Frame(f));
            }
        } else {
            for key in &members.keys {
                let _ = self.enqueue(*key, Outgoing::Frame(frame.clone()));
            }
        }
        self.topics.restore(name, members);
    }

    /// Publishes to every subscriber on every worker: this worker's at once, the others'
    /// through their queues. Returns how many workers took it (this one included); a
    /// worker whose queue is full is skipped and counted in `publishes_dropped`.
    pub(crate) fn publish(&mut self, topic: &str, msg: &ringwire_frame::Message) -> usize {
        let frame = shared_frame(msg);
        self.deliver(topic, &frame);
        let topic: Topic = topic.into();
        if let Some(cl) = &self.cluster {
            cl.publish(&topic, &frame);
        }
        let mut reached = 1;
        for (i, w) in self.all.iter().enumerate() {
            if i != usize::from(self.id) {
                match w.push(Command::Publish(topic.clone(), frame.clone())) {
                    Ok(()) => reached += 1,
                    Err(_) => WorkerStats::add(&self.stats.publishes_dropped, 1),
                }
            }
        }
        reached
    }

    /// The WebSocket part of a connection ended: the rest of its output goes out, the
    /// protocol state is freed, the connection leaves its topics, and the socket closes
    /// once flushed (or after the close timeout).
    pub(crate) fn drain(&mut self, key: Key) {
        let deadline = self.now + self.frame_config.close_timeout;
        let Some(c) = self.conns.get_mut(key) else { return };
        for t in c.drain(deadline) {
            self.topics.remove(&t, key);
        }
        mark_dirty(&mut self.dirty, key, c);
        self.timers.schedule(key, c);
    }

    /// Answers a failed upgrade and closes after the answer is out.
    pub(crate) fn reject(&mut self, key: Key, err: &HandshakeError) {
        self.stats.count_handshake_status(err.status());
        if let Some(suppressed) = self.log_limits.allow(Noisy::UpgradeRefused, self.now) {
            tracing::info!(
                worker = self.id,
                status = err.status(),
                error = %err,
                suppressed,
                "upgrade refused"
            );
        }
        if matches!(err, HandshakeError::Rejected(_)) {
            WorkerStats::add(&self.stats.rejected, 1);
        }
        let deadline = self.now + REJECT_LINGER;
        let Some(c) = self.conns.get_mut(key) else { return };
        c.reject(reject_response(err), deadline);
        // The handshake deadline may be later than the linger: replace the entry.
        self.timers.unschedule(key);
        mark_dirty(&mut self.dirty, key, c);
        self.timers.schedule(key, c);
    }

    /// Starts closing the socket: cancel what is in flight, then close.
    pub(crate) fn begin_close(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(key) else { return };
        match c.begin_close() {
            Some(SocketStep::Cancel) => self.ops.push(Op::Cancel(key)),
            Some(SocketStep::Close) => self.ops.push(Op::Close(key)),
            None => {}
        }
    }

    /// Closes the socket once nothing is in flight any more.
    pub(crate) fn maybe_finish_close(&mut self, key: Key) {
        if self.conns.get_mut(key).is_some_and(Conn::finish_close) {
            self.ops.push(Op::Close(key));
        }
    }

    /// The socket is closed: the connection is gone.
    pub(crate) fn remove(&mut self, key: Key) {
        self.release_stream(key);
        self.tls.remove(key.slot);
        if !self.grants.is_empty() {
            self.grants.remove(&key.slot);
        }
        if let Some(c) = self.conns.remove(key) {
            self.timers.unschedule(key);
            for t in c.topics() {
                self.topics.remove(t, key);
            }
            WorkerStats::sub(&self.stats.connections, 1);
        }
    }

    /// A connection arrived: it gets a record and a receive, unless the worker is full or
    /// shutting down.
    pub(crate) fn accept(&mut self, sock: Socket) {
        WorkerStats::add(&self.stats.accepted, 1);
        if self.conns.len() >= self.config.max_connections_per_worker
            || self.shutdown_deadline.is_some()
        {
            WorkerStats::add(&self.stats.rejected, 1);
            self.ops.push(Op::Discard(sock));
            if self.shutdown_deadline.is_none() {
                if let Some(suppressed) = self.log_limits.allow(Noisy::ConnectionLimit, self.now) {
                    tracing::warn!(
                        worker = self.id,
                        limit = self.config.max_connections_per_worker,
                        suppressed,
                        "connection refused: the worker is full"
                    );
                }
            }
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
        if !self.tls_accept(key) {
            self.begin_close(key);
        }
    }

    /// Sends for one dirty connection, if it can. Returns whether it drained below the
    /// low watermark after having been over the limit (the handler's `on_writable`).
    pub(crate) fn flush_one(&mut self, key: Key) -> bool {
        let Some(c) = self.conns.get_mut(key) else { return false };
        c.set_dirty(false);
        if c.closing() {
            return false;
        }
        if c.tls() {
            return self.tls_flush(key);
        }
        let mut chunks = self.vec_pool.pop().unwrap_or_default();
        if c.next_send(&mut chunks, &self.limits, &self.stats) {
            self.ops.push(Op::Send(key, chunks));
        } else {
            recycle(&mut self.vec_pool, chunks);
        }
        let writable = c.became_writable(self.limits.low_watermark);
        if c.drained() {
            self.begin_close(key);
        }
        writable
    }
}
