//! A connection's send side: the backlog of whole messages held back from the protocol
//! core, the backpressure policy that bounds it, and the bytes of the send in flight.
//!
//! Bytes leave in this order: `unsent` (the handshake response, or the rest of a partial
//! write), then what the protocol core has queued. The backlog feeds the core whenever
//! the core holds less than [`SendLimits::core_high_water`], so that `DropOldest` still
//! has whole messages it can drop and the core's buffers stay small.

use std::collections::VecDeque;
use std::num::NonZeroU32;

use bytes::Bytes;
use ringwire_frame::{Connection, Message, Role};

use super::{Conn, Phase};
use crate::config::Backpressure;
use crate::stats::WorkerStats;

/// A message waiting to be sent.
pub(crate) enum Outgoing {
    Msg(Message),
    /// A frame encoded once for many connections (fan-out).
    Frame(Bytes),
    /// A durable message with its id, to a peer that acknowledges on the wire: its tag
    /// goes just before it. Never dropped from the backlog (`DropOldest` skips it): the
    /// peer acknowledges cumulatively, so a gap would lose the message.
    Durable(Box<(u128, Message)>),
}

impl Outgoing {
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Msg(m) => m.len(),
            Outgoing::Frame(f) => f.len(),
            Outgoing::Durable(d) => d.1.len() + crate::outbox::wire::TAG_LEN,
        }
    }

    /// Hands the message to the protocol core. Fails only if the core no longer sends.
    #[inline(always)]
    fn send_on(self, ws: &mut Connection) -> Result<(), ringwire_frame::SendError> {
        match self {
            Outgoing::Msg(m) => ws.send(m),
            Outgoing::Frame(f) => ws.send_shared_frame(f),
            Outgoing::Durable(d) => send_tagged(ws, d),
        }
    }
}

/// A durable message with its tag before it. Out of line: the common arms of
/// [`Outgoing::send_on`] stay small enough to be inlined into every send.
/// (It takes the box, not its contents: the caller's arm stays a call.)
#[inline(never)]
#[allow(clippy::boxed_local)]
fn send_tagged(
    ws: &mut Connection,
    d: Box<(u128, Message)>,
) -> Result<(), ringwire_frame::SendError> {
    let (id, msg) = *d;
    ws.send_pong(&crate::outbox::wire::tag(crate::outbox::wire::TAG_DURABLE, id))?;
    ws.send(msg)
}

/// The limits a connection's send side works within (from the engine's configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendLimits {
    /// [`crate::EngineConfig::max_queued_bytes`].
    pub(crate) max_queued: usize,
    /// [`crate::EngineConfig::backpressure`].
    pub(crate) policy: Backpressure,
    /// [`crate::EngineConfig::low_watermark`].
    pub(crate) low_watermark: usize,
    /// Below this many bytes queued in the protocol core, whole messages move from the
    /// backlog into it; above, they wait in the backlog where `DropOldest` can drop them.
    pub(crate) core_high_water: usize,
    /// Most chunks and bytes in one vectored send.
    pub(crate) max_chunks: usize,
    pub(crate) max_send_bytes: usize,
}

/// A message the connection accepted.
pub(crate) enum Enqueued {
    /// Queued (in the protocol core or the backlog): the connection wants a flush.
    Queued,
    /// Nothing was queued or in flight, so this shared frame goes to the socket as it is
    /// (no protocol buffers are allocated for it); it is now the send in flight.
    Direct(Bytes),
}

/// Why a connection did not accept a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The connection is closing or closed.
    Closed,
    /// Over the limit, and the policy drops messages.
    Backpressure,
    /// Over the limit, and the policy closes slow consumers: the caller closes it (1008).
    SlowConsumer,
}

/// Send-side state that only a connection with something queued needs.
#[derive(Default)]
pub(super) struct Pending {
    /// Bytes to write before anything the protocol core queues: the handshake response,
    /// or the unsent rest of a partial write.
    pub(super) unsent: Vec<Bytes>,
    /// Whole messages held back while the core's queue is full enough (backpressure).
    backlog: VecDeque<Outgoing>,
    backlog_bytes: usize,
}

