//! The main thread of `ringwire connect`: prints what the handler forwards, sends the
//! stdin lines while the connection is up, closes at the end of stdin, and decides how
//! the command ends.

use std::io::{self, BufWriter, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwire::client::{Cause, ClientHandle, ClientState, HealthSnapshot, StateChange};
use ringwire::frame::{CloseCause, CloseCode, Closed, Message};
use ringwire::{SendError, Server};

use super::output::{self, note, Format};
use super::{input, ConnectArgs, CLOSE_WAIT};

/// What the handler (on the worker) and the stdin thread tell the main thread.
#[derive(Debug)]
pub(crate) enum Event {
    /// The client's state changed.
    State(StateChange),
    /// A message arrived.
    Message(Message),
    /// A heartbeat's pong arrived after this round trip.
    Pong(Duration),
    /// The client's health level changed.
    Health(HealthSnapshot),
    /// The WebSocket connection ended.
    Closed(Closed),
    /// Messages waited to be printed past `MAX_BACKLOG`: the handler closed with 1008.
    Overflow,
    /// The stdin thread queued a line.
    Input,
    /// stdin ended; with the read error that ended it, if any.
    InputEnd(Option<String>),
}

/// How the command ends: `Ok` exits 0, `Err` prints the cause and exits 1.
type Outcome = Result<(), String>;

/// Unsent bytes (by the estimate of [`Flow`]) past which no further line is sent. What
/// the worker wrote waits in the kernel's socket buffer (megabytes), which keeps a fast
/// path busy; a larger window would only let a line flood run further ahead of the
/// server (an echo server's own send queue limit closes a client that does).
const WINDOW: u64 = 64 << 10;
/// Events handled between two looks at stdin, so a flood of messages cannot starve it.
const EVENTS_PER_TURN: usize = 1024;

/// Flow control: how much of what was sent since the connection came up the worker has
/// not written yet. The engine's `bytes_out` counts every byte written (pongs too), so
/// the estimate can only be low by the few control frames written since the connection
/// came up; each line counts with its frame header and mask.
#[derive(Debug, Default)]
struct Flow {
    /// `bytes_out` when the connection came up.
    base: u64,
    /// Frame bytes sent since.
    sent: u64,
    /// Bytes written since, as last read.
    written: u64,
}

impl Flow {
    fn reset(&mut self, bytes_out: u64) {
        *self = Self { base: bytes_out, ..Self::default() };
    }

    /// Whether another line may go: fewer than [`WINDOW`] bytes unsent. Reads the
    /// engine's counter only when the last reading says no.
    fn open(&mut self, bytes_out: impl FnOnce() -> u64) -> bool {
        if self.sent.saturating_sub(self.written) < WINDOW {
            return true;
        }
        self.written = bytes_out().saturating_sub(self.base);
        self.sent.saturating_sub(self.written) < WINDOW
    }

    /// A message of `len` payload bytes was sent: a client frame's header (2, 4 or 10
    /// bytes) and mask (4) come with it.
    fn add(&mut self, len: usize) {
        let header = match len {
            0..=125 => 6,
            126..=65_535 => 8,
            _ => 14,
        };
        self.sent = self.sent.saturating_add(len as u64 + header);
    }
}

/// The main thread's state.
pub(crate) struct Session<'a> {
    server: &'a Server,
    client: ClientHandle,
    url: String,
    reconnect: bool,
    binary: bool,
    verbose: bool,
    format: Format,
    stdout: BufWriter<Stdout>,
    /// Lines from the stdin thread.
    lines: Receiver<Vec<u8>>,
    /// A line taken from `lines` and not sent yet.
    pending: Option<Message>,
    /// stdin ended and every line was taken from `lines`.
    input_done: bool,
    connected: bool,
    /// When our close was requested; the session waits for `on_close` up to
    /// [`CLOSE_WAIT`] after it.
    closing_since: Option<Instant>,
    /// The last end of a WebSocket connection, for its reason.
    last_close: Option<Closed>,
    flow: Flow,
    /// Set by SIGINT or SIGTERM.
    interrupted: Arc<AtomicBool>,
    /// Received bytes not yet printed (shared with the handler).
    backlog: super::Backlog,
}

