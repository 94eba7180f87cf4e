//! Encode and decode errors. Who is at fault, and what goes on the wire, is
//! decided here and nowhere else.

use std::fmt;

use ringwire_frame::CloseCode;

use crate::format::{Format, FrameKind};

/// Where in the input a decode error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Position {
    /// 1-based line and column, as reported by the JSON parser. Our JSON
    /// encoder writes one line, so `column - 1` is then the byte offset.
    LineColumn {
        /// 1-based line.
        line: usize,
        /// 1-based column (in bytes) within the line.
        column: usize,
    },
    /// 0-based byte offset into the message.
    ///
    /// For CBOR it is where the reader stood when the error was raised (the
    /// end of the item that was rejected). For Protobuf it is the start of the
    /// top-level field that failed, because prost does not report positions
    /// inside nested messages.
    Offset(usize),
    /// No position is known (for example, a frame of the wrong type).
    Unknown,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::LineColumn { line, column } => write!(f, "line {line} column {column}"),
            Position::Offset(off) => write!(f, "byte {off}"),
            Position::Unknown => f.write_str("unknown position"),
        }
    }
}

/// What class of problem a [`DecodeError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The bytes are not well-formed in the format (bad token, bad tag,
    /// invalid UTF-8 in a string, nesting too deep).
    Syntax,
    /// The input ended in the middle of a value.
    Truncated,
    /// Well-formed, but the value does not fit the expected type (wrong type,
    /// missing field, number out of range, id of the wrong length).
    Data,
    /// A complete value was followed by more bytes.
    TrailingBytes,
    /// The message arrived in a frame of the wrong type, for example a binary
    /// frame for the JSON codec.
    WrongFrameKind,
}

/// A message from the peer could not be decoded.
///
/// Decode errors are always the peer's fault: the bytes came off the wire.
/// [`DecodeError::close_code`] is the status code to close the connection with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format} decode error ({kind:?}) at {position}: {message}")]
#[non_exhaustive]
pub struct DecodeError {
    /// The format that was being decoded.
    pub format: Format,
    /// What class of problem this is.
    pub kind: DecodeErrorKind,
    /// Where in the input it was found.
    pub position: Position,
    /// The decoder's own description.
    pub message: String,
}

impl DecodeError {
    /// Builds an error; for codec implementations.
    pub fn new(
        format: Format,
        kind: DecodeErrorKind,
        position: Position,
        message: impl Into<String>,
    ) -> Self {
        DecodeError { format, kind, position, message: message.into() }
    }

    /// An error for a message that arrived in a frame of the wrong type.
    pub fn wrong_frame_kind(format: Format, found: FrameKind) -> Self {
        DecodeError::new(
            format,
            DecodeErrorKind::WrongFrameKind,
            Position::Unknown,
            format!("expected a {} frame, got a {found} frame", format.frame_kind()),
        )
    }

    /// The WebSocket close status code for this error (RFC 6455 §7.4.1).
    ///
    /// - 1003 (unsupported data) when the message came in the wrong frame
    ///   type: "an endpoint that understands only text data MAY send this if
    ///   it receives a binary message".
    /// - 1007 (invalid frame payload data) otherwise: "data within a message
    ///   that was not consistent with the type of the message".
    pub const fn close_code(&self) -> CloseCode {
        match self.kind {
            DecodeErrorKind::WrongFrameKind => CloseCode::UNSUPPORTED_DATA,
            _ => CloseCode::INVALID_PAYLOAD,
        }
    }
}

/// A value could not be encoded. This is our own side's fault (for example a
/// `Serialize` impl that fails, or a map with non-string keys sent as JSON);
/// nothing has been sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format} encode error: {message}")]
#[non_exhaustive]
pub struct EncodeError {
    /// The format that was being encoded.
    pub format: Format,
    /// The encoder's own description.
    pub message: String,
}

impl EncodeError {
    /// Builds an error; for codec implementations.
    pub fn new(format: Format, message: impl Into<String>) -> Self {
        EncodeError { format, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes() {
        let garbage =
            DecodeError::new(Format::Cbor, DecodeErrorKind::Syntax, Position::Offset(3), "bad");
        assert_eq!(garbage.close_code(), CloseCode(1007));
        let wrong = DecodeError::wrong_frame_kind(Format::Json, FrameKind::Binary);
        assert_eq!(wrong.close_code(), CloseCode(1003));
        assert!(wrong.to_string().contains("expected a text frame"));
    }

    #[test]
    fn display_names_format_and_position() {
        let e = DecodeError::new(
            Format::Json,
            DecodeErrorKind::Syntax,
            Position::LineColumn { line: 1, column: 7 },
            "expected value",
        );
        let s = e.to_string();
        assert!(s.contains("json") && s.contains("line 1 column 7"), "{s}");
    }
}