impl Pending {
    fn push_backlog(&mut self, o: Outgoing) {
        self.backlog_bytes += o.len();
        self.backlog.push_back(o);
    }

    fn pop_backlog(&mut self) -> Option<Outgoing> {
        let o = self.backlog.pop_front()?;
        self.backlog_bytes -= o.len();
        Some(o)
    }

    /// Drops the oldest message that may be dropped (not a durable one); `false` if
    /// there is none.
    fn drop_oldest(&mut self) -> bool {
        let Some(i) = self.backlog.iter().position(|o| !matches!(o, Outgoing::Durable(_))) else {
            return false;
        };
        if let Some(o) = self.backlog.remove(i) {
            self.backlog_bytes -= o.len();
        }
        true
    }

    pub(super) fn clear_backlog(&mut self) {
        self.backlog.clear();
        self.backlog_bytes = 0;
    }

    fn bytes(&self) -> usize {
        self.backlog_bytes + self.unsent.iter().map(Bytes::len).sum::<usize>()
    }

    fn is_empty(&self) -> bool {
        self.unsent.is_empty() && self.backlog.is_empty()
    }
}

/// What a send that wrote `n` bytes of `chunks` left unwritten, in order (`chunks` is
/// emptied).
pub(crate) fn unwritten(mut n: usize, chunks: &mut Vec<Bytes>) -> Vec<Bytes> {
    let mut rest = Vec::new();
    for mut chunk in chunks.drain(..) {
        if n >= chunk.len() {
            n -= chunk.len();
        } else {
            rest.push(chunk.split_off(n));
            n = 0;
        }
    }
    rest
}

impl Conn {
    /// The send-side state, allocated on first use.
    pub(super) fn pend(&mut self) -> &mut Pending {
        self.pending.get_or_insert_with(Box::default)
    }

    /// Frees the send-side state if nothing is in it.
    fn shrink(&mut self) {
        if self.pending.as_ref().is_some_and(|p| p.is_empty()) {
            self.pending = None;
        }
    }

    pub(crate) fn unsent_is_empty(&self) -> bool {
        self.pending.as_ref().is_none_or(|p| p.unsent.is_empty())
    }

    fn backlog_is_empty(&self) -> bool {
        self.pending.as_ref().is_none_or(|p| p.backlog.is_empty())
    }

    /// Every byte queued on this connection and not yet acknowledged by the kernel.
    pub(crate) fn queued_bytes(&self) -> usize {
        let core = match &self.phase {
            Phase::Open(c) => c.queued_bytes(),
            _ => 0,
        };
        core + self.pending.as_ref().map_or(0, |p| p.bytes())
            + self.inflight.map_or(0, |n| n.get() as usize)
    }

