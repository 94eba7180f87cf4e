//! The receiving side of the acknowledgement on the wire: a server with a duplicate
//! filter ([`crate::EngineConfig::receipts`]) takes the client's stream when it upgrades
//! (one connection per stream at a time), drops durable messages it handed to the
//! application already, marks each one in the table before and after the application's
//! `on_message` (so a crash leaves at most that one in doubt), and acknowledges
//! cumulatively once per batch of input.

use std::path::PathBuf;

use ringwire_frame::handshake::Request;
use ringwire_frame::CloseCode;

use super::receipts::{Checkout, CheckoutError, Verdict};
use super::streams;
use super::wire;
use crate::handle::{Command, ConnId};
use crate::shard::Core;
use crate::slab::Key;
use crate::stats::WorkerStats;

/// The close code a connection gets when a newer one of the same stream takes over
/// (private use range, RFC 6455 §7.4.2).
pub const CLOSE_REPLACED: CloseCode = CloseCode(4409);

/// The engine's duplicate filter ([`crate::EngineConfig::receipts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptSettings {
    /// Where its table lives (`receipts.map`, created if absent; locked while the
    /// engine runs).
    pub dir: PathBuf,
    /// Streams it remembers. Default 65,536 (64 bytes each: a 4 MiB file). Past it, the
    /// stream checked in longest ago is forgotten: if its client comes back with
    /// messages it still holds, they are delivered again.
    pub streams: u32,
}

impl ReceiptSettings {
    /// A filter in `dir` with room for 65,536 streams.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), streams: 65_536 }
    }
}

/// A durable message as the application is handed it ([`crate::Ctx::delivery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The client's stream.
    pub stream: u64,
    /// The message's id (growing along the stream).
    pub id: u128,
    /// It was being handled when this process ended before (a crash), or when the
    /// application panicked on it (the connection then closed with 1011): the
    /// application may have acted on it, and should check its own record of `id` before
    /// acting on it again. Every other message comes exactly once.
    pub redelivered: bool,
}

/// A connection's part of the filter.
pub(crate) struct Receiving {
    pub(crate) stream: Checkout,
    /// Server side: the client takes durable messages from us too (`recv`), and the
    /// stream's home worker knows of this connection.
    attached: bool,
    /// The id the last tag announced, for the next message.
    next: Option<u128>,
    /// Messages were handled (or dropped) since the last acknowledgement.
    ack_due: bool,
    /// The application panicked on a durable message: it stays in doubt, and nothing
    /// after it is handed over on this connection (it is closing with 1011); the
    /// client's next connection sends them again, that one flagged.
    failed: bool,
}

/// The connections that took a stream, by slab slot.
pub(crate) type ReceivingMap = crate::hash::IntMap<u32, Receiving>;

/// Why an upgrade that offered the extension is refused.
pub(crate) enum TakeRefused {
    /// The stream is held by another connection (told to close) or the table is full.
    Busy,
}

pub(crate) fn owner(worker: u16, key: Key) -> u64 {
    (u64::from(worker) << 56) | key.pack()
}

fn owner_parts(token: u64) -> (u16, Key) {
    ((token >> 56) as u16, Key::unpack(token & ((1 << 56) - 1)))
}

