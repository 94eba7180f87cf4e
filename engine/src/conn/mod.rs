//! One connection's life on its worker, beside the protocol state: the WebSocket phase
//! (upgrade, open, draining), the socket's teardown, the send backlog and backpressure.
//!
//! Everything here is a method on [`Conn`] that takes the connection itself and returns
//! what the worker must do next (submit an op, flush, re-arm a timer): the worker looks a
//! connection up once per event and hands it around, and the transitions can be read
//! (and tested) in one place.
//!
//! ```text
//!  accept ─► Handshake ──upgrade──► Open ──Closed event──► Draining ──flushed──┐
//!               │  (bad request, timeout: the error response) ─► Draining      │
//!               └──────────────── peer gone, deadline ──────────────────────┐  │
//!                                                                           ▼  ▼
//!  socket:  Live ──begin_close──► Cancelling (ops in flight) ──► CloseSubmitted ─► removed
//!                       └──────── nothing in flight ──────────►┘
//! ```
//!
//! An outgoing (client) connection starts in `Connecting` and upgrades through
//! `ClientHandshake`; when its socket is closed and the client will try again, the
//! record is not removed but waits in `Backoff` with a live teardown state, and the
//! next attempt starts over in `Connecting` under the same key:
//!
//! ```text
//!  dial ─► Connecting ──connected──► ClientHandshake ──101──► Open ─► Draining ─► closed
//!             ▲  (refused, timeout)         │ (bad answer, timeout)                  │
//!             │                             ▼                                        │
//!             └──retry due── Backoff ◄── socket closed, client will retry ◄──────────┘
//! ```

mod handshake;
mod send;

pub(crate) use self::handshake::{reject_response, HandshakeStep};
pub(crate) use self::send::{unwritten, Enqueued, Outgoing, Refused, SendLimits};

use std::num::NonZeroU32;
use std::time::Instant;

use bytes::Bytes;
use ringwire_frame::handshake::ClientRequest;
use ringwire_frame::Connection;

use self::send::Pending;
use crate::handle::Topic;

/// Where a connection is in its WebSocket life.
pub(crate) enum Phase {
    /// Reading the HTTP upgrade request; bytes so far (bounded by the header limit).
    Handshake { buf: Vec<u8>, deadline: Instant },
    /// Upgraded: the protocol core runs (inline: most connections are here).
    Open(Connection),
    /// The WebSocket part is over (or never began); the socket closes once what is
    /// queued has gone out, or at the deadline.
    Draining { deadline: Instant },
    /// Client: the TCP connect is in flight; it must finish by `deadline`.
    Connecting { deadline: Instant },
    /// Client: the upgrade request is sent (or going out); the server's answer so far
    /// (bounded by the header limits) must be whole by `deadline`. `request` is what
    /// was sent (its key checks the 101).
    ClientHandshake { buf: Vec<u8>, deadline: Instant, request: Box<ClientRequest> },
    /// Client: no socket; the next attempt starts at `until`.
    Backoff { until: Instant },
}

/// Where the connection's socket is in its teardown. Each step waits for completions:
/// an operation owns the socket until the kernel reports its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Teardown {
    /// In use.
    Live,
    /// The receive and the send in flight are being cancelled; the close follows once
    /// both have reported their end.
    Cancelling,
    /// The close is submitted; `FdClosed` removes the connection.
    CloseSubmitted,
}

/// What the worker must submit for a teardown step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketStep {
    /// Cancel the receive and the send in flight.
    Cancel,
    /// Close the socket.
    Close,
}

