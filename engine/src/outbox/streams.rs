//! Durable sends from a server to the clients it accepted (a gateway's side): messages
//! for a stream are kept in the log of the stream's **home worker** (fixed by the stream
//! id and the number of workers), whichever worker the application sends from and
//! whichever worker the client's connection lands on. The home worker forwards them, in
//! order, to the connection's worker through its command queue, at most [`WINDOW`] bytes
//! ahead of the client's acknowledgements (which come back the same way), and again from
//! the oldest unacknowledged each time a connection of the stream attaches.
//!
//! One owner per stream makes the order simple: every message of a stream is appended
//! and forwarded by one thread, and a worker's command queue keeps one producer's
//! order. A gap cannot form either: a tagged message the connection's worker cannot
//! queue closes the connection (1013), and the next one starts again from the oldest
//! unacknowledged message.

use std::collections::{HashMap, VecDeque};

use ringwire_frame::{CloseCode, Message};

use super::worker::WorkerOutbox;
use super::{Accepted, DurableError};
use crate::conn::Outgoing;
use crate::handle::{Command, ConnId};
use crate::handler::{Handler, WorkerCtx};
use crate::shard::Core;
use crate::slab::Key;
use crate::stats::WorkerStats;

/// Bytes of a stream's messages forwarded and not yet acknowledged, at most: well under
/// a connection's send limit, so durable traffic alone never overruns it.
pub(crate) const WINDOW: usize = 1 << 20;

/// The close code of a connection whose worker could not queue a durable message
/// (its send queue was full of other traffic): RFC 6455's "Try Again Later".
const CLOSE_BACKLOG: CloseCode = CloseCode(1013);

/// A stream's connection, as its home worker knows it.
pub(crate) struct Attached {
    conn: ConnId,
    /// The position in the log to forward from next.
    cursor: u64,
    /// Forwarded and not acknowledged: (id, bytes), oldest first.
    window: VecDeque<(u128, usize)>,
    bytes: usize,
}

/// The home worker's table of attached streams, and the streams whose forwarding waits
/// for room in a command queue.
#[derive(Default)]
pub(crate) struct Homes {
    /// Stream ids are the clients' choice: SipHash, not the engine's integer hasher.
    attached: HashMap<u64, Attached>,
    retry: Vec<u64>,
}

/// The worker that keeps stream `stream`'s messages, of `workers`: the same in every
/// process with as many workers (a fixed mix of the id, not a seeded hash).
pub(crate) fn home(stream: u64, workers: usize) -> usize {
    let h = stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h ^ (h >> 32)) % workers.max(1) as u64) as usize
}

impl Core {
    /// A durable message for stream `stream` (`WorkerCtx::send_durable_to`): appended
    /// here if this is its home worker (`Some`), else handed to its home worker (`None`;
    /// a refusal there is counted in `outbox_refused` and logged).
    pub(crate) fn stream_send(
        &mut self,
        stream: u64,
        id: Option<u128>,
        msg: Message,
    ) -> Result<Option<Accepted>, DurableError> {
        let home = home(stream, self.all.len());
        if home == usize::from(self.id) {
            return self.stream_append(stream, id, msg).map(Some);
        }
        self.all[home]
            .push(Command::StreamSend(Box::new((stream, id, msg))))
            .map(|()| None)
            .map_err(|_| DurableError::QueueFull)
    }

    /// On the home worker: stores a message of `stream` and forwards it if a connection
    /// of the stream is attached.
    pub(crate) fn stream_append(
        &mut self,
        stream: u64,
        id: Option<u128>,
        msg: Message,
    ) -> Result<Accepted, DurableError> {
        let ob = self.outbox.as_mut().ok_or(DurableError::NoOutbox)?;
        let (id, position, durable) =
            ob.log.append_new(stream, id, msg.is_text(), msg.as_bytes(), false)?;
        if ob.homes.attached.contains_key(&stream) {
            self.forward(stream);
        }
        Ok(Accepted { id, position, durable })
    }

    /// On the home worker: connection `conn` of `stream` is up; its unacknowledged
    /// messages go to it from the oldest. A newer connection replaces an older one.
    pub(crate) fn stream_attached(&mut self, stream: u64, conn: ConnId) {
        let Some(ob) = self.outbox.as_mut() else { return };
        let a = Attached { conn, cursor: 0, window: VecDeque::new(), bytes: 0 };
        ob.homes.attached.insert(stream, a);
        self.forward(stream);
    }

    /// On the home worker: connection `conn` of `stream` ended.
    pub(crate) fn stream_detached(&mut self, stream: u64, conn: ConnId) {
        let Some(ob) = self.outbox.as_mut() else { return };
        if ob.homes.attached.get(&stream).is_some_and(|a| a.conn == conn) {
            ob.homes.attached.remove(&stream);
        }
    }