    /// Queues a message under the backpressure policy.
    ///
    /// The limit bounds what is queued *besides* the new message: a message that finds
    /// the queue empty is always accepted, whatever its size, so any message the frame
    /// limits let through (an echo of the largest allowed message, say) can be sent, and
    /// a connection's queue never holds more than `max(max_queued, one message)`.
    ///
    /// `stats.messages_out` counts a message when it is handed to the protocol core or
    /// the socket, so messages dropped from the backlog are counted only in `drops`.
    #[inline]
    pub(crate) fn enqueue(
        &mut self,
        out: Outgoing,
        limits: &SendLimits,
        stats: &WorkerStats,
    ) -> Result<Enqueued, Refused> {
        if self.closing() {
            return Err(Refused::Closed);
        }
        let Phase::Open(ws) = &self.phase else { return Err(Refused::Closed) };
        if ws.is_closing() || ws.is_closed() {
            return Err(Refused::Closed);
        }
        let len = out.len();
        let fits = |c: &Conn| {
            let queued = c.queued_bytes();
            queued == 0 || queued + len <= limits.max_queued
        };
        if !fits(self) {
            self.set_over_limit(true);
            match limits.policy {
                Backpressure::DropNewest => {
                    WorkerStats::add(&stats.drops, 1);
                    return Err(Refused::Backpressure);
                }
                Backpressure::DropOldest => {
                    while !fits(self) {
                        if !self.pending.as_mut().is_some_and(|p| p.drop_oldest()) {
                            break;
                        }
                        WorkerStats::add(&stats.drops, 1);
                    }
                    if !fits(self) {
                        WorkerStats::add(&stats.drops, 1);
                        return Err(Refused::Backpressure);
                    }
                }
                Backpressure::Close => return Err(Refused::SlowConsumer),
            }
        }
        let backlog_empty = self.backlog_is_empty();
        let nothing_pending = backlog_empty && self.inflight.is_none() && self.unsent_is_empty();
        let tls = self.tls();
        let Phase::Open(ws) = &mut self.phase else { return Err(Refused::Closed) };
        // A shared frame (fan-out) to a server connection with nothing queued and nothing
        // in flight goes to the socket as it is: the protocol core and its buffers are not
        // involved (no allocation per subscriber, and the frame is not queued twice).
        // Anything sent after it waits for its completion (`inflight`), so order holds.
        // (Tested by reference, then taken: the common path moves nothing.)
        let direct = matches!(&out, Outgoing::Frame(frame) if nothing_pending
            && !tls
            && !frame.is_empty()
            && !ws.has_transmit()
            && ws.role() == Role::Server);
        if direct {
            if let Outgoing::Frame(frame) = out {
                self.inflight = NonZeroU32::new(frame.len().min(u32::MAX as usize) as u32);
                WorkerStats::add(&stats.messages_out, 1);
                return Ok(Enqueued::Direct(frame));
            }
            return Err(Refused::Closed); // not reached: `direct` is only set for a frame
        }
        if backlog_empty && ws.queued_bytes() < limits.core_high_water {
            out.send_on(ws).map_err(|_| Refused::Closed)?;
            WorkerStats::add(&stats.messages_out, 1);
        } else {
            self.pend().push_backlog(out);
        }
        Ok(Enqueued::Queued)
    }

    /// Moves backlog messages into the protocol core while it holds less than `limit`
    /// bytes (`usize::MAX`: all of them, before a close frame).
    pub(crate) fn feed_core(&mut self, limit: usize, stats: &WorkerStats) {
        let Phase::Open(ws) = &mut self.phase else { return };
        let Some(p) = self.pending.as_mut() else { return };
        while ws.queued_bytes() < limit {
            let Some(o) = p.pop_backlog() else { break };
            if o.send_on(ws).is_ok() {
                WorkerStats::add(&stats.messages_out, 1);
            }
        }
    }

    /// Collects the next vectored send into `chunks` (empty on entry): the unsent bytes,
    /// then what the protocol core has, up to the limits. Returns whether there is one; it
    /// is then the send in flight. Nothing while a send is in flight or the socket closes.
    pub(crate) fn next_send(
        &mut self,
        chunks: &mut Vec<Bytes>,
        limits: &SendLimits,
        stats: &WorkerStats,
    ) -> bool {
        if self.closing() || self.inflight.is_some() {
            return false;
        }
        self.feed_core(limits.core_high_water, stats);
        let mut bytes = 0;
        if let Some(p) = self.pending.as_mut() {
            for chunk in p.unsent.drain(..) {
                bytes += chunk.len();
                chunks.push(chunk);
            }
        }
        if let Phase::Open(ws) = &mut self.phase {
            while chunks.len() < limits.max_chunks && bytes < limits.max_send_bytes {
                let Some(chunk) = ws.poll_transmit() else { break };
                bytes += chunk.len();
                chunks.push(chunk);
            }
        }
        self.shrink();
        if chunks.is_empty() {
            return false;
        }
        self.inflight = NonZeroU32::new(bytes.clamp(1, u32::MAX as usize) as u32);
        true
    }

    /// The send in flight wrote `n` bytes of `chunks`: what did not go out is kept, in
    /// order, ahead of anything newer (unless the socket is being closed).
    pub(crate) fn sent(&mut self, n: usize, chunks: &mut Vec<Bytes>) {
        self.inflight = None;
        if self.closing() {
            return;
        }
        let mut rest = unwritten(n, chunks);
        if !rest.is_empty() {
            let p = self.pend();
            rest.append(&mut p.unsent);
            p.unsent = rest;
        }
    }