impl<'a> Session<'a> {
    /// A session for `client` of `server`, sending the lines of `lines`.
    pub(crate) fn new(
        server: &'a Server,
        client: ClientHandle,
        args: &ConnectArgs,
        lines: Receiver<Vec<u8>>,
        interrupted: Arc<AtomicBool>,
        backlog: super::Backlog,
    ) -> Self {
        Self {
            server,
            client,
            url: args.url.clone(),
            reconnect: args.reconnect,
            binary: args.binary,
            verbose: args.verbose,
            format: Format { json: args.json, raw: args.raw },
            stdout: BufWriter::new(io::stdout()),
            lines,
            pending: None,
            input_done: false,
            connected: false,
            closing_since: None,
            last_close: None,
            flow: Flow::default(),
            interrupted,
            backlog,
        }
    }

    /// Runs until the command's end; stdout is flushed before it returns.
    pub(crate) fn run(mut self, events: &Receiver<Event>) -> Outcome {
        let mut buf = Vec::new();
        loop {
            // A line held back by the flow control or a full queue is retried soon.
            let wait = if self.connected && self.pending.is_some() { 2 } else { 50 };
            let first = match events.recv_timeout(Duration::from_millis(wait)) {
                Ok(e) => Some(e),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Err("the engine stopped".into()),
            };
            let more = std::iter::from_fn(|| events.try_recv().ok());
            for event in first.into_iter().chain(more).take(EVENTS_PER_TURN) {
                if let Some(end) = self.on_event(event, &mut buf) {
                    return self.flush().and(end);
                }
            }
            self.flush()?;
            if let Some(end) = self.pump() {
                return self.flush().and(end);
            }
        }
    }

    fn flush(&mut self) -> Outcome {
        self.stdout.flush().map_err(|e| format!("stdout: {e}"))
    }

    fn on_event(&mut self, event: Event, buf: &mut Vec<u8>) -> Option<Outcome> {
        match event {
            Event::State(change) => return self.on_state(change),
            Event::Message(msg) => {
                buf.clear();
                output::render(&msg, self.format, buf);
                let written = self.stdout.write_all(buf);
                self.backlog.printed(super::backlog_size(&msg));
                if let Err(e) = written {
                    return Some(Err(format!("stdout: {e}")));
                }
            }
            Event::Overflow => {
                return Some(Err(format!(
                    "output did not keep up: more than {} MiB of received messages waited \
                     to be printed; the connection was closed with 1008",
                    super::MAX_BACKLOG >> 20
                )))
            }
            Event::Pong(rtt) if self.verbose => note(format_args!("{}", output::pong_text(rtt))),
            Event::Health(h) if self.verbose => note(format_args!("{}", output::health_text(&h))),
            Event::Closed(closed) => {
                if self.verbose {
                    note(format_args!("closed: {}", output::closed_text(&closed)));
                }
                if self.closing_since.is_some() {
                    // Ours: done once the server answered it.
                    return Some(match closed.cause {
                        CloseCause::Local | CloseCause::Peer => Ok(()),
                        _ => Err(format!(
                            "the close handshake did not finish: {}",
                            output::closed_text(&closed)
                        )),
                    });
                }
                self.last_close = Some(closed);
            }
            Event::InputEnd(Some(e)) => note(format_args!("stdin: {e}; closing")),
            Event::Pong(_) | Event::Health(_) | Event::Input | Event::InputEnd(None) => {}
        }
        None
    }

