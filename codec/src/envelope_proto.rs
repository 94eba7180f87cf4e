//! `prost::Message` for [`Envelope<T>`], written by hand because prost's
//! derive does not take generic message types. Matches `proto/envelope.proto`:
//!
//! ```text
//! message Envelope {
//!   bytes   id           = 1;  // 16 bytes, big-endian; omitted when nil
//!   uint32  kind         = 2;  // omitted when 0
//!   fixed64 timestamp_us = 3;  // omitted when 0
//!   bytes   payload      = 4;  // an embedded T, always present
//! }
//! ```
//!
//! Field 4 is declared `bytes` in the .proto so that one schema serves every
//! payload type; on the wire it is the same as `T payload = 4;`, and a reader
//! that knows the kind can declare it so.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};

use crate::envelope::{Envelope, Kind};
use crate::id::MessageId;
use crate::protobuf_borrowed::{self as pb, BorrowContext, BorrowedMessage};

const TAG_ID: u32 = 1;
const TAG_KIND: u32 = 2;
const TAG_TS: u32 = 3;
const TAG_PAYLOAD: u32 = 4;

impl<T> prost::Message for Envelope<T>
where
    T: prost::Message + Default,
{
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.id != MessageId::NIL {
            encoding::encode_key(TAG_ID, WireType::LengthDelimited, buf);
            encoding::encode_varint(16, buf);
            buf.put_slice(&self.id.to_bytes());
        }
        if self.kind.0 != 0 {
            encoding::uint32::encode(TAG_KIND, &self.kind.0, buf);
        }
        if self.timestamp_us != 0 {
            encoding::fixed64::encode(TAG_TS, &self.timestamp_us, buf);
        }
        encoding::message::encode(TAG_PAYLOAD, &self.payload, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            TAG_ID => {
                let mut raw: Vec<u8> = Vec::new();
                encoding::bytes::merge(wire_type, &mut raw, buf, ctx)?;
                self.id = MessageId::from_slice(&raw).ok_or_else(|| {
                    // `DecodeError::new` is hidden from prost's docs but is
                    // the constructor its generated code uses; a hand-written
                    // `Message` is generated code written by hand.
                    prost::DecodeError::new("invalid message id: expected 16 bytes")
                })?;
                Ok(())
            }
            TAG_KIND => encoding::uint32::merge(wire_type, &mut self.kind.0, buf, ctx),
            TAG_TS => encoding::fixed64::merge(wire_type, &mut self.timestamp_us, buf, ctx),
            TAG_PAYLOAD => encoding::message::merge(wire_type, &mut self.payload, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let id = if self.id != MessageId::NIL { encoding::key_len(TAG_ID) + 1 + 16 } else { 0 };
        let kind = if self.kind.0 != 0 {
            encoding::uint32::encoded_len(TAG_KIND, &self.kind.0)
        } else {
            0
        };
        let ts = if self.timestamp_us != 0 {
            encoding::fixed64::encoded_len(TAG_TS, &self.timestamp_us)
        } else {
            0
        };
        id + kind + ts + encoding::message::encoded_len(TAG_PAYLOAD, &self.payload)
    }

    fn clear(&mut self) {
        self.id = MessageId::NIL;
        self.kind = Kind(0);
        self.timestamp_us = 0;
        self.payload.clear();
    }
}

/// The same wire format, decoded without copying: the id is read from a
/// slice of the input and the payload borrows from it.
impl<'de, T> BorrowedMessage<'de> for Envelope<T>
where
    T: BorrowedMessage<'de>,
{
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut &'de [u8],
        ctx: BorrowContext,
    ) -> Result<(), prost::DecodeError> {
        let scalar_ctx = DecodeContext::default();
        match tag {
            TAG_ID => {
                let raw = pb::take_length_delimited(wire_type, buf)?;
                self.id = MessageId::from_slice(raw).ok_or_else(|| {
                    prost::DecodeError::new("invalid message id: expected 16 bytes")
                })?;
                Ok(())
            }
            TAG_KIND => encoding::uint32::merge(wire_type, &mut self.kind.0, buf, scalar_ctx),
            TAG_TS => encoding::fixed64::merge(wire_type, &mut self.timestamp_us, buf, scalar_ctx),
            TAG_PAYLOAD => pb::merge_message(wire_type, &mut self.payload, buf, ctx),
            _ => pb::skip_field(wire_type, tag, buf),
        }
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.id != MessageId::NIL {
            pb::encode_bytes(TAG_ID, &self.id.to_bytes(), buf);
        }
        if self.kind.0 != 0 {
            encoding::uint32::encode(TAG_KIND, &self.kind.0, buf);
        }
        if self.timestamp_us != 0 {
            encoding::fixed64::encode(TAG_TS, &self.timestamp_us, buf);
        }
        pb::encode_message(TAG_PAYLOAD, &self.payload, buf);
    }

    fn encoded_len(&self) -> usize {
        let id = if self.id != MessageId::NIL { encoding::key_len(TAG_ID) + 1 + 16 } else { 0 };
        let kind = if self.kind.0 != 0 {
            encoding::uint32::encoded_len(TAG_KIND, &self.kind.0)
        } else {
            0
        };
        let ts = if self.timestamp_us != 0 {
            encoding::fixed64::encoded_len(TAG_TS, &self.timestamp_us)
        } else {
            0
        };
        id + kind + ts + pb::encoded_len_message(TAG_PAYLOAD, &self.payload)
    }
}
