//! Reaching a worker from other threads: a bounded lock-free command queue per worker
//! and an eventfd wake-up, behind [`ConnHandle`] and [`Publisher`].

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use ringwire_frame::{encode_shared, CloseCode, Message, OpCode};

use crate::slab::Key;

/// A topic name, shared between threads without copying.
pub type Topic = Arc<str>;

/// Identifies a connection across the engine: its worker and its slot there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) worker: u16,
    pub(crate) key: Key,
}

impl ConnId {
    /// The worker that owns the connection.
    pub fn worker(&self) -> usize {
        usize::from(self.worker)
    }

    /// The connection's place on its worker: below
    /// [`crate::EngineConfig::max_connections_per_worker`], dense (the lowest free place
    /// is taken first) and reused after the connection ends. With [`ConnId::worker`] it
    /// indexes per-connection data kept in vectors rather than maps.
    pub fn index(&self) -> usize {
        self.key.slot as usize
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w{}:{}.{}", self.worker, self.key.slot, self.key.gen)
    }
}

/// Work for a worker from another thread.
pub(crate) enum Command {
    Send(Key, Message),
    Close(Key, CloseCode, String),
    Subscribe(Key, Topic),
    Unsubscribe(Key, Topic),
    /// A frame encoded once, for every local subscriber of the topic.
    Publish(Topic, Bytes),
    /// Dial a new client connection.
    Connect(Box<crate::client::Dial>),
    /// A client's handle closes it before the worker had given it a key.
    CloseClient(Box<(crate::client::SharedRef, CloseCode, String)>),
    /// A durable send from a client's handle (boxed, as the durable commands below: the
    /// queue's slots stay the size of the common commands).
    SendDurable(Box<DurableSend>),
    /// To a stream's home worker: a durable message for the stream.
    StreamSend(Box<(u64, Option<u128>, Message)>),
    /// To a stream's home worker: a connection of the stream is up, or ended.
    StreamAttached {
        stream: u64,
        conn: ConnId,
    },
    StreamDetached {
        stream: u64,
        conn: ConnId,
    },
    /// To a stream's home worker: the client acknowledged up to `upto`.
    StreamAck {
        stream: u64,
        upto: u128,
    },
    /// From a stream's home worker: a durable message for connection `Key`, tagged (the
    /// box becomes the queued message's).
    SendTagged(Key, Box<(u128, Message)>),
    /// The outbox's sync thread finished a sync: everything before `upto` is durable,
    /// unless it failed.
    OutboxSynced {
        upto: u64,
        error: Option<String>,
    },
}

/// A durable send from a client's handle: the answer goes back through `reply` if
/// there is one (else a refusal goes to the handler).
pub(crate) struct DurableSend {
    pub(crate) client: ClientRef,
    pub(crate) id: Option<u128>,
    pub(crate) msg: Message,
    pub(crate) reply: Option<DurableReply>,
}

/// The client a handle's command is for: its key, or, while its worker has not yet
/// taken the dial, its shared state, from which the worker reads the key then (the dial
/// was queued before any command of the handle, so it has run by the time one is taken).
pub(crate) enum ClientRef {
    Key(Key),
    Pending(crate::client::SharedRef),
}

impl ClientRef {
    /// The key (`None`: the worker refused the dial, and the client is `Closed`).
    pub(crate) fn key(&self) -> Option<Key> {
        match self {
            ClientRef::Key(k) => Some(*k),
            ClientRef::Pending(shared) => shared.key(),
        }
    }
}

/// Where a worker answers a handle's durable send that waits for it.
pub(crate) type DurableReply =
    std::sync::mpsc::SyncSender<Result<crate::outbox::Accepted, crate::outbox::DurableError>>;

/// How long one `/metrics` scrape keeps the workers sampling (a scraper comes back well
/// within it; without scrapes the sampling stops).
pub(crate) const SAMPLED_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// The part of a worker other threads can reach.
pub(crate) struct WorkerShared {
    /// The worker's number (its place in the engine's list of workers).
    index: u16,
    pub(crate) queue: ArrayQueue<Command>,
    wake_fd: Arc<OwnedFd>,
    /// Set by the first producer after the worker last drained; saves a syscall for every
    /// further command until then.
    notified: AtomicBool,
    /// A graceful shutdown was asked for. A flag beside the queue rather than a command
    /// in it, so that a full queue can never keep a shutdown out.
    shutdown: AtomicBool,
    /// The application rang for the handler's `on_wake` (`Server::wake`). A flag rather
    /// than a command, like `shutdown`, so a full queue cannot keep it out, and rings
    /// before the worker looks count once.
    wake_requested: AtomicBool,
    /// Admin dashboards watching the busiest topics now: while there are any, the
    /// worker refreshes `top_topics` once a second (a walk of its topics, so not
    /// otherwise).
    topic_watchers: std::sync::atomic::AtomicUsize,
    /// The worker's busiest topics as of its last refresh: name, local subscribers,
    /// messages published. Written once a second at most, read by the admin thread.
    top_topics: std::sync::Mutex<Vec<(Topic, u64, u64)>>,
    /// Until when (a `clock::Stamp`'s nanoseconds) a `/metrics` scrape asked for the
    /// sampled figures (the send-queue bytes): scrapers come back every few seconds.
    sampled_until: AtomicU64,
}

