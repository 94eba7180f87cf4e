//! The application's side: a [`Handler`] runs on the worker thread that owns the
//! connection, with a [`Ctx`] to act on it.

mod ctx;
mod worker_ctx;

pub use self::ctx::Ctx;
pub use self::worker_ctx::WorkerCtx;

use std::time::Duration;

use ringwire_frame::handshake::Request;
use ringwire_frame::{Closed, Message};

/// The answer to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// Accept without a subprotocol.
    Accept,
    /// Accept with this subprotocol (one the client offered).
    AcceptProtocol(String),
    /// Refuse with this HTTP status (e.g. 401, 403, 404).
    Reject(u16),
}

/// Connection callbacks. One handler value exists per worker (made by the factory given
/// to [`crate::EngineBuilder::start`]) and runs on that worker's thread, so it needs no
/// locks and need not be `Send`. Callbacks must not block: they run inside the event loop.
///
/// A callback that panics does not take its worker down: the panic is caught at the
/// callback, the connection it ran for is closed with 1011 (internal error; an upgrade
/// is refused with 500), the worker's other connections go on, and the panic is counted
/// in `StatsSnapshot::handler_panics` and logged. The handler value itself is kept, so
/// state it left half-changed stays that way: keep callbacks panic-free.
pub trait Handler: 'static {
    /// An upgrade request arrived. Default: accept. Messages sent here go out right after
    /// the 101 response.
    fn on_open(&mut self, cx: &mut Ctx<'_>, req: &Request) -> Upgrade {
        let _ = (cx, req);
        Upgrade::Accept
    }

    /// A complete message arrived.
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message);

    /// A pong arrived; `rtt` is set when it answers a heartbeat ping.
    fn on_pong(&mut self, cx: &mut Ctx<'_>, rtt: Option<Duration>) {
        let _ = (cx, rtt);
    }

    /// The connection's send queue drained below the low watermark after having been over
    /// the limit.
    fn on_writable(&mut self, cx: &mut Ctx<'_>) {
        let _ = cx;
    }

    /// The WebSocket connection ended (close handshake, error, timeout or the peer
    /// vanished). Sends are refused from here on.
    fn on_close(&mut self, cx: &mut Ctx<'_>, closed: &Closed) {
        let _ = (cx, closed);
    }

    /// A client connection ([`crate::Server::connect`], [`Ctx::connect`]) changed
    /// state, with its cause: connecting, connected (after the server's 101, before any
    /// of its messages), lost and waiting to reconnect, closed for good. `cx` is the
    /// client's connection (its id stays the same across reconnects).
    fn on_state(&mut self, cx: &mut Ctx<'_>, change: &crate::client::StateChange) {
        let _ = (cx, change);
    }

    /// A client connection's health level changed (an alert, or the all-clear): RTT
    /// p95, heartbeat loss or the failure streak crossed a threshold of
    /// [`crate::client::ClientConfig::health`]. [`Ctx::health`] reads the figures any
    /// time.
    fn on_health(&mut self, cx: &mut Ctx<'_>, health: &crate::client::HealthSnapshot) {
        let _ = (cx, health);
    }

    /// Durable messages of this worker ([`Ctx::send_durable`]) accepted at positions
    /// below `upto` are now durable under the outbox's `Always` or `Batch` policy (a
    /// sync covering them completed). Not called under `Os`, where
    /// [`crate::outbox::Accepted::durable`] says so at once.
    fn on_durable(&mut self, w: &mut WorkerCtx<'_>, upto: u64) {
        let _ = (w, upto);
    }

    /// A ringwire server acknowledged this client's durable messages up to id `upto`
    /// (cumulative: every message of the stream sent before it too); `count` of them
    /// left the outbox now (0 when an acknowledgement repeats). Only on a client whose
    /// server took the acknowledgement extension ([`crate::EngineConfig::receipts`]).
    fn on_acked(&mut self, cx: &mut Ctx<'_>, upto: u128, count: usize) {
        let _ = (cx, upto, count);
    }

    /// The client of stream `stream` acknowledged the durable messages this server sent
    /// it up to id `upto` ([`crate::WorkerCtx::send_durable_to`]); `count` of them left
    /// the outbox. Called on the stream's home worker.
    fn on_stream_acked(&mut self, w: &mut WorkerCtx<'_>, stream: u64, upto: u128, count: usize) {
        let _ = (w, stream, upto, count);
    }

    /// A durable send from a client's handle ([`crate::client::ClientHandle::send_durable`])
    /// was refused on the worker: nothing was stored. `id` is the application's
    /// ([`crate::client::ClientHandle::send_durable_as`]), `None` if the outbox was to
    /// choose it. (`Ctx::send_durable` returns its refusals instead.)
    fn on_durable_refused(
        &mut self,
        cx: &mut Ctx<'_>,
        id: Option<u128>,
        error: &crate::outbox::DurableError,
    ) {
        let _ = (cx, id, error);
    }

    /// The application rang this worker ([`crate::Server::wake`],
    /// [`crate::Server::wake_all`]), or the time asked for with [`Ctx::wake_at`] /
    /// [`WorkerCtx::wake_at`] came (to the worker's 1 ms tick). Work that belongs to the
    /// worker rather than to one connection runs here: acting on several connections,
    /// dialling at a pace, periodic sends. Several rings before the worker looks run it
    /// once; state the application shares with the handler (an atomic, a queue) says
    /// what to do.
    ///
    /// The worker keeps one wake time (the earliest asked for), and a wake that runs is
    /// spent: a handler with several deadlines, or woken by a ring before its own time,
    /// asks again here for the next time it needs.
    fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
        let _ = w;
    }
}

/// A handler that does nothing: the engine of clients whose events go to streams.
pub(crate) struct Quiet;

impl Handler for Quiet {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
}

/// A handler that echoes every message back: the engine's benchmark and demo server.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let _ = cx.send(msg);
    }
}
