//! What a worker keeps per connection, beside the protocol state.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use ringwire_frame::{Connection, Message};

use crate::handle::Topic;

/// A message waiting in a connection's backlog.
pub(crate) enum Outgoing {
    Msg(Message),
    /// A frame encoded once for many connections (fan-out).
    Frame(Bytes),
}

impl Outgoing {
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Msg(m) => m.len(),
            Outgoing::Frame(f) => f.len(),
        }
    }
}

/// Where a connection is in its life.
pub(crate) enum Phase {
    /// Reading the HTTP upgrade request; bytes so far (bounded by the header limit).
    Handshake { buf: Vec<u8>, deadline: Instant },
    /// Upgraded: the protocol core runs (inline: most connections are here).
    Open(Connection),
    /// The WebSocket part is over (or never began); the socket closes once what is
    /// queued has gone out, or at the deadline.
    Draining { deadline: Instant },
}

/// Send-side state that only a connection with something queued needs; boxed and freed
/// when empty, so an idle connection does not carry it.
#[derive(Default)]
pub(crate) struct Pending {
    /// Bytes to write before anything the protocol core queues: the handshake response,
    /// or the unsent rest of a partial write.
    pub(crate) unsent: Vec<Bytes>,
    /// Whole messages held back while the core's queue is full enough (backpressure).
    backlog: VecDeque<Outgoing>,
    backlog_bytes: usize,
}

impl Pending {
    pub(crate) fn push_backlog(&mut self, o: Outgoing) {
        self.backlog_bytes += o.len();
        self.backlog.push_back(o);
    }

    pub(crate) fn pop_backlog(&mut self) -> Option<Outgoing> {
        let o = self.backlog.pop_front()?;
        self.backlog_bytes -= o.len();
        Some(o)
    }

    pub(crate) fn clear_backlog(&mut self) {
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

/// A worker's record of one connection.
pub(crate) struct Conn {
    pub(crate) phase: Phase,
    pub(crate) pending: Option<Box<Pending>>,
    /// Bytes of the send in flight, if one is.
    pub(crate) inflight: Option<std::num::NonZeroU32>,
    /// The booleans below, one bit each (see `flags!`): 8 bytes less per connection than
    /// five `bool` fields once the record is rounded to its alignment.
    flags: u8,
    /// Topics this connection is subscribed to, boxed on purpose: a thin pointer (8 bytes
    /// on every connection) instead of a `Vec` (24), since most connections have none.
    #[allow(clippy::box_collection)]
    pub(crate) topics: Option<Box<Vec<Topic>>>,
}

/// Accessors for the bits of `Conn::flags`.
macro_rules! flags {
    ($($(#[$doc:meta])* $bit:literal $get:ident $set:ident;)*) => {
        impl Conn {
            $(
                $(#[$doc])*
                pub(crate) fn $get(&self) -> bool {
                    self.flags & (1 << $bit) != 0
                }

                pub(crate) fn $set(&mut self, on: bool) {
                    if on {
                        self.flags |= 1 << $bit;
                    } else {
                        self.flags &= !(1 << $bit);
                    }
                }
            )*
        }
    };
}

flags! {
    /// A multishot receive is armed on the socket.
    0 recv_armed set_recv_armed;
    /// The socket is being closed: cancel sent, or close submitted.
    1 closing set_closing;
    /// The close of the socket has been submitted.
    2 close_submitted set_close_submitted;
    /// It is already in the worker's list of connections to flush.
    3 dirty set_dirty;
    /// It went over the send limit; `on_writable` runs when it drains.
    4 over_limit set_over_limit;
}

impl Conn {
    pub(crate) fn new(deadline: Instant) -> Self {
        Self {
            phase: Phase::Handshake { buf: Vec::new(), deadline },
            pending: None,
            inflight: None,
            flags: 0,
            topics: None,
        }
    }

    /// The send-side state, allocated on first use.
    pub(crate) fn pend(&mut self) -> &mut Pending {
        self.pending.get_or_insert_with(Box::default)
    }

    /// Frees the send-side state if nothing is in it.
    pub(crate) fn shrink(&mut self) {
        if self.pending.as_ref().is_some_and(|p| p.is_empty()) {
            self.pending = None;
        }
    }

    pub(crate) fn unsent_is_empty(&self) -> bool {
        self.pending.as_ref().is_none_or(|p| p.unsent.is_empty())
    }

    pub(crate) fn backlog_is_empty(&self) -> bool {
        self.pending.as_ref().is_none_or(|p| p.backlog.is_empty())
    }

    /// The topics this connection is subscribed to.
    pub(crate) fn topics(&self) -> &[Topic] {
        self.topics.as_deref().map_or(&[], |v| v.as_slice())
    }

    pub(crate) fn subscribe(&mut self, topic: Topic) {
        self.topics.get_or_insert_with(Box::default).push(topic);
    }

    pub(crate) fn unsubscribe(&mut self, topic: &str) -> bool {
        let Some(v) = self.topics.as_mut() else { return false };
        let Some(i) = v.iter().position(|t| &**t == topic) else { return false };
        v.swap_remove(i);
        if v.is_empty() {
            self.topics = None;
        }
        true
    }

    pub(crate) fn ws(&mut self) -> Option<&mut Connection> {
        match &mut self.phase {
            Phase::Open(c) => Some(c),
            _ => None,
        }
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

    /// The next deadline this connection needs the timer wheel for.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        // Once the socket is being closed only completions remain: a past deadline kept
        // on the wheel would fire on every turn of the loop until they arrive.
        if self.closing() {
            return None;
        }
        match &self.phase {
            Phase::Handshake { deadline, .. } | Phase::Draining { deadline } => Some(*deadline),
            Phase::Open(c) => c.poll_timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// What an idle, upgraded connection costs in the worker's slab, beyond the kernel's
    /// socket: this record with the protocol core inline, no heap allocation, plus its
    /// generation. A regression guard for the memory-per-connection goal (128 B;
    /// docs/BENCHMARKS.md measures the real RSS).
    #[test]
    fn idle_connection_record_stays_small() {
        let core = std::mem::size_of::<ringwire_frame::Connection>();
        let slot = crate::slab::Slab::<super::Conn>::slot_bytes();
        assert!(core <= 56, "ringwire_frame::Connection grew to {core} bytes");
        assert_eq!(std::mem::size_of::<super::Phase>(), core, "the phase tag needs a niche");
        assert!(slot <= 84, "a slab slot grew to {slot} bytes");
    }
}
