//! The client side: outgoing connections on the same workers, rings, slabs and timer
//! wheel as accepted ones.
//!
//! [`crate::Server::connect`] (any thread) or [`crate::Ctx::connect`] (inside a
//! handler) parses a `ws://` URL, resolves it on the caller's thread and hands the
//! dial to a worker. There the connection is a slab record like an accepted one: the
//! same `Handler` callbacks run for it, plus [`crate::Handler::on_state`] at each state
//! change, and it keeps its key across reconnects. A [`ClientHandle`] reads its state
//! and sends from any thread.
//!
//! ```text
//!  Disconnected ─dial─► Connecting ──101──► Connected
//!                        ▲     │ failed        │ lost (close, heartbeat, I/O)
//!                        │     ▼               ▼
//!                        └─ Reconnecting ◄─────┘      any ─close/permanent/give up─► Closed
//! ```
//!
//! The policy parts are sans-IO and read no clock (time is passed in), like
//! `ringwire-frame`: the state machine (`lifecycle.rs`), the backoff schedule
//! (`backoff.rs`), the per-target connect-rate cap (`limiter.rs`), the health figures
//! (`health.rs`). The worker drives them (`crate::worker`'s `dial.rs`); reconnect
//! attempts are entries on the worker's timer wheel, not sleeping tasks.
//!
//! ```no_run
//! use ringwire::client::{ClientConfig, StateChange};
//! use ringwire::frame::Message;
//! use ringwire::{Ctx, Engine, Handler};
//!
//! struct Feed;
//! impl Handler for Feed {
//!     fn on_message(&mut self, _cx: &mut Ctx<'_>, msg: Message) {
//!         println!("{msg:?}");
//!     }
//!     fn on_state(&mut self, _cx: &mut Ctx<'_>, change: &StateChange) {
//!         eprintln!("{} -> {}: {}", change.from, change.to, change.cause);
//!     }
//! }
//!
//! let engine = Engine::builder().workers(1).start(|_| Feed).unwrap();
//! let feed = engine.connect("ws://127.0.0.1:9001/feed", ClientConfig::default()).unwrap();
//! // ... feed.send_text("subscribe"), feed.state(), feed.close(..)
//! engine.shutdown().unwrap();
//! ```
//!
//! For async applications (tokio or any runtime), [`connect`] and
//! [`crate::Server::connect_stream`] give the client as a [`ClientStream`] of
//! [`Event`]s instead of handler callbacks; [`Pool`] holds N connections to one target.
//!
//! `wss://` URLs dial with TLS ([`crate::tls`], [`ClientConfig::tls`]): the TLS
//! handshake runs first, within the handshake timeout, then the upgrade.

mod backoff;
mod config;
mod dialer;
mod handle;
mod health;
mod lifecycle;
mod limiter;
mod pool;
mod record;
mod stream;
mod table;
mod target;

pub use self::backoff::Backoff;
pub use self::config::{AppHeartbeat, ClientConfig, ConnectError};
pub use self::handle::{ClientHandle, ClientSpec, HealthSummary};
pub use self::health::{HealthConfig, HealthSnapshot, Level};
pub use self::lifecycle::{Cause, ClientState, RetryPolicy, StateChange};
pub use self::limiter::ConnectRate;
pub use self::pool::{Pick, Pool};
pub use self::stream::{connect, connect_with, ClientStream, Event, STREAM_CAPACITY};

pub(crate) use self::backoff::Rng;
pub(crate) use self::dialer::Dialer;
pub(crate) use self::handle::{ClientShared, Dial, SharedRef};
pub(crate) use self::record::{Client, ClientEvent};
pub(crate) use self::stream::EventSink;
pub(crate) use self::table::ClientTable;
