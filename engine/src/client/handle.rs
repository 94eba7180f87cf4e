//! [`ClientHandle`]: an outgoing connection as other threads see it, and what its
//! worker is handed to dial it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringwire_frame::{CloseCode, Message};

use super::config::ClientConfig;
use super::health::{HealthSnapshot, Level};
use super::lifecycle::ClientState;
use super::limiter::RateLimiter;
use super::target::Target;
use crate::handle::{ClientRef, Command, ConnId, SendError, WorkerShared};
use crate::slab::Key;

/// A client's [`ClientShared`], as its handles and its worker hold it.
pub(crate) type SharedRef = triomphe::Arc<ClientShared>;

/// No slab key yet (the worker has not taken the dial command).
const NO_KEY: u64 = u64::MAX;

/// What a client's handle and its worker share: the state, the health summary and the
/// bytes queued, for any thread to read, and the slab key the worker gave it, which
/// stays the same across reconnects. Two words behind an `Arc` without a weak count
/// (`triomphe`): a 24-byte allocation, i.e. glibc's smallest chunk (32 bytes), on every
/// client.
#[derive(Debug)]
pub(crate) struct ClientShared {
    /// The state, the health summary and the bytes queued: see `word`.
    word: AtomicU64,
    key: AtomicU64,
}

/// The fields of `ClientShared::word`, low bits first: the state (3 bits), the health
/// level (2: 0 ok, 1 warn, 2 critical), the heartbeat loss in hundredths (7), the failure
/// streak (8, saturating at 255), the p95 RTT (12, [`rtt_code`]; all ones: none yet) as
/// of the last heartbeat or attempt, and the bytes sent through handles and not yet
/// written to the socket (32, saturating; approximate: the worker takes off what it
/// writes, frame headers and control frames included).
mod word {
    pub(super) const STATE: (u32, u64) = (0, 0b111);
    pub(super) const LEVEL: (u32, u64) = (3, 0b11);
    pub(super) const LOSS: (u32, u64) = (5, (1 << 7) - 1);
    pub(super) const STREAK: (u32, u64) = (12, (1 << 8) - 1);
    pub(super) const RTT: (u32, u64) = (20, (1 << 12) - 1);
    pub(super) const QUEUED: (u32, u64) = (32, (1 << 32) - 1);

    pub(super) fn get(w: u64, f: (u32, u64)) -> u64 {
        (w >> f.0) & f.1
    }

    /// `w` with field `f` set to `v` (saturated to the field).
    pub(super) fn set(w: u64, f: (u32, u64), v: u64) -> u64 {
        (w & !(f.1 << f.0)) | (v.min(f.1) << f.0)
    }
}

/// An RTT in microseconds as a 12-bit float: 8 bits of mantissa under a 4-bit exponent,
/// exact below 256 us and within 0.4% above, up to 8.4 s (the health histogram reads
/// 1.45 s at most); all ones is kept for "none".
fn rtt_code(us: u64) -> u64 {
    if us < 256 {
        return us;
    }
    // The exponent puts the leading one at bit 8; the code is (e, mantissa below it).
    let e = u64::from(63 - us.leading_zeros()) - 7;
    if e > 15 {
        return word::RTT.1 - 1;
    }
    ((e << 8) | ((us >> (e - 1)) & 0xff)).min(word::RTT.1 - 1)
}

/// The microseconds a [`rtt_code`] stands for (the bottom of its step).
fn rtt_of_code(code: u64) -> u64 {
    let (e, m) = (code >> 8, code & 0xff);
    if e == 0 {
        m
    } else {
        (256 | m) << (e - 1)
    }
}

