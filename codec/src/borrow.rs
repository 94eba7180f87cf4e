//! The zero-copy codec trait: decode into a value that borrows from the
//! message bytes.

use ringwire_frame::Message;

use crate::error::{DecodeError, EncodeError};
use crate::format::{Format, FrameKind};

/// Decodes values that borrow their strings (and byte strings) from the
/// input, in one [`Format`]; the zero-copy twin of [`crate::Codec`].
///
/// `T` is a type with a lifetime, such as `struct Chat<'a> { room: Cow<'a,
/// str>, .. }`: for JSON and CBOR any `Serialize + Deserialize<'de>` (with
/// `#[serde(borrow)]` on borrowed fields), for Protobuf any
/// [`crate::BorrowedMessage<'de>`]. The bytes on the wire are the same as
/// for the owned type with the same fields: either side may use either API.
///
/// # When to use which
///
/// - [`crate::Codec::decode`] gives an owned value (`String`s): it outlives
///   the message, can be sent to another task or stored. Each string costs an
///   allocation and a copy.
/// - [`BorrowCodec::decode_borrowed`] gives a value that borrows from the
///   message bytes, so it lives no longer than they do. Strings cost no
///   allocation (UTF-8 is still checked); only `Vec`s of repeated fields
///   allocate. Use it where a message is inspected, routed, validated or
///   copied into something else and then dropped: the common server loop.
///   Convert the few fields you keep with `to_owned()`.
///
/// For JSON, declare borrowed strings as `Cow<'de, str>`, not `&'de str`: a
/// JSON string with an escape (`\n`, `\"`, `\u00e9`) must be unescaped into a
/// new buffer, which `Cow` takes as `Cow::Owned`, while `&str` fails to
/// decode. CBOR text and Protobuf strings are always borrowed, except CBOR's
/// indefinite-length (chunked) strings, which are joined into `Cow::Owned`.
pub trait BorrowCodec<'de, T> {
    /// The format this codec speaks (the same as [`crate::Codec::format`];
    /// named apart so that both traits can be in scope).
    fn wire_format(&self) -> Format;

    /// Appends the encoding of `value` to `out`, exactly as
    /// [`crate::Codec::encode`] would for the owned type with the same fields.
    /// On error `out` is left as it was.
    fn encode_borrowed(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Decodes one complete message into a value that borrows from `bytes`.
    /// Trailing bytes are an error; errors are the same as for
    /// [`crate::Codec::decode`].
    fn decode_borrowed(&self, bytes: &'de [u8]) -> Result<T, DecodeError>;

    /// Decodes the payload of a data frame of type `kind`, rejecting a frame
    /// of the wrong type (close code 1003).
    fn decode_frame_borrowed(&self, kind: FrameKind, bytes: &'de [u8]) -> Result<T, DecodeError> {
        if kind != self.wire_format().frame_kind() {
            return Err(DecodeError::wrong_frame_kind(self.wire_format(), kind));
        }
        self.decode_borrowed(bytes)
    }

    /// Decodes a message received from the peer into a value that borrows
    /// from it; the zero-copy [`crate::Codec::decode_message`].
    fn decode_message_borrowed(&self, message: &'de Message) -> Result<T, DecodeError> {
        let kind = match message {
            Message::Text(_) => FrameKind::Text,
            Message::Binary(_) => FrameKind::Binary,
        };
        self.decode_frame_borrowed(kind, message.as_bytes())
    }
}
