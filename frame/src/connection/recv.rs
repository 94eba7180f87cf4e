//! The receive path: frame headers, role rules, unmasking, UTF-8, assembly, control frames.

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;

use crate::close::CloseFrame;
use crate::error::ProtocolError;
use crate::header::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask_offset;
use crate::message::{Message, Utf8Bytes};

use super::{bufs, Connection, Deferred, Event, Pong, Role, State};

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

/// A receive buffer that [`Connection::handle_buffer`] may change in place (unmasking)
/// and keep parts of without copying them.
///
/// An I/O driver that receives into buffers of its own (an io_uring provided-buffer
/// ring) implements this so that a large message is unmasked where it landed and handed
/// to the application as a [`Bytes`] that shares the buffer, instead of being copied
/// into a buffer of the connection's. `&mut [u8]` implements it without sharing
/// anything (its frames are unmasked in place, then copied).
pub trait RecvBuffer {
    /// The number of bytes received.
    fn len(&self) -> usize;
    /// Whether nothing was received.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The received bytes from `start` on, to read and change in place. The connection
    /// never asks for bytes before the end of a range it has already shared.
    fn bytes_from(&mut self, start: usize) -> &mut [u8];
    /// A [`Bytes`] that owns `range` of the received bytes (already unmasked and
    /// validated), or `None` to have the connection copy them. The connection asks for
    /// ranges in increasing order, never overlapping, and changes no byte of a shared
    /// range afterwards.
    fn share(&mut self, range: Range<usize>) -> Option<Bytes>;
    /// The smallest payload worth offering to [`RecvBuffer::share`]: smaller messages are
    /// copied without asking (and without being unmasked in place first).
    fn min_share(&self) -> usize {
        0
    }
}

impl RecvBuffer for &mut [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn bytes_from(&mut self, start: usize) -> &mut [u8] {
        let start = start.min(<[u8]>::len(self));
        &mut self[start..]
    }

    fn share(&mut self, _: Range<usize>) -> Option<Bytes> {
        None
    }

    fn min_share(&self) -> usize {
        usize::MAX
    }
}

/// What the receive loop reads from: a borrowed slice (copied where kept) or a
/// [`RecvBuffer`] (whole data frames unmasked in place and shared).
trait Source {
    fn len(&self) -> usize;
    /// Payloads from this size on may be shared ([`RecvBuffer::min_share`]).
    fn min_share(&self) -> usize;
    fn at(&mut self, pos: usize) -> &[u8];
    fn buffer(&mut self) -> Option<&mut dyn RecvBuffer>;
}

impl Source for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn min_share(&self) -> usize {
        usize::MAX
    }

    fn at(&mut self, pos: usize) -> &[u8] {
        &self[pos..]
    }

    fn buffer(&mut self) -> Option<&mut dyn RecvBuffer> {
        None
    }
}

impl Source for &mut dyn RecvBuffer {
    fn len(&self) -> usize {
        RecvBuffer::len(&**self)
    }

    fn min_share(&self) -> usize {
        RecvBuffer::min_share(&**self)
    }

    fn at(&mut self, pos: usize) -> &[u8] {
        self.bytes_from(pos)
    }

    fn buffer(&mut self) -> Option<&mut dyn RecvBuffer> {
        Some(&mut **self)
    }
}

