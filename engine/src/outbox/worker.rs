//! A worker's outbox: its own log in `dir/w<worker>`, the durable sends of its client
//! connections, their resend after a reconnect (paced by the connection's send queue),
//! acknowledgements and dead letters.

use std::collections::HashMap;

use bytes::Bytes;
use ringwire_frame::Message;

use super::{DurableError, Outbox, OutboxError, OutboxSettings, Stored};
use crate::client::ClientState;
use crate::conn::Outgoing;
use crate::shard::Core;
use crate::slab::Key;
use crate::stats::WorkerStats;

/// Bytes of stored messages queued on a connection per step of a resend: the rest
/// follows as the connection drains, so a large backlog never overruns the send limit.
const RESEND_STEP: usize = 256 * 1024;

/// The outbox of one worker.
pub(crate) struct WorkerOutbox {
    pub(crate) log: Outbox,
    /// Clients part-way through resending their stream: the position to go on from.
    resends: HashMap<u32, (u64, u64)>,
}

impl WorkerOutbox {
    /// Opens (recovering) worker `worker`'s log under `settings.dir`.
    pub(crate) fn open(settings: &OutboxSettings, worker: u16) -> Result<Self, OutboxError> {
        let mut config = settings.config.clone();
        config.worker = worker;
        let log = Outbox::open(settings.dir.join(format!("w{worker}")), config)?;
        Ok(Self { log, resends: HashMap::new() })
    }

    /// The message a stored record is sent as (text if it was text and still is UTF-8,
    /// which its CRC guarantees).
    fn message(m: Stored) -> Message {
        if m.text {
            match String::from_utf8(m.payload) {
                Ok(s) => return Message::text(s),
                Err(e) => return Message::binary(Bytes::from(e.into_bytes())),
            }
        }
        Message::binary(Bytes::from(m.payload))
    }
}

impl Core {
    fn outbox_stream(&self, key: Key) -> Option<u64> {
        self.clients.get(&key.slot)?.spec.config.outbox_stream
    }

    /// `Ctx::send_durable`: stores the message in the outbox under the client's stream
    /// and, if the client is connected, sends it now. Returns whether it is durable.
    pub(crate) fn send_durable(
        &mut self,
        key: Key,
        id: u128,
        msg: Message,
    ) -> Result<bool, DurableError> {
        if self.outbox.is_none() {
            return Err(DurableError::NoOutbox);
        }
        let stream = self.outbox_stream(key).ok_or(DurableError::NoStream)?;
        let connected =
            self.clients.get(&key.slot).is_some_and(|c| c.life.state() == ClientState::Connected);
        let resending = self.outbox.as_ref().is_some_and(|o| o.resends.contains_key(&key.slot));
        if connected && !resending {
            let queued = self.conns.get(key).map_or(0, |c| c.queued_bytes());
            if queued + msg.len() > self.limits.max_queued {
                return Err(DurableError::Backpressure);
            }
        }
        let ob = self.outbox.as_mut().ok_or(DurableError::NoOutbox)?;
        let durable = ob.log.append(stream, id, msg.is_text(), msg.as_bytes())?;
        // Behind a resend in progress it waits its turn there (order per stream).
        if connected && !resending {
            let _ = ob.log.attempted(id);
            let _ = self.enqueue(key, Outgoing::Msg(msg));
        }
        Ok(durable)
    }

    /// `Ctx::ack_durable`: the peer acknowledged `id`.
    pub(crate) fn ack_durable(&mut self, id: u128) -> bool {
        self.outbox.as_mut().is_some_and(|o| o.log.ack(id))
    }

    /// Whether some client is part-way through a resend (checked after every send).
    pub(crate) fn resending(&self) -> bool {
        self.outbox.as_ref().is_some_and(|o| !o.resends.is_empty())
    }

    /// Client `key` (with stream `stream`) just connected: its unacknowledged messages
    /// go out again, in order, before anything new.
    pub(crate) fn start_resend(&mut self, key: Key, stream: u64) {
        let Some(ob) = self.outbox.as_mut() else { return };
        ob.resends.insert(key.slot, (stream, 0));
        self.continue_resend(key);
    }

    /// Sends the next step of client `key`'s resend, if one is in progress and its send
    /// queue has room. Called when it starts and after each of the connection's sends.
    pub(crate) fn continue_resend(&mut self, key: Key) {
        let connected =
            self.clients.get(&key.slot).is_some_and(|c| c.life.state() == ClientState::Connected);
        let queued = self.conns.get(key).map_or(usize::MAX, |c| c.queued_bytes());
        let Some(ob) = self.outbox.as_mut() else { return };
        let Some(&(stream, from)) = ob.resends.get(&key.slot) else { return };
        if !connected {
            ob.resends.remove(&key.slot);
            return;
        }
        if queued > RESEND_STEP {
            return; // the next completed send brings us back
        }
        let batch = ob.log.unacked_from(stream, from, RESEND_STEP);
        let Some(&(last, _)) = batch.last() else {
            // Done: what is sent from now on goes straight out.
            ob.resends.remove(&key.slot);
            return;
        };
        ob.resends.insert(key.slot, (stream, last + 1));
        let mut out = Vec::with_capacity(batch.len());
        for (_, m) in batch {
            match ob.log.attempted(m.id) {
                Some((_, false)) => out.push(WorkerOutbox::message(m)),
                Some((_, true)) => WorkerStats::add(&self.stats.outbox_dead_letters, 1),
                None => {}
            }
        }
        WorkerStats::add(&self.stats.outbox_resent, out.len() as u64);
        for msg in out {
            if self.enqueue(key, Outgoing::Msg(msg)).is_err() {
                break; // closed (or over its limit): the next connect resends
            }
        }
    }
}