    /// The send in flight failed (the peer is gone).
    pub(crate) fn send_failed(&mut self) {
        self.inflight = None;
    }

    /// TLS: the plaintext `next_send` collected is encrypted (into the session's
    /// queue); what is in flight is the ciphertext, set with [`Conn::set_inflight`].
    pub(crate) fn set_inflight(&mut self, bytes: usize) {
        self.inflight = NonZeroU32::new(bytes.clamp(0, u32::MAX as usize) as u32);
    }

    /// Whether a send is in flight.
    pub(crate) fn sending(&self) -> bool {
        self.inflight.is_some()
    }

    /// Whether the handler's `on_writable` is due: the connection went over the limit
    /// and has drained to the low watermark since. Clears the mark.
    pub(crate) fn became_writable(&mut self, low_watermark: usize) -> bool {
        if self.over_limit() && self.queued_bytes() <= low_watermark {
            self.set_over_limit(false);
            return self.is_open();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ringwire_frame::Config;

    use super::*;

    fn limits(max: usize, policy: Backpressure) -> SendLimits {
        SendLimits {
            max_queued: max,
            policy,
            low_watermark: max / 4,
            core_high_water: 64 * 1024,
            max_chunks: 64,
            max_send_bytes: 1 << 20,
        }
    }

    fn open() -> Conn {
        let now = Instant::now();
        let mut c = Conn::new(now);
        c.upgrading(Connection::server(Config::default(), now));
        c.pending = None;
        c
    }

    fn msg(n: usize) -> Outgoing {
        Outgoing::Msg(Message::binary(vec![0u8; n]))
    }

    #[test]
    fn a_message_larger_than_the_limit_fits_an_empty_queue() {
        let stats = WorkerStats::default();
        let l = limits(1000, Backpressure::Close);
        let mut c = open();
        assert!(matches!(c.enqueue(msg(5000), &l, &stats), Ok(Enqueued::Queued)));
        assert_eq!(c.enqueue(msg(10), &l, &stats).err(), Some(Refused::SlowConsumer));
        assert!(c.over_limit());
    }

    #[test]
    fn drop_oldest_counts_drops_not_sends() {
        let stats = WorkerStats::default();
        // A small core high water keeps later messages in the backlog, where they can be
        // dropped.
        let l = SendLimits { core_high_water: 1, ..limits(3500, Backpressure::DropOldest) };
        let mut c = open();
        for _ in 0..3 {
            assert!(c.enqueue(msg(1000), &l, &stats).is_ok());
        }
        // The first went into the core; two wait in the backlog. A fourth drops one.
        assert!(c.enqueue(msg(1000), &l, &stats).is_ok());
        let s = stats.snapshot();
        assert_eq!((s.messages_out, s.drops), (1, 1));
        let mut chunks = Vec::new();
        assert!(c.next_send(&mut chunks, &l, &stats));
        let total: usize = chunks.iter().map(Bytes::len).sum();
        c.sent(total, &mut chunks);
        while c.next_send(&mut chunks, &l, &stats) {
            let total: usize = chunks.iter().map(Bytes::len).sum();
            c.sent(total, &mut chunks);
        }
        let s = stats.snapshot();
        assert_eq!(s.messages_out + s.drops, 4, "every message is either out or dropped");
        assert_eq!(s.messages_out, 3);
    }

    #[test]
    fn partial_writes_keep_the_rest_first() {
        let stats = WorkerStats::default();
        let l = limits(1 << 20, Backpressure::Close);
        let mut c = open();
        c.enqueue(Outgoing::Msg(Message::text("hello")), &l, &stats).unwrap();
        let mut chunks = Vec::new();
        assert!(c.next_send(&mut chunks, &l, &stats));
        assert!(!c.next_send(&mut Vec::new(), &l, &stats), "one send in flight");
        c.sent(3, &mut chunks);
        c.enqueue(Outgoing::Msg(Message::text("world")), &l, &stats).unwrap();
        assert!(c.next_send(&mut chunks, &l, &stats));
        let bytes: Vec<u8> = chunks.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(&bytes[..5], b"ello\x81", "the rest of the first frame first");
    }
}
