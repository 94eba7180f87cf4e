//! Complete messages as the application sees them.

use bytes::Bytes;

/// Bytes known to be valid UTF-8: the payload of a text message.
///
/// The bytes were validated on receipt (or came from a `str`). This crate forbids
/// `unsafe`, so [`Utf8Bytes::as_str`] checks them again (SIMD; many GB/s);
/// [`Utf8Bytes::as_bytes`] and [`Utf8Bytes::into_bytes`] are free.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes if they are valid UTF-8.
    pub fn try_from_bytes(b: Bytes) -> Result<Self, Bytes> {
        if simdutf8::basic::from_utf8(&b).is_ok() {
            Ok(Self(b))
        } else {
            Err(b)
        }
    }

    /// Wraps bytes already validated by this crate.
    pub(crate) fn from_validated(b: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&b).is_ok());
        Self(b)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // The invariant of this type: the bytes are UTF-8, so this never takes the `Err` arm.
        simdutf8::basic::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying shared bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }
}

/// A complete data message (RFC 6455 §5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message: UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Self::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Self::Binary(b.into())
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// The payload as shared bytes.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Self::Text(t) => t.into_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}