impl WorkerShared {
    pub(crate) fn new(index: u16, capacity: usize, wake_fd: Arc<OwnedFd>) -> Self {
        Self {
            index,
            queue: ArrayQueue::new(capacity),
            wake_fd,
            notified: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            wake_requested: AtomicBool::new(false),
            topic_watchers: std::sync::atomic::AtomicUsize::new(0),
            top_topics: std::sync::Mutex::new(Vec::new()),
            sampled_until: AtomicU64::new(0),
        }
    }

    /// The worker's number.
    pub(crate) fn index(&self) -> u16 {
        self.index
    }

    fn wake(&self) {
        // An eventfd write cannot block here (the counter is far from overflow) and a
        // failure would only mean the worker is gone.
        let _ = rustix::io::write(self.wake_fd.as_fd(), &1u64.to_ne_bytes());
    }

    /// Asks the worker to shut down gracefully, and wakes it. Never fails.
    pub(crate) fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Asks the worker to run its handler's `on_wake`, and wakes it. Never fails.
    pub(crate) fn ring(&self) {
        if !self.wake_requested.swap(true, Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Whether the application rang since the last call (which clears it).
    pub(crate) fn take_ring(&self) -> bool {
        self.wake_requested.load(Ordering::Relaxed)
            && self.wake_requested.swap(false, Ordering::SeqCst)
    }

    pub(crate) fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Whether an admin dashboard wants the busiest topics.
    pub(crate) fn topics_watched(&self) -> bool {
        self.topic_watchers.load(Ordering::Relaxed) > 0
    }

    /// Whether someone reads the sampled figures: a dashboard, or a `/metrics` scrape
    /// within the last [`SAMPLED_FOR`].
    pub(crate) fn sampled(&self, now: std::time::Instant) -> bool {
        let until = self.sampled_until.load(Ordering::Relaxed);
        self.topics_watched() || (until != 0 && crate::clock::Stamp::of(now).nanos() < until)
    }

    /// A scrape asks for the sampled figures for the next [`SAMPLED_FOR`].
    pub(crate) fn want_samples(&self, now: std::time::Instant) {
        let until = crate::clock::Stamp::of(now + SAMPLED_FOR).nanos();
        if self.sampled_until.swap(until, Ordering::Relaxed) < crate::clock::Stamp::of(now).nanos()
        {
            self.wake(); // it was not sampling: start now rather than at its next event
        }
    }

    /// One more (`true`) or one fewer dashboard watching the busiest topics.
    pub(crate) fn watch_topics(&self, on: bool) {
        if on {
            self.topic_watchers.fetch_add(1, Ordering::SeqCst);
            self.wake();
        } else {
            self.topic_watchers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The worker's busiest topics, as of its last refresh.
    pub(crate) fn top_topics(&self) -> Vec<(Topic, u64, u64)> {
        self.top_topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn set_top_topics(&self, top: Vec<(Topic, u64, u64)>) {
        *self.top_topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = top;
    }

    /// Queues a command and wakes the worker. Fails (handing the command back) if the
    /// queue is full.
    pub(crate) fn push(&self, cmd: Command) -> Result<(), Command> {
        self.queue.push(cmd)?;
        if !self.notified.swap(true, Ordering::SeqCst) {
            self.wake();
        }
        Ok(())
    }

    /// Called by the worker before it drains the queue.
    pub(crate) fn clear_notified(&self) {
        self.notified.store(false, Ordering::SeqCst);
    }
}

/// Why a send, close or subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The worker's command queue is full (it is overloaded); try again later.
    #[error("the worker's command queue is full")]
    QueueFull,
    /// The connection is closing or gone.
    #[error("the connection is closed")]
    Closed,
    /// The connection's send queue is over its limit: the message was dropped
    /// (`DropNewest`, `DropOldest`) or the connection is being closed as a slow consumer
    /// (`Close`).
    #[error("the connection's send queue is full")]
    Backpressure,
    /// The protocol core refused it: an invalid close code, a close reason over 123
    /// bytes, a control payload over 125 bytes.
    #[error(transparent)]
    Frame(ringwire_frame::SendError),
    /// The connection is subscribed to as many topics as
    /// [`crate::EngineConfig::max_topics_per_connection`] allows.
    #[error("the connection is already subscribed to {max} topics, the limit")]
    TooManyTopics {
        /// The limit.
        max: usize,
    },
    /// The topic name is longer than [`crate::EngineConfig::max_topic_len`].
    #[error("topic name of {len} bytes is longer than the limit of {max}")]
    TopicTooLong {
        /// The name's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A client connection is not connected now (it is connecting or waiting to
    /// reconnect); nothing was queued.
    #[error("the client is not connected")]
    NotConnected,
    /// The authorizer did not grant this connection the topic
    /// ([`crate::EngineConfig::authorizer`]); the connection is closed with 1008.
    #[error("not allowed on this topic")]
    NotAllowed,
}

impl From<ringwire_frame::SendError> for SendError {
    fn from(e: ringwire_frame::SendError) -> Self {
        match e {
            ringwire_frame::SendError::Closed => SendError::Closed,
            other => SendError::Frame(other),
        }
    }
}

/// A connection handle usable from any thread: its commands cross to the owning worker
/// through that worker's lock-free queue. Cheap to clone.
#[derive(Clone)]
pub struct ConnHandle {
    pub(crate) id: ConnId,
    pub(crate) shared: Arc<WorkerShared>,
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConnHandle").field(&self.id).finish()
    }
}

impl ConnHandle {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    fn push(&self, cmd: Command) -> Result<(), SendError> {
        self.shared.push(cmd).map_err(|_| SendError::QueueFull)
    }

    /// Sends a message. Delivery is asynchronous: if the connection is gone by the time
    /// the worker runs the command, the message is dropped.
    pub fn send(&self, msg: Message) -> Result<(), SendError> {
        self.push(Command::Send(self.id.key, msg))
    }

    /// Starts the close handshake. The code and reason are checked here, so an invalid
    /// one is refused at once ([`SendError::Frame`]).
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        ringwire_frame::CloseFrame::check(code, reason)?;
        self.push(Command::Close(self.id.key, code, reason.to_owned()))
    }

    /// Subscribes the connection to a topic. The per-connection limits are checked on
    /// the worker: a subscription over them is dropped and counted in
    /// `StatsSnapshot::subscribes_refused` (`Ctx::subscribe` reports it directly).
    pub fn subscribe(&self, topic: &str) -> Result<(), SendError> {
        self.push(Command::Subscribe(self.id.key, topic.into()))
    }

    /// Unsubscribes the connection from a topic.
    pub fn unsubscribe(&self, topic: &str) -> Result<(), SendError> {
        self.push(Command::Unsubscribe(self.id.key, topic.into()))
    }
}

/// Publishes to topics from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    pub(crate) workers: Arc<[Arc<WorkerShared>]>,
    /// The other nodes, when the engine is one of a cluster.
    pub(crate) cluster: Option<Arc<crate::cluster::ClusterShared>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("workers", &self.workers.len()).finish()
    }
}

/// Encodes a message once as a server frame, for every subscriber on every worker.
pub(crate) fn shared_frame(msg: &Message) -> Bytes {
    let op = if msg.is_text() { OpCode::Text } else { OpCode::Binary };
    encode_shared(op, msg.as_bytes())
}

impl Publisher {
    /// Delivers `msg` to every subscriber of `topic` on every worker. The frame is
    /// encoded once and shared. Returns how many workers took it (a worker whose queue
    /// is full is skipped and counted out).
    pub fn publish(&self, topic: &str, msg: &Message) -> usize {
        let frame = shared_frame(msg);
        let topic: Topic = topic.into();
        if let Some(c) = &self.cluster {
            c.publish(&topic, &frame);
        }
        self.deliver_frame(&topic, frame)
    }

    /// Hands an encoded frame to every local worker's subscribers of `topic` (and not
    /// to the other nodes).
    pub(crate) fn deliver_frame(&self, topic: &Topic, frame: Bytes) -> usize {
        self.workers
            .iter()
            .filter(|w| w.push(Command::Publish(topic.clone(), frame.clone())).is_ok())
            .count()
    }
}

#[cfg(test)]
mod size_tests {
    /// Every worker allocates its command queue's slots up front (65,536 by default):
    /// 16 bytes more per command is 1 MiB more per worker. The durable commands are
    /// boxed to keep the slots at the size of the common ones.
    #[test]
    fn a_command_stays_small() {
        let n = std::mem::size_of::<super::Command>();
        assert!(n <= 64, "Command grew to {n} bytes");
    }
}