/// A client's health as its handle sees it, from any thread
/// ([`ClientHandle::health`]); the full figures are [`crate::Ctx::health`] on the
/// worker.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HealthSummary {
    /// The level against the client's thresholds.
    pub level: Level,
    /// p95 round trip of the heartbeats (`None` before the first pong), within 0.4%
    /// of the worker's figure.
    pub rtt_p95: Option<Duration>,
    /// Share of the last 32 heartbeats lost (0 to 1), to the hundredth.
    pub loss: f32,
    /// Failed attempts in a row (255 at most).
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
            word: AtomicU64::new(word::set(0, word::RTT, u64::MAX)),
            key: AtomicU64::new(NO_KEY),
        }
    }

    pub(crate) fn add_queued(&self, n: usize) {
        self.update(Ordering::Relaxed, |w| {
            let q = word::get(w, word::QUEUED).saturating_add(n as u64);
            word::set(w, word::QUEUED, q)
        });
    }

    /// The worker wrote `n` bytes of this client's to its socket.
    pub(crate) fn sub_queued(&self, n: usize) {
        self.update(Ordering::Relaxed, |w| {
            let q = word::get(w, word::QUEUED).saturating_sub(n as u64);
            word::set(w, word::QUEUED, q)
        });
    }

    /// The connection is gone: what was queued on it is gone too.
    pub(crate) fn reset_queued(&self) {
        self.update(Ordering::Relaxed, |w| word::set(w, word::QUEUED, 0));
    }

    pub(crate) fn queued(&self) -> u64 {
        word::get(self.word.load(Ordering::Relaxed), word::QUEUED)
    }

    /// Changes the word with `f` (a handle's send or `reopen` may change it at the same
    /// time).
    fn update(&self, order: Ordering, f: impl Fn(u64) -> u64) {
        let _ = self.word.fetch_update(order, Ordering::Relaxed, |w| Some(f(w)));
    }

    /// Written by the worker after each heartbeat and attempt (one word: the figures a
    /// reader sees are of one sample).
    pub(crate) fn set_health(&self, h: &HealthSnapshot) {
        let rtt = h
            .rtt_p95
            .map_or(word::RTT.1, |d| rtt_code(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)));
        let loss = (h.loss * 100.0).round() as u64;
        let level = match h.level {
            Level::Ok => 0,
            Level::Warn => 1,
            Level::Critical => 2,
        };
        self.update(Ordering::Relaxed, |w| {
            let w = word::set(w, word::RTT, rtt);
            let w = word::set(w, word::LOSS, loss);
            let w = word::set(w, word::STREAK, u64::from(h.streak));
            word::set(w, word::LEVEL, level)
        });
    }

    fn health(&self) -> HealthSummary {
        let w = self.word.load(Ordering::Relaxed);
        let rtt = word::get(w, word::RTT);
        HealthSummary {
            level: match word::get(w, word::LEVEL) {
                0 => Level::Ok,
                1 => Level::Warn,
                _ => Level::Critical,
            },
            rtt_p95: (rtt != word::RTT.1).then(|| Duration::from_micros(rtt_of_code(rtt))),
            loss: word::get(w, word::LOSS) as f32 / 100.0,
            streak: word::get(w, word::STREAK) as u32,
        }
    }

    /// Written by the worker at each transition.
    pub(crate) fn set_state(&self, s: ClientState) {
        self.update(Ordering::Release, |w| word::set(w, word::STATE, u64::from(state_code(s))));
    }

    pub(crate) fn state(&self) -> ClientState {
        state_of(word::get(self.word.load(Ordering::Acquire), word::STATE) as u8)
    }

    /// An ended (`Closed`) client's state back to `Disconnected`, for a new dial under
    /// the same handle; `true` for the one caller that did it. The old key goes with it:
    /// until the worker takes the new dial, the handle's commands find the client through
    /// this state ([`ClientRef::Pending`]), not through a key that names the ended one.
    pub(crate) fn reopen(&self) -> bool {
        let (closed, fresh) = (
            u64::from(state_code(ClientState::Closed)),
            u64::from(state_code(ClientState::Disconnected)),
        );
        self.word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (word::get(w, word::STATE) == closed).then(|| word::set(w, word::STATE, fresh))
            })
            .is_ok_and(|_| {
                self.key.store(NO_KEY, Ordering::Release);
                true
            })
    }

    pub(crate) fn set_key(&self, key: Key) {
        self.key.store(key.pack(), Ordering::Release);
    }

    pub(crate) fn key(&self) -> Option<Key> {
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
    pub(crate) shared: SharedRef,
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
    pub(crate) shared: SharedRef,
    pub(crate) worker: Arc<WorkerShared>,
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("worker", &self.worker.index())
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
        self.shared.key().map(|key| ConnId { worker: self.worker.index(), key })
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
        if self.state() == ClientState::Closed {
            return Err(SendError::Closed);
        }
        self.worker
            .push(Command::SendDurable(Box::new(crate::handle::DurableSend {
                client: self.client_ref(),
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
        if self.state() == ClientState::Closed {
            return Err(DurableError::Closed);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.worker
            .push(Command::SendDurable(Box::new(crate::handle::DurableSend {
                client: self.client_ref(),
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
        if self.state() == ClientState::Closed {
            return Err(SendError::Closed);
        }
        let cmd = match self.client_ref() {
            ClientRef::Key(key) => Command::Close(key, code, reason.to_owned()),
            ClientRef::Pending(shared) => {
                Command::CloseClient(Box::new((shared, code, reason.to_owned())))
            }
        };
        self.worker.push(cmd).map_err(|_| SendError::QueueFull)
    }

    /// Whom a command of this handle is for (see [`ClientRef`]).
    fn client_ref(&self) -> ClientRef {
        match self.shared.key() {
            Some(key) => ClientRef::Key(key),
            None => ClientRef::Pending(self.shared.clone()),
        }
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

    #[test]
    fn state_health_and_queue_share_a_word_without_disturbing_each_other() {
        assert_eq!(std::mem::size_of::<ClientShared>(), 16, "two words");
        // The Arc's header is its one count (no weak count): 8 + 16 = 24 bytes, which
        // glibc serves from its smallest chunk.
        let arc = SharedRef::new(ClientShared::new());
        let header = arc.as_ptr() as usize - arc.heap_ptr() as usize;
        assert_eq!(header + std::mem::size_of::<ClientShared>(), 24, "header {header} B");
        let sh = ClientShared::new();
        assert_eq!(sh.state(), ClientState::Disconnected);
        assert_eq!(sh.health().rtt_p95, None);
        let mut h = HealthSnapshot {
            rtt_p50: None,
            rtt_p95: Some(Duration::from_micros(1_234)),
            rtt_p99: None,
            jitter: Duration::ZERO,
            loss: 0.25,
            heartbeats: 4,
            streak: 70_000, // saturates at 255
            level: Level::Warn,
        };
        sh.set_state(ClientState::Connected);
        sh.add_queued(5_000);
        sh.set_health(&h);
        assert_eq!(sh.state(), ClientState::Connected);
        let got = sh.health();
        // 1,234 us as a 12-bit float: 1,232 (the step below it, 0.2% off).
        assert_eq!(got.rtt_p95, Some(Duration::from_micros(1_232)));
        assert_eq!((got.loss, got.streak, got.level), (0.25, 255, Level::Warn));
        assert_eq!(sh.queued(), 5_000, "the health left the queue alone");
        sh.sub_queued(6_000);
        assert_eq!(sh.queued(), 0, "saturates at zero");
        sh.add_queued(usize::MAX);
        assert_eq!(sh.queued(), u64::from(u32::MAX), "saturates at 4 GiB");
        assert_eq!(sh.health(), got, "the queue left the health alone");
        sh.reset_queued();
        sh.set_state(ClientState::Closed);
        assert_eq!(sh.health(), got, "a transition leaves the figures");
        assert_eq!(sh.queued(), 0);
        sh.set_key(Key { slot: 3, gen: 1 });
        assert!(sh.reopen() && !sh.reopen(), "once, from Closed");
        assert_eq!(sh.state(), ClientState::Disconnected);
        assert_eq!(sh.key(), None, "the ended client's key goes with it");
        h.rtt_p95 = Some(Duration::from_secs(3600));
        sh.set_health(&h);
        let top = sh.health().rtt_p95.unwrap();
        assert!(top > Duration::from_secs(8) && top < Duration::from_millis(8_400), "{top:?}");
        assert_eq!(sh.state(), ClientState::Disconnected);
    }

    /// What an application keeps per client: two pointers.
    #[test]
    fn a_handle_is_two_words() {
        assert_eq!(std::mem::size_of::<ClientHandle>(), 16);
    }

    #[test]
    fn rtt_codes_are_exact_below_256_us_and_within_half_a_percent_above() {
        for us in 0..256 {
            assert_eq!(rtt_of_code(rtt_code(us)), us);
        }
        let mut last = 0;
        for us in (256..8_300_000u64).step_by(997) {
            let code = rtt_code(us);
            assert!(code < word::RTT.1, "all ones is 'none'");
            let back = rtt_of_code(code);
            assert!(back <= us && (us - back) as f64 <= us as f64 * 0.004, "{us}: {back}");
            assert!(code >= last, "codes keep the order");
            last = code;
        }
        assert_eq!(rtt_code(u64::MAX), word::RTT.1 - 1, "saturates one below 'none'");
    }
}