    /// On the home worker: the client acknowledged `stream`'s messages up to `upto`.
    pub(crate) fn stream_acked<H: Handler>(&mut self, handler: &mut H, stream: u64, upto: u128) {
        let Some(ob) = self.outbox.as_mut() else { return };
        let n = ob.log.ack_upto(stream, upto);
        WorkerStats::add(&self.stats.outbox_acked, n as u64);
        if let Some(a) = ob.homes.attached.get_mut(&stream) {
            while a.window.front().is_some_and(|&(id, _)| id <= upto) {
                if let Some((_, len)) = a.window.pop_front() {
                    a.bytes -= len;
                }
            }
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.on_stream_acked(&mut WorkerCtx::new(self), stream, upto, n)
        }));
        if r.is_err() {
            WorkerStats::add(&self.stats.handler_panics, 1);
        }
        self.forward(stream);
    }

    /// Forwards `stream`'s next messages to its connection while the window has room.
    fn forward(&mut self, stream: u64) {
        let me = self.id;
        let Some(ob) = self.outbox.as_mut() else { return };
        let Some(a) = ob.homes.attached.get_mut(&stream) else { return };
        if a.bytes >= WINDOW {
            return;
        }
        let conn = a.conn;
        let batch = ob.log.unacked_from(stream, a.cursor, WINDOW - a.bytes);
        for (lsn, m) in batch {
            let remote = conn.worker != me;
            if remote && self.all[usize::from(conn.worker)].queue.is_full() {
                // Again next turn, from this message (not counted as a send).
                if let Some(ob) = self.outbox.as_mut() {
                    ob.homes.retry.push(stream);
                }
                return;
            }
            let Some(ob) = self.outbox.as_mut() else { return };
            match ob.log.attempted(m.id) {
                Some((_, false)) => {}
                Some((_, true)) => {
                    // Given up: a dead letter; the stream goes on past it.
                    WorkerStats::add(&self.stats.outbox_dead_letters, 1);
                    if let Some(a) = ob.homes.attached.get_mut(&stream) {
                        a.cursor = lsn + 1;
                    }
                    continue;
                }
                None => continue,
            }
            let (id, len) = (m.id, m.payload.len());
            let tagged = Box::new((id, WorkerOutbox::message(m)));
            if conn.worker == me {
                if self.enqueue(conn.key, Outgoing::Durable(tagged)).is_err() {
                    self.durable_gap(conn.key);
                    self.stream_detached(stream, conn);
                    return;
                }
            } else if self.all[usize::from(conn.worker)]
                .push(Command::SendTagged(conn.key, tagged))
                .is_err()
            {
                // Filled since the check (another producer): again next turn, from this
                // message (its send counted once too often; dead letters come a send
                // early at worst).
                if let Some(ob) = self.outbox.as_mut() {
                    ob.homes.retry.push(stream);
                }
                return;
            }
            let Some(a) = self.outbox.as_mut().and_then(|o| o.homes.attached.get_mut(&stream))
            else {
                return;
            };
            a.cursor = lsn + 1;
            a.window.push_back((id, len));
            a.bytes += len;
        }
    }

    /// Forwarding waits for room in another worker's command queue.
    pub(crate) fn forwards_waiting(&self) -> bool {
        self.outbox.as_ref().is_some_and(|ob| !ob.homes.retry.is_empty())
    }

    /// Each loop turn: forwarding that waited for room in a command queue goes on.
    pub(crate) fn retry_forwards(&mut self) {
        let Some(ob) = self.outbox.as_mut() else { return };
        if ob.homes.retry.is_empty() {
            return;
        }
        let mut streams = std::mem::take(&mut ob.homes.retry);
        streams.sort_unstable();
        streams.dedup();
        for s in streams {
            self.forward(s);
        }
    }

    /// On the connection's worker: a durable message from the stream's home worker.
    pub(crate) fn send_tagged(&mut self, key: Key, tagged: Box<(u128, Message)>) {
        if self.conns.get(key).is_none_or(|c| !c.is_open()) {
            return; // gone: its detach is on the way, and the next connection resends
        }
        if self.enqueue(key, Outgoing::Durable(tagged)).is_err() {
            self.durable_gap(key);
        }
    }

    /// A durable message could not be queued on `key`: a later one must not go out
    /// before it (the client acknowledges cumulatively), so the connection closes and
    /// the next one starts from the oldest unacknowledged.
    fn durable_gap(&mut self, key: Key) {
        tracing::warn!(worker = self.id, "a durable message could not be queued; closing (1013)");
        let _ = self.close(key, CLOSE_BACKLOG, "durable backlog");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_spread_and_stay_put() {
        let mut per = [0usize; 4];
        for s in 0..4000u64 {
            per[home(s, 4)] += 1;
            assert_eq!(home(s, 1), 0);
        }
        // Pinned: a stream's messages wait in its home's log across restarts, so the
        // mapping must not change between versions (a change strands them).
        let pinned: Vec<usize> =
            [0u64, 1, 11, 12, 13, 14, 21, u64::MAX].map(|s| home(s, 4)).to_vec();
        assert_eq!(pinned, [0, 0, 3, 1, 2, 2, 2, 1], "the stream -> home mapping changed");
        assert!(per.iter().all(|&n| n > 800), "{per:?}");
        assert_eq!(home(7, 0), 0, "no division by zero");
    }
}
