//! Which wire format a codec speaks and which WebSocket frame type carries it.

use std::fmt;

/// A serialization format supported by this crate.
///
/// The variants exist whatever features are enabled, so that errors and
/// negotiation code can name a format without a `cfg`; only the codecs
/// themselves (`Json`, `Cbor`, `Protobuf`) sit behind features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// JSON (RFC 8259), carried in text frames.
    Json,
    /// CBOR (RFC 8949), carried in binary frames.
    Cbor,
    /// Protocol Buffers (proto3 wire format), carried in binary frames.
    Protobuf,
}

impl Format {
    /// All formats, in a stable order.
    pub const ALL: [Format; 3] = [Format::Json, Format::Cbor, Format::Protobuf];

    /// The frame type that carries this format: JSON is UTF-8 text, so it
    /// travels in text frames (RFC 6455 §5.6, opcode 0x1); the binary formats
    /// travel in binary frames (opcode 0x2).
    pub const fn frame_kind(self) -> FrameKind {
        match self {
            Format::Json => FrameKind::Text,
            Format::Cbor | Format::Protobuf => FrameKind::Binary,
        }
    }

    /// A short lowercase name: `json`, `cbor` or `protobuf`.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Cbor => "cbor",
            Format::Protobuf => "protobuf",
        }
    }

    /// The `Sec-WebSocket-Protocol` token a client and server can use to agree
    /// on this format during the opening handshake (RFC 6455 §1.9, §11.5).
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Format::Json => "ringwire.v1.json",
            Format::Cbor => "ringwire.v1.cbor",
            Format::Protobuf => "ringwire.v1.proto",
        }
    }

    /// The format named by a subprotocol token from [`Format::subprotocol`].
    pub fn from_subprotocol(token: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.subprotocol() == token)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a WebSocket data frame (RFC 6455 §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A text frame: the payload is UTF-8.
    Text,
    /// A binary frame: the payload is arbitrary bytes.
    Binary,
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Text => "text",
            FrameKind::Binary => "binary",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocols_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_subprotocol(f.subprotocol()), Some(f));
        }
        assert_eq!(Format::from_subprotocol("chat"), None);
    }

    #[test]
    fn only_json_is_text() {
        assert_eq!(Format::Json.frame_kind(), FrameKind::Text);
        assert_eq!(Format::Cbor.frame_kind(), FrameKind::Binary);
        assert_eq!(Format::Protobuf.frame_kind(), FrameKind::Binary);
    }
}