/// A worker's record of one connection.
pub(crate) struct Conn {
    pub(crate) phase: Phase,
    /// Send-side state that only a connection with something queued needs; boxed and
    /// freed when empty, so an idle connection does not carry it.
    pending: Option<Box<Pending>>,
    /// Bytes of the send in flight, if one is.
    inflight: Option<NonZeroU32>,
    teardown: Teardown,
    /// The booleans below, one bit each (see `flags!`).
    flags: u8,
    /// Topics this connection is subscribed to, boxed on purpose: a thin pointer (8 bytes
    /// on every connection) instead of a `Vec` (24), since most connections have none.
    #[allow(clippy::box_collection)]
    topics: Option<Box<Vec<Topic>>>,
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
    /// It is already in the worker's list of connections to flush.
    1 dirty set_dirty;
    /// It went over the send limit; `on_writable` runs when it drains.
    2 over_limit set_over_limit;
    /// Client: a connect is in flight on the socket.
    3 connecting set_connecting;
    /// Both sides named the acknowledgement extension (`outbox::wire`): a client tags
    /// its durable messages and reads acknowledgements; a server filters duplicates and
    /// acknowledges.
    4 acks set_acks;
    /// TLS runs between the socket and the protocol: its session is in the worker's
    /// `TlsTable`, and bytes go through it both ways.
    5 tls set_tls;
    /// TLS: once what is queued now is sealed and nothing else waits, the record keys
    /// rest (`TlsSession::rest`): set with a server's 101 (many connections are idle from
    /// their start) and with a heartbeat (so that a heartbeat's expanded key lives for
    /// its one record, not until the pong: all of a worker's connections may ping in
    /// the same tick).
    6 rest_keys set_rest_keys;
}

impl Conn {
    /// A connection just accepted, whose upgrade must complete by `deadline`.
    pub(crate) fn new(deadline: Instant) -> Self {
        Self {
            phase: Phase::Handshake { buf: Vec::new(), deadline },
            pending: None,
            inflight: None,
            teardown: Teardown::Live,
            flags: 0,
            topics: None,
        }
    }

    /// An outgoing connection about to connect (its first attempt or a later one), which
    /// must be connected by `deadline`.
    pub(crate) fn dialing(deadline: Instant) -> Self {
        let mut c = Self::new(deadline);
        c.phase = Phase::Connecting { deadline };
        c.set_connecting(true);
        c
    }

    /// Client: the socket is closed and the client tries again at `until`: the record
    /// waits, with no socket, nothing queued and nothing in flight.
    pub(crate) fn wait_for_retry(&mut self, until: Instant) {
        *self = Self { phase: Phase::Backoff { until }, ..Self::new(until) };
    }

    /// Client: a new attempt starts (from `Backoff`).
    pub(crate) fn redial(&mut self, deadline: Instant) {
        *self = Self::dialing(deadline);
    }

    /// Client: connected; the upgrade request `bytes` (of `request`) goes out first,
    /// the answer is awaited until `deadline`.
    pub(crate) fn start_client_handshake(
        &mut self,
        request: Box<ClientRequest>,
        bytes: Bytes,
        deadline: Instant,
    ) {
        self.set_connecting(false);
        self.phase = Phase::ClientHandshake { buf: Vec::new(), deadline, request };
        self.pend().unsent = vec![bytes];
    }

    /// Client: the 101 arrived; the protocol core takes over.
    pub(crate) fn client_upgraded(&mut self, ws: Connection) {
        self.phase = Phase::Open(ws);
    }

    /// The protocol core, while the connection is open.
    pub(crate) fn ws(&mut self) -> Option<&mut Connection> {
        match &mut self.phase {
            Phase::Open(c) => Some(c),
            _ => None,
        }
    }

