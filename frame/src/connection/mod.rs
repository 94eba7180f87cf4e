//! The per-connection state machine: bytes and time in, events and bytes out.

mod closing;
mod compress;
mod recv;
mod send;
mod sending;
mod timer;

pub use self::recv::RecvBuffer;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::code::CloseCode;
use crate::config::Config;
use crate::encode::{encode_frame, MaskSource, XorShiftMask};
use crate::error::ProtocolError;
use crate::header::{OpCode, MAX_HEADER_LEN};
use crate::message::Message;
use crate::utf8::Utf8Validator;

use self::closing::Deferred;
use self::recv::RecvState;
use self::send::SendQueue;
use self::timer::{Timer, TimerTable};

/// Which end of the connection this is (RFC 6455 §5.1 masking rules depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the upgrade request; masks every frame it sends.
    Client,
    /// The end that accepted it; sends unmasked frames, requires masked ones.
    Server,
}

/// What a connection reports to the application, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A complete text or binary message.
    Message(Message),
    /// The peer sent a ping (already answered if [`Config::auto_pong`] is on).
    Ping(Bytes),
    /// The peer sent a pong.
    Pong(Pong),
    /// The connection is closed at the WebSocket level: nothing more will be received or
    /// may be sent. Reported exactly once, after every event that arrived before its
    /// cause; when the cause is a received close or a protocol failure, the poll that
    /// returns it is the one that queues the close frame (see [`Connection`], "Order of
    /// events", and [`Connection::close_is_next`]). Flush [`Connection::poll_transmit`],
    /// then close the transport.
    Closed(Closed),
}

/// Length of the payload of a ping sent with [`Connection::send_ping`].
pub const PING_PAYLOAD_LEN: usize = 12;

/// A received pong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// Its payload.
    pub payload: Bytes,
    /// Round-trip time, if it answers a ping sent with [`Connection::send_ping`].
    pub rtt: Option<Duration>,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The code that describes the end: the peer's close code after a close handshake
    /// (1005 if its close frame had none), the code we sent when we failed the connection,
    /// or 1006 when it ended without a close handshake.
    pub code: CloseCode,
    /// The peer's close reason, if any.
    pub reason: String,
    /// Why it ended.
    pub cause: CloseCause,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The peer started the close handshake and we answered.
    Peer,
    /// We started the close handshake (an application close or the idle timeout) and the
    /// peer answered.
    Local,
    /// The peer broke the protocol or a limit; we sent a close with the mapped code.
    Error(ProtocolError),
    /// We sent a close and the peer did not answer within [`Config::close_timeout`].
    CloseTimeout,
    /// Nothing arrived within [`Config::pong_timeout`] of a keepalive ping.
    HeartbeatTimeout,
    /// The transport ended before the close handshake did.
    TransportClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    Closed,
}

/// Pongs owed and not yet flushed beyond which the oldest are dropped: every ping of an
/// ordinary burst gets its pong (Autobahn 2.10/2.11), a flood cannot grow the queue.
const MAX_PENDING_PONGS: usize = 32;

/// A client's masking keys: from the caller's source when it gave one (kept in the
/// buffers, which such a connection never frees), else from the generator held inline
/// in the connection (no allocation per client connection). `None` on a server.
fn mask_source<'a>(
    role: Role,
    seeded: &'a mut XorShiftMask,
    custom: Option<&'a mut Box<dyn MaskSource + Send>>,
) -> Option<&'a mut dyn MaskSource> {
    match (role, custom) {
        (Role::Server, _) => None,
        (Role::Client, Some(c)) => Some(&mut **c),
        (Role::Client, None) => Some(seeded),
    }
}

