//! A client as an async stream: its messages and state changes go to a bounded
//! lock-free queue with a waker instead of the handler, for an application that lives
//! in an async runtime (tokio or any other: nothing here depends on one). The
//! connection still lives on a ringwire worker.
//!
//! ```no_run
//! # async fn run() -> Result<(), ringwire::client::ConnectError> {
//! use ringwire::client::{self, Event};
//!
//! let mut feed = client::connect("ws://127.0.0.1:9001/feed").await?;
//! feed.send_text("subscribe").ok();
//! while let Some(event) = feed.next_event().await {
//!     match event {
//!         Event::Message(m) => println!("{m:?}"),
//!         Event::State(change) => eprintln!("{} -> {}: {}", change.from, change.to, change.cause),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;
use ringwire_frame::{CloseCode, Closed, Message};

use super::config::{ClientConfig, ConnectError};
use super::handle::ClientHandle;
use super::lifecycle::{ClientState, StateChange};

/// Events a stream holds before the client is closed as a slow consumer (1008).
pub const STREAM_CAPACITY: usize = 4096;

/// What a client stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message from the server.
    Message(Message),
    /// The client changed state ([`crate::Handler::on_state`]).
    State(StateChange),
    /// One WebSocket connection ended ([`crate::Handler::on_close`]); the client may
    /// reconnect after it.
    Closed(Closed),
}

/// Room kept in a stream beyond [`STREAM_CAPACITY`] for state changes and closes, so
/// a consumer that fell behind on messages still sees how the client went on.
const CONTROL_RESERVE: usize = 64;

/// The worker's end: a bounded queue and the consumer's waker.
pub(crate) struct EventSink {
    queue: ArrayQueue<Event>,
    /// Messages are refused at this many queued events; the rest is for the others.
    capacity: usize,
    waker: AtomicWaker,
    /// The client ended and every event is queued: the stream ends once drained.
    done: AtomicBool,
    /// Events refused because the queue was full.
    overflows: AtomicU64,
}

impl EventSink {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: ArrayQueue::new(capacity.max(1) + CONTROL_RESERVE),
            capacity: capacity.max(1),
            waker: AtomicWaker::new(),
            done: AtomicBool::new(false),
            overflows: AtomicU64::new(0),
        }
    }

    /// Queues `e` and wakes the consumer; `false` when it is full (the consumer does
    /// not keep up): a message finds it full at the capacity, a state change or a
    /// close only once the reserve beyond it is used up too.
    pub(crate) fn push(&self, e: Event) -> bool {
        let full = matches!(e, Event::Message(_)) && self.queue.len() >= self.capacity;
        let ok = !full && self.queue.push(e).is_ok();
        if !ok {
            self.overflows.fetch_add(1, Ordering::Relaxed);
        }
        self.waker.wake();
        ok
    }

    /// No event follows (the client is `Closed`).
    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// A client whose events are read as an async stream ([`crate::Server::connect_stream`],
/// [`connect`]). Sends go through the handle ([`ClientStream::handle`], or the
/// shortcuts here); they never block.
///
/// A consumer that falls [`STREAM_CAPACITY`] events behind gets its client closed
/// with 1008 (nothing grows without bound); the client then reconnects, so read
/// promptly or pass the events on to a task that does.
///
/// Dropping the stream closes the client (1000; it ends in `Closed`, as its handle's
/// clones then see): with nobody to read its events it would otherwise reconnect
/// forever, closed as a slow consumer each time its queue filled.
pub struct ClientStream {
    handle: ClientHandle,
    sink: Arc<EventSink>,
    /// Keeps the engine of [`connect`] alive (none for `Server::connect_stream`).
    _engine: Option<Arc<crate::Server>>,
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream").field("handle", &self.handle).finish()
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        // Already closed (or its worker's queue full at shutdown): nothing to do.
        let _ = self.handle.close(CloseCode::NORMAL, "");
    }
}

impl ClientStream {
    pub(crate) fn new(handle: ClientHandle, sink: Arc<EventSink>) -> Self {
        Self { handle, sink, _engine: None }
    }

