//! Protocol Buffers through `prost`. Messages travel in binary frames.

use crate::borrow::BorrowCodec;
use crate::codec::Codec;
use crate::error::{DecodeError, DecodeErrorKind, EncodeError, Position};
use crate::format::Format;
use crate::protobuf_borrowed::{BorrowContext, BorrowedMessage};

/// The Protobuf codec, for any `prost::Message + Default`: types with
/// `#[derive(prost::Message)]` written by hand (no `protoc` needed), and
/// [`crate::Envelope<T>`] when `T` is one.
///
/// Decoding reports the byte offset of the top-level field that failed.
/// Nesting is bounded by prost's recursion limit (100 levels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Protobuf;

impl<T: prost::Message + Default> Codec<T> for Protobuf {
    fn format(&self) -> Format {
        Format::Protobuf
    }

    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // A Vec grows as needed, so prost's capacity check cannot fail.
        out.reserve(value.encoded_len());
        value.encode_raw(out);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        // prost's own `Message::merge` loop, with the offset of each field
        // kept so that an error can say where it happened.
        decode_fields(bytes, T::default(), |msg, tag, wire_type, buf| {
            msg.merge_field(tag, wire_type, buf, prost::encoding::DecodeContext::default())
        })
    }
}

/// Zero-copy decoding into a [`BorrowedMessage`]: `string` and `bytes`
/// fields are slices of the message (strings checked for UTF-8); see
/// [`BorrowCodec`].
impl<'de, T: BorrowedMessage<'de>> BorrowCodec<'de, T> for Protobuf {
    fn wire_format(&self) -> Format {
        Format::Protobuf
    }

    fn encode_borrowed(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.reserve(value.encoded_len());
        value.encode_raw(out);
        Ok(())
    }

    fn decode_borrowed(&self, bytes: &'de [u8]) -> Result<T, DecodeError> {
        decode_fields(bytes, T::default(), |msg, tag, wire_type, buf| {
            msg.merge_field(tag, wire_type, buf, BorrowContext::default())
        })
    }
}

/// The top-level field loop shared by both APIs, keeping the offset of each
/// field for the error. Always inlined, so that the (large) message is
/// built in the caller's return slot rather than moved out of here.
#[inline(always)]
fn decode_fields<'de, T>(
    bytes: &'de [u8],
    mut msg: T,
    mut merge: impl FnMut(
        &mut T,
        u32,
        prost::encoding::WireType,
        &mut &'de [u8],
    ) -> Result<(), prost::DecodeError>,
) -> Result<T, DecodeError> {
    let mut buf = bytes;
    while !buf.is_empty() {
        let start = bytes.len() - buf.len();
        let res = crate::protobuf_borrowed::decode_key(&mut buf)
            .and_then(|(tag, wire_type)| merge(&mut msg, tag, wire_type, &mut buf));
        if let Err(e) = res {
            return Err(proto_error(&e, start, buf.is_empty()));
        }
    }
    Ok(msg)
}

fn proto_error(e: &prost::DecodeError, start: usize, at_end: bool) -> DecodeError {
    // prost exposes only a description; sort it by the phrases it uses. A
    // varint that fails where the input ends was cut short.
    let text = e.to_string();
    let kind = if text.contains("buffer underflow") || (at_end && text.contains("invalid varint")) {
        DecodeErrorKind::Truncated
    } else if text.contains("invalid wire type")
        || text.contains("invalid string value")
        || text.contains("invalid message id")
    {
        DecodeErrorKind::Data
    } else {
        DecodeErrorKind::Syntax
    };
    DecodeError::new(Format::Protobuf, kind, Position::Offset(start), text)
}