/// The parts of a connection that only traffic needs.
#[derive(Default)]
struct Buffers {
    /// Where the parser is (a partial header is kept here between reads).
    recv: RecvState,
    /// The data message being received, if any: its opcode (Text or Binary).
    msg_opcode: Option<OpCode>,
    /// Unmasked payload of the message being received.
    msg_buf: BytesMut,
    utf8: Utf8Validator,
    /// Payload of the control frame being received (at most 125 bytes).
    ctrl_buf: BytesMut,
    out: SendQueue,
    /// Payloads of pings not yet answered, oldest first, at most [`MAX_PENDING_PONGS`]
    /// (§5.5.3 allows answering only the latest, so a flood drops the oldest).
    pongs: VecDeque<Bytes>,
    events: VecDeque<Event>,
    /// The close or failure that ends the input, applied by the `poll_event` that finds
    /// `events` empty. While it is set no input is processed and no timer runs.
    deferred: Option<Deferred>,
    /// A client's own mask source ([`Connection::client`]); while it is here the
    /// buffers stay with the connection until it is closed.
    custom_masks: Option<Box<dyn MaskSource + Send>>,
    /// The message being received is compressed (RSV1 on its first frame).
    msg_deflated: bool,
    /// The connection's own deflate contexts (permessage-deflate with context takeover);
    /// like `custom_masks`, they keep the buffers with the connection.
    contexts: Option<Box<crate::deflate::Contexts>>,
}

impl Buffers {
    /// Nothing queued either way and no message half received.
    fn is_idle(&self) -> bool {
        self.out.is_empty()
            && self.pongs.is_empty()
            && self.events.is_empty()
            && self.msg_buf.is_empty()
            && self.ctrl_buf.is_empty()
            && !self.utf8.is_incomplete()
            && self.msg_opcode.is_none()
            && !self.msg_deflated
            && self.recv.is_between_frames()
            && self.deferred.is_none()
    }
}

/// The buffers, allocated on first use (from this thread's spares when it has one).
fn bufs(b: &mut Option<Box<Buffers>>) -> &mut Buffers {
    b.get_or_insert_with(spare::take)
}

mod spare;

