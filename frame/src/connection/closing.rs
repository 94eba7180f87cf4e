//! The end of a connection: the close handshake (RFC 6455 §7.1.2-7.1.5), failing the
//! connection on a protocol error (§7.1.7), and the deferral that makes an end that
//! arrived with the input wait until the events before it have been polled.

use std::time::Instant;

use bytes::BytesMut;

use super::recv::RecvState;
use super::timer::{self, Timer};
use super::{bufs, CloseCause, Closed, Connection, Event, State};
use crate::close::CloseFrame;
use crate::code::CloseCode;
use crate::encode::encode_frame;
use crate::error::{ProtocolError, SendError};
use crate::header::{OpCode, MAX_HEADER_LEN};

/// An end that arrived with the input (the peer's close frame, or a frame that breaks the
/// protocol or a limit), held until the application has polled every event that arrived
/// before it (see "Order of events" on [`Connection`]).
#[derive(Debug)]
pub(super) enum Deferred {
    /// The peer's close frame. `local` is true when we had sent our close first (it is
    /// then the answer, and the connection ends as `CloseCause::Local`).
    Close { frame: Option<CloseFrame>, local: bool },
    /// The peer broke RFC 6455 or a limit (§7.1.7).
    Fail(ProtocolError),
}

impl Connection {
    /// Starts the close handshake (RFC 6455 §7.1.2). After this no message may be sent;
    /// the peer's close, or [`crate::Config::close_timeout`], ends the connection. If the peer's
    /// close (or a protocol failure) has already arrived and waits to be polled, this
    /// frame is the answer, and the next `poll_event` past the earlier events ends the
    /// connection (see "Order of events" on the type).
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.check_open()?;
        CloseFrame::check(code, reason)?;
        self.queue_close(Some(CloseFrame { code, reason: reason.to_owned() }));
        self.state = State::CloseSent;
        self.timers.clear();
        if !self.is_deferred() {
            let at = timer::after(self.clock(now), self.config.close_timeout);
            self.timers.set(Timer::Close, at);
        }
        Ok(())
    }

    /// Queues the close frame: the last frame this connection sends.
    pub(super) fn queue_close(&mut self, frame: Option<CloseFrame>) {
        // Pongs still owed go out first: nothing may follow the close frame.
        let b = bufs(&mut self.bufs);
        for p in std::mem::take(&mut b.pongs) {
            let mask = super::mask_source(self.role, &mut self.masks, b.custom_masks.as_mut())
                .map(|m| m.next_mask());
            b.out.write_frames(p.len() + MAX_HEADER_LEN, |buf| {
                encode_frame(buf, OpCode::Pong, true, &p, mask)
            });
        }
        let mut payload = Vec::with_capacity(125);
        if let Some(f) = &frame {
            f.encode(&mut payload);
        }
        let mask = super::mask_source(self.role, &mut self.masks, b.custom_masks.as_mut())
            .map(|m| m.next_mask());
        b.out.write_frames(payload.len() + MAX_HEADER_LEN, |buf| {
            encode_frame(buf, OpCode::Close, true, &payload, mask)
        });
    }

    /// Ends the connection: state, timers and buffers are released, `Closed` reported.
    pub(super) fn finish(&mut self, code: CloseCode, reason: String, cause: CloseCause) {
        self.state = State::Closed;
        self.timers.clear();
        let b = bufs(&mut self.bufs);
        b.msg_opcode = None;
        b.recv = RecvState::default();
        b.msg_buf = BytesMut::new();
        b.ctrl_buf = BytesMut::new();
        b.utf8.reset();
        b.pongs.clear();
        b.events.push_back(Event::Closed(Closed { code, reason, cause }));
    }

    /// Fails the connection (RFC 6455 §7.1.7): input stops here; the close goes out when
    /// the application polls past the events before it.
    pub(super) fn fail(&mut self, err: ProtocolError) {
        self.defer(Deferred::Fail(err));
    }

    /// Stops input at an end that arrived with it and holds the end for `poll_event`. No
    /// timer runs meanwhile: the end is here, only the application's polling is not.
    pub(super) fn defer(&mut self, d: Deferred) {
        let b = bufs(&mut self.bufs);
        if b.deferred.is_none() {
            b.deferred = Some(d);
        }
        self.timers.clear();
    }

    /// Applies a deferred end: the close frame behind everything queued, then `Closed`.
    pub(super) fn apply(&mut self, d: Deferred) {
        match d {
            Deferred::Close { frame, local } => {
                let (code, reason) = match &frame {
                    Some(f) => (f.code, f.reason.clone()),
                    None => (CloseCode::NO_STATUS, String::new()),
                };
                if self.state == State::Open {
                    // §5.5.1: "the endpoint MUST send a Close frame in response ...
                    // typically echoing the status code it received".
                    let echo = frame.map(|f| CloseFrame { code: f.code, reason: String::new() });
                    self.queue_close(echo);
                }
                let cause = if local { CloseCause::Local } else { CloseCause::Peer };
                self.finish(code, reason, cause);
            }
            Deferred::Fail(err) => {
                // §7.1.7: send a close with an appropriate code, unless we have sent one;
                // its reason names the rule broken (§5.5.1: "useful for debugging").
                let code = err.close_code();
                if self.state == State::Open {
                    let reason = err.reason().to_owned();
                    self.queue_close(Some(CloseFrame { code, reason }));
                }
                self.finish(code, String::new(), CloseCause::Error(err));
            }
        }
    }

    /// The transport reached end of stream (or failed). After a close or failure that
    /// waits to be polled it changes nothing: that end is what `Closed` reports.
    pub fn handle_eof(&mut self, _now: Instant) {
        if self.state != State::Closed && !self.is_deferred() {
            self.finish(CloseCode::ABNORMAL, String::new(), CloseCause::TransportClosed);
        }
    }
}
