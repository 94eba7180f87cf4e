//! [`ClientHandle`]: an outgoing connection as other threads see it, and what its
//! worker is handed to dial it.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringwire_frame::{CloseCode, Message};

use super::config::ClientConfig;
use super::health::{HealthSnapshot, Level};
use super::lifecycle::ClientState;
use super::limiter::RateLimiter;
use super::target::Target;
use crate::handle::{Command, ConnId, SendError, WorkerShared};
use crate::slab::Key;

/// No slab key yet (the worker has not taken the dial command).
const NO_KEY: u64 = u64::MAX;

/// What a client's handle and its worker share: the state, for any thread to read, and
/// the slab key the worker gave it, which stays the same across reconnects.
#[derive(Debug)]
pub(crate) struct ClientShared {
    state: AtomicU8,
    key: AtomicU64,
    /// The health figures as of the last heartbeat or attempt: p95 RTT in
    /// microseconds (`u32::MAX`: none yet), loss in thousandths, the failure streak, the
    /// level (0 ok, 1 warn, 2 critical).
    rtt_p95_us: AtomicU32,
    loss_permille: AtomicU32,
    streak: AtomicU32,
    level: AtomicU8,
    /// Bytes sent through handles and not yet written to the socket (approximate: the
    /// worker takes off what it writes, frame headers and control frames included).
    queued: AtomicU64,
}

/// A client's health as its handle sees it, from any thread
/// ([`ClientHandle::health`]); the full figures are [`crate::Ctx::health`] on the
/// worker.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HealthSummary {
    /// The level against the client's thresholds.
    pub level: Level,
    /// p95 round trip of the heartbeats (`None` before the first pong).
    pub rtt_p95: Option<Duration>,
    /// Share of the last 32 heartbeats lost (0 to 1).
    pub loss: f32,
    /// Failed attempts in a row.
    pub streak: u32,
}

fn state_code(s: ClientState) -> u8 {
    match s {
        ClientState::Disconnected => 0,
        ClientState::Connecting => 1,
        ClientState::Connected => 2,
        ClientState::Reconnecting => 3,
        ClientState::Closed => 4,
    }
}

fn state_of(v: u8) -> ClientState {
    match v {
        1 => ClientState::Connecting,
        2 => ClientState::Connected,
        3 => ClientState::Reconnecting,
        4 => ClientState::Closed,
        _ => ClientState::Disconnected,
    }
}

