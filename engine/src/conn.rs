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
    /// Upgraded: the protocol core runs.
    Open(Box<Connection>),
    /// The WebSocket part is over (or never began); the socket closes once what is
    /// queued has gone out, or at the deadline.
    Draining { deadline: Instant },
}

/// A worker's record of one connection.
pub(crate) struct Conn {
    pub(crate) phase: Phase,
    /// Bytes to write before anything the protocol core queues: the handshake response,
    /// or the unsent rest of a partial write.
    pub(crate) unsent: Vec<Bytes>,
    /// Whole messages held back while the core's queue is full enough (backpressure).
    pub(crate) backlog: VecDeque<Outgoing>,
    pub(crate) backlog_bytes: usize,
    /// Bytes of the send in flight, if one is.
    pub(crate) inflight: Option<usize>,
    pub(crate) recv_armed: bool,
    /// The socket is being closed: cancel sent, or close submitted.
    pub(crate) closing: bool,
    pub(crate) close_submitted: bool,
    /// The wheel tick this connection is scheduled at (0: none).
    pub(crate) timer_at: u64,
    /// Whether it is already in the worker's list of connections to flush.
    pub(crate) dirty: bool,
    /// It went over the send limit; `on_writable` runs when it drains.
    pub(crate) over_limit: bool,
    pub(crate) topics: Vec<Topic>,
}

impl Conn {
    pub(crate) fn new(deadline: Instant) -> Self {
        Self {
            phase: Phase::Handshake { buf: Vec::new(), deadline },
            unsent: Vec::new(),
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            inflight: None,
            recv_armed: false,
            closing: false,
            close_submitted: false,
            timer_at: 0,
            dirty: false,
            over_limit: false,
            topics: Vec::new(),
        }
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
        core + self.backlog_bytes
            + self.unsent.iter().map(Bytes::len).sum::<usize>()
            + self.inflight.unwrap_or(0)
    }

    /// The next deadline this connection needs the timer wheel for.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Handshake { deadline, .. } | Phase::Draining { deadline } => Some(*deadline),
            Phase::Open(c) => c.poll_timeout(),
        }
    }
}
