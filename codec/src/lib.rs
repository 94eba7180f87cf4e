//! Typed messages for ringwire: one envelope, three wire formats.
//!
//! ```text
//!  your type T ──encode──▶ bytes ──▶ text frame   (Json)
//!      ▲                          └─▶ binary frame (Cbor, Protobuf)
//!      └──────decode─── bytes ◀── frame from the peer
//!                         │
//!                         └─ error: format + position, close code 1007
//! ```
//!
//! - [`Codec<T>`]: encode into a buffer the caller owns, decode from bytes.
//!   Implemented by [`Json`] (feature `json`), [`Cbor`] (feature `cbor`) and
//!   [`Protobuf`] (feature `protobuf`), all on by default.
//! - [`Envelope<T>`]: a [`MessageId`] (128-bit, time-ordered), a [`Kind`], a
//!   timestamp and the payload, compact in every format.
//! - Typed messages on connections: [`Codec::encode_message`] gives a
//!   `ringwire_frame::Message` (text for JSON, binary otherwise) and
//!   [`Codec::decode_message`] reads one; a [`DecodeError`] carries the format,
//!   the position and the [`CloseCode`] to send (1007 for garbage).
//! - Zero-copy decoding: [`BorrowCodec::decode_borrowed`] decodes into a
//!   type whose strings borrow from the message (`Cow<'de, str>` fields for
//!   JSON and CBOR, a `BorrowedMessage` for Protobuf), with no allocation
//!   per string and UTF-8 still checked. Same bytes on the wire as the owned
//!   type; see [`BorrowCodec`] for when to use which.
//! - [`IdGenerator`]: strictly increasing ids from a clock reading and random
//!   bits that the caller supplies; this crate reads no clock and does no I/O.
//!
//! ```
//! # #[cfg(feature = "json")] {
//! use ringwire_codec::{Codec, Envelope, IdGenerator, Json, Kind};
//!
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Chat { room: String, text: String }
//!
//! let mut ids = IdGenerator::new();
//! let msg = Envelope::new(
//!     ids.next_id(1_764_115_200_000, 0x1234_5678),
//!     Kind(1),
//!     1_764_115_200_000_123,
//!     Chat { room: "rust".into(), text: "hi".into() },
//! );
//! let mut buf = Vec::new();
//! Json.encode(&msg, &mut buf).unwrap();
//! assert!(buf.starts_with(br#"{"i":"#));
//! let back: Envelope<Chat> = Json.decode(&buf).unwrap();
//! assert_eq!(back, msg);
//!
//! let err = <Json as Codec<Envelope<Chat>>>::decode(&Json, b"{\"i\":").unwrap_err();
//! assert_eq!(err.close_code(), ringwire_codec::CloseCode::INVALID_PAYLOAD);
//!
//! // On a connection: JSON goes out as a text message.
//! let m = Json.encode_message(&msg).unwrap();
//! assert!(matches!(m, ringwire_codec::Message::Text(_)));
//! let back: Envelope<Chat> = Json.decode_message(&m).unwrap();
//! assert_eq!(back, msg);
//!
//! // Zero-copy: the same bytes into a type that borrows its strings.
//! use ringwire_codec::BorrowCodec;
//! use std::borrow::Cow;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct ChatRef<'a> {
//!     #[serde(borrow)]
//!     room: Cow<'a, str>,
//!     #[serde(borrow)]
//!     text: Cow<'a, str>,
//! }
//! let view: Envelope<ChatRef<'_>> = Json.decode_message_borrowed(&m).unwrap();
//! assert!(matches!(view.payload.room, Cow::Borrowed("rust")));
//! # }
//! ```
#![forbid(unsafe_code)]

mod borrow;
mod codec;
mod envelope;
mod error;
mod format;
mod id;

#[cfg(feature = "cbor")]
mod cbor;
#[cfg(feature = "protobuf")]
mod envelope_proto;
#[cfg(feature = "json")]
mod json;
#[cfg(feature = "protobuf")]
mod protobuf;
#[cfg(feature = "protobuf")]
pub mod protobuf_borrowed;
#[cfg(any(feature = "json", feature = "cbor"))]
mod serde_codec;

pub use crate::borrow::{borrow_cow_strs, BorrowCodec};
pub use crate::codec::Codec;
pub use crate::envelope::{Envelope, Kind};
pub use crate::error::{DecodeError, DecodeErrorKind, EncodeError, Position};
pub use crate::format::{Format, FrameKind};
pub use crate::id::{IdGenerator, MessageId, ParseIdError, TEXT_LEN as ID_TEXT_LEN};
pub use ringwire_frame::{CloseCode, Message};

#[cfg(feature = "cbor")]
pub use crate::cbor::{Cbor, MAX_DEPTH as CBOR_MAX_DEPTH};
#[cfg(feature = "json")]
pub use crate::json::Json;
#[cfg(feature = "protobuf")]
pub use crate::protobuf::Protobuf;
#[cfg(feature = "protobuf")]
pub use crate::protobuf_borrowed::BorrowedMessage;
