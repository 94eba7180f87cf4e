//! The receive path: frame headers, role rules, unmasking, UTF-8, assembly, control frames.

use std::time::Instant;

use crate::close::{CloseCode, CloseFrame};
use crate::error::ProtocolError;
use crate::header::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask_offset;
use crate::message::{Message, Utf8Bytes};

use super::{bufs, CloseCause, Connection, Event, Pong, Role, State};

/// Payload is unmasked and validated in pieces of this size, so that the bytes just
/// copied are still in L1 cache for the mask and UTF-8 passes.
const PIECE: usize = 16 * 1024;

/// Most extra room taken for the messages that follow in the same read: small messages
/// that arrive together are cut from one shared, refcounted buffer (freed when the last
/// of them is dropped) instead of one allocation each.
const SLAB: usize = 8 * 1024;

/// Where the parser is within the current frame.
#[derive(Debug, Clone, Copy)]
pub(super) enum RecvState {
    /// Reading a header; the bytes of a header split across reads are kept here.
    Header { buf: [u8; MAX_HEADER_LEN], len: u8 },
    /// Reading a payload.
    Payload { opcode: OpCode, fin: bool, remaining: u64, mask: Option<[u8; 4]>, offset: u8 },
}

impl Default for RecvState {
    fn default() -> Self {
        Self::Header { buf: [0; MAX_HEADER_LEN], len: 0 }
    }
}

impl RecvState {
    /// No frame is partly received.
    pub(super) fn is_between_frames(&self) -> bool {
        matches!(self, Self::Header { len: 0, .. })
    }
}

impl Connection {
    /// Feeds bytes read from the transport at `now`. Any bytes count as sign of life for
    /// the heartbeat. Events and bytes to send result; a protocol violation fails the
    /// connection with the RFC's close code and the rest of the input is ignored.
    pub fn handle_bytes(&mut self, now: Instant, mut data: &[u8]) {
        // §7.1.7: after a close frame is received, or the connection failed, input is
        // not processed. (We still process input while our own close is in flight.)
        if self.state == State::Closed {
            return;
        }
        self.note_activity(now);
        while !data.is_empty() && self.state != State::Closed {
            match bufs(&mut self.bufs).recv {
                RecvState::Header { mut buf, len } => {
                    let len = usize::from(len);
                    let decoded = if len == 0 {
                        FrameHeader::decode(data)
                    } else {
                        let take = (MAX_HEADER_LEN - len).min(data.len());
                        buf[len..len + take].copy_from_slice(&data[..take]);
                        FrameHeader::decode(&buf[..len + take])
                    };
                    match decoded {
                        Ok(Some((header, used))) => {
                            // `used > len`: the stashed prefix alone did not decode.
                            data = &data[used - len..];
                            bufs(&mut self.bufs).recv = RecvState::default();
                            if let Err(e) = self.begin_frame(header, now) {
                                self.fail(e);
                            }
                        }
                        Ok(None) => {
                            let take = (MAX_HEADER_LEN - len).min(data.len());
                            buf[len..len + take].copy_from_slice(&data[..take]);
                            bufs(&mut self.bufs).recv =
                                RecvState::Header { buf, len: (len + take) as u8 };
                            data = &data[take..];
                        }
                        Err(e) => self.fail(e),
                    }
                }
                RecvState::Payload { remaining, .. } => {
                    let take = data.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    let (piece, rest) = data.split_at(take);
                    data = rest;
                    if let Err(e) = self.payload(piece, rest.len(), now) {
                        self.fail(e);
                    }
                }
            }
        }
    }

