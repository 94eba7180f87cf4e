//! JSON through `serde_json`. Messages travel in text frames.

use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError, Position};
use crate::format::Format;
use crate::serde_codec::serde_codec_impls;

/// The JSON codec (RFC 8259), for any `Serialize + DeserializeOwned` type.
///
/// Output is compact (no whitespace) and always one line, so an error's
/// column is its byte offset plus one. Nesting deeper than 128 levels is
/// rejected (serde_json's recursion limit), which bounds stack use on hostile
/// input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

// `Codec<T>` and `BorrowCodec<'de, T>` for Json, both through `encode` and
// `decode` below.
serde_codec_impls! {
    codec: Json,
    format: Format::Json,
    encode: encode,
    decode: decode,
    /// Zero-copy decoding: strings without escapes borrow from the message
    /// (declare them `Cow<'de, str>` with `#[serde(borrow)]`); see
    /// [`BorrowCodec`](crate::BorrowCodec).
    impl BorrowCodec
}

fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    serde_json::to_writer(&mut *out, value).map_err(|e| {
        out.truncate(start);
        EncodeError::new(Format::Json, e.to_string())
    })
}

/// One decode path for both APIs: serde_json hands `visit_borrowed_str` a
/// slice of the input whenever a string has no escapes, and the target type
/// decides whether to copy it.
fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(json_error)
}

/// Maps a serde_json error, keeping its line and column.
pub(crate) fn json_error(e: serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Eof => DecodeErrorKind::Truncated,
        Category::Data => DecodeErrorKind::Data,
        Category::Syntax | Category::Io => {
            if e.to_string().starts_with("trailing characters") {
                DecodeErrorKind::TrailingBytes
            } else {
                DecodeErrorKind::Syntax
            }
        }
    };
    let position = if e.line() == 0 {
        Position::Unknown
    } else {
        Position::LineColumn { line: e.line(), column: e.column() }
    };
    DecodeError::new(Format::Json, kind, position, e.to_string())
}
