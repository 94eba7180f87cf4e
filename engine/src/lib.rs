//! # ringwire: a thread-per-core io_uring WebSocket engine
//!
//! One worker per CPU, pinned, each with its own io_uring ring, its own connections,
//! timer wheel and topic table; no locks on the hot path. The WebSocket protocol itself
//! is [`ringwire_frame`], a sans-IO core the workers drive. Where io_uring is refused
//! (seccomp, old kernels) an epoll backend runs the same engine.
//!
//! ```text
//!            ┌─────────────── worker 0 (CPU 0) ────────────────┐
//!  listener ─┤ io_uring: multishot accept, multishot recv into │── Handler::on_message
//!  (REUSEPORT)│ a provided-buffer ring, vectored sends         │   Ctx::send / publish
//!            │ slab of connections ── ringwire_frame::Connection│
//!            │ timer wheel (heartbeats, deadlines)              │
//!            └──────────────▲──────────────────────────────────┘
//!                           │ bounded lock-free queue + eventfd
//!         ConnHandle / Publisher (any thread, e.g. a tokio task)
//! ```
//!
//! ```no_run
//! use ringwire::{Ctx, Engine, Handler};
//! use ringwire::frame::Message;
//!
//! struct Chat;
//! impl Handler for Chat {
//!     fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
//!         cx.subscribe("room");
//!         cx.publish("room", &msg);
//!     }
//! }
//!
//! let server = Engine::builder()
//!     .listen("127.0.0.1:9001".parse().unwrap())
//!     .start(|_worker| Chat)
//!     .unwrap();
//! println!("listening on {} ({})", server.local_addr(), server.backend().name);
//! server.shutdown().unwrap();
//! ```

#![deny(unsafe_code)]

pub use ringwire_frame as frame;

mod admin;
pub mod auth;
pub mod client;
mod clock;
pub mod cluster;
mod config;
mod conn;
mod handle;
mod handler;
mod hash;
mod log;
pub mod outbox;
mod panic;
mod server;
mod shard;
mod slab;
mod stats;
#[allow(unsafe_code)]
mod sys;
pub mod tls;
mod topics;
#[cfg(feature = "codec")]
mod typed;
mod wheel;
mod worker;

pub use config::{
    default_workers, BackendChoice, Backpressure, ConfigError, EngineConfig, OriginCheck,
};
pub use handle::{ConnHandle, ConnId, Publisher, SendError, Topic};
pub use handler::{Ctx, WorkerCtx};
pub use handler::{Echo, Handler, Upgrade};
pub use server::{BackendInfo, Engine, EngineBuilder, EngineError, Server};
pub use stats::{CloseCauses, RttHistogram, StatsSnapshot, RTT_BUCKETS_US};

#[cfg(feature = "codec")]
pub use ringwire_codec as codec;
#[cfg(feature = "codec")]
pub use typed::TypedSendError;