    /// The client's handle (state, sends, close), cloneable to other tasks.
    pub fn handle(&self) -> &ClientHandle {
        &self.handle
    }

    /// The state now.
    pub fn state(&self) -> ClientState {
        self.handle.state()
    }

    /// Queues a message ([`ClientHandle::send`]).
    pub fn send(&self, msg: Message) -> Result<(), crate::SendError> {
        self.handle.send(msg)
    }

    /// Queues a text message.
    pub fn send_text(&self, text: &str) -> Result<(), crate::SendError> {
        self.handle.send_text(text)
    }

    /// Events refused so far because this stream was full.
    pub fn overflows(&self) -> u64 {
        self.sink.overflows.load(Ordering::Relaxed)
    }

    /// The next event; `None` once the client ended (`Closed`) and every event was read.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if let Some(e) = self.sink.queue.pop() {
            return Poll::Ready(Some(e));
        }
        self.sink.waker.register(cx.waker());
        // Checked again after registering: an event pushed in between woke no one.
        if let Some(e) = self.sink.queue.pop() {
            return Poll::Ready(Some(e));
        }
        if self.sink.done.load(Ordering::Acquire) && self.sink.queue.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// The next event (see [`ClientStream::poll_event`]).
    pub async fn next_event(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The next message, skipping state changes and closes; `None` once the client
    /// ended.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match self.next_event().await? {
                Event::Message(m) => return Some(m),
                _ => continue,
            }
        }
    }

    /// Waits until the state is `to` (or the client ended); returns the state then.
    pub async fn wait_for(&mut self, to: ClientState) -> ClientState {
        loop {
            if self.state() == to {
                return to;
            }
            match self.next_event().await {
                Some(Event::State(c)) if c.to == to => return to,
                Some(_) => {}
                None => return self.state(),
            }
        }
    }
}

impl futures_core::Stream for ClientStream {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_event(cx)
    }
}

/// The engine behind [`connect`]: one worker, started on first use, kept for the
/// process's life.
fn shared_engine() -> Result<Arc<crate::Server>, ConnectError> {
    static ENGINE: OnceLock<Arc<crate::Server>> = OnceLock::new();
    static START: Mutex<()> = Mutex::new(());
    if let Some(e) = ENGINE.get() {
        return Ok(e.clone());
    }
    let _once = START.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = ENGINE.get() {
        return Ok(e.clone());
    }
    let server = crate::Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .start(|_| crate::handler::Quiet)
        .map_err(|e| ConnectError::Config(format!("the client engine did not start: {e}")))?;
    Ok(ENGINE.get_or_init(|| Arc::new(server)).clone())
}

/// Dials `url` with the default [`ClientConfig`] on a ringwire engine of its own (one
/// worker, started on first use and shared by every client made this way), and
/// returns the client as a stream once its dial is queued. The host is resolved on a
/// helper thread, so an async runtime is never blocked. For more control, start an
/// engine and use [`crate::Server::connect_stream`].
pub async fn connect(url: &str) -> Result<ClientStream, ConnectError> {
    connect_with(url, ClientConfig::default()).await
}

/// [`connect`] with a configuration.
pub async fn connect_with(url: &str, config: ClientConfig) -> Result<ClientStream, ConnectError> {
    let url = url.to_owned();
    let result = Blocking::spawn(move || {
        let engine = shared_engine()?;
        let mut s = engine.connect_stream(&url, config)?;
        s._engine = Some(engine);
        Ok(s)
    });
    result.await
}

/// A blocking call on a helper thread, awaited.
struct Blocking<T> {
    slot: Arc<Mutex<(Option<T>, Option<Waker>)>>,
}

impl<T: Send + 'static> Blocking<T> {
    fn spawn(f: impl FnOnce() -> T + Send + 'static) -> Self {
        let slot = Arc::new(Mutex::new((None, None::<Waker>)));
        let theirs = slot.clone();
        std::thread::spawn(move || {
            let v = f();
            let mut s = theirs.lock().unwrap_or_else(PoisonError::into_inner);
            s.0 = Some(v);
            if let Some(w) = s.1.take() {
                w.wake();
            }
        });
        Self { slot }
    }
}

impl<T> Future for Blocking<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
