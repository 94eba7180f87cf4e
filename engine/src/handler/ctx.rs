//! [`Ctx`]: what a handler callback can do to its connection, its worker and the topics.

use std::time::Instant;

use bytes::Bytes;
use ringwire_frame::{CloseCode, Message};

use crate::client::{Cause, ClientConfig, ClientHandle, ConnectError, HealthSnapshot};
use crate::conn::Outgoing;
use crate::handle::{ConnHandle, ConnId, Publisher, SendError};
use crate::shard::Core;
use crate::slab::Key;

/// What a handler can do to the connection it was called for (and beyond). Every method
/// acts at once on the worker's own state: no queue, no lock.
pub struct Ctx<'a> {
    core: &'a mut Core,
    key: Key,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(core: &'a mut Core, key: Key) -> Self {
        Self { core, key }
    }
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

    /// Queues a message, subject to the backpressure policy
    /// ([`crate::EngineConfig::backpressure`]).
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

    /// Sends a heartbeat ping whose pong reports its RTT to `on_pong`; returns its
    /// sequence number.
    pub fn ping(&mut self) -> Result<u32, SendError> {
        self.core.ping(self.key)
    }

    /// Starts the close handshake. Messages already queued go out before the close
    /// frame. An invalid code (1005, 1006, 1015, unassigned) or a reason over 123 bytes
    /// is refused with [`SendError::Frame`] and nothing is sent.
    ///
    /// On a client connection this closes the client for good: it ends in `Closed` and
    /// does not reconnect.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if self.core.is_client(self.key) {
            ringwire_frame::CloseFrame::check(code, reason)?;
            self.core.stop_client(self.key, Cause::AppClose, code, reason);
            return Ok(());
        }
        self.core.close(self.key, code, reason)
    }

    /// Dials a client connection from a handler, as [`crate::Server::connect`] does
    /// from other threads. The URL's host must be an IP address: a DNS lookup would
    /// block this worker ([`ConnectError::NeedsLookup`] otherwise).
    pub fn connect(
        &mut self,
        url: &str,
        config: ClientConfig,
    ) -> Result<ClientHandle, ConnectError> {
        self.core.dialer.clone().connect_literal(&self.core.all, url, config)
    }

    /// Sends `msg` durably on this client connection: it is stored in the worker's
    /// outbox ([`crate::EngineConfig::outbox`]) under the client's stream
    /// ([`crate::client::ClientConfig::outbox_stream`]) with the outbox's next id
    /// (time-ordered, growing along the stream across restarts), sent now if the client
    /// is connected, and sent again, in order, each time it connects, until it is
    /// acknowledged or it has been sent `OutboxConfig::max_attempts` times (a dead
    /// letter, see [`crate::WorkerCtx::dead_letters`]). Returns its id, its position in
    /// the worker's log and whether it is durable already (`Durability::Os`: a crash of
    /// the process keeps it); under `Always` and `Batch` [`crate::Handler::on_durable`]
    /// says when.
    ///
    /// Who acknowledges: a ringwire server with a duplicate filter
    /// ([`crate::EngineConfig::receipts`]) does, on the wire (the client offers it in
    /// the handshake; [`crate::Handler::on_acked`] reports each acknowledgement), and
    /// drops the copies a resend makes. With any other server the application does: a
    /// server's answer that names the id, recognised in `on_message`, calls
    /// [`Ctx::ack_durable`] (see [`Ctx::send_durable_as`] to put the id in the message).
    pub fn send_durable(
        &mut self,
        msg: Message,
    ) -> Result<crate::outbox::Accepted, crate::outbox::DurableError> {
        self.core.send_durable(self.key, None, msg)
    }

    /// As [`Ctx::send_durable`] with the application's id, which must be above every id
    /// the outbox issued or took ([`crate::outbox::OutboxError::IdOrder`] otherwise):
    /// [`Ctx::new_durable_id`] gives one to put in the message itself.
    pub fn send_durable_as(
        &mut self,
        id: u128,
        msg: Message,
    ) -> Result<crate::outbox::Accepted, crate::outbox::DurableError> {
        self.core.send_durable(self.key, Some(id), msg)
    }

    /// A new id of the worker's outbox for [`Ctx::send_durable_as`], above every one
    /// issued before (a later one issued is above it, so send in the order taken).
    pub fn new_durable_id(&mut self) -> Result<u128, crate::outbox::DurableError> {
        self.core.new_durable_id()
    }

    /// During `on_message`, if the message is a durable one from a peer that
    /// acknowledges on the wire (an engine with [`crate::EngineConfig::receipts`]: a
    /// server receiving from its clients, or a client from a gateway): its stream and
    /// id, and whether it may have been handled before a crash of this process
    /// ([`crate::outbox::Delivery::redelivered`]). `None` for any other message.
    pub fn delivery(&self) -> Option<crate::outbox::Delivery> {
        self.core.delivering
    }

    /// As [`crate::WorkerCtx::send_durable_to`]: a durable message to the client of
    /// stream `stream`, wherever it is connected.
    pub fn send_durable_to(
        &mut self,
        stream: u64,
        msg: Message,
    ) -> Result<Option<crate::outbox::Accepted>, crate::outbox::DurableError> {
        self.core.stream_send(stream, None, msg)
    }

    /// The peer acknowledged durable message `id`: it leaves the outbox. `false` if it
    /// was not an unacknowledged one (already acknowledged, or unknown).
    pub fn ack_durable(&mut self, id: u128) -> bool {
        self.core.ack_durable(id)
    }

    /// Dials a client from `spec` on this worker, at once, as [`crate::WorkerCtx::dial`].
    pub fn dial(&mut self, spec: &crate::client::ClientSpec) -> Result<ClientHandle, ConnectError> {
        self.core.dial_here(spec)
    }

    /// Asks for the handler's [`crate::Handler::on_wake`] on this worker at `at`, as
    /// [`crate::WorkerCtx::wake_at`].
    pub fn wake_at(&mut self, at: Instant) {
        self.core.wake_at(at);
    }

    /// The health figures of this client connection (`None` on an accepted one).
    pub fn health(&self) -> Option<HealthSnapshot> {
        let c = self.core.clients.get(&self.key.slot)?;
        Some(c.health.snapshot(&c.spec.config.health))
    }

    /// Subscribes this connection to `topic`. Refused with
    /// [`SendError::TooManyTopics`] past [`crate::EngineConfig::max_topics_per_connection`]
    /// and [`SendError::TopicTooLong`] past [`crate::EngineConfig::max_topic_len`].
    pub fn subscribe(&mut self, topic: &str) -> Result<(), SendError> {
        self.core.subscribe(self.key, topic.into())
    }

    /// Unsubscribes this connection from `topic`.
    pub fn unsubscribe(&mut self, topic: &str) {
        self.core.unsubscribe(self.key, topic);
    }

    /// Publishes to every subscriber of `topic` on every worker: this worker's at once,
    /// the others' through their queues. The frame is encoded once. Returns how many
    /// workers took it, this one included, as [`Publisher::publish`] does: a worker whose
    /// queue is full is skipped (and counted in `StatsSnapshot::publishes_dropped`).
    ///
    /// With an authorizer ([`crate::EngineConfig::authorizer`]), this connection must be
    /// granted publishing to `topic`: if it is not, nothing is published, 0 is returned
    /// and the connection is closed with 1008.
    pub fn publish(&mut self, topic: &str, msg: &Message) -> usize {
        if !self.core.granted(self.key, topic, true) {
            return 0;
        }
        self.core.publish(topic, msg)
    }

    /// Replaces this connection's grant with the one `credentials` carry (a renewed
    /// token the client sent in the application's protocol, before its grant ends), as
    /// [`crate::auth::Authorizer::renew`] decides. Refused credentials close the
    /// connection with 1008 (and are counted in `auth_refusals`); without an authorizer
    /// this does nothing. Returns whether the grant was renewed.
    pub fn reauthorize(&mut self, credentials: &str) -> bool {
        self.core.reauthorize(self.key, credentials)
    }

    /// A handle to this connection for other threads.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle { id: self.id(), shared: self.core.me.clone() }
    }

    /// A publisher for other threads.
    pub fn publisher(&self) -> Publisher {
        Publisher { workers: self.core.all.clone(), cluster: self.core.cluster.clone() }
    }

    /// Bytes queued on this connection and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.core.conns.get(self.key).map_or(0, |c| c.queued_bytes())
    }
}
