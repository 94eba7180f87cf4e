//! The zero-copy codec trait: decode into a value that borrows from the
//! message bytes.

use std::borrow::Cow;
use std::fmt;

use ringwire_frame::Message;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::{DecodeError, EncodeError};
use crate::format::{Format, FrameKind};

/// Decodes values that borrow their strings (and byte strings) from the
/// input, in one [`Format`]; the zero-copy twin of [`crate::Codec`].
///
/// `T` is a type with a lifetime, such as `struct Chat<'a> { room: Cow<'a,
/// str>, .. }`: for JSON and CBOR any `Serialize + Deserialize<'de>` (with
/// `#[serde(borrow)]` on borrowed fields), for Protobuf any
/// `BorrowedMessage<'de>` (feature `protobuf`). The bytes on the wire are the same as
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

/// Deserializes a sequence of strings as `Vec<Cow<'de, str>>`, borrowing
/// each one that the format can lend (`visit_borrowed_str`).
///
/// serde's `#[serde(borrow)]` borrows a `Cow<'de, str>` *field*, but the
/// `Cow`s inside a `Vec` always come out owned (serde's `Deserialize` for
/// `Cow<T>` deserializes a `T::Owned`), one allocation each. Use this on
/// such fields:
///
/// ```
/// use std::borrow::Cow;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Post<'a> {
///     #[serde(borrow, deserialize_with = "ringwire_codec::borrow_cow_strs")]
///     tags: Vec<Cow<'a, str>>,
/// }
/// # #[cfg(feature = "json")] {
/// use ringwire_codec::{BorrowCodec, Json};
/// let p: Post<'_> = Json.decode_borrowed(br#"{"tags":["a","b\"c"]}"#).unwrap();
/// assert!(matches!(p.tags[0], Cow::Borrowed("a")));
/// assert!(matches!(&p.tags[1], Cow::Owned(s) if s == "b\"c")); // escaped: copied
/// # }
/// ```
pub fn borrow_cow_strs<'de, D>(d: D) -> Result<Vec<Cow<'de, str>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct Strs;
    impl<'de> Visitor<'de> for Strs {
        type Value = Vec<Cow<'de, str>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence of strings")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // Trust the declared length only so far: it comes from the peer.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(CowStr(s)) = seq.next_element()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Strs)
}

/// One element for [`borrow_cow_strs`]: borrowed when the format lends the
/// string, owned when it had to build it (an escape, a chunked string).
struct CowStr<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> Visitor<'de> for Str {
            type Value = CowStr<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Str)
    }
}