/// One WebSocket connection's protocol state, after the HTTP upgrade.
///
/// It owns no socket and reads no clock: the caller feeds it bytes and the current time,
/// and takes events and bytes to send from it. This makes it the same code under the
/// io_uring engine, the epoll fallback, tests with a virtual clock and fuzzers.
///
/// # Call order
///
/// After creating it with [`Connection::server`] or [`Connection::client`]:
///
/// 1. Feed every chunk read from the transport to [`handle_bytes`](Self::handle_bytes);
///    call [`handle_eof`](Self::handle_eof) when the transport reports end of stream.
/// 2. When the deadline from [`poll_timeout`](Self::poll_timeout) has passed, call
///    [`handle_timeout`](Self::handle_timeout).
/// 3. Call `send_*` and [`close`](Self::close) whenever the application wants.
/// 4. After any of the above, drain [`poll_event`](Self::poll_event) until `None`, then
///    [`poll_transmit`](Self::poll_transmit) until `None`, writing the chunks in order, and
///    re-read [`poll_timeout`](Self::poll_timeout) (it can change after every call).
/// 5. Once [`is_closed`](Self::is_closed) is true and nothing is left to transmit, close
///    the transport (RFC 6455 §7.1.1: the server closes TCP first; a client may close it
///    after its close handshake too).
///
/// Input after the connection is closed, or after a protocol error, is ignored
/// (RFC 6455 §7.1.7: "MUST NOT continue to attempt to process data").
///
/// # Order of events
///
/// Events come out in the order their causes arrived, and an end that arrives with the
/// input takes effect in that order too. When a read holds messages (or pings, pongs)
/// followed by the peer's close frame, or by a frame that breaks the protocol or a limit,
/// the connection stops processing input at that frame (§7.1.7: the bytes after it are
/// ignored) but does not close yet. Until the application has polled every event that
/// came before it, the connection still counts as open for sending: `send*`,
/// [`send_ping`](Self::send_ping) and [`close`](Self::close) succeed, and
/// [`is_closing`](Self::is_closing) and [`is_closed`](Self::is_closed) are false. So the
/// reply to a message that came before a close goes out before the answering close frame
/// (RFC 6455 §5.5.1: an endpoint "MAY delay sending a Close frame until its current
/// message is sent"). The [`poll_event`](Self::poll_event) that reaches the end applies
/// it: it queues the close frame (echoing the peer's code, or the error's
/// [`close_code`](ProtocolError::close_code) and [`reason`](ProtocolError::reason))
/// behind everything sent so far, pongs still owed first, and returns [`Event::Closed`].
/// [`close_is_next`](Self::close_is_next) says when the next `poll_event` is that one, so
/// that a driver can move messages it holds for the connection into it first. This holds
/// when nothing precedes the end as well: a close or a failure is never applied inside
/// `handle_bytes`, always by the next `poll_event`. Hence step 4's order: events before
/// transmit.
///
/// While such an end waits to be polled:
/// - [`handle_timeout`](Self::handle_timeout) does nothing (no keepalive ping, no idle,
///   pong or close timeout: the end is already here) and
///   [`poll_timeout`](Self::poll_timeout) is `None`;
/// - [`handle_eof`](Self::handle_eof) changes nothing: `Closed` reports the peer's close
///   ([`CloseCause::Peer`], its code) or the failure, not [`CloseCause::TransportClosed`];
/// - [`close`](Self::close) succeeds and its frame is the one sent. After the peer's
///   close it is our answer, and the connection ends as [`CloseCause::Peer`] with the
///   peer's code and reason: the peer started the closing handshake, its close frame
///   arrived before ours was sent (§7.1.3), and the connection close code is the one of
///   the first close frame received (§7.1.5). After a protocol failure the application's
///   close goes out instead of the error's (§7.1.7 only says the endpoint SHOULD send a
///   close with an appropriate code) and `Closed` reports the error;
/// - [`send_ping`](Self::send_ping) succeeds, but its pong will not be read.
///
/// End of stream itself is not deferred: `handle_eof` with no close received ends the
/// connection at once ([`CloseCause::TransportClosed`]); events already queued are still
/// polled first, but sends fail from then on.
pub struct Connection {
    role: Role,
    config: Arc<Config>,
    state: State,
    /// A client's masking-key generator, inline (8 bytes, unused on a server): an
    /// allocation per client would cost more than the field. A caller's own source
    /// lives in the buffers instead (`Buffers::custom_masks`).
    masks: XorShiftMask,

    /// Buffers, queues and receive state, allocated while there is traffic and freed
    /// when the connection is idle again, so an idle connection costs only this struct.
    bufs: Option<Box<Buffers>>,
    timers: TimerTable,
    /// The sequence number of the last ping sent with [`Connection::send_ping`]. It and
    /// `pong_seq` live here rather than in the buffers, so that an idle connection
    /// waiting for a heartbeat pong holds no allocation. The send time travels in the
    /// ping's payload, so no instant is kept.
    ping_seq: u32,
    /// The sequence number of the last ping whose pong reported an RTT: a pong for it or
    /// for an earlier ping reports none.
    pong_seq: u32,
    /// The agreed permessage-deflate parameters ([`crate::DeflateParams`], packed; 0:
    /// none), in what was padding.
    deflate: u16,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("queued_bytes", &self.queued_bytes())
            .field("buffers", &self.bufs.is_some())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A server-side connection, opened at `now`.
    ///
    /// The crate reads no clock: `now` here and in every later call is the only time it
    /// sees. Timers and ping send times count from an epoch kept with the configuration
    /// and fixed by the first `now` any connection sharing this `Arc<Config>` is given
    /// (a long margin before it, so that other connections' instants, even earlier ones,
    /// map exactly); a `Config` passed by value gets an epoch of its own.
    pub fn server(config: impl Into<Arc<Config>>, now: Instant) -> Self {
        Self::new(Role::Server, config.into(), XorShiftMask::new(0), now)
    }