impl Core {
    /// At an accepted upgrade: if the engine has a filter and the client offered the
    /// extension, connection `key` takes the client's stream. Returns the extension to
    /// name in the 101 (`None`: not taken up), or a refusal: a stream held by another
    /// connection (which is told to close: the newer connection wins, as a client that
    /// reconnects is usually the one whose old connection died unnoticed) or a full
    /// table; the client retries after its backoff.
    pub(crate) fn take_stream(
        &mut self,
        key: Key,
        req: &Request,
    ) -> Result<Option<&'static str>, TakeRefused> {
        let Some(receipts) = &self.receipts else { return Ok(None) };
        let Some((stream, recv)) = req.extension_offers().into_iter().find_map(wire::parse_offer)
        else {
            return Ok(None);
        };
        match receipts.check_out(stream, owner(self.id, key)) {
            Ok(stream) => {
                // Durable messages to the client need an outbox here.
                let attached = recv && self.outbox.is_some();
                let r = Receiving { stream, attached, next: None, ack_due: false, failed: false };
                self.receiving.insert(key.slot, r);
                if let Some(c) = self.conns.get_mut(key) {
                    c.set_acks(true);
                }
                Ok(Some(wire::EXTENSION))
            }
            Err(e) => {
                WorkerStats::add(&self.stats.receipts_refused, 1);
                if let CheckoutError::Busy { owner } = e {
                    let (worker, old) = owner_parts(owner);
                    let cmd = Command::Close(old, CLOSE_REPLACED, "replaced".into());
                    if let Some(w) = self.all.get(usize::from(worker)) {
                        let _ = w.push(cmd);
                    }
                }
                Err(TakeRefused::Busy)
            }
        }
    }

    /// After the 101 of connection `key` is queued: if its client takes durable
    /// messages, the stream's home worker learns of the connection (and sends it what
    /// the client has not acknowledged).
    pub(crate) fn attach_stream(&mut self, key: Key) {
        let Some(r) = self.receiving.get(&key.slot).filter(|r| r.attached) else { return };
        let (stream, conn) = (r.stream.stream(), ConnId { worker: self.id, key });
        self.tell_home(stream, conn, true);
    }

    /// Tells `stream`'s home worker that connection `conn` of it is up (`up`) or ended:
    /// here, or through its queue (a full queue drops it: a lost attach leaves the
    /// client without its messages until its next connection, a lost detach is
    /// superseded by the next attach).
    fn tell_home(&mut self, stream: u64, conn: ConnId, up: bool) {
        let home = streams::home(stream, self.all.len());
        match (home == usize::from(self.id), up) {
            (true, true) => self.stream_attached(stream, conn),
            (true, false) => self.stream_detached(stream, conn),
            (false, true) => {
                let _ = self.all[home].push(Command::StreamAttached { stream, conn });
            }
            (false, false) => {
                let _ = self.all[home].push(Command::StreamDetached { stream, conn });
            }
        }
    }

    /// Connection `key` ends: its stream goes back to the table (a client's back to
    /// its record, for its next connection), and its home worker forgets it.
    pub(crate) fn release_stream(&mut self, key: Key) {
        if self.receiving.is_empty() {
            return;
        }
        let Some(r) = self.receiving.remove(&key.slot) else { return };
        if r.attached {
            let (stream, conn) = (r.stream.stream(), ConnId { worker: self.id, key });
            self.tell_home(stream, conn, false);
        }
        if self.clients.contains_key(&key.slot) {
            self.parked.insert(key.slot, r.stream);
        } else if let Some(receipts) = &self.receipts {
            receipts.check_in(r.stream);
        }
    }

    /// A client connection `key` was upgraded and the server took the extension: its
    /// stream (held by its record) filters what the server sends durably.
    pub(crate) fn client_receiving(&mut self, key: Key) {
        let Some(stream) = self.parked.remove(&key.slot) else {
            return;
        };
        let r = Receiving { stream, attached: false, next: None, ack_due: false, failed: false };
        self.receiving.insert(key.slot, r);
    }

    /// A client record ends: its stream goes back to the table.
    pub(crate) fn client_gone(&mut self, receipt: Option<Checkout>) {
        if let (Some(c), Some(receipts)) = (receipt, &self.receipts) {
            receipts.check_in(c);
        }
    }

    /// An acknowledgement on server connection `key` of the durable messages we sent:
    /// for the stream's home worker. Returns whether `payload` was one.
    pub(crate) fn stream_ack_in<H: crate::Handler>(
        &mut self,
        handler: &mut H,
        key: Key,
        payload: &[u8],
    ) -> bool {
        let Some(upto) = wire::parse_tag(wire::TAG_ACK, payload) else { return false };
        let r = self.receiving.get(&key.slot).filter(|r| r.attached);
        let Some(stream) = r.map(|r| r.stream.stream()) else { return true };
        let home = streams::home(stream, self.all.len());
        if home == usize::from(self.id) {
            self.stream_acked(handler, stream, upto);
        } else {
            // A full queue drops it: the next acknowledgement covers it (cumulative).
            let _ = self.all[home].push(Command::StreamAck { stream, upto });
        }
        true
    }

    /// A Pong on server connection `key`, which acknowledges on the wire: a tag announces
    /// the id of the next message. Returns whether it was one.
    pub(crate) fn durable_tag(&mut self, key: Key, payload: &[u8]) -> bool {
        let Some(id) = wire::parse_tag(wire::TAG_DURABLE, payload) else { return false };
        if let Some(r) = self.receiving.get_mut(&key.slot) {
            r.next = Some(id);
        }
        true
    }

    /// A message on connection `key`: what the filter makes of it. `None`: deliver it as
    /// an ordinary message (no tag before it); `Some(None)`: a duplicate, dropped;
    /// `Some(Some(d))`: deliver it as durable message `d`, marked in doubt until
    /// [`Core::delivered`].
    pub(crate) fn filter(&mut self, key: Key) -> Option<Option<Delivery>> {
        let receipts = self.receipts.as_ref()?;
        let r = self.receiving.get_mut(&key.slot)?;
        let id = r.next.take()?;
        if r.failed {
            return Some(None); // not handled, not acknowledged: sent again later
        }
        r.ack_due = true;
        let verdict = r.stream.classify(id);
        if verdict == Verdict::Duplicate {
            WorkerStats::add(&self.stats.receipts_duplicates, 1);
            return Some(None);
        }
        r.stream.begin(receipts, id);
        WorkerStats::add(&self.stats.receipts_delivered, 1);
        let redelivered = verdict == Verdict::InDoubt;
        Some(Some(Delivery { stream: r.stream.stream(), id, redelivered }))
    }

    /// The application returned from the message [`Core::filter`] let through (`ok`),
    /// or panicked on it: then it stays in doubt (see `Receiving::failed`).
    pub(crate) fn delivered(&mut self, key: Key, ok: bool) {
        if let (Some(r), Some(receipts)) = (self.receiving.get_mut(&key.slot), &self.receipts) {
            if ok {
                r.stream.done(receipts);
            } else {
                r.failed = true;
            }
        }
    }

    /// After a batch of input on `key`: the acknowledgement of everything handled, if
    /// anything was (one Pong per batch, however many messages).
    #[inline]
    pub(crate) fn send_receipt(&mut self, key: Key) {
        if !self.receiving.is_empty() {
            self.send_receipt_now(key);
        }
    }

    #[inline(never)]
    fn send_receipt_now(&mut self, key: Key) {
        let Some(r) = self.receiving.get_mut(&key.slot) else { return };
        if !r.ack_due {
            return;
        }
        r.ack_due = false;
        let handled = r.stream.handled();
        if handled == 0 {
            return;
        }
        let tag = wire::tag(wire::TAG_ACK, handled);
        if let Some(ws) = self.conns.get_mut(key).and_then(|c| c.ws()) {
            let _ = ws.send_pong(&tag);
        }
    }
}