    /// Checks a new frame's header against the role, the RFC and our limits.
    fn begin_frame(&mut self, h: FrameHeader, now: Instant) -> Result<(), ProtocolError> {
        // §5.1: a server MUST close on an unmasked frame, a client on a masked one.
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        // §5.2: RSV1-3 MUST be 0 unless an extension defining them was negotiated.
        if h.rsv != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail_".
        if h.opcode.is_reserved() {
            return Err(ProtocolError::ReservedOpcode(h.opcode.as_u8()));
        }
        if h.opcode.is_control() {
            // §5.5: control frames MUST NOT be fragmented and MUST have a payload of
            // 125 bytes or less.
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if h.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong(h.payload_len));
            }
        } else {
            // §5.4: continuations only inside a fragmented message; no new data frame
            // until it ends.
            match (h.opcode, self.bufs.as_ref().and_then(|b| b.msg_opcode)) {
                (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (OpCode::Text | OpCode::Binary, Some(_)) => {
                    return Err(ProtocolError::ExpectedContinuation)
                }
                _ => {}
            }
            let max = self.config.max_frame_size;
            if h.payload_len > max as u64 {
                return Err(ProtocolError::FrameTooLarge { size: h.payload_len, max });
            }
            let total = self.bufs.as_ref().map_or(0, |b| b.msg_buf.len()) as u64 + h.payload_len;
            let max = self.config.max_message_size;
            if total > max as u64 {
                return Err(ProtocolError::MessageTooLarge { size: total, max });
            }
            if h.opcode != OpCode::Continuation {
                let b = bufs(&mut self.bufs);
                b.msg_opcode = Some(h.opcode);
                b.utf8.reset();
            }
        }
        bufs(&mut self.bufs).recv = RecvState::Payload {
            opcode: h.opcode,
            fin: h.fin,
            remaining: h.payload_len,
            mask: h.mask,
            offset: 0,
        };
        if h.payload_len == 0 {
            self.end_frame(h.opcode, h.fin, now)?;
        }
        Ok(())
    }

    /// Takes payload bytes of the current frame (never more than it has left); `more` is
    /// how many bytes of this read follow the piece.
    fn payload(&mut self, piece: &[u8], more: usize, now: Instant) -> Result<(), ProtocolError> {
        let RecvState::Payload { opcode, fin, remaining, mask, offset } = bufs(&mut self.bufs).recv
        else {
            return Ok(());
        };
        let mut off = usize::from(offset);
        let b = bufs(&mut self.bufs);
        let text = b.msg_opcode == Some(OpCode::Text);
        if opcode.is_control() {
            let start = b.ctrl_buf.len();
            b.ctrl_buf.extend_from_slice(piece);
            if let Some(key) = mask {
                off = apply_mask_offset(&mut b.ctrl_buf[start..], key, off);
            }
        } else {
            if b.msg_buf.capacity() - b.msg_buf.len() < piece.len() {
                // When more messages follow in this read, take room for them too (they are
                // cut from one allocation); the last message of a read gets exactly its size.
                // A message arriving over many reads grows geometrically (no quadratic
                // copying), but never past what its frame has declared is still to come, so
                // a peer that announces a large frame and trickles it holds at most twice
                // what it sent.
                let frame_rest = usize::try_from(remaining).unwrap_or(usize::MAX) - piece.len();
                let grow = b.msg_buf.len().min(frame_rest);
                b.msg_buf.reserve(piece.len() + more.min(SLAB).max(grow));
            }
            for chunk in piece.chunks(PIECE) {
                let start = b.msg_buf.len();
                b.msg_buf.extend_from_slice(chunk);
                let new = &mut b.msg_buf[start..];
                if let Some(key) = mask {
                    off = apply_mask_offset(new, key, off);
                }
                // §8.1: fail as soon as the text can no longer be valid UTF-8.
                if text && b.utf8.feed(new).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
            }
        }
        let remaining = remaining - piece.len() as u64;
        bufs(&mut self.bufs).recv =
            RecvState::Payload { opcode, fin, remaining, mask, offset: off as u8 };
        if remaining == 0 {
            bufs(&mut self.bufs).recv = RecvState::default();
            self.end_frame(opcode, fin, now)?;
        }
        Ok(())
    }

    /// A frame's payload is complete.
    fn end_frame(&mut self, opcode: OpCode, fin: bool, now: Instant) -> Result<(), ProtocolError> {
        bufs(&mut self.bufs).recv = RecvState::default();
        match opcode {
            OpCode::Ping => {
                let auto = self.config.auto_pong && self.state == State::Open;
                let b = bufs(&mut self.bufs);
                let payload = std::mem::take(&mut b.ctrl_buf).freeze();
                // §5.5.2: answer with a pong carrying the same payload, unless closing.
                if auto {
                    if b.pongs.len() == super::MAX_PENDING_PONGS {
                        b.pongs.pop_front();
                    }
                    b.pongs.push_back(payload.clone());
                }
                b.events.push_back(Event::Ping(payload));
            }
            OpCode::Pong => {
                let payload = std::mem::take(&mut bufs(&mut self.bufs).ctrl_buf).freeze();
                let rtt = self.match_pong(&payload, now);
                bufs(&mut self.bufs).events.push_back(Event::Pong(Pong { payload, rtt }));
            }
            OpCode::Close => {
                let payload = std::mem::take(&mut bufs(&mut self.bufs).ctrl_buf);
                let frame = CloseFrame::parse(&payload)?;
                self.close_received(frame);
            }
            _ if fin => {
                let b = bufs(&mut self.bufs);
                let op = b.msg_opcode.take();
                let data = b.msg_buf.split().freeze();
                let msg = match op {
                    Some(OpCode::Text) => {
                        // §8.1: a message that ends inside a code point is invalid.
                        if b.utf8.finish().is_err() {
                            return Err(ProtocolError::InvalidUtf8);
                        }
                        Message::Text(Utf8Bytes::from_validated(data))
                    }
                    _ => Message::Binary(data),
                };
                b.events.push_back(Event::Message(msg));
            }
            _ => {}
        }
        Ok(())
    }

    /// RTT of a pong answering the latest ping sent with `send_ping`.
    fn match_pong(&mut self, payload: &[u8], now: Instant) -> Option<std::time::Duration> {
        let seq = u64::from_be_bytes(payload.try_into().ok()?);
        if seq != u64::from(self.ping_seq) {
            return None;
        }
        let sent = std::mem::replace(&mut self.ping_sent, u64::MAX);
        if sent == u64::MAX {
            return None;
        }
        Some(now.saturating_duration_since(super::timer::instant(sent)))
    }

    /// The peer's close frame arrived (§5.5.1, §7.1.3).
    fn close_received(&mut self, frame: Option<CloseFrame>) {
        let (code, reason) = match &frame {
            Some(f) => (f.code, f.reason.clone()),
            None => (CloseCode::NO_STATUS, String::new()),
        };
        match self.state {
            State::Open => {
                // "the endpoint MUST send a Close frame in response ... typically echoing
                // the status code it received".
                let echo = frame.map(|f| CloseFrame { code: f.code, reason: String::new() });
                self.queue_close(echo);
                self.finish(code, reason, CloseCause::Peer);
            }
            State::CloseSent => self.finish(code, reason, CloseCause::Local),
            State::Closed => {}
        }
    }
}