    /// A client-side connection, opened at `now`, masking frames with keys from `masks`.
    ///
    /// The source is kept with the connection's buffers, which it then holds (emptied
    /// when idle) until it is closed; [`Connection::client_seeded`] holds nothing when
    /// idle and is what a client with many connections wants.
    pub fn client(
        config: impl Into<Arc<Config>>,
        masks: Box<dyn MaskSource + Send>,
        now: Instant,
    ) -> Self {
        let mut c = Self::new(Role::Client, config.into(), XorShiftMask::new(0), now);
        bufs(&mut c.bufs).custom_masks = Some(masks);
        c
    }

    /// A client-side connection masking frames with [`crate::XorShiftMask`] seeded with
    /// `seed` (take it from the operating system's entropy: RFC 6455 §5.3). The same as
    /// [`Connection::client`] with that source, but held inline: no allocation, and the
    /// connection frees its buffers when idle (what a client holds per connection counts
    /// when it holds many).
    pub fn client_seeded(config: impl Into<Arc<Config>>, seed: u64, now: Instant) -> Self {
        Self::new(Role::Client, config.into(), XorShiftMask::new(seed), now)
    }

    fn new(role: Role, config: Arc<Config>, masks: XorShiftMask, now: Instant) -> Self {
        let mut c = Self {
            role,
            config,
            state: State::Open,
            masks,
            bufs: None,
            timers: TimerTable::new(),
            ping_seq: 0,
            pong_seq: 0,
            deflate: 0,
        };
        c.note_activity(now);
        c
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the connection has ended at the WebSocket level.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether we sent a close frame and wait for the peer's.
    pub fn is_closing(&self) -> bool {
        self.state == State::CloseSent
    }

    /// The next event, if any. When every earlier event has been polled, this applies a
    /// close or failure that arrived with the input (see "Order of events" on the type): the
    /// close frame is queued and `Closed` returned.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        let b = self.bufs.as_mut()?;
        if let Some(ev) = b.events.pop_front() {
            return Some(ev);
        }
        b.deferred.as_ref()?;
        self.poll_deferred()
    }

    /// The end of [`poll_event`](Self::poll_event): applies the waiting close or failure.
    /// Out of line, so that the per-message path above stays small enough to inline.
    #[cold]
    fn poll_deferred(&mut self) -> Option<Event> {
        let d = self.bufs.as_mut()?.deferred.take()?;
        self.apply(d);
        self.bufs.as_mut()?.events.pop_front()
    }

