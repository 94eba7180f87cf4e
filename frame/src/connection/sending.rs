//! The send API: data messages (compressed when permessage-deflate is agreed), shared
//! fan-out frames, and control frames, into the connection's send queue.

use std::time::Instant;

use bytes::{BufMut, Bytes};

use crate::encode::{encode_frame, encode_message};
use crate::error::SendError;
use crate::header::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::message::Message;

use super::{bufs, mask_source, Connection, Role, State, PING_PAYLOAD_LEN};

impl Connection {
    fn next_mask(&mut self) -> Option<[u8; 4]> {
        let custom = self.bufs.as_mut().and_then(|b| b.custom_masks.as_mut());
        mask_source(self.role, &mut self.masks, custom).map(|m| m.next_mask())
    }

    pub(super) fn check_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            _ => Err(SendError::Closed),
        }
    }

    /// Queues a message. A server's binary message given as `Bytes` is queued without a
    /// copy when it goes out as one frame.
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.check_open()?;
        let (opcode, payload) = match msg {
            Message::Text(t) => (OpCode::Text, t.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        };
        if self.deflate != 0 {
            self.encode_data(opcode, &payload);
            return Ok(());
        }
        let one_frame = self.config.fragment_size.is_none_or(|n| payload.len() <= n);
        if self.role == Role::Server && one_frame && payload.len() >= 1024 {
            let header = FrameHeader::new(opcode, payload.len() as u64);
            let mut h = [0u8; MAX_HEADER_LEN];
            let n = header.encode_into(&mut h).unwrap_or(0);
            let out = &mut bufs(&mut self.bufs).out;
            out.room(n).put_slice(&h[..n]);
            out.push_header_and_payload(n, payload);
            return Ok(());
        }
        self.encode_data(opcode, &payload);
        Ok(())
    }

    /// Queues a text message, copying it.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.check_open()?;
        self.encode_data(OpCode::Text, text.as_bytes());
        Ok(())
    }

    /// Queues a binary message, copying it.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        self.encode_data(OpCode::Binary, data);
        Ok(())
    }

    // Inlined into the three sends, as before permessage-deflate (its case is a cold call).
    #[inline(always)]
    fn encode_data(&mut self, opcode: OpCode, payload: &[u8]) {
        if self.deflate != 0 && self.encode_compressed(opcode, payload) {
            return;
        }
        let frag = self.config.fragment_size;
        let b = bufs(&mut self.bufs);
        let masks = mask_source(self.role, &mut self.masks, b.custom_masks.as_mut());
        b.out.write_frames(payload.len() + MAX_HEADER_LEN, |buf| {
            encode_message(buf, opcode, payload, frag, masks)
        });
    }

    /// Queues a frame encoded once for many server connections (see
    /// [`crate::encode_shared`]), without copying it. Only a server may do this: client
    /// frames are masked per connection.
    pub fn send_shared_frame(&mut self, frame: Bytes) -> Result<(), SendError> {
        self.check_open()?;
        if self.role != Role::Server {
            return Err(SendError::ClientSharedFrame);
        }
        bufs(&mut self.bufs).out.push_frame(frame);
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        if payload.len() > 125 {
            return Err(SendError::ControlTooLong(payload.len()));
        }
        let mask = self.next_mask();
        // A payload of at most 125 bytes takes a 2-byte header, plus a client's mask.
        let n = 2 + if mask.is_some() { 4 } else { 0 } + payload.len();
        bufs(&mut self.bufs)
            .out
            .write_control(n, |buf| encode_frame(buf, opcode, true, payload, mask));
        Ok(())
    }

    /// Sends a ping whose pong will report its round-trip time; returns its sequence
    /// number.
    ///
    /// The payload is [`PING_PAYLOAD_LEN`] bytes: the sequence number (4 bytes) and the
    /// send time (8 bytes, nanoseconds from the configuration's epoch, which only the
    /// caller's instants determine: see [`Connection::server`]), both big-endian. A pong
    /// echoing it reports the RTT if it answers a ping newer than the last one measured,
    /// so a pong that arrives after further pings were sent (a slow peer) is still
    /// measured. The peer only echoes the payload: it can make its own RTT look longer or
    /// shorter, as it could by answering late or early, but a send time from the future
    /// or a sequence number not yet sent reports none.
    pub fn send_ping(&mut self, now: Instant) -> Result<u32, SendError> {
        let seq = self.ping_seq.wrapping_add(1);
        let mut payload = [0u8; PING_PAYLOAD_LEN];
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        payload[4..].copy_from_slice(&self.clock(now).to_be_bytes());
        self.send_control(OpCode::Ping, &payload)?;
        self.ping_seq = seq;
        Ok(seq)
    }

    /// Sends a ping with an application payload (at most 125 bytes). Its pong carries no
    /// RTT.
    pub fn send_ping_payload(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Sends a pong (unsolicited, or as the answer when [`crate::Config::auto_pong`] is off).
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }
}
