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
//! assert_eq!(err.close_code(), 1007);
//! # }
//! ```
#![forbid(unsafe_code)]

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

pub use crate::codec::Codec;
pub use crate::envelope::{Envelope, Kind};
pub use crate::error::{
    DecodeError, DecodeErrorKind, EncodeError, Position, CLOSE_INVALID_PAYLOAD,
    CLOSE_UNSUPPORTED_DATA,
};
pub use crate::format::{Format, FrameKind};
pub use crate::id::{IdGenerator, MessageId, ParseIdError, TEXT_LEN as ID_TEXT_LEN};

#[cfg(feature = "cbor")]
pub use crate::cbor::{Cbor, MAX_DEPTH as CBOR_MAX_DEPTH};
#[cfg(feature = "json")]
pub use crate::json::Json;
#[cfg(feature = "protobuf")]
pub use crate::protobuf::Protobuf;