impl ClientShared {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU8::new(0),
            key: AtomicU64::new(NO_KEY),
            rtt_p95_us: AtomicU32::new(u32::MAX),
            loss_permille: AtomicU32::new(0),
            streak: AtomicU32::new(0),
            level: AtomicU8::new(0),
            queued: AtomicU64::new(0),
        }
    }

    pub(crate) fn add_queued(&self, n: usize) {
        self.queued.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The worker wrote `n` bytes of this client's to its socket.
    pub(crate) fn sub_queued(&self, n: usize) {
        let _ = self.queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
            Some(q.saturating_sub(n as u64))
        });
    }

    /// The connection is gone: what was queued on it is gone too.
    pub(crate) fn reset_queued(&self) {
        self.queued.store(0, Ordering::Relaxed);
    }

    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Written by the worker after each heartbeat and attempt (relaxed: each figure is
    /// whole; a reader may see one figure a sample newer than another).
    pub(crate) fn set_health(&self, h: &HealthSnapshot) {
        let us = h.rtt_p95.map_or(u32::MAX, |d| d.as_micros().min(u128::from(u32::MAX - 1)) as u32);
        self.rtt_p95_us.store(us, Ordering::Relaxed);
        self.loss_permille.store((h.loss * 1000.0).round() as u32, Ordering::Relaxed);
        self.streak.store(h.streak, Ordering::Relaxed);
        let level = match h.level {
            Level::Ok => 0,
            Level::Warn => 1,
            Level::Critical => 2,
        };
        self.level.store(level, Ordering::Relaxed);
    }

    fn health(&self) -> HealthSummary {
        let us = self.rtt_p95_us.load(Ordering::Relaxed);
        HealthSummary {
            level: match self.level.load(Ordering::Relaxed) {
                0 => Level::Ok,
                1 => Level::Warn,
                _ => Level::Critical,
            },
            rtt_p95: (us != u32::MAX).then(|| Duration::from_micros(u64::from(us))),
            loss: self.loss_permille.load(Ordering::Relaxed) as f32 / 1000.0,
            streak: self.streak.load(Ordering::Relaxed),
        }
    }

    /// Written by the worker at each transition.
    pub(crate) fn set_state(&self, s: ClientState) {
        self.state.store(state_code(s), Ordering::Release);
    }

    pub(crate) fn state(&self) -> ClientState {
        state_of(self.state.load(Ordering::Acquire))
    }

    /// An ended (`Closed`) client's state back to `Disconnected`, for a new dial under
    /// the same handle; `true` for the one caller that did it.
    pub(crate) fn reopen(&self) -> bool {
        let (closed, fresh) =
            (state_code(ClientState::Closed), state_code(ClientState::Disconnected));
        self.state.compare_exchange(closed, fresh, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    pub(crate) fn set_key(&self, key: Key) {
        self.key.store(key.pack(), Ordering::Release);
    }

    fn key(&self) -> Option<Key> {
        match self.key.load(Ordering::Acquire) {
            NO_KEY => None,
            v => Some(Key::unpack(v)),
        }
    }
}

/// What a worker needs to dial and redial a client, shared by every client dialled
/// with the same target and configuration at once (`connect_many`, a pool).
pub(crate) struct Spec {
    pub(crate) target: Target,
    pub(crate) config: ClientConfig,
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    /// The protocol core's configuration: the engine's limits with this heartbeat.
    pub(crate) frame: Arc<ringwire_frame::Config>,
    /// The addresses attempts go to: the target's, replaced by a later lookup of its
    /// name (`Dialer::refresh`). Read once per attempt.
    pub(crate) addrs: std::sync::Mutex<Arc<[std::net::SocketAddr]>>,
    /// A lookup is queued or running, and when the last one was asked for.
    pub(crate) refresh: std::sync::Mutex<(bool, Option<std::time::Instant>)>,
}

impl Spec {
    /// The addresses to try now.
    pub(crate) fn addrs(&self) -> Arc<[std::net::SocketAddr]> {
        self.addrs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// A dial target and its configuration, resolved and checked once: every client dialled
/// from it shares one copy of both (and one per-target rate cap), which is what makes a
/// fleet of clients to one upstream cheap. Made by [`crate::Server::client_spec`];
/// dialled with [`crate::Server::dial`], or on a worker with [`crate::Ctx::dial`] and
/// [`crate::WorkerCtx::dial`]. Cheap to clone.
#[derive(Clone)]
pub struct ClientSpec(pub(crate) Arc<Spec>);

impl ClientSpec {
    /// The configuration every client dialled from this spec gets.
    pub fn config(&self) -> &ClientConfig {
        &self.0.config
    }
}

impl std::fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSpec").field("target", &self.0.target.authority).finish()
    }
}

/// One client's dial, for its worker.
pub(crate) struct Dial {
    pub(crate) spec: Arc<Spec>,
    pub(crate) shared: Arc<ClientShared>,
    /// Where the client's events go instead of the handler (a [`super::ClientStream`]).
    pub(crate) sink: Option<Arc<super::stream::EventSink>>,
}

/// An outgoing connection, from any thread: its state, and sends and a close that go to
/// its worker through the worker's command queue. The connection itself lives on its
/// worker, where the handler's callbacks run for it as for an accepted one, with
/// [`crate::Handler::on_state`] at each state change.
///
/// Dropping the handle does not close the connection; [`ClientHandle::close`] does.
#[derive(Clone)]
pub struct ClientHandle {
    pub(crate) shared: Arc<ClientShared>,
    pub(crate) worker: Arc<WorkerShared>,
    pub(crate) worker_index: u16,
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("worker", &self.worker_index)
            .field("state", &self.state())
            .finish()
    }
}

impl ClientHandle {
    /// The state now (it may change right after).
    pub fn state(&self) -> ClientState {
        self.shared.state()
    }

    /// The health figures as of the last heartbeat or attempt.
    pub fn health(&self) -> HealthSummary {
        self.shared.health()
    }

    /// The connection's id, once its worker has taken it up; the same across reconnects.
    pub fn id(&self) -> Option<ConnId> {
        self.shared.key().map(|key| ConnId { worker: self.worker_index, key })
    }

    /// Queues a message. Refused with [`SendError::NotConnected`] unless the state is
    /// `Connected` (messages are not kept across a reconnect: that is the outbox's job);
    /// a message queued just before the connection is lost is dropped with it.
    pub fn send(&self, msg: Message) -> Result<(), SendError> {
        let key = self.connected_key()?;
        let n = msg.len();
        self.shared.add_queued(n);
        self.worker.push(Command::Send(key, msg)).map_err(|_| {
            self.shared.sub_queued(n);
            SendError::QueueFull
        })
    }

    /// Bytes sent through this handle (and its clones) that the worker has not written
    /// to the socket yet: an estimate for picking the least busy of several connections
    /// ([`super::Pool`] with [`super::Pick::LeastQueued`]). Frame headers and control
    /// frames written count against it, so it errs low; it is 0 after a loss.
    pub fn queued_bytes(&self) -> u64 {
        self.shared.queued()
    }

    /// Queues a text message.
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.send(Message::text(text.to_owned()))
    }

    /// Sends `msg` durably, from any thread, as [`crate::Ctx::send_durable`] does on the
    /// worker: the worker gives it the outbox's next id, stores it under the client's
    /// stream and sends it if connected, else at the next connect. Works in every state
    /// but `Closed`. A refusal there (no outbox or stream, a full or failed outbox, a
    /// full send queue) reaches [`crate::Handler::on_durable_refused`] and the stats
    /// (`outbox_refused`); this call fails only when the command cannot be queued.
    pub fn send_durable(&self, msg: Message) -> Result<(), SendError> {
        self.push_durable(None, msg)
    }

    /// As [`ClientHandle::send_durable`] with the application's id, as
    /// [`crate::Ctx::send_durable_as`]: refused on the worker if the outbox holds it or
    /// it is not above every id the outbox issued or took.
    pub fn send_durable_as(&self, id: u128, msg: Message) -> Result<(), SendError> {
        self.push_durable(Some(id), msg)
    }

    fn push_durable(&self, id: Option<u128>, msg: Message) -> Result<(), SendError> {
        let Some(key) = self.shared.key() else { return Err(SendError::NotConnected) };
        if self.state() == ClientState::Closed {
            return Err(SendError::Closed);
        }
        self.worker
            .push(Command::SendDurable(Box::new(crate::handle::DurableSend {
                key,
                id,
                msg,
                reply: None,
            })))
            .map_err(|_| SendError::QueueFull)
    }

    /// Sends `msg` durably and waits (up to `timeout`) until the worker has stored it:
    /// returns its id and position as [`crate::Ctx::send_durable`] does, or the refusal.
    /// For a thread that must know the message is in the outbox (and its id) before it
    /// goes on; it blocks for one trip through the worker's command queue (microseconds
    /// when the worker is not busy). Never call it from a handler: the worker would wait
    /// for itself. [`crate::outbox::DurableError::NoAnswer`] after `timeout`: the
    /// message may still be stored.
    pub fn store_durable(
        &self,
        msg: Message,
        timeout: std::time::Duration,
    ) -> Result<crate::outbox::Accepted, crate::outbox::DurableError> {
        use crate::outbox::DurableError;
        let Some(key) = self.shared.key() else { return Err(DurableError::Closed) };
        if self.state() == ClientState::Closed {
            return Err(DurableError::Closed);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.worker
            .push(Command::SendDurable(Box::new(crate::handle::DurableSend {
                key,
                id: None,
                msg,
                reply: Some(tx),
            })))
            .map_err(|_| DurableError::QueueFull)?;
        rx.recv_timeout(timeout).unwrap_or(Err(DurableError::NoAnswer))
    }

    /// Closes the client for good: the close handshake if connected, and no reconnect
    /// in any state; the state becomes `Closed` (cause `AppClose`). An invalid code or a
    /// reason over 123 bytes is refused with [`SendError::Frame`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        ringwire_frame::CloseFrame::check(code, reason).map_err(SendError::Frame)?;
        let Some(key) = self.shared.key() else { return Err(SendError::NotConnected) };
        if self.state() == ClientState::Closed {
            return Err(SendError::Closed);
        }
        self.worker
            .push(Command::Close(key, code, reason.to_owned()))
            .map_err(|_| SendError::QueueFull)
    }

    fn connected_key(&self) -> Result<Key, SendError> {
        match (self.state(), self.shared.key()) {
            (ClientState::Connected, Some(key)) => Ok(key),
            (ClientState::Closed, _) => Err(SendError::Closed),
            _ => Err(SendError::NotConnected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_round_trip() {
        for s in [
            ClientState::Disconnected,
            ClientState::Connecting,
            ClientState::Connected,
            ClientState::Reconnecting,
            ClientState::Closed,
        ] {
            assert_eq!(state_of(state_code(s)), s);
        }
    }
}
