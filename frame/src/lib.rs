//! # ringwire-frame: RFC 6455 without I/O
//!
//! The WebSocket protocol as a pure state machine: bytes and the current time go in,
//! events and bytes to send come out. No sockets, no clock, no runtime, no `unsafe`.
//! The ringwire engine drives it from io_uring; tests drive it with a virtual clock;
//! fuzzers feed it arbitrary bytes.
//!
//! ```text
//!            handle_bytes(now, &[u8])           poll_event() -> Event
//!  transport ─────────────────────────▶ ┌────────────┐ ─────────────────▶ application
//!            handle_timeout(now)         │ Connection │   send(Message), close(..)
//!            handle_eof(now)             │            │ ◀───────────────── application
//!  transport ◀───────────────────────── └────────────┘
//!            poll_transmit() -> Bytes       poll_timeout() -> Instant
//! ```
//!
//! The pieces:
//! - [`handshake`]: the HTTP/1.1 upgrade, server and client sides.
//! - [`Connection`]: one connection after the upgrade (see its call order).
//! - [`FrameHeader`], [`encode_frame`], [`encode_message`], [`encode_shared`]: frames on
//!   their own, for custom drivers and fan-out.
//! - [`mask`], [`utf8`]: the hot loops, usable alone.
//!
//! ```
//! use std::time::Instant;
//! use ringwire_frame::{Config, Connection, Event, FixedMask, Message};
//!
//! let now = Instant::now();
//! let mut server = Connection::server(Config::default(), now);
//! let mut client = Connection::client(Config::default(), Box::new(FixedMask([1, 2, 3, 4])), now);
//!
//! client.send_text("hello").unwrap();
//! let mut wire = Vec::new();
//! client.poll_transmit_into(&mut wire);
//! server.handle_bytes(now, &wire);
//! match server.poll_event() {
//!     Some(Event::Message(Message::Text(t))) => assert_eq!(t.as_str(), "hello"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```
#![forbid(unsafe_code)]

mod close;
mod code;
mod config;
mod connection;
pub mod deflate;
mod encode;
mod error;
pub mod handshake;
mod header;
pub mod mask;
mod message;
pub mod utf8;

/// The shared byte buffers of this crate's API (the `bytes` crate's), re-exported.
pub use bytes::Bytes;
pub use close::{CloseFrame, MAX_CLOSE_REASON};
pub use code::CloseCode;
pub use config::Config;
pub use connection::{
    CloseCause, Closed, Connection, Event, Pong, RecvBuffer, Role, PING_PAYLOAD_LEN,
};
pub use deflate::{DeflateConfig, DeflateParams};
pub use encode::{
    encode_frame, encode_frame_rsv, encode_message, encode_message_rsv, encode_shared,
    encode_shared_rsv, FixedMask, MaskSource, XorShiftMask,
};
pub use error::{Fault, ProtocolError, SendError};
pub use header::{FrameHeader, OpCode, MAX_HEADER_LEN};
pub use message::{Message, Utf8Bytes};