impl Connection {
    /// Feeds bytes read from the transport at `now`. Any bytes count as sign of life for
    /// the heartbeat. Events and bytes to send result; a protocol violation fails the
    /// connection with the RFC's close code and the rest of the input is ignored.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        self.receive(now, data);
    }

    /// Like [`Connection::handle_bytes`], for bytes in a buffer the connection may change:
    /// a data frame that arrives whole in `buf` (and is not part of a fragmented
    /// message) is unmasked and validated in place, and its message shares `buf`'s
    /// memory through [`RecvBuffer::share`] instead of being copied. Events and the
    /// connection's state are the same as with `handle_bytes` over the same bytes.
    pub fn handle_buffer(&mut self, now: Instant, buf: &mut dyn RecvBuffer) {
        self.receive(now, buf);
    }

    fn receive<S: Source>(&mut self, now: Instant, mut src: S) {
        // §7.1.7: after a close frame is received, or the connection failed, input is
        // not processed, also while that end waits for the application to poll up to it.
        // (We still process input while our own close is in flight.)
        if self.input_stopped() {
            return;
        }
        self.note_activity(now);
        let end = src.len();
        let min_share = src.min_share();
        let mut pos = 0;
        while pos < end && !self.input_stopped() {
            match bufs(&mut self.bufs).recv {
                RecvState::Header { mut buf, len } => {
                    let data = src.at(pos);
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
                            pos += used - len;
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
                            pos += take;
                        }
                        Err(e) => self.fail(e),
                    }
                }
                RecvState::Payload { remaining, .. } => {
                    let take = (end - pos).min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    let range = pos..pos + take;
                    pos += take;
                    let in_place = take >= min_share && self.whole_data_frame(take);
                    let result = match src.buffer() {
                        Some(buf) if in_place => self.payload_in_place(buf, range, now),
                        _ => self.payload(&src.at(range.start)[..take], end - pos, now),
                    };
                    if let Err(e) = result {
                        self.fail(e);
                    }
                }
            }
        }
    }

    /// Closed, or a received close or failure waits to be polled.
    fn input_stopped(&self) -> bool {
        self.state == State::Closed || self.is_deferred()
    }

    /// Whether the `take` bytes at hand are the whole payload of a final text or binary
    /// frame that starts a message: such a frame can be delivered from where it landed.
    fn whole_data_frame(&self, take: usize) -> bool {
        let Some(b) = self.bufs.as_ref() else { return false };
        // A text or binary frame starts a message (continuations are refused before),
        // and every payload byte received of a data frame goes into `msg_buf`: with
        // `msg_buf` empty, nothing of this frame came before.
        matches!(
            b.recv,
            RecvState::Payload {
                opcode: OpCode::Text | OpCode::Binary,
                fin: true,
                remaining,
                ..
            } if remaining == take as u64
        ) && b.msg_buf.is_empty()
            && !b.msg_deflated
    }

    /// Delivers a whole final data frame from the caller's buffer: unmasked and checked
    /// in place, then shared (or copied, if the buffer declines).
    fn payload_in_place(
        &mut self,
        buf: &mut dyn RecvBuffer,
        range: Range<usize>,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        let RecvState::Payload { opcode, mask, .. } = bufs(&mut self.bufs).recv else {
            return Ok(());
        };
        let b = bufs(&mut self.bufs);
        let text = opcode == OpCode::Text;
        let mut off = 0;
        for chunk in buf.bytes_from(range.start)[..range.len()].chunks_mut(PIECE) {
            if let Some(key) = mask {
                off = apply_mask_offset(chunk, key, off);
            }
            // §8.1: fail as soon as the text can no longer be valid UTF-8.
            if text && b.utf8.feed(chunk).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        b.recv = RecvState::default();
        if let Some(data) = buf.share(range.clone()) {
            return self.deliver(data);
        }
        b.msg_buf.extend_from_slice(&buf.bytes_from(range.start)[..range.len()]);
        self.end_frame(opcode, true, now)
    }

    /// Checks a new frame's header against the role, the RFC and our limits.
    // Called once per frame from each `receive` instance (slice and buffer): inlined,
    // as when there was one caller, so small frames pay no call.
    #[inline(always)]
    fn begin_frame(&mut self, h: FrameHeader, now: Instant) -> Result<(), ProtocolError> {
        // §5.1: a server MUST close on an unmasked frame, a client on a masked one.
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        // §5.2: RSV1-3 MUST be 0 unless an extension defining them was negotiated. RFC
        // 7692 §6: with permessage-deflate, RSV1 marks a compressed message, on its first
        // frame only (never on a control frame or a continuation: §6.1).
        if h.rsv != 0
            && (h.rsv != 0b100
                || self.deflate == 0
                || !matches!(h.opcode, OpCode::Text | OpCode::Binary))
        {
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
                b.msg_deflated = h.rsv != 0;
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
    // Called once per frame from each `receive` instance (slice and buffer): inlined,
    // as when there was one caller, so small frames pay no call.
    #[inline(always)]
    fn payload(&mut self, piece: &[u8], more: usize, now: Instant) -> Result<(), ProtocolError> {
        let RecvState::Payload { opcode, fin, remaining, mask, offset } = bufs(&mut self.bufs).recv
        else {
            return Ok(());
        };
        let mut off = usize::from(offset);
        let b = bufs(&mut self.bufs);
        // A compressed text message is checked once inflated.
        let text = b.msg_opcode == Some(OpCode::Text) && !b.msg_deflated;
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
                let data = bufs(&mut self.bufs).msg_buf.split().freeze();
                self.deliver(data)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The message in progress is complete with `data`.
    // Inlined into its two callers, as before permessage-deflate: the compressed case is
    // one test here and a cold call (callgrind: out of line, an echoed message cost ~50
    // instructions more).
    #[inline(always)]
    pub(super) fn deliver(&mut self, data: Bytes) -> Result<(), ProtocolError> {
        let b = bufs(&mut self.bufs);
        if b.msg_deflated {
            return self.deliver_inflated(&data);
        }
        let msg = match b.msg_opcode.take() {
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
        Ok(())
    }

    /// RTT of a pong answering a ping sent with `send_ping` that is newer than the last
    /// one measured (see `send_ping` for the payload).
    fn match_pong(&mut self, payload: &[u8], now: Instant) -> Option<std::time::Duration> {
        let payload: &[u8; super::PING_PAYLOAD_LEN] = payload.try_into().ok()?;
        let (seq, sent) = payload.split_at(4);
        let seq = u32::from_be_bytes(seq.try_into().ok()?);
        let sent = u64::from_be_bytes(sent.try_into().ok()?);
        // Pings `pong_seq + 1 ..= ping_seq` are awaiting their pongs.
        let ahead = seq.wrapping_sub(self.pong_seq);
        if ahead == 0 || ahead > self.ping_seq.wrapping_sub(self.pong_seq) {
            return None;
        }
        let now = self.clock(now);
        if sent > now {
            return None;
        }
        self.pong_seq = seq;
        Some(std::time::Duration::from_nanos(now - sent))
    }

    /// The peer's close frame arrived (§5.5.1, §7.1.3): input stops, and the answer goes
    /// out when the application has polled the events before it (see `Connection`,
    /// "Order of events").
    fn close_received(&mut self, frame: Option<CloseFrame>) {
        let local = self.state == State::CloseSent;
        self.defer(Deferred::Close { frame, local });
    }
}