    /// The server window of an open connection that agreed permessage-deflate without
    /// server context takeover: its fan-out frames may be the ones compressed once for
    /// every such connection of that window.
    pub(crate) fn shared_deflate_window(&self) -> Option<u8> {
        match &self.phase {
            Phase::Open(c) => c
                .deflate_params()
                .filter(|p| p.server_no_context_takeover)
                .map(|p| p.server_max_window_bits),
            _ => None,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// The socket is being torn down: no more input is processed, nothing more is sent.
    pub(crate) fn closing(&self) -> bool {
        self.teardown != Teardown::Live
    }

    // ---- phase -----------------------------------------------------------------------

    /// The upgrade request is valid and the handler is asked: the protocol core exists
    /// (what the handler sends now is queued in it) and the 101's place at the head of
    /// `unsent` is held by an empty chunk, so nothing can go to the socket before it.
    pub(crate) fn upgrading(&mut self, ws: Connection) {
        self.phase = Phase::Open(ws);
        self.pend().unsent = vec![Bytes::new()];
    }

    /// The handler accepted: `response` (the 101) takes its place, first.
    pub(crate) fn upgraded(&mut self, response: Bytes) {
        match self.pend().unsent.first_mut() {
            Some(first) if first.is_empty() => *first = response,
            _ => self.pend().unsent.insert(0, response),
        }
        if self.tls() {
            self.set_rest_keys(true);
        }
    }

    /// The upgrade failed: `response` (the 4xx or 5xx) is all that goes out, then the
    /// socket closes (at `deadline` at the latest).
    pub(crate) fn reject(&mut self, response: Bytes, deadline: Instant) {
        let p = self.pend();
        p.unsent = vec![response];
        p.clear_backlog();
        self.phase = Phase::Draining { deadline };
    }

    /// The WebSocket part ended (its `Closed` event): what the protocol core still has
    /// to send moves to `unsent`, the core is freed, the backlog (messages never handed
    /// to the core) is dropped, and the socket closes once flushed or at `deadline`.
    /// Returns the topics the connection was subscribed to, for the worker to leave.
    pub(crate) fn drain(&mut self, deadline: Instant) -> Vec<Topic> {
        if let Phase::Open(ws) = &mut self.phase {
            let mut chunks = Vec::new();
            while let Some(chunk) = ws.poll_transmit() {
                chunks.push(chunk);
            }
            if !chunks.is_empty() {
                self.pend().unsent.extend(chunks);
            }
        }
        self.phase = Phase::Draining { deadline };
        if let Some(p) = self.pending.as_mut() {
            p.clear_backlog();
        }
        self.topics.take().map(|t| *t).unwrap_or_default()
    }

    /// Whether a draining connection has written everything and can close its socket.
    pub(crate) fn drained(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
            && self.inflight.is_none()
            && self.unsent_is_empty()
    }

    /// The connection cannot go on (its TLS failed before the upgrade): nothing more of
    /// it is sent but what the TLS layer queued itself (an alert), and the socket
    /// closes once that is out, or at `deadline`.
    pub(crate) fn give_up(&mut self, deadline: Instant) {
        self.pending = None;
        self.phase = Phase::Draining { deadline };
    }

    /// During a graceful shutdown: a connection still in its upgrade is not upgraded any
    /// more, it drains (nothing to send) and closes.
    pub(crate) fn abandon_handshake(&mut self, deadline: Instant) -> bool {
        if matches!(self.phase, Phase::Handshake { .. }) {
            self.phase = Phase::Draining { deadline };
            return true;
        }
        false
    }

    // ---- socket teardown ---------------------------------------------------------------

    /// Starts tearing the socket down: what is in flight is cancelled first, then the
    /// socket closes. `None` if it is already being torn down.
    pub(crate) fn begin_close(&mut self) -> Option<SocketStep> {
        if self.closing() {
            return None;
        }
        self.pending = None;
        if self.recv_armed() || self.inflight.is_some() || self.connecting() {
            self.teardown = Teardown::Cancelling;
            Some(SocketStep::Cancel)
        } else {
            self.teardown = Teardown::CloseSubmitted;
            Some(SocketStep::Close)
        }
    }

    /// After a completion: whether the socket can be closed now (cancelling, and the
    /// last operation in flight just ended). Moves to `CloseSubmitted` if so.
    pub(crate) fn finish_close(&mut self) -> bool {
        if self.teardown == Teardown::Cancelling
            && !self.recv_armed()
            && self.inflight.is_none()
            && !self.connecting()
        {
            self.teardown = Teardown::CloseSubmitted;
            return true;
        }
        false
    }

    // ---- topics ------------------------------------------------------------------------

    /// The topics this connection is subscribed to.
    pub(crate) fn topics(&self) -> &[Topic] {
        self.topics.as_deref().map_or(&[], |v| v.as_slice())
    }

    /// Adds `topic`; `false` if already subscribed.
    pub(crate) fn subscribe(&mut self, topic: &Topic) -> bool {
        if self.topics().contains(topic) {
            return false;
        }
        self.topics.get_or_insert_with(Box::default).push(topic.clone());
        true
    }

    /// Removes `topic`; `false` if not subscribed.
    pub(crate) fn unsubscribe(&mut self, topic: &str) -> bool {
        let Some(v) = self.topics.as_mut() else { return false };
        let Some(i) = v.iter().position(|t| &**t == topic) else { return false };
        v.swap_remove(i);
        if v.is_empty() {
            self.topics = None;
        }
        true
    }

    // ---- time --------------------------------------------------------------------------

    /// The next deadline this connection needs the timer wheel for.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        // Once the socket is being closed only completions remain: a past deadline kept
        // on the wheel would fire on every turn of the loop until they arrive.
        if self.closing() {
            return None;
        }
        match &self.phase {
            Phase::Handshake { deadline, .. }
            | Phase::Draining { deadline }
            | Phase::Connecting { deadline }
            | Phase::ClientHandshake { deadline, .. } => Some(*deadline),
            Phase::Backoff { until } => Some(*until),
            Phase::Open(c) => c.poll_timeout(),
        }
    }

    /// What a due timer means for this connection at `now`.
    pub(crate) fn timer_due(&mut self, now: Instant) -> TimerDue {
        match &mut self.phase {
            Phase::Handshake { deadline, .. } if now >= *deadline => TimerDue::HandshakeTimeout,
            Phase::Draining { deadline } if now >= *deadline => TimerDue::DrainTimeout,
            Phase::Connecting { deadline } if now >= *deadline => TimerDue::ConnectTimeout,
            Phase::ClientHandshake { deadline, .. } if now >= *deadline => {
                TimerDue::ClientHandshakeTimeout
            }
            Phase::Backoff { until } if now >= *until => TimerDue::Retry,
            Phase::Open(ws) => {
                ws.handle_timeout(now);
                TimerDue::Protocol
            }
            _ => TimerDue::Early,
        }
    }
}

/// See [`Conn::timer_due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerDue {
    /// Slowloris: the upgrade did not complete in time. Close the socket.
    HandshakeTimeout,
    /// What was left to send did not go out in time. Close the socket.
    DrainTimeout,
    /// Client: the TCP connect did not finish in time.
    ConnectTimeout,
    /// Client: the server's answer to the upgrade did not arrive in time.
    ClientHandshakeTimeout,
    /// Client: the backoff is over; the next attempt starts.
    Retry,
    /// The protocol core ran its timers: process its events.
    Protocol,
    /// Nothing is due yet (the wheel entry was early); re-arm.
    Early,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle, upgraded connection costs in the worker's slab, beyond the kernel's
    /// socket: this record with the protocol core inline, no heap allocation, plus its
    /// generation. A regression guard for the memory-per-connection goal (128 B;
    /// docs/BENCHMARKS.md measures the real RSS).
    #[test]
    fn idle_connection_record_stays_small() {
        let core = std::mem::size_of::<ringwire_frame::Connection>();
        let slot = crate::slab::Slab::<Conn>::slot_bytes();
        assert!(core <= 56, "ringwire_frame::Connection grew to {core} bytes");
        assert_eq!(std::mem::size_of::<Phase>(), core, "the phase tag needs a niche");
        assert!(slot <= 84, "a slab slot grew to {slot} bytes");
    }

    #[test]
    fn teardown_cancels_what_is_in_flight_before_closing() {
        let now = Instant::now();
        let mut c = Conn::new(now);
        c.set_recv_armed(true);
        assert_eq!(c.begin_close(), Some(SocketStep::Cancel));
        assert_eq!(c.begin_close(), None, "a second close does nothing");
        assert!(!c.finish_close(), "the receive is still armed");
        c.set_recv_armed(false);
        assert!(c.finish_close());
        assert!(!c.finish_close(), "the close is submitted once");

        let mut idle = Conn::new(now);
        assert_eq!(idle.begin_close(), Some(SocketStep::Close));
        assert!(idle.closing() && idle.deadline().is_none());
    }

    #[test]
    fn topics_are_a_set() {
        let mut c = Conn::new(Instant::now());
        let t: Topic = "a".into();
        assert!(c.subscribe(&t));
        assert!(!c.subscribe(&t));
        assert_eq!(c.topics().len(), 1);
        assert!(c.unsubscribe("a"));
        assert!(!c.unsubscribe("a"));
        assert!(c.topics.is_none(), "no allocation left behind");
    }
}
