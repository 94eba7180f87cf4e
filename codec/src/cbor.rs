//! CBOR through `cbor4ii`. Messages travel in binary frames.
//!
//! `cbor4ii` reads through a [`dec::Read`] that we supply, so we count the
//! bytes it consumes and report the offset of an error, and we bound nesting
//! depth (see [`MAX_DEPTH`]).

use std::convert::Infallible;

use cbor4ii::core::{dec, enc};
use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError, Position};
use crate::format::Format;
use crate::serde_codec::serde_codec_impls;

/// How deeply arrays, maps and tags may nest in a decoded message.
///
/// Default 128, the same as serde_json's limit. Stops a peer from exhausting
/// our stack with a message such as `[[[[...]]]]` (each level costs one
/// byte on the wire but a recursive call here).
pub const MAX_DEPTH: usize = 128;

/// The CBOR codec (RFC 8949), for any `Serialize + DeserializeOwned` type.
///
/// Structs encode as maps keyed by field name, enums by variant name (serde's
/// usual data model); [`crate::Envelope`] encodes as a 4-item array and its id
/// as a 16-byte byte string. Encoding is deterministic for a given value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cbor;

// `Codec<T>` and `BorrowCodec<'de, T>` for Cbor, both through `encode` and
// `decode` below.
serde_codec_impls! {
    codec: Cbor,
    format: Format::Cbor,
    encode: encode,
    decode: decode,
    /// Zero-copy decoding: definite-length text and byte strings borrow from
    /// the message (`Cow<'de, str>` or `&'de str` with `#[serde(borrow)]`); see
    /// [`BorrowCodec`](crate::BorrowCodec).
    impl BorrowCodec
}

fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let mut ser = cbor4ii::serde::Serializer::new(VecWriter(out));
    let res = value.serialize(&mut ser);
    let VecWriter(out) = ser.into_inner();
    res.map_err(|e| {
        out.truncate(start);
        EncodeError::new(Format::Cbor, format!("{e:?}"))
    })
}

/// One decode path for both APIs: our reader lends cbor4ii slices of the
/// input (`Reference::Long`), so strings reach the visitor as
/// `visit_borrowed_str` and the target type decides whether to copy them.
fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, DecodeError> {
    let mut de = cbor4ii::serde::Deserializer::new(CountingReader::new(bytes));
    let res = T::deserialize(&mut de);
    let reader = de.into_inner();
    match res {
        Ok(v) if reader.rest.is_empty() => Ok(v),
        Ok(_) => Err(DecodeError::new(
            Format::Cbor,
            DecodeErrorKind::TrailingBytes,
            Position::Offset(bytes.len() - reader.rest.len()),
            format!("{} bytes after the end of the value", reader.rest.len()),
        )),
        Err(e) => Err(cbor_error(&e, bytes.len() - reader.rest.len())),
    }
}

fn cbor_error(e: &cbor4ii::serde::DecodeError<Infallible>, pos: usize) -> DecodeError {
    use cbor4ii::core::error::DecodeError as Core;
    use cbor4ii::serde::DecodeError as Serde;
    let kind = match e {
        Serde::Core(Core::Eof { .. }) => DecodeErrorKind::Truncated,
        Serde::Core(
            Core::Mismatch { .. }
            | Core::CastOverflow { .. }
            | Core::ArithmeticOverflow { .. }
            | Core::RequireBorrowed { .. },
        )
        | Serde::Custom(_) => DecodeErrorKind::Data,
        Serde::Core(_) => DecodeErrorKind::Syntax,
    };
    let message = match e {
        Serde::Custom(msg) => msg.to_string(),
        Serde::Core(core) => format!("{core:?}"),
    };
    DecodeError::new(Format::Cbor, kind, Position::Offset(pos), message)
}

/// Appends to a caller-owned `Vec<u8>`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl enc::Write for VecWriter<'_> {
    type Error = Infallible;

    fn push(&mut self, input: &[u8]) -> Result<(), Infallible> {
        self.0.extend_from_slice(input);
        Ok(())
    }
}

/// A slice reader that bounds nesting depth; the offset of an error is
/// the input length minus what is left.
struct CountingReader<'de> {
    rest: &'de [u8],
    depth_left: usize,
}

impl<'de> CountingReader<'de> {
    fn new(bytes: &'de [u8]) -> Self {
        CountingReader { rest: bytes, depth_left: MAX_DEPTH }
    }
}

impl<'de> dec::Read<'de> for CountingReader<'de> {
    type Error = Infallible;

    #[inline]
    fn fill<'short>(
        &'short mut self,
        _want: usize,
    ) -> Result<dec::Reference<'de, 'short>, Infallible> {
        // "Returns the available bytes": all of them, lent for 'de, so that
        // cbor4ii can borrow strings and never needs a second fill.
        Ok(dec::Reference::Long(self.rest))
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        // cbor4ii advances only over bytes it was given; past the end would
        // leave nothing, never panic.
        let rest: &'de [u8] = self.rest;
        self.rest = rest.get(n..).unwrap_or_default();
    }

    #[inline]
    fn step_in(&mut self) -> bool {
        match self.depth_left.checked_sub(1) {
            Some(left) => {
                self.depth_left = left;
                true
            }
            None => false,
        }
    }

    #[inline]
    fn step_out(&mut self) {
        self.depth_left += 1;
    }
}
