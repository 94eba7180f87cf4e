//! The codec trait: one format, one Rust type.

use ringwire_frame::Message;

use crate::error::{DecodeError, EncodeError};
use crate::format::{Format, FrameKind};

/// Encodes values of type `T` into bytes and decodes them back, in one
/// [`Format`].
///
/// The codecs are zero-sized (`Json`, `Cbor`, `Protobuf`); the trait is
/// generic over `T` so that one codec serves every message type it can
/// handle: any `Serialize + DeserializeOwned` type for the serde formats, any
/// `prost::Message + Default` for Protobuf.
///
/// Decoding is for peer input: it never panics, and every error says where
/// in the input it was found and what close code to send
/// ([`DecodeError::close_code`]).
pub trait Codec<T> {
    /// The format this codec speaks.
    fn format(&self) -> Format;

    /// Appends the encoding of `value` to `out`, a buffer the caller owns and
    /// may reuse between messages. On error `out` is left as it was.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Decodes one complete message. `bytes` must hold exactly one value:
    /// trailing bytes are an error.
    fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError>;

    /// The frame type that carries this codec's messages.
    fn frame_kind(&self) -> FrameKind {
        self.format().frame_kind()
    }

    /// Encodes `value` into a fresh buffer and says which frame type to send
    /// it in. For transports that do not use `ringwire_frame::Message`.
    fn encode_frame(&self, value: &T) -> Result<(FrameKind, Vec<u8>), EncodeError> {
        let mut out = Vec::new();
        self.encode(value, &mut out)?;
        Ok((self.frame_kind(), out))
    }

    /// Decodes the payload of a data frame of type `kind`. A frame of the
    /// wrong type is rejected (close code 1003) rather than guessed at.
    fn decode_frame(&self, kind: FrameKind, bytes: &[u8]) -> Result<T, DecodeError> {
        if kind != self.frame_kind() {
            return Err(DecodeError::wrong_frame_kind(self.format(), kind));
        }
        self.decode(bytes)
    }

    /// Encodes `value` as a WebSocket message ready to send on a
    /// `ringwire_frame::Connection`: a text message for JSON, a binary
    /// message for CBOR and Protobuf.
    fn encode_message(&self, value: &T) -> Result<Message, EncodeError> {
        let mut out = Vec::new();
        self.encode(value, &mut out)?;
        match self.frame_kind() {
            FrameKind::Binary => Ok(Message::binary(out)),
            FrameKind::Text => String::from_utf8(out)
                .map(Message::text)
                .map_err(|_| EncodeError::new(self.format(), "encoder produced invalid UTF-8")),
        }
    }

    /// Decodes a message received from the peer. A message of the wrong
    /// type (binary for JSON, text for CBOR or Protobuf) is rejected with
    /// close code 1003; bad contents give close code 1007.
    fn decode_message(&self, message: &Message) -> Result<T, DecodeError> {
        let kind = match message {
            Message::Text(_) => FrameKind::Text,
            Message::Binary(_) => FrameKind::Binary,
        };
        self.decode_frame(kind, message.as_bytes())
    }
}
