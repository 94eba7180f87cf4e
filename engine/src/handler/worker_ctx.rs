//! [`WorkerCtx`]: what the handler's `on_wake` can do on its worker, with no connection
//! of its own: act on any of the worker's connections, dial, ask for the next wake.

use std::time::Instant;

use ringwire_frame::Message;

use super::Ctx;
use crate::client::{ClientHandle, ClientSpec, ConnectError};
use crate::handle::{ConnId, Publisher};
use crate::shard::Core;

/// The worker as [`crate::Handler::on_wake`] sees it. Like [`Ctx`], every method acts at
/// once on the worker's own state: no queue, no lock.
pub struct WorkerCtx<'a> {
    core: &'a mut Core,
}

impl<'a> WorkerCtx<'a> {
    pub(crate) fn new(core: &'a mut Core) -> Self {
        Self { core }
    }
}

impl WorkerCtx<'_> {
    /// The worker running this callback.
    pub fn worker(&self) -> usize {
        usize::from(self.core.id)
    }

    /// The time this loop turn started.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// A [`Ctx`] for connection `id`, if it is this worker's and still open or
    /// connecting (a client waiting to reconnect counts). Everything a callback for that
    /// connection could do, it can do.
    pub fn conn(&mut self, id: ConnId) -> Option<Ctx<'_>> {
        if id.worker != self.core.id || self.core.conns.get(id.key).is_none() {
            return None;
        }
        Some(Ctx::new(self.core, id.key))
    }

    /// Dials a client from `spec` on this worker, at once: its connection exists (and
    /// [`ClientHandle::id`] is set) when this returns; its state changes reach
    /// `on_state` from the next safe point. Refused when the worker is shutting down or
    /// full.
    pub fn dial(&mut self, spec: &ClientSpec) -> Result<ClientHandle, ConnectError> {
        self.core.dial_here(spec)
    }

    /// Asks for `on_wake` again at `at` (at the next loop turn if it has passed). Of
    /// several times asked for before it runs, the earliest wins, and once it has run
    /// no other is kept: ask again from `on_wake` for a later one.
    pub fn wake_at(&mut self, at: Instant) {
        self.core.wake_at(at);
    }

    /// Publishes to every subscriber of `topic` on every worker, as [`Ctx::publish`].
    pub fn publish(&mut self, topic: &str, msg: &Message) -> usize {
        self.core.publish(topic, msg)
    }

    /// A publisher for other threads.
    pub fn publisher(&self) -> Publisher {
        Publisher { workers: self.core.all.clone(), cluster: self.core.cluster.clone() }
    }

    /// The durable messages this worker's outbox gave up on (sent
    /// `OutboxConfig::max_attempts` times without an acknowledgement), oldest first.
    /// Empty without an outbox.
    pub fn dead_letters(&self) -> Vec<crate::outbox::Stored> {
        self.core.outbox.as_ref().map_or_else(Vec::new, |o| o.log.dead_letters())
    }

    /// Takes dead letter `id` out of the outbox. `false` if it is not one.
    pub fn take_dead(&mut self, id: u128) -> bool {
        self.core.outbox.as_mut().is_some_and(|o| o.log.take_dead(id))
    }

    /// Sends `msg` durably to the client of stream `stream` (a gateway's side: the
    /// client offered the stream with `recv`, [`crate::EngineConfig::receipts`] and
    /// [`crate::EngineConfig::outbox`] are set): it is kept in the outbox of the stream's
    /// home worker until the client acknowledges it, sent in order whenever a connection
    /// of the stream is up (on any worker), again from the oldest unacknowledged at each
    /// new one, and the client's filter drops the copies. `Some` if this is the home
    /// worker (the message is stored), `None` if it went to the home worker's queue (a
    /// refusal there is counted in `outbox_refused` and logged).
    /// [`crate::Handler::on_stream_acked`] reports the acknowledgements.
    pub fn send_durable_to(
        &mut self,
        stream: u64,
        msg: Message,
    ) -> Result<Option<crate::outbox::Accepted>, crate::outbox::DurableError> {
        self.core.stream_send(stream, None, msg)
    }

    /// Durable messages this worker's outbox holds unacknowledged (0 without one).
    pub fn outbox_unacked(&self) -> usize {
        self.core.outbox.as_ref().map_or(0, |o| o.log.unacked_count())
    }

    /// Connections on this worker (accepted, clients, closing).
    pub fn connections(&self) -> usize {
        self.core.conns.len()
    }
}