    /// Whether the next [`poll_event`](Self::poll_event) applies a received close or a
    /// protocol failure and returns [`Event::Closed`]: every event before it has been
    /// polled. Until that call the connection is still open for sending, so a driver that
    /// holds messages for this connection can queue them now, to go out before the close
    /// frame.
    #[inline]
    pub fn close_is_next(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| b.events.is_empty() && b.deferred.is_some())
    }

    /// A close or failure from the input waits for `poll_event`.
    fn is_deferred(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| b.deferred.is_some())
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        timer::instant(self.config.epoch.get()?, self.timers.next()?)
    }

    /// Bytes waiting in [`poll_transmit`](Self::poll_transmit), for backpressure.
    pub fn queued_bytes(&self) -> usize {
        let mask = if self.role == Role::Client { 4 } else { 0 };
        self.bufs
            .as_ref()
            .map_or(0, |b| b.out.len() + b.pongs.iter().map(|p| p.len() + 2 + mask).sum::<usize>())
    }

    /// Frees the calling thread's spare buffers that no connection took since the
    /// previous call, and returns how many it freed.
    ///
    /// A connection that goes idle gives its buffers to a per-thread list of spares, which
    /// the next connection of the thread to get busy takes instead of allocating: as
    /// many as were busy at once, up to 1,024 spares and 4 MiB per thread. A program
    /// that runs connections on a thread calls this now and then (an engine worker does,
    /// about once a second) so that the spares of a burst do not outlive it; without
    /// it they stay, within those bounds, until the thread ends.
    pub fn release_spare_buffers() -> usize {
        spare::release_unused()
    }

    /// The calling thread's spare buffers: how many, and the bytes they hold (their
    /// boxes and the capacity of their buffers and queues).
    pub fn spare_buffers() -> (usize, usize) {
        spare::held()
    }

    /// Whether the connection holds buffers (it frees them when idle).
    pub fn has_buffers(&self) -> bool {
        self.bufs.is_some()
    }

    /// Whether anything is waiting to be transmitted.
    pub fn has_transmit(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| !b.out.is_empty() || !b.pongs.is_empty())
    }

    /// The next chunk of bytes to write to the transport, in order. Chunks may share
    /// memory with other connections (fan-out) and with messages the application sent.
    ///
    /// When it returns `None` and nothing else is pending, the connection frees its
    /// buffers: an idle connection holds no allocation besides itself.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let b = self.bufs.as_mut()?;
        if !b.pongs.is_empty() && b.out.at_frame_boundary() {
            // Control frames may go between frames (§5.4), never inside one.
            let mut out = BytesMut::with_capacity(b.pongs.len() * (MAX_HEADER_LEN + 125));
            for payload in b.pongs.drain(..) {
                let mask = mask_source(self.role, &mut self.masks, b.custom_masks.as_mut())
                    .map(|m| m.next_mask());
                encode_frame(&mut out, OpCode::Pong, true, &payload, mask);
            }
            return Some(out.freeze());
        }
        let chunk = b.out.pop();
        // A caller's mask source lives in the buffers: they go only once no frame can
        // follow.
        let keep =
            (b.custom_masks.is_some() || b.contexts.is_some()) && self.state != State::Closed;
        if chunk.is_none() && b.is_idle() {
            if keep {
                spare::trim(b);
            } else if let Some(b) = self.bufs.take() {
                spare::give(b);
            }
        }
        chunk
    }

    /// Appends every pending chunk to `out`, for callers with one contiguous buffer.
    pub fn poll_transmit_into(&mut self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        while let Some(chunk) = self.poll_transmit() {
            out.extend_from_slice(&chunk);
        }
        out.len() - start
    }

    // ---- time ------------------------------------------------------------------------

    /// Runs the timers due at `now`: close timeout, keepalive ping, pong timeout, idle.
    /// Does nothing while a received close or failure waits to be polled.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed || self.is_deferred() {
            return;
        }
        let at = self.clock(now);
        if self.timers.is_expired(Timer::Close, at) {
            self.finish(CloseCode::ABNORMAL, String::new(), CloseCause::CloseTimeout);
            return;
        }
        if self.timers.is_expired(Timer::PongTimeout, at) {
            self.finish(CloseCode::ABNORMAL, String::new(), CloseCause::HeartbeatTimeout);
            return;
        }
        if self.timers.is_expired(Timer::Idle, at) {
            self.timers.stop(Timer::Idle);
            let _ = self.close(now, CloseCode::GOING_AWAY, "idle timeout");
        }
        if self.timers.is_expired(Timer::Keepalive, at) {
            self.timers.stop(Timer::Keepalive);
            if self.state == State::Open && self.send_ping(now).is_ok() {
                self.timers.set(Timer::PongTimeout, timer::after(at, self.config.pong_timeout));
            }
        }
    }

    /// `now` as nanoseconds since the configuration's epoch, which the first instant any
    /// connection of the configuration is given fixes (see `timer.rs`: the caller's
    /// instants are the only time this crate sees).
    fn clock(&self, now: Instant) -> u64 {
        timer::offset(self.config.epoch.fix(now), now)
    }

    /// Inbound traffic of any kind shows the peer is alive.
    fn note_activity(&mut self, now: Instant) {
        if self.state != State::Open {
            return;
        }
        let at = self.clock(now);
        if let Some(i) = self.config.ping_interval {
            self.timers.set(Timer::Keepalive, timer::after(at, i));
            self.timers.stop(Timer::PongTimeout);
        }
        if let Some(i) = self.config.idle_timeout {
            self.timers.set(Timer::Idle, timer::after(at, i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_fits_the_engines_record() {
        // The engine asserts the same (`size_of::<Connection>() <= 56`): it keeps this
        // struct inline in every connection's record.
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 56, "Connection grew to {size} bytes");
    }
}