    fn on_state(&mut self, change: StateChange) -> Option<Outcome> {
        self.connected = change.to == ClientState::Connected;
        match change.to {
            ClientState::Connected => self.flow.reset(self.server.stats().bytes_out),
            ClientState::Reconnecting if !self.reconnect => return Some(self.lost(&change)),
            ClientState::Closed if change.cause == Cause::AppClose => {
                // Our close: from an open connection, `on_close` tells when it finished.
                if self.closing_since.is_some() && change.from == ClientState::Connected {
                    return None;
                }
                return Some(Err(format!("closed before connecting to {}", self.url)));
            }
            ClientState::Closed => {
                let what = if change.from == ClientState::Connected {
                    "connection to"
                } else {
                    "could not connect to"
                };
                return Some(Err(format!("{what} {}: {}", self.url, change.cause)));
            }
            _ => {}
        }
        note(format_args!("{}", output::state_text(&change)));
        None
    }

    /// Without --reconnect: the connection failed or was lost (the handler already closed
    /// the client). A close from the server with 1000 is a normal end.
    fn lost(&self, change: &StateChange) -> Outcome {
        if change.from != ClientState::Connected {
            return Err(format!("could not connect to {}: {}", self.url, change.cause));
        }
        let reason = match &self.last_close {
            Some(c) if !c.reason.is_empty() => format!(" ({:?})", c.reason),
            _ => String::new(),
        };
        if change.cause == (Cause::Closed { code: CloseCode::NORMAL.0 }) {
            note(format_args!("the server closed the connection (1000){reason}"));
            return Ok(());
        }
        Err(format!("connection to {} lost: {}{reason}", self.url, change.cause))
    }

    /// Sends what stdin has while the connection is up and the flow control allows;
    /// closes at the end of stdin or on a signal; gives up on a close that takes too long.
    fn pump(&mut self) -> Option<Outcome> {
        if let Some(since) = self.closing_since {
            if since.elapsed() > CLOSE_WAIT + Duration::from_secs(1) {
                return Some(Err(format!("no close from the server within {CLOSE_WAIT:?}")));
            }
            return None;
        }
        if self.interrupted.load(Ordering::Relaxed) {
            if !self.connected {
                return Some(Err(format!("interrupted while not connected to {}", self.url)));
            }
            self.pending = None;
            self.input_done = true;
        }
        while self.connected && !self.input_done {
            let msg = match self.pending.take() {
                Some(m) => m,
                None => match self.lines.try_recv() {
                    Ok(line) => {
                        let (msg, not_utf8) = input::message(line, self.binary);
                        if not_utf8 {
                            note(format_args!("a line is not UTF-8: sent as a binary message"));
                        }
                        msg
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.input_done = true;
                        break;
                    }
                },
            };
            let server = self.server;
            if !self.flow.open(|| server.stats().bytes_out) {
                self.pending = Some(msg);
                break;
            }
            let len = msg.len();
            match self.client.send(msg.clone()) {
                Ok(()) => self.flow.add(len),
                // Full queue: again in a moment; not connected or closed: a state change
                // follows (the line goes after a reconnect).
                Err(SendError::QueueFull | SendError::NotConnected | SendError::Closed) => {
                    self.pending = Some(msg);
                    break;
                }
                Err(e) => note(format_args!("a line was not sent: {e}")),
            }
        }
        if self.connected && self.input_done {
            match self.client.close(CloseCode::NORMAL, "") {
                Ok(()) => self.closing_since = Some(Instant::now()),
                // Again in a moment, or after the state change that follows.
                Err(SendError::QueueFull | SendError::NotConnected) => {}
                Err(e) => return Some(Err(format!("cannot close the connection: {e}"))),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_control_holds_back_past_the_window() {
        let mut f = Flow::default();
        f.reset(1_000);
        assert!(f.open(|| unreachable!("nothing sent yet")));
        f.add(100);
        assert_eq!(f.sent, 106);
        f.add(1_000);
        assert_eq!(f.sent, 106 + 1_008);
        f.add(WINDOW as usize);
        assert!(!f.open(|| 1_000 + 500), "most still unsent");
        assert!(f.open(|| 1_000 + 2_000), "written enough");
        f.reset(5);
        assert!(f.open(|| unreachable!()), "a new connection starts afresh");
    }
}
